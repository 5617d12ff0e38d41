"""SimSiam on CIFAR-10 (Cloud TPU recipe): ResNet-18 with the CIFAR stem, a
3-layer projector (2048, BN on every layer including the output) and a
bottleneck predictor (2048 -> 512 -> 2048), stop-gradient on the targets,
no momentum encoder (Chen & He 2021, appendix D: their CIFAR setting).

Differences from the paper: LARS at 0.3 x B / 256 with warm-up and cosine
(the shared CIFAR setting of ``cifar10_ssl_config``) instead of SGD at
0.03 x B / 256; 1,000 epochs instead of 800. Not run here.
"""

from jaxmetric.train.config import cifar10_ssl_config


def get_config():
    c = cifar10_ssl_config("simsiam")
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
