"""Cars196 by "A Metric Learning Reality Check"'s protocol (Musgrave et al.
2020): classes 0-97 (8,054 images) to train, 98-195 (8,131) to test, from
TFDS ``cars196``'s two splits pooled (``dataset.class_split="first_half"``);
an ImageNet ResNet-50 with frozen BatchNorm, a linear embedding, batches of
8 classes x 4, MAP@R on the test classes (``config.mlrc_config``).

The argument chooses the loss and the embedding size, e.g.
``--config=configs/mlrc_cars196.py:contrastive,512``; see
``configs/mlrc_cub200.py``. Needs ``cars196`` prepared in
``dataset.data_dir`` and torchvision's ResNet-50 weights in
``model.pretrained`` (docs/datasets.md).
"""

from jaxmetric.train.config import mlrc_config

TRAIN_EXAMPLES = 8_054  # classes 0-97 of both splits


def get_config(arg=None):
    c = mlrc_config("cars196", arg, train_examples=TRAIN_EXAMPLES, train_classes=98)
    c.dataset.class_split = "first_half"
    return c
