"""Augmentations against NumPy / SciPy references."""

import doctest
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage, optimize

from jaxmetric import augment


def test_remove_linear_trend_matches_polyfit():
    x = np.random.default_rng(0).normal(size=40) + 3 * np.linspace(0, 1, 40) + 2
    t = np.linspace(0, 1, 40)
    slope, intercept = np.polyfit(t, x, 1)
    want = x - (slope * t + intercept)
    np.testing.assert_allclose(
        np.asarray(augment.remove_linear_trend(jnp.asarray(x))), want, atol=1e-5
    )


def test_mnist1d_view_is_a_shift_of_the_detrended_signal():
    x = np.random.default_rng(1).normal(size=40).astype(np.float32)
    t = np.linspace(0, 1, 40)
    detrended = x - np.polyval(np.polyfit(t, x, 1), t)
    for seed in range(5):
        v = np.asarray(
            augment.mnist1d_view(jax.random.key(seed), jnp.asarray(x), max_shift=3, slope=0.0)
        )
        matches = [s for s in range(-3, 4) if np.allclose(v, np.roll(detrended, s), atol=1e-4)]
        assert len(matches) == 1
    # With slope, offset and noise the view differs from every plain shift.
    v = np.asarray(
        augment.mnist1d_view(
            jax.random.key(0), jnp.asarray(x), max_shift=3, slope=1.0, offset=1.0, noise=0.1
        )
    )
    assert not any(np.allclose(v, np.roll(detrended, s), atol=1e-3) for s in range(-3, 4))


def test_mnist1d_gaussian_slope_and_offset_have_the_asked_spread():
    # The notebook's trend: offset ~ N(0, 0.3), slope ~ N(0, 0.04) per step
    # about the signal's middle. The view minus the detrended signal must be
    # exactly such a line; its fitted slopes and offsets have those spreads.
    x = np.random.default_rng(2).normal(size=40).astype(np.float32)
    t = np.linspace(0, 1, 40)
    detrended = x - np.polyval(np.polyfit(t, x, 1), t)
    steps = np.arange(40) - 19.5
    views = jax.vmap(
        lambda k: augment.mnist1d_view(
            k, jnp.asarray(x), max_shift=0, slope=0.0, slope_std=0.04, offset_std=0.3
        )
    )(jax.random.split(jax.random.key(0), 4000))
    residual = np.asarray(views, np.float64) - detrended
    slopes, offsets = np.polyfit(steps, residual.T, 1)
    np.testing.assert_allclose(residual, offsets[:, None] + slopes[:, None] * steps, atol=1e-4)
    assert abs(np.std(slopes) / 0.04 - 1) < 0.05 and abs(np.mean(slopes)) < 0.004
    assert abs(np.std(offsets) / 0.3 - 1) < 0.05 and abs(np.mean(offsets)) < 0.03


def test_mnist1d_stretch_resamples_the_detrended_signal():
    # NumPy reference: np.interp (circular) of the detrended signal at
    # (i - middle) / f + middle, for some time factor f in [1/1.25, 1.25].
    x = np.random.default_rng(3).normal(size=40).astype(np.float32)
    t = np.linspace(0, 1, 40)
    detrended = x - np.polyval(np.polyfit(t, x, 1), t)
    middle = 19.5
    factors = np.exp(np.linspace(-np.log(1.25), np.log(1.25), 4001))
    seen = []
    for seed in range(4):
        v = np.asarray(
            augment.mnist1d_view(
                jax.random.key(seed), jnp.asarray(x), max_shift=0, slope=0.0, stretch=0.25
            )
        )

        def error(f, v=v):
            at = (np.arange(40) - middle) / f + middle
            return np.abs(v - np.interp(at, np.arange(40), detrended, period=40)).max()

        best = factors[int(np.argmin([error(f) for f in factors]))]
        fit = optimize.minimize_scalar(
            error, bounds=(best * 0.999, best * 1.001), method="bounded", options={"xatol": 1e-9}
        )
        assert fit.fun < 1e-4
        seen.append(fit.x)
    assert max(seen) - min(seen) > 0.05  # the factor is drawn, not fixed


