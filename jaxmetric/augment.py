"""On-device data augmentation: per example, each with its own PRNG key.

Every function here takes one example and one key and is pure, so a batch is
augmented with ``jax.vmap`` over examples and keys, inside ``jit`` and
``shard_map``. The trainer derives each example's key from the step key and
the example's index in the global batch, so the views do not depend on how
the batch is split over devices.

Two families:

- ``mnist1d_view``: views of a 1-D signal as in the MNIST-1D SimCLR notebook
  (Greydanus 2020): regress out the linear trend, shift circularly, then
  add a random slope, a random offset and Gaussian noise.
- ``simclr_image_view``: SimCLR's image views (Chen et al. 2020, appendix
  A): random resized crop, horizontal flip, colour jitter (p=0.8),
  grayscale (p=0.2) and Gaussian blur (ImageNet recipe, p=0.5), plus
  BYOL's solarisation (Grill et al. 2020, appendix B). The trainer's input
  pipeline cuts and flips the crops on the host, from the original image
  (``jaxmetric.data.images``); on device it runs only ``simclr_color_view``.

Blur and solarisation may differ between the two views of a pair
(``augment.simclr_image.blur_prob`` / ``solarize_prob``: one probability
for every view, or a pair (view 1, view 2)): BYOL's asymmetric views are
blur (1.0, 0.1) and solarisation (0.0, 0.2).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from jaxmetric import _extras

if TYPE_CHECKING:  # The views are pure JAX; only the config helpers use ml_collections.
    import ml_collections

KINDS = ("mnist1d", "simclr_image", "none")
# Fields of ``augment.simclr_image`` that take a probability per view.
PER_VIEW = ("blur_prob", "solarize_prob")
NUM_VIEWS = 2  # the views of a pair; the trainer's methods use one or two


# --------------------------------------------------------------------------- 1-D


def remove_linear_trend(x: jax.Array) -> jax.Array:
    """x minus its least-squares line a + b t over t in [0, 1]."""
    n = x.shape[0]
    t = jnp.linspace(0.0, 1.0, n)
    t_c = t - t.mean()
    slope = jnp.sum(t_c * (x - x.mean())) / jnp.sum(t_c**2)
    return x - x.mean() - slope * t_c


def mnist1d_view(
    key: jax.Array,
    x: jax.Array,
    *,
    max_shift: int = 10,
    slope: float = 1.0,
    offset: float = 0.0,
    noise: float = 0.0,
    scale: float = 0.0,
    slope_std: float = 0.0,
    offset_std: float = 0.0,
    stretch: float = 0.0,
) -> jax.Array:
    """One random view of an MNIST-1D signal x [L].

    Args:
      key: PRNG key of this example.
      x: the signal [L].
      max_shift: circular shift drawn uniformly from [-max_shift, max_shift].
      slope: a linear trend s * t, t in [0, 1], s ~ U(-slope, slope), is
        added after the original trend is removed (MNIST-1D's shear).
      offset: a constant c ~ U(-offset, offset) is added.
      noise: i.i.d. Gaussian noise of this standard deviation is added.
      scale: the trend-free signal is multiplied by a ~ U(1 - scale,
        1 + scale) (MNIST-1D's amplitude scaling).
      slope_std: a Gaussian slope s ~ N(0, slope_std) per sample step is
        added, centred on the middle of the signal. The notebook draws its
        new trend this way, with the data's own spread (0.04).
      offset_std: a Gaussian offset ~ N(0, offset_std) is added (the
        notebook: 0.3, the data's own spread).
      stretch: the signal is resampled (linear, circular) by a time factor
        ~ exp(U(-log(1 + stretch), log(1 + stretch))) about its middle, as
        MNIST-1D's generator dilates its templates by random padding.

    Returns:
      The view [L], float32.
    """
    k_shift, k_slope, k_off, k_noise, k_scale = jax.random.split(key, 5)
    x = remove_linear_trend(x.astype(jnp.float32))
    x = x * jax.random.uniform(k_scale, (), minval=1.0 - scale, maxval=1.0 + scale)
    if stretch:
        log_s = jnp.log1p(stretch)
        factor = jnp.exp(
            jax.random.uniform(jax.random.fold_in(k_scale, 1), (), minval=-log_s, maxval=log_s)
        )
        middle = (x.shape[0] - 1) / 2
        at = (jnp.arange(x.shape[0]) - middle) / factor + middle
        x = jnp.interp(at, jnp.arange(x.shape[0], dtype=jnp.float32), x, period=x.shape[0])
    shift = jax.random.randint(k_shift, (), -max_shift, max_shift + 1)
    x = jnp.roll(x, shift)
    t = jnp.linspace(0.0, 1.0, x.shape[0])
    x = x + jax.random.uniform(k_slope, (), minval=-slope, maxval=slope) * t
    x = x + jax.random.uniform(k_off, (), minval=-offset, maxval=offset)
    # Folded from k_noise so that the uniform draws above keep their keys.
    g_slope, g_offset = jax.random.normal(jax.random.fold_in(k_noise, 1), (2,))
    steps = jnp.arange(x.shape[0]) - (x.shape[0] - 1) / 2
    x = x + slope_std * g_slope * steps + offset_std * g_offset
    return x + noise * jax.random.normal(k_noise, x.shape)


# --------------------------------------------------------------------------- images


def random_resized_crop(
    key: jax.Array,
    image: jax.Array,
    size: int,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> jax.Array:
    """Crops a random area fraction in ``scale`` with aspect ratio in ``ratio``
    and resizes it to ``size`` x ``size`` (bilinear), as torchvision's
    ``RandomResizedCrop`` (one draw, clipped to the image instead of retried).
    """
    h, w = image.shape[0], image.shape[1]
    k_area, k_ratio, k_y, k_x = jax.random.split(key, 4)
    area = jax.random.uniform(k_area, (), minval=scale[0], maxval=scale[1]) * h * w
    log_r = jax.random.uniform(k_ratio, (), minval=math.log(ratio[0]), maxval=math.log(ratio[1]))
    r = jnp.exp(log_r)
    cw = jnp.clip(jnp.sqrt(area * r), 1.0, w)
    ch = jnp.clip(jnp.sqrt(area / r), 1.0, h)
    y0 = jax.random.uniform(k_y, ()) * (h - ch)
    x0 = jax.random.uniform(k_x, ()) * (w - cw)
    sy, sx = size / ch, size / cw
    return jax.image.scale_and_translate(
        image.astype(jnp.float32),
        (size, size, image.shape[2]),
        spatial_dims=(0, 1),
        scale=jnp.stack([sy, sx]),
        translation=jnp.stack([-y0 * sy, -x0 * sx]),
        method="linear",
        antialias=False,
    )


def _gray(image: jax.Array) -> jax.Array:
    if image.shape[-1] == 1:
        return image
    weights = jnp.array([0.299, 0.587, 0.114], image.dtype)
    return jnp.sum(image * weights, axis=-1, keepdims=True)


def _rotate_hue(image: jax.Array, angle: jax.Array) -> jax.Array:
    """Hue rotation by ``angle`` radians in YIQ space (chroma rotated about
    the luma axis), a smooth stand-in for torchvision's HSV hue shift."""
    to_yiq = jnp.array(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], image.dtype
    )
    from_yiq = jnp.linalg.inv(to_yiq)
    c, s = jnp.cos(angle), jnp.sin(angle)
    rot = jnp.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], image.dtype)
    m = from_yiq @ rot @ to_yiq
    return image @ m.T


