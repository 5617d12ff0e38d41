"""MoCo v3 on CIFAR-10 (Cloud TPU recipe): ResNet-18 with the CIFAR stem, a
2-layer projector (4096 -> 256, BN on the output) and predictor
(256 -> 4096 -> 256, BN), keys from the momentum encoder (cosine schedule
0.99 -> 1), the other keys of the global batch as negatives, T = 0.2
(Chen, Xie & He 2021), LARS 0.3 x B / 256, weight decay 1e-5: solo-learn's
CIFAR recipe. Not run here.

Views: BYOL's asymmetric pair, as the MoCo v3 paper uses (Chen, Xie & He
2021, section 4: "we follow BYOL's augmentation"): blur p=1.0 / 0.1 and
solarisation p=0.0 / 0.2 on views 1 / 2 (``SSL_VIEWS["byol"]``).
"""

from jaxmetric.train.config import cifar10_ssl_config


def get_config():
    c = cifar10_ssl_config("mocov3", views="byol")
    c.model.head_hidden = 4096
    c.model.head_layers = 2
    c.model.head_final_bn = True
    c.model.embed_dim = 256
    c.model.predictor = "mlp"
    c.model.predictor_hidden = 4096
    c.model.predictor_bn = True
    c.mocov3.temperature = 0.2
    c.mocov3.base_momentum = 0.99
    c.mocov3.final_momentum = 1.0
    c.optimizer.learning_rate = 0.3
    c.optimizer.weight_decay = 1e-5
    return c