def test_full_crop_is_identity():
    img = np.random.default_rng(0).uniform(size=(16, 16, 3)).astype(np.float32)
    out = augment.random_resized_crop(
        jax.random.key(0), jnp.asarray(img), 16, scale=(1.0, 1.0), ratio=(1.0, 1.0)
    )
    np.testing.assert_allclose(np.asarray(out), img, atol=1e-5)


def test_crop_resizes_a_sub_window():
    # A linear ramp stays linear under crop + bilinear resize: the view's
    # values span a sub-interval of the ramp.
    ramp = np.tile(np.linspace(0, 1, 32, dtype=np.float32)[None, :, None], (32, 1, 1))
    out = np.asarray(
        augment.random_resized_crop(jax.random.key(3), jnp.asarray(ramp), 8, scale=(0.2, 0.3))
    )
    assert out.shape == (8, 8, 1)
    row = out[4, :, 0]
    assert np.all(np.diff(row) > 0) and row[-1] - row[0] < 0.9


@pytest.mark.parametrize("sigma", [0.5, 1.3])
def test_gaussian_blur_matches_scipy(sigma):
    img = np.random.default_rng(0).uniform(size=(12, 12, 2)).astype(np.float32)
    ksize = 7
    got = np.asarray(augment.gaussian_blur(jnp.asarray(img), jnp.float32(sigma), ksize))
    # jnp.pad "reflect" is SciPy's "mirror"; same truncation radius.
    want = ndimage.gaussian_filter(
        img, sigma=(sigma, sigma, 0), mode="mirror", truncate=(ksize // 2) / sigma
    )
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_color_jitter_zero_strength_is_identity_and_grayscale_weights():
    img = np.random.default_rng(0).uniform(size=(4, 4, 3)).astype(np.float32)
    out = augment.color_jitter(
        jax.random.key(0), jnp.asarray(img), brightness=0, contrast=0, saturation=0, hue=0
    )
    np.testing.assert_allclose(np.asarray(out), img, atol=1e-5)
    kw = dict(size=4, crop_scale=(0.5, 1.0), flip=True, jitter_prob=0.0)
    color = augment.simclr_image_view(jax.random.key(0), jnp.asarray(img), grayscale_prob=0.0, **kw)
    gray = augment.simclr_image_view(jax.random.key(0), jnp.asarray(img), grayscale_prob=1.0, **kw)
    want = np.asarray(color) @ np.array([0.299, 0.587, 0.114], np.float32)
    for c in range(3):
        np.testing.assert_allclose(np.asarray(gray)[..., c], want, atol=1e-5)


def test_batch_views_are_per_example_and_in_range():
    cfg = augment.augment_config()
    cfg.kind = "simclr_image"
    cfg.simclr_image.size = 16
    cfg.simclr_image.blur_prob = 0.5
    # The pipeline's crops, two per example: x [B, V, S, S, C].
    crops = jax.random.randint(jax.random.key(0), (6, 2, 16, 16, 3), 0, 256).astype(jnp.uint8)
    keys = jax.random.split(jax.random.key(1), 6)
    views = jax.jit(lambda k, x: augment.batch_views(cfg, k, x, 1))(keys, crops)
    assert views.shape == (6, 16, 16, 3)
    assert float(views.min()) >= 0.0 and float(views.max()) <= 1.0
    # Example 2's view depends only on its key and its crop 1, not on the batch.
    alone = augment.view(cfg, keys[2], crops[2, 1])
    np.testing.assert_allclose(np.asarray(views[2]), np.asarray(alone), atol=1e-5)
    # The device half is simclr_color_view of that crop.
    color = augment.simclr_color_view(keys[2], crops[2, 1], blur_prob=0.5)
    np.testing.assert_allclose(np.asarray(alone), np.asarray(color), atol=1e-6)


def test_bad_augment_config_names_the_field():
    cfg = augment.augment_config()
    cfg.kind = "mixup"
    with pytest.raises(ValueError, match="augment.kind"):
        augment.check_augment_config(cfg)


@pytest.mark.parametrize(
    "kind,field,value",
    [
        ("mnist1d", "noise", -0.1),
        ("mnist1d", "max_shift", -1),
        ("simclr_image", "crop_scale", (0.5, 0.2)),
        ("simclr_image", "blur_prob", 1.5),
    ],
)
def test_bad_field_of_the_kinds_block_names_it(kind, field, value):
    cfg = augment.augment_config()
    cfg.kind = kind
    cfg[kind][field] = value
    with pytest.raises(ValueError, match=f"`augment.{kind}.{field}`"):
        augment.check_augment_config(cfg)
    # Only the block of `kind` is read: the other kind's bad field passes.
    cfg.kind = "simclr_image" if kind == "mnist1d" else "mnist1d"
    augment.check_augment_config(cfg)


# --------------------------------------------------------------------------- solarisation


def _solarize_reference(u8: np.ndarray) -> np.ndarray:
    """PIL's ImageOps.solarize (threshold 128) on uint8, as floats in [0, 1]."""
    return np.where(u8 >= 128, 255 - u8, u8).astype(np.float32) / 255.0


def test_solarize_matches_the_pil_rule_on_uint8_images():
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    got = np.asarray(augment.solarize(jnp.asarray(u8, jnp.float32) / 255.0))
    np.testing.assert_allclose(got, _solarize_reference(u8), atol=1e-7)
    # Another threshold: x -> 1 - x exactly where x >= threshold.
    x = np.random.default_rng(0).uniform(size=(5, 4, 3)).astype(np.float32)
    x[0, 0] = 0.3  # at the threshold: inverted
    got = np.asarray(augment.solarize(jnp.asarray(x), threshold=0.3))
    np.testing.assert_array_equal(got, np.where(x >= 0.3, 1.0 - x, x))
    with pytest.raises(ValueError, match="`threshold`"):
        augment.solarize(jnp.asarray(x), threshold=1.5)
    # Its docstring example (augment is outside tests/test_docstrings.py's kernels).
    results = doctest.DocTestRunner().run(
        doctest.DocTestFinder().find(augment.solarize, "solarize")[0]
    )
    assert results.failed == 0 and results.attempted > 0


_PLAIN = dict(jitter_prob=0.0, grayscale_prob=0.0)


def test_solarize_prob_zero_and_one_are_exact():
    crops = np.random.default_rng(1).integers(0, 256, size=(6, 8, 8, 3)).astype(np.uint8)
    keys = jax.random.split(jax.random.key(0), 6)

    def views(p):
        fn = jax.jit(
            jax.vmap(lambda k, c: augment.simclr_color_view(k, c, solarize_prob=p, **_PLAIN))
        )
        return np.asarray(fn(keys, jnp.asarray(crops)))

    np.testing.assert_allclose(views(0.0), crops / np.float32(255.0), atol=1e-7)
    np.testing.assert_allclose(views(1.0), _solarize_reference(crops), atol=1e-7)


def test_solarize_prob_is_drawn_per_example():
    # p = 0.2: each example is either untouched or solarised (nothing else),
    # and the solarised fraction of 4,000 keys is 0.2 within 4 binomial sigmas.
    crop = np.random.default_rng(2).integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
    keys = jax.random.split(jax.random.key(3), 4000)
    out = np.asarray(
        jax.jit(
            jax.vmap(lambda k: augment.simclr_color_view(k, crop, solarize_prob=0.2, **_PLAIN))
        )(keys)
    )
    plain = np.all(np.abs(out - crop / np.float32(255.0)) < 1e-6, axis=(1, 2, 3))
    flipped = np.all(np.abs(out - _solarize_reference(crop)) < 1e-6, axis=(1, 2, 3))
    assert np.all(plain ^ flipped)
    assert abs(flipped.mean() - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 4000)


def _simclr_cfg(**fields):
    cfg = augment.augment_config()
    cfg.kind = "simclr_image"
    cfg.simclr_image.size = 8
    cfg.simclr_image.jitter_prob = 0.0
    cfg.simclr_image.grayscale_prob = 0.0
    for name, value in fields.items():
        cfg.simclr_image[name] = value
    augment.check_augment_config(cfg)
    return cfg


def test_per_view_probabilities_apply_to_their_view():
    # BYOL's asymmetry at its extremes: view 1 blurred (p=1) and never
    # solarised, view 2 solarised (p=1) and never blurred.
    cfg = _simclr_cfg(blur_prob=(1.0, 0.0), solarize_prob=(0.0, 1.0))
    crops = np.random.default_rng(4).integers(0, 256, size=(3, 2, 8, 8, 3)).astype(np.uint8)
    keys = jax.random.split(jax.random.key(5), 3)

    def both_views(cfg, keys, x):  # one compiled program for the two views
        return jax.jit(lambda k, x: [augment.batch_views(cfg, k, x, i) for i in (0, 1)])(keys, x)

    v1, v2 = (np.asarray(v) for v in both_views(cfg, keys, jnp.asarray(crops)))
    # View 2: exactly the NumPy solarisation of its crop.
    np.testing.assert_allclose(v2, _solarize_reference(crops[:, 1]), atol=1e-7)
    # View 1: a SciPy Gaussian blur of its crop (kernel 3 at side 8, mirror
    # edges) for some sigma in [0.1, 2], never the crop itself.
    for i in range(3):
        image = crops[i, 0] / np.float64(255.0)
        assert np.abs(v1[i] - image).max() > 1e-3

        def error(sigma, image=image, got=v1[i]):
            want = ndimage.gaussian_filter(
                image, sigma=(sigma, sigma, 0), mode="mirror", truncate=1 / sigma
            )
            return np.abs(got - want).max()

        fit = optimize.minimize_scalar(error, bounds=(0.1, 2.0), method="bounded")
        assert fit.fun < 1e-5
    # One probability for every view: both views solarised.
    both = _simclr_cfg(solarize_prob=1.0)
    for index, got in enumerate(both_views(both, keys, jnp.asarray(crops))):
        np.testing.assert_allclose(np.asarray(got), _solarize_reference(crops[:, index]), atol=1e-7)


@pytest.mark.parametrize("field", augment.PER_VIEW)
@pytest.mark.parametrize("value", [1.5, -0.1, (0.5,), (0.5, 0.2, 0.1), (0.5, 2.0), "0.5", True])
def test_bad_per_view_probability_names_the_field(field, value):
    cfg = augment.augment_config()
    cfg.kind = "simclr_image"
    cfg.simclr_image[field] = value
    with pytest.raises(ValueError, match=f"`augment.simclr_image.{field}`"):
        augment.check_augment_config(cfg)


def test_ssl_cifar10_recipes_use_their_papers_views():
    # BYOL (Grill et al. 2020, table 6), followed by Barlow Twins, VICReg and MoCo v3:
    # blur 1.0 / 0.1, solarisation 0.0 / 0.2. SimSiam's CIFAR views (Chen &
    # He 2021, appendix D): crop 0.2-1, no blur. SimCLR's: symmetric, no blur.
    from jaxmetric.train.config import load_recipe, validate_config

    want = {
        "byol": ((0.08, 1.0), (1.0, 0.1), (0.0, 0.2)),
        "barlow_twins": ((0.08, 1.0), (1.0, 0.1), (0.0, 0.2)),
        "vicreg": ((0.08, 1.0), (1.0, 0.1), (0.0, 0.2)),
        "mocov3": ((0.08, 1.0), (1.0, 0.1), (0.0, 0.2)),
        "simsiam": ((0.2, 1.0), 0.0, 0.0),
        "simclr": ((0.08, 1.0), 0.0, 0.0),
    }
    configs = pathlib.Path(__file__).resolve().parents[1] / "configs"
    for name, (crop, blur, solarize) in want.items():
        config = load_recipe(configs / f"{name}_cifar10.py")
        validate_config(config, num_devices=1)
        p = config.augment.simclr_image
        assert (tuple(p.crop_scale), p.blur_prob, p.solarize_prob) == (crop, blur, solarize), name