def color_jitter(
    key: jax.Array,
    image: jax.Array,
    *,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
) -> jax.Array:
    """Random brightness, contrast, saturation (factors in [1 - s, 1 + s]) and
    hue (shift in [-hue, hue] of a full turn), in that fixed order, on an
    image in [0, 1]."""
    kb, kc, ks, kh = jax.random.split(key, 4)

    def factor(k, s):
        return jax.random.uniform(k, (), minval=max(0.0, 1.0 - s), maxval=1.0 + s)

    image = jnp.clip(image * factor(kb, brightness), 0.0, 1.0)
    mean = jnp.mean(_gray(image))
    image = jnp.clip(mean + (image - mean) * factor(kc, contrast), 0.0, 1.0)
    if image.shape[-1] == 3:
        gray = _gray(image)
        image = jnp.clip(gray + (image - gray) * factor(ks, saturation), 0.0, 1.0)
        angle = jax.random.uniform(kh, (), minval=-hue, maxval=hue) * 2.0 * jnp.pi
        image = jnp.clip(_rotate_hue(image, angle), 0.0, 1.0)
    return image


def gaussian_blur(image: jax.Array, sigma: jax.Array, kernel_size: int) -> jax.Array:
    """Separable Gaussian blur with a traced ``sigma`` and a static odd
    ``kernel_size``; edges are reflected."""
    radius = kernel_size // 2
    t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    k = jnp.exp(-0.5 * (t / sigma) ** 2)
    k = k / jnp.sum(k)
    padded = jnp.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    h, w = image.shape[0], image.shape[1]
    # Sums of shifted copies: tiny kernels, no conv layout juggling.
    rows = sum(k[i] * padded[i : i + h] for i in range(kernel_size))
    return sum(k[i] * rows[:, i : i + w] for i in range(kernel_size))


