import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.config_machinery import from_dict
from seg4reg_tf.data.config import DataConfig
from seg4reg_tf.data.preprocess import clahe, decode_image, letterbox, preprocess


def _png(arr) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def test_decode_16bit_png_exact():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 65536, size=(7, 5)).astype(np.uint16)
    out = decode_image(_png(arr)).numpy()
    assert out.shape == (7, 5, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], (arr / 65535.0).astype(np.float32))


def test_decode_8bit_png_and_jpeg():
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, size=(6, 9)).astype(np.uint8)
    np.testing.assert_allclose(decode_image(_png(arr)).numpy()[..., 0], arr / 255.0, atol=1e-7)
    flat = np.full((16, 16), 100, np.uint8)
    ok, jpg = cv2.imencode(".jpg", flat, [cv2.IMWRITE_JPEG_QUALITY, 100])
    out = decode_image(jpg.tobytes()).numpy()
    assert out.shape == (16, 16, 1)
    np.testing.assert_allclose(out, 100 / 255.0, atol=1.5 / 255)


def test_decode_rgb_to_gray():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50  # R, G, B
    bgr = rgb[..., ::-1].copy()
    out = decode_image(_png(bgr)).numpy()
    expected = (0.2989 * 200 + 0.587 * 100 + 0.114 * 50) / 255.0
    np.testing.assert_allclose(out, expected, atol=1e-5)
    rgba = np.concatenate([bgr, np.full((4, 4, 1), 7, np.uint8)], axis=-1)
    np.testing.assert_allclose(decode_image(_png(rgba)).numpy(), expected, atol=1e-5)


def test_decode_garbage_raises():
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode_image(b"not an image")


@pytest.mark.parametrize("h, w", [(300, 100), (100, 120), (64, 32)])
def test_letterbox_transform_and_dot_positions(h, w):
    H, W = 64, 32
    dots = [(0.3, 0.2), (0.7, 0.5), (0.5, 0.85)]  # (x, y) as fractions
    img = np.zeros((h, w, 1), np.float32)
    pts = []
    for fx, fy in dots:
        j, i = int(fx * w), int(fy * h)
        img[i - 1 : i + 2, j - 1 : j + 2] = 1.0  # 3x3 dot centred on pixel (i, j): centre (j + .5, i + .5)
        pts.append((j + 0.5, i + 0.5))
    out, t = letterbox(tf.constant(img), (H, W))
    out, t = out.numpy()[..., 0], t.numpy()
    assert out.shape == (H, W)
    scale = min(H / h, W / w)
    np.testing.assert_allclose(t, [scale, (H - h * scale) / 2, (W - w * scale) / 2, h, w], rtol=1e-6)
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    for x, y in pts:
        ex, ey = x * t[0] + t[2], y * t[0] + t[1]
        win = (np.abs(xs - ex) < 4) & (np.abs(ys - ey) < 4)
        wgt = out * win
        cx, cy = (wgt * xs).sum() / wgt.sum(), (wgt * ys).sum() / wgt.sum()
        # Triangle-kernel resampling preserves the centroid of an interior blob up to discretisation.
        assert abs(cx - ex) < 0.25 and abs(cy - ey) < 0.25, (cx, cy, ex, ey)


def test_letterbox_padding_is_zero_and_content_preserved():
    img = np.ones((100, 25, 1), np.float32) * 0.6  # tall: fills the height, pads the width
    out, t = letterbox(tf.constant(img), (64, 32))
    out = out.numpy()[..., 0]
    scale = 0.64
    left = (32 - 25 * scale) / 2  # 8.0: content (16 px wide) spans x in [8, 24)
    assert left == 8.0 and t.numpy()[2] == pytest.approx(left)
    assert np.all(out[:, :8] == 0) and np.all(out[:, 24:] == 0)
    np.testing.assert_allclose(out[:, 8:24], 0.6, atol=1e-6)


def _clahe_test_image(shape, seed):
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, shape).astype(np.float32), (0, 0), 5)
    img = (base - base.min()) / np.ptp(base) * 200 + 20 + rng.normal(0, 10, shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(128, 64), (100, 70), (64, 32)])
