"""SimSiam on CIFAR-10 (Cloud TPU recipe): ResNet-18 with the CIFAR stem, a
3-layer projector (2048, BN on every layer including the output) and a
bottleneck predictor (2048 -> 512 -> 2048), stop-gradient on the targets,
no momentum encoder (Chen & He 2021, appendix D: their CIFAR setting).

Views: the paper's CIFAR views, symmetric (Chen & He 2021, appendix D:
its ImageNet views, MoCo v2's, without the blur at 32x32): crop 0.2-1,
flip, colour jitter (0.4, 0.4, 0.4, 0.1) p=0.8, grayscale p=0.2, no blur,
no solarisation (``SSL_VIEWS["simsiam"]``). On ImageNet SimSiam blurs both
views with p=0.5 (``augment.simclr_image.blur_prob = 0.5``).

Differences from the paper: LARS at 0.3 x B / 256 with warm-up and cosine
(the shared CIFAR setting of ``cifar10_ssl_config``) instead of SGD at
0.03 x B / 256; 1,000 epochs instead of 800. Not run here.
"""

from jaxmetric.train.config import cifar10_ssl_config


def get_config():
    c = cifar10_ssl_config("simsiam", views="simsiam")
    c.model.head_hidden = 2048
    c.model.head_layers = 3
    c.model.head_final_bn = True
    c.model.embed_dim = 2048
    c.model.predictor = "mlp"
    c.model.predictor_hidden = 512
    c.model.predictor_bn = True
    c.optimizer.learning_rate = 0.3
    c.optimizer.weight_decay = 1e-5
    return c