def solarize(image: jax.Array, *, threshold: float = 0.5) -> jax.Array:
    """Solarisation of an image in [0, 1]: every value >= ``threshold`` is
    inverted, ``x -> 1 - x`` where ``x >= threshold``, else ``x``.

    On uint8 images scaled by 1 / 255 and ``threshold=0.5`` this is PIL's
    ``ImageOps.solarize`` (threshold 128), the operation of BYOL's,
    Barlow Twins' and VICReg's views (Grill et al. 2020, appendix B). The
    random application, per example with its own key and a probability, is
    ``simclr_color_view``'s ``solarize_prob``.

    Args:
      image: [..., C] (any shape), float in [0, 1].
      threshold: in [0, 1].

    Returns:
      The solarised image, same shape and dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxmetric.augment import solarize
      >>> solarize(jnp.array([0.25, 0.5, 0.75]))
      Array([0.25, 0.5 , 0.25], dtype=float32)
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"`threshold` must be in [0, 1], got {threshold!r}.")
    return jnp.where(image >= threshold, 1.0 - image, image)


def _float_image(image: jax.Array) -> jax.Array:
    """An image [H, W] or [H, W, C], uint8 or float in [0, 1], as float
    [H, W, C] in [0, 1]."""
    if image.dtype == jnp.uint8:
        image = image.astype(jnp.float32) / 255.0
    return image[..., None] if image.ndim == 2 else image


def simclr_color_view(
    key: jax.Array,
    image: jax.Array,
    *,
    jitter_strength: float = 0.5,
    jitter_prob: float = 0.8,
    grayscale_prob: float = 0.2,
    blur_prob: float = 0.0,
    solarize_prob: float = 0.0,
) -> jax.Array:
    """The device half of a SimCLR / BYOL view: colour jitter, grayscale,
    blur and solarisation, in that order, of a crop [S, S, C] (uint8 or
    float in [0, 1]) that the input pipeline has already cut and flipped
    (``jaxmetric.data.images.train_views``). Each step is applied with its
    probability, drawn from this example's key.

    Args:
      key: PRNG key of this example and view.
      image: the crop.
      jitter_strength: s; brightness, contrast, saturation 0.8 s, hue 0.2 s
        (SimCLR: s=1.0 ImageNet, 0.5 CIFAR-10).
      jitter_prob: probability of colour jitter (0.8).
      grayscale_prob: probability of grayscale (0.2).
      blur_prob: probability of Gaussian blur, sigma ~ U(0.1, 2.0), kernel
        10% of the side (SimCLR: 0.5 on ImageNet, 0 on CIFAR; BYOL: 1.0 on
        view 1, 0.1 on view 2).
      solarize_prob: probability of ``solarize`` (threshold 0.5; BYOL: 0.0
        on view 1, 0.2 on view 2).

    Returns:
      The view [S, S, C], float32 in [0, 1].
    """
    image = _float_image(image)
    k_jit, k_pj, k_gray, k_blur, k_pb = jax.random.split(key, 5)
    s = jitter_strength
    jittered = color_jitter(
        k_jit, image, brightness=0.8 * s, contrast=0.8 * s, saturation=0.8 * s, hue=0.2 * s
    )
    image = jnp.where(jax.random.bernoulli(k_pj, jitter_prob), jittered, image)
    gray = jnp.broadcast_to(_gray(image), image.shape)
    image = jnp.where(jax.random.bernoulli(k_gray, grayscale_prob), gray, image)
    if blur_prob > 0:
        ksize = max(3, int(0.1 * image.shape[0]) // 2 * 2 + 1)
        sigma = jax.random.uniform(k_blur, (), minval=0.1, maxval=2.0)
        blurred = gaussian_blur(image, sigma, ksize)
        image = jnp.where(jax.random.bernoulli(k_pb, blur_prob), blurred, image)
    if solarize_prob > 0:
        # Folded from the example's key so that the draws above keep their keys.
        k_sol = jax.random.fold_in(key, 5)
        image = jnp.where(jax.random.bernoulli(k_sol, solarize_prob), solarize(image), image)
    return image


def simclr_image_view(
    key: jax.Array,
    image: jax.Array,
    *,
    size: int,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    flip: bool = True,
    **color: float,
) -> jax.Array:
    """One SimCLR view of an image [H, W, C] (uint8 or float in [0, 1]),
    all on device: random resized crop to ``size``, horizontal flip (p=0.5),
    then ``simclr_color_view`` with the ``color`` arguments. (The trainer
    crops on the host instead, on the original image, and calls
    ``simclr_color_view``; this is for models that take full images.)

    Returns:
      The view [size, size, C], float32 in [0, 1].
    """
    image = _float_image(image)
    k_crop, k_flip, k_color = jax.random.split(key, 3)
    image = random_resized_crop(k_crop, image, size, scale=crop_scale)
    if flip:
        image = jnp.where(jax.random.bernoulli(k_flip), image[:, ::-1], image)
    return simclr_color_view(k_color, image, **color)


# --------------------------------------------------------------------------- batches


def augment_config() -> ml_collections.ConfigDict:
    """Default ``config.augment`` fields: ``kind`` and one block per kind of
    view, named after it (``augment.mnist1d``, ``augment.simclr_image``);
    only the block of ``kind`` is read.

    ``augment.simclr_image.blur_prob`` and ``solarize_prob`` are per view:
    a probability for every view, or a pair (view 1, view 2) for
    asymmetric views such as BYOL's, ``blur_prob=(1.0, 0.1)``,
    ``solarize_prob=(0.0, 0.2)``. A one-view method (``supervised``) uses
    view 1's."""
    with _extras.requires("jaxmetric.augment.augment_config", "ml_collections"):
        import ml_collections

    def per_view(p: float) -> ml_collections.FieldReference:
        # A float or a tuple: the field's type is left open (ml_collections
        # otherwise refuses a tuple where the default is a float).
        return ml_collections.FieldReference(p, field_type=object)

    return ml_collections.ConfigDict(
        {
            "kind": "mnist1d",
            "mnist1d": {
                "max_shift": 10,
                "slope": 1.0,
                "offset": 0.0,
                "noise": 0.0,
                "scale": 0.0,
                "slope_std": 0.0,
                "offset_std": 0.0,
                "stretch": 0.0,
            },
            "simclr_image": {
                "size": 32,
                "crop_scale": (0.08, 1.0),
                "flip": True,
                "jitter_strength": 0.5,
                "jitter_prob": 0.8,
                "grayscale_prob": 0.2,
                "blur_prob": per_view(0.0),
                "solarize_prob": per_view(0.0),
            },
        }
    )


