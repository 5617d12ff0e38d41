"""Every recipe in configs/ loads, validates, builds its model and runs one
step at a tiny batch on CPU; bad configs fail early with the field's name."""

import pathlib

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmetric import augment
from jaxmetric.train import create_train_state, make_mesh, make_train_step, methods, validate_config
from jaxmetric.train import trainer as trainer_module
from jaxmetric.train.config import load_recipe
from jaxmetric.train.optim import make_optimizer

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
RECIPES = sorted(p.stem for p in CONFIG_DIR.glob("*.py"))
# Tiny batch: two classes of four (the supervised recipes' sampler), and one
# row per simulated device in the 8-device validation.
BATCH = 8
# Input shape of one example per dataset (TFDS sets are not on the test machine).
SHAPES = {"mnist1d": (40,), "digits": (8, 8), "cifar10": (32, 32, 3), "imagenet2012": (32, 32, 3)}
# The MLRC recipes' datasets (227x227 crops), at 32x32 like ImageNet.
SHAPES |= dict.fromkeys(("caltech_birds2011", "cars196", "stanford_online_products"), (32, 32, 3))
MLRC = ("mlrc_cub200", "mlrc_cars196", "mlrc_sop")
SHAPES["fashion_mnist_idx"] = (28, 28, 1)  # jaxmetric.data.prepare fashion_mnist
FASHION_MNIST = ("triplet_fashion_mnist", "multi_similarity_fashion_mnist")


def load(name: str):
    return load_recipe(CONFIG_DIR / f"{name}.py")


def test_all_recipes_present():
    want = {
        "default",
        "simclr_mnist1d",
        "moco_mnist1d",
        "triplet_digits",
        *FASHION_MNIST,
        "simclr_cifar10",
        "moco_v2_cifar10",
        "simclr_imagenet",
        *(f"{m}_mnist1d" for m in ("byol", "simsiam", "barlow_twins", "vicreg", "mocov3")),
        *(f"{m}_cifar10" for m in ("byol", "simsiam", "barlow_twins", "vicreg", "mocov3")),
        *MLRC,
    }
    assert want <= set(RECIPES)


def _recipe_param(name: str):
    # Each ResNet recipe's step takes 20-90 s of CPU to compile and run.
    resnet = load(name).model.encoder.startswith("resnet")
    return pytest.param(name, marks=pytest.mark.slow) if resnet else name


@pytest.mark.parametrize("name", [_recipe_param(n) for n in RECIPES])
def test_recipe_builds_and_runs_one_step(name):
    config = load(name)
    validate_config(config, num_devices=1)  # the recipe as written
    dataset = config.dataset.tfds_name or config.dataset.name
    shape = SHAPES[dataset]
    # ImageNet at 32x32 instead of 224 (same network, 1x1 after the last stage).
    config.batch_size = BATCH
    config.supervised.samples_per_class = 4
    config.moco.queue_size = 64
    if config.augment.kind == "simclr_image":
        config.augment.simclr_image.size = shape[0]
    config.model.dtype = "float32"
    config.model.pretrained = ""  # random weights: nothing downloads
    validate_config(config, num_devices=8)
    tx, schedule = make_optimizer(config.optimizer, config.batch_size, config.num_steps)
    graphdef, state = create_train_state(config, shape, tx)
    # One device: the recipe's shapes are what this test checks (8 devices ==
    # 1 device is tests/train/test_steps.py's); 8 simulated devices would run the
    # ResNets 8 times over on CI's two cores.
    mesh = make_mesh(1)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    rng = np.random.default_rng(0)
    if augment.crops_on_host(config.augment):  # The pipeline's crops: [B, V, S, S, C].
        views = 2 if methods.get(config.method).two_views else 1
        x = rng.integers(0, 256, size=(BATCH, views, *shape)).astype(np.uint8)
    elif len(shape) == 3:
        x = rng.integers(0, 256, size=(BATCH, *shape)).astype(np.uint8)
    else:
        x = rng.normal(size=(BATCH, *shape)).astype(np.float32)
    y = np.repeat(np.arange(BATCH // 4), 4).astype(np.int32)
    data = NamedSharding(mesh, P("data"))
    step = make_train_step(config, graphdef, tx, mesh)
    x, y = jax.device_put(x, data), jax.device_put(y, data)
    # Compiled with conftest's fast-compile XLA flags (LLVM at -O0): a single
    # step gains nothing from optimised code.
    new, metrics = step(state, x, y)
    assert np.isfinite(float(metrics["loss"])) and int(new.step) == 1 and int(new.skipped) == 0
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params), strict=True):
        assert a.shape == b.shape
    # Warm-up recipes start at learning rate 0: their first step moves nothing.
    assert float(schedule(0)) == 0 or any(
        not np.allclose(a, b)
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params), strict=True)
    )


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("method", "dino", "`method`"),
        ("method", "byol", "`model.predictor`"),  # BYOL without a predictor
        ("barlow_twins.lambda_offdiag", -1.0, "`barlow_twins.lambda_offdiag`"),
        ("batch_size", 12, "`batch_size`=12 must be divisible by the number of devices 8"),
        ("moco.queue_size", 1000, "`moco.queue_size`=1000"),
        ("optimizer.name", "rmsprop", "`optimizer.name`"),
        ("model.encoder", "vit", "`model.encoder`"),
        ("augment.kind", "mixup", "`augment.kind`"),
        ("supervised.samples_per_class", 1, "`supervised.samples_per_class`"),
    ],
)
def test_bad_config_fails_before_data_and_compilation(monkeypatch, tmp_path, field, value, match):
    config = load("simclr_mnist1d")
    config.batch_size = 16
    config.num_devices = 8
    if field.startswith("moco"):
        config.method = "moco"
    if field.startswith("supervised"):
        config.method = "supervised"
    if field.startswith("barlow_twins"):
        config.method = "barlow_twins"

    def no_data(*args, **kwargs):
        raise AssertionError("data loaded before the config was validated")

    monkeypatch.setattr(trainer_module.sources, "load", no_data)
    config.update_from_flattened_dict({field: value})
    with pytest.raises(ValueError, match=match.replace("(", r"\(")):
        trainer_module.train_and_evaluate(config, str(tmp_path))