def test_clahe_matches_opencv(shape):
    img = _clahe_test_image(shape, seed=shape[0])
    ref = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(img).astype(np.float64)
    out = clahe(tf.constant(img[..., None] / 255.0, tf.float32), 3.0, (8, 8)).numpy()[..., 0] * 255.0
    diff = np.abs(out - ref)
    # Measured: mean 0.19-0.25 levels, max 0.5 (we do not round the interpolated value; OpenCV does).
    assert diff.mean() < 0.5 and diff.max() <= 1.0 + 1e-3, (diff.mean(), diff.max())


def test_clahe_low_clip_limit_matches_opencv():
    img = _clahe_test_image((64, 64), seed=3)
    ref = cv2.createCLAHE(clipLimit=1.0, tileGridSize=(4, 4)).apply(img).astype(np.float64)
    out = clahe(tf.constant(img[..., None] / 255.0, tf.float32), 1.0, (4, 4)).numpy()[..., 0] * 255.0
    assert np.abs(out - ref).mean() < 0.5


def test_clahe_in_graph_with_unknown_size():
    f = tf.function(lambda x: clahe(x), input_signature=[tf.TensorSpec([None, None, 1], tf.float32)])
    img = _clahe_test_image((40, 24), seed=5)[..., None] / 255.0
    np.testing.assert_allclose(f(tf.constant(img, tf.float32)).numpy(),
                               clahe(tf.constant(img, tf.float32)).numpy(), atol=1e-6)


def test_preprocess_letterbox_then_clahe():
    img = _clahe_test_image((120, 40), seed=9)[..., None].astype(np.float32) / 255.0
    cfg = DataConfig(image_size=(64, 32), clahe=True)
    out, t = preprocess(tf.constant(img), cfg)
    lb, t2 = letterbox(tf.constant(img), (64, 32))
    np.testing.assert_allclose(out.numpy(), clahe(lb).numpy(), atol=1e-6)
    np.testing.assert_array_equal(t.numpy(), t2.numpy())
    out2, _ = preprocess(tf.constant(img), DataConfig(image_size=(64, 32), clahe=False))
    np.testing.assert_array_equal(out2.numpy(), lb.numpy())
    assert out.shape == (64, 32, 1) and out.dtype == tf.float32


def test_data_config_validation():
    with pytest.raises(ValueError, match=r"^data\.image_size:"):
        DataConfig(image_size=(512,))
    with pytest.raises(ValueError, match=r"^data\.batch_size:"):
        DataConfig(batch_size=0)
    with pytest.raises(ValueError, match=r"^data\.augment\.hflip_prob:"):
        DataConfig(augment={"hflip_prob": 2.0})
    with pytest.raises(ValueError, match=r"^data\.clahe: expected a bool"):
        DataConfig(clahe="yes")
    with pytest.raises(ValueError, match=r"^data\.augment\.scale_range:"):
        from_dict(DataConfig, {"augment": {"scale_range": [1.2, 0.9]}}, prefix="data")
    with pytest.raises(ValueError, match=r"^data\.bogus: unknown key"):
        from_dict(DataConfig, {"bogus": 1}, prefix="data")
    with pytest.raises(ValueError, match=r"^data\.augment\.bogus: unknown key"):
        from_dict(DataConfig, {"augment": {"bogus": 1}}, prefix="data")
    cfg = from_dict(DataConfig, {"image_size": [256, 128], "augment": {"rotation_deg": 5}}, prefix="data")
    assert cfg.image_size == (256, 128) and cfg.augment.rotation_deg == 5.0


@pytest.mark.parametrize("bits", [10, 12, 14])
def test_16bit_png_of_fewer_bits_is_scaled_by_its_range(bits):
    """PACS exports store 10-14 bit data in 16-bit PNGs; / 65535 made them nearly black."""
    rng = np.random.default_rng(bits)
    img8 = rng.integers(0, 256, size=(40, 20)).astype(np.uint8)
    img8[0, 0] = 255  # a white pixel, as every X-ray has
    top = 2 ** bits - 1
    stored = np.round(img8.astype(np.float64) * top / 255).astype(np.uint16)
    ok, data = cv2.imencode(".png", stored)
    assert ok and data[24] == 16  # a 16-bit PNG
    np.testing.assert_allclose(decode_image(data.tobytes()).numpy()[..., 0], img8 / 255.0, atol=0.5 / top + 1e-6)