def check_augment_config(cfg: ml_collections.ConfigDict) -> None:
    """Raises a ValueError naming the first bad ``augment.*`` field."""
    if cfg.kind not in KINDS:
        raise ValueError(f"`augment.kind` must be one of {KINDS}, got {cfg.kind!r}.")
    if cfg.kind == "mnist1d":
        p = cfg.mnist1d
        for name in p:
            if p[name] < 0:
                raise ValueError(f"`augment.mnist1d.{name}` must be >= 0, got {p[name]!r}.")
    if cfg.kind == "simclr_image":
        p = cfg.simclr_image
        lo, hi = p.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(
                "`augment.simclr_image.crop_scale` must satisfy 0 < lo <= hi <= 1, "
                f"got {p.crop_scale!r}."
            )
        for name in ("jitter_prob", "grayscale_prob"):
            if not 0.0 <= p[name] <= 1.0:
                raise ValueError(
                    f"`augment.simclr_image.{name}` must be in [0, 1], got {p[name]!r}."
                )
        for name in PER_VIEW:
            _check_per_view(f"augment.simclr_image.{name}", p[name])


def _is_probability(p: object) -> bool:
    return isinstance(p, int | float) and not isinstance(p, bool) and 0.0 <= p <= 1.0


def _check_per_view(name: str, value: object) -> None:
    """A probability in [0, 1], or a tuple / list of ``NUM_VIEWS`` of them."""
    if _is_probability(value):
        return
    if (
        isinstance(value, tuple | list)
        and len(value) == NUM_VIEWS
        and all(_is_probability(v) for v in value)
    ):
        return
    raise ValueError(
        f"`{name}` must be a probability in [0, 1] for every view, or a pair of them "
        f"(view 1, view 2), got {value!r}."
    )


