"""CUB-200-2011 by "A Metric Learning Reality Check"'s protocol (Musgrave et
al. 2020): classes 0-99 (5,864 images) to train, 100-199 (5,924) to test,
from TFDS ``caltech_birds2011``'s two splits pooled
(``dataset.class_split="first_half"``); an ImageNet ResNet-50 with frozen
BatchNorm, a linear embedding, batches of 8 classes x 4, MAP@R on the test
classes (``config.mlrc_config``).

The argument chooses the loss and the embedding size, e.g.
``--config=configs/mlrc_cub200.py:multi_similarity,128``: losses
``triplet`` (batch-hard), ``multi_similarity`` (with its miner),
``contrastive``, ``proxy_anchor``; dimensions 128, 512. Default ``triplet,512``. Needs
``caltech_birds2011`` prepared in ``dataset.data_dir`` and torchvision's
ResNet-50 weights in ``model.pretrained`` (docs/datasets.md).
"""

from jaxmetric.train.config import mlrc_config

TRAIN_EXAMPLES = 5_864  # classes 0-99 of both splits
# MLRC's CUB-200-2011 MAP@R, "Concatenated (512-dim)" (see mlrc_config).
MLRC_MAP_AT_R_512 = {"contrastive": 0.2653, "triplet": 0.2369, "multi_similarity": 0.2652}


def get_config(arg=None):
    c = mlrc_config(
        "caltech_birds2011",
        arg,
        train_examples=TRAIN_EXAMPLES,
        train_classes=100,
        reference_512=MLRC_MAP_AT_R_512,
    )
    c.dataset.class_split = "first_half"
    return c
