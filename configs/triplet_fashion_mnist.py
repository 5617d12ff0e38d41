"""Supervised metric learning on Fashion-MNIST: triplet loss with batch-hard
mining (margin 0.2) on class-balanced batches (8 classes x 16), a 3-stage CNN
(32-64-128, BatchNorm, global average pooling) + a linear 64-d embedding, Adam
1e-3 for 1,000 steps; MAP@R, P@1 and R-precision leave-one-out on the test
split. The set-up of ``benchmarks/fashion_mnist_vs_pml.py`` (against PML).

Prepare the dataset once from its IDX files (Debian: ``apt-get install
dataset-fashion-mnist``; nothing downloads at run time)::

    python -m jaxmetric.data.prepare fashion_mnist --data_dir=workdirs/tfds
    python -m jaxmetric.main --config=configs/triplet_fashion_mnist.py \\
        --workdir=workdirs/triplet_fmnist --config.dataset.data_dir=workdirs/tfds

``configs/multi_similarity_fashion_mnist.py`` is the same run with the
multi-similarity loss and its miner.
"""

from jaxmetric.data.prepare import FASHION_MNIST_NAME
from jaxmetric.train.config import base_config


def get_config():
    c = base_config()
    c.method = "supervised"
    c.dataset.name = "tfds"
    c.dataset.tfds_name = FASHION_MNIST_NAME  # written by jaxmetric.data.prepare fashion_mnist
    c.model.encoder = "cnn2d"  # [conv3x3 -> BN -> ReLU -> max-pool 2x2] x 3, global mean
    c.model.cnn_widths = (32, 64, 128)
    c.model.use_bn = True
    c.model.head = "linear"
    c.model.embed_dim = 64
    c.model.init = "torch"  # PyTorch's default init, as the PML side of the benchmark
    c.augment.kind = "none"
    # A background thread reads and decodes the batches: 128 PNGs of 28x28
    # take ~14 ms of CPU, a tenth of a step, less than starting and feeding
    # worker processes (each imports TFDS and OpenCV) costs on a small machine.
    c.data.workers = 0
    c.supervised.loss = "triplet_margin_loss"
    c.supervised.loss_kwargs.margin = 0.2
    c.supervised.loss_kwargs.mining = "batch_hard"
    c.supervised.samples_per_class = 16
    c.batch_size = 128
    c.num_steps = 1000
    c.log_every = 100
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.eval.retrieval = True
    c.eval.knn_k = 10
    c.eval.linear_probe = False  # retrieval is the point; kNN on z stays
    return c
