"""Host image work (jaxmetric.data.images) against NumPy references: the
crop box is read back from a coordinate image, so a box off by a pixel or a
resize that shifts by half a pixel fails."""

import math

import cv2
import numpy as np
import pytest

from jaxmetric.data import images


def _coordinates(height: int, width: int) -> np.ndarray:
    """A float image whose channels are each pixel's column and row."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([cols, rows], axis=-1)


def _sampled(box, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Where output pixel centres of a crop ``box`` resized to ``size`` fall
    in the source (half-pixel centres), clamped to the crop."""
    top, left, h, w = box
    cols = left + np.clip((np.arange(size) + 0.5) * w / size - 0.5, 0, w - 1)
    rows = top + np.clip((np.arange(size) + 0.5) * h / size - 0.5, 0, h - 1)
    return cols, rows


def _assert_is_crop(out: np.ndarray, box, size: int, atol: float) -> None:
    cols, rows = _sampled(box, size)
    np.testing.assert_allclose(out[..., 0], np.broadcast_to(cols, (size, size)), atol=atol)
    np.testing.assert_allclose(out[..., 1], np.broadcast_to(rows[:, None], (size, size)), atol=atol)


def _torchvision_box(rng, height, width, scale, ratio):
    """torchvision's RandomResizedCrop.get_params, as published, drawing
    from a NumPy generator in the same order."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = int(rng.integers(0, height - h + 1))
            j = int(rng.integers(0, width - w + 1))
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w = width
        h = height
    return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize("shape", [(240, 288), (288, 240), (37, 500), (500, 37)])
def test_crop_box_is_torchvisions_algorithm(shape):
    for seed in range(50):
        got = images.random_resized_crop_box(np.random.default_rng(seed), *shape)
        want = _torchvision_box(np.random.default_rng(seed), *shape, (0.08, 1.0), (3 / 4, 4 / 3))
        assert got == want
        top, left, h, w = got
        assert 0 <= top and top + h <= shape[0] and 0 <= left and left + w <= shape[1]


def test_crop_boxes_have_the_asked_area_and_aspect():
    rng = np.random.default_rng(0)
    boxes = np.array([images.random_resized_crop_box(rng, 256, 256) for _ in range(2000)])
    area = boxes[:, 2] * boxes[:, 3] / 256**2
    aspect = boxes[:, 3] / boxes[:, 2]
    assert area.min() >= 0.07 and area.max() <= 1.0
    assert aspect.min() >= 3 / 4 - 0.05 and aspect.max() <= 4 / 3 + 0.05
    # Uniform positions: crops start anywhere, not only at the corner.
    assert len(np.unique(boxes[:, 0])) > 100 and len(np.unique(boxes[:, 1])) > 100


def test_a_too_narrow_image_falls_back_to_the_centred_crop_of_the_largest_ratio():
    # No crop of area >= 90% has a ratio in [3/4, 4/3] on a 20 x 400 image.
    box = images.random_resized_crop_box(np.random.default_rng(0), 20, 400, scale=(0.9, 1.0))
    assert box == (0, (400 - 27) // 2, 20, 27)


@pytest.mark.parametrize("box,size", [((10, 20, 100, 60), 32), ((3, 5, 20, 30), 64)])
def test_crop_resize_samples_the_box(box, size):
    # Shrinking (area averaging) and enlarging (bilinear): either way each
    # output pixel is the source at its centre, to within a pixel's averaging.
    out = images.crop_resize(_coordinates(240, 288), box, size)
    assert out.shape == (size, size, 2)
    atol = 0.5 if box[2] > size else 1e-3
    _assert_is_crop(out, box, size, atol)


def test_train_views_are_crops_of_the_original_image_flipped_half_the_time():
    image = _coordinates(240, 288)
    rng = np.random.default_rng(7)
    views = images.train_views(rng, image, 48, 200)
    assert views.shape == (200, 48, 48, 2)
    replay = np.random.default_rng(7)
    flipped = 0
    for view in views:
        box = images.random_resized_crop_box(replay, 240, 288)
        flip = replay.random() < 0.5
        flipped += flip
        _assert_is_crop(view[:, ::-1] if flip else view, box, 48, atol=0.5)
    assert 70 < flipped < 130


def test_eval_view_is_the_inception_centre_crop():
    # 0.875 of the 240 px side is 210 px, centred: resizing it to 224 is the
    # Inception transform (shorter side to 256, centre crop 224).
    out = images.eval_view(_coordinates(240, 300), 224, 0.875)
    box = images.center_crop_box(240, 300, 0.875)
    assert box == (15, 45, 210, 210)
    _assert_is_crop(out, box, 224, atol=1e-3)
    # The literal two-step transform samples the same points.
    short = cv2.resize(_coordinates(240, 300), (320, 256), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(out, short[16:240, 48:272], atol=0.05)
    # An image already at the size, uncropped, is passed through.
    image = np.zeros((32, 32, 3), np.uint8)
    assert images.eval_view(image, 32) is image


@pytest.mark.parametrize("ext,channels", [(".png", 3), (".png", 1), (".jpg", 3)])
def test_decode_reads_what_opencv_wrote_in_rgb_order(ext, channels):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (21, 34, channels), dtype=np.uint8)
    if ext == ".jpg":
        pixels = cv2.GaussianBlur(pixels, (7, 7), 2)  # JPEG-friendly content
    bgr = pixels if channels == 1 else pixels[..., ::-1]
    ok, data = cv2.imencode(ext, bgr)
    assert ok
    out = images.decode(data.tobytes(), channels)
    assert out.shape == (21, 34, channels) and out.dtype == np.uint8
    if ext == ".png":
        np.testing.assert_array_equal(out, pixels)
    else:
        assert np.abs(out.astype(int) - pixels).mean() < 3


@pytest.mark.parametrize("data", [b"", b"not an image", b"\xff\xd8\xff\xe0" + b"\x00" * 40])
def test_undecodable_bytes_raise(data):
    with pytest.raises(images.CorruptImageError, match="undecodable"):
        images.decode(data)