def view_probability(value: float | tuple[float, ...], index: int) -> float:
    """The probability of view ``index`` (0: view 1) of a per-view field:
    ``value`` itself, or its entry ``index``."""
    return float(value[index]) if isinstance(value, tuple | list) else float(value)


def crops_on_host(cfg: ml_collections.ConfigDict) -> bool:
    """Whether the input pipeline cuts the views (random-resized crops of the
    original image, flipped, in its worker processes) and the batch holds
    them on a views axis, x [B, V, S, S, C]; the device then does the rest
    (``simclr_color_view``)."""
    return cfg.kind == "simclr_image"


def view(cfg: ml_collections.ConfigDict, key: jax.Array, x: jax.Array, index: int = 0) -> jax.Array:
    """View ``index`` (0: view 1) of one example under ``config.augment``
    (for image kinds, of one host-made crop of it); ``index`` picks the
    per-view probabilities (``PER_VIEW``)."""
    if cfg.kind == "mnist1d":
        return mnist1d_view(key, x, **cfg.mnist1d.to_dict())
    if cfg.kind == "simclr_image":
        p = cfg.simclr_image
        return simclr_color_view(
            key,
            x,
            jitter_strength=p.jitter_strength,
            jitter_prob=p.jitter_prob,
            grayscale_prob=p.grayscale_prob,
            blur_prob=view_probability(p.blur_prob, index),
            solarize_prob=view_probability(p.solarize_prob, index),
        )
    return preprocess(cfg, x)


def preprocess(cfg: ml_collections.ConfigDict, x: jax.Array) -> jax.Array:
    """The un-augmented input the encoder sees at evaluation time."""
    if x.dtype == jnp.uint8:
        x = x.astype(jnp.float32) / 255.0
    if cfg.kind == "simclr_image":
        size = cfg.simclr_image.size
        if x.ndim == 2:
            x = x[..., None]
        if x.shape[0] != size:
            x = jax.image.resize(x, (size, size, x.shape[-1]), "linear")
    return x.astype(jnp.float32)


def batch_views(
    cfg: ml_collections.ConfigDict, keys: jax.Array, x: jax.Array, index: int = 0
) -> jax.Array:
    """View ``index`` of a batch, one key per example (keys [B]): of x
    [B, ...], or, where the pipeline cuts the crops (``crops_on_host``), of
    its crop ``index`` in x [B, V, ...]; with view ``index``'s blur and
    solarisation probabilities."""
    if crops_on_host(cfg):
        x = x[:, index]
    return jax.vmap(lambda k, e: view(cfg, k, e, index))(keys, x)