@pytest.mark.parametrize("name", MLRC)
def test_mlrc_recipe_arguments_choose_the_loss_and_the_dimension(name):
    from jaxmetric.train.config import MLRC_LOSSES

    for loss, (kernel, kwargs) in MLRC_LOSSES.items():
        for dim in (128, 512):
            config = load_recipe(CONFIG_DIR / f"{name}.py", f"{loss},{dim}")
            validate_config(config, num_devices=8)
            assert (config.supervised.loss, config.model.embed_dim) == (kernel, dim)
            assert config.supervised.loss_kwargs.to_dict() == kwargs
            # One proxy per training class (CUB 100, Cars 98, SOP 11,318).
            want = {"mlrc_cub200": 100, "mlrc_cars196": 98, "mlrc_sop": 11_318}[name]
            assert config.model.num_proxies == (want if loss == "proxy_anchor" else 0)
    assert load(name).supervised.loss == "triplet_margin_loss"  # the default: triplet,512
    with pytest.raises(ValueError, match="'<loss>,<dim>'"):
        load_recipe(CONFIG_DIR / f"{name}.py", "triplet,256")


@pytest.mark.parametrize("name", MLRC)
def test_mlrc_recipe_reads_a_mock_of_its_tfds_dataset(tmp_path, name):
    # The recipe's data fields on a few records with the real dataset's TFDS
    # name, version and features: its splits, crops and class-balanced batches.
    from jaxmetric.data import input_pipeline, sop, sources
    from tests.datasets import write_fake_sop, write_mock_tfds

    config = load(name)
    config.dataset.data_dir = str(tmp_path / "tfds")
    if name == "mlrc_sop":
        sop.prepare_sop(config.dataset.data_dir, write_fake_sop(tmp_path / "sop")[0])
        half, num_classes = 3, sop.NUM_CLASSES  # the fake lists' train classes: ids 1-3
    else:
        write_mock_tfds(config.dataset.data_dir, config.dataset.tfds_name)
        num_classes = 200 if name == "mlrc_cub200" else 196
        half = num_classes // 2
    train, test = sources.load(config.dataset)
    assert train.num_classes == test.num_classes == num_classes
    assert train.y.max() < half <= test.y.min()
    assert input_pipeline.input_shape(config, train) == (227, 227, 3)
    config.data.workers = 0
    iterator = trainer_module._make_iterator(config, train)
    try:
        batch = next(iterator)
    finally:
        iterator.close()
    assert batch["x"].shape == (32, 1, 227, 227, 3) and batch["x"].dtype == np.uint8
    assert set(batch["y"].tolist()) <= set(train.y.tolist())
    assert np.all(np.unique(batch["y"], return_counts=True)[1] % 4 == 0)  # 4 per class


def test_fashion_mnist_recipes_read_a_mock_of_their_prepared_dataset(tmp_path):
    # The recipes' data fields on a few records written from IDX files the way
    # `python -m jaxmetric.data.prepare fashion_mnist` writes the real ones:
    # read by name from dataset.data_dir, 28x28x1 uint8, 8 classes x 16 a batch.
    from jaxmetric.data import input_pipeline, prepare, sources
    from tests.test_data_prepare import _fashion_idx_dir

    idx_dir, arrays = _fashion_idx_dir(tmp_path / "idx", np.random.default_rng(0))
    data_dir = str(tmp_path / "tfds")
    prepare.prepare_fashion_mnist(data_dir, idx_dir)
    configs = [load(name) for name in FASHION_MNIST]
    assert configs[1].supervised.loss == "multi_similarity_loss"
    assert configs[1].model == configs[0].model and configs[1].dataset == configs[0].dataset
    config = configs[0]
    config.dataset.data_dir = data_dir
    train, test = sources.load(config.dataset)
    assert (len(train), len(test), train.num_classes) == (40, 10, 10)
    assert input_pipeline.input_shape(config, train) == SHAPES[config.dataset.tfds_name]
    config.data.workers = 0
    iterator = trainer_module._make_iterator(config, train)
    try:
        batch = next(iterator)
    finally:
        iterator.close()
    assert batch["x"].shape == (128, 28, 28, 1) and batch["x"].dtype == np.uint8
    _, counts = np.unique(batch["y"], return_counts=True)
    assert len(counts) == 8 and np.all(counts == 16)
    # Each row is the image of its label in the IDX arrays.
    x_train, y_train = arrays["train"]
    for x, y in zip(batch["x"][:20], batch["y"][:20], strict=True):
        rows = np.flatnonzero(np.all(x_train == x[..., 0], axis=(1, 2)))
        assert len(rows) and y_train[rows[0]] == y
