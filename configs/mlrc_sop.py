"""Stanford Online Products by "A Metric Learning Reality Check"'s protocol
(Musgrave et al. 2020): its own split, 11,318 classes (59,551 images) to
train and the other 11,316 (60,502) to test, labels ``class_id``; an
ImageNet ResNet-50 with frozen BatchNorm, a linear embedding, batches of 8
classes x 4, MAP@R on the test classes (``config.mlrc_config``).

The argument chooses the loss and the embedding size, e.g.
``--config=configs/mlrc_sop.py:multi_similarity,512``; see
``configs/mlrc_cub200.py``. Needs ``stanford_online_products`` prepared in
``dataset.data_dir`` from the downloaded archive (``python -m
jaxmetric.data.sop``) and torchvision's ResNet-50 weights in
``model.pretrained`` (docs/datasets.md).
"""

from jaxmetric.train.config import mlrc_config

TRAIN_EXAMPLES = 59_551


def get_config(arg=None):
    c = mlrc_config(
        "stanford_online_products", arg, train_examples=TRAIN_EXAMPLES, train_classes=11_318
    )
    c.dataset.label_key = "class_id"
    return c
