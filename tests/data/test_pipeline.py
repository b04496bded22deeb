import dataclasses
import math
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.data.aasce import load_split
from seg4reg_tf.data.config import AugmentConfig, DataConfig
from seg4reg_tf.data.pipeline import augment_example, build_dataset, build_eval_dataset
from seg4reg_tf.data.synth import write_synthetic_dataset
from seg4reg_tf.data.tfrecords import convert_split
from seg4reg_tf.geometry import cobb_angles, landmarks_to_label_map
from tests.fixtures import sine_spine, write_spine_records

H, W = 64, 32
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return write_spine_records(tmp_path_factory.mktemp("recs"), n=4)


def _cfg(size=(H, W), **aug):
    return DataConfig(image_size=size, batch_size=2, shuffle_buffer=8, augment=AugmentConfig(**aug))


def _collect(ds):
    out = []
    for elem in ds:
        out.append(tf.nest.map_structure(lambda t: t.numpy(), elem))
    return out


def test_shapes_and_dtypes(records):
    for training in (False, True):
        batches = _collect(build_dataset(records, _cfg(), training=training, seed=0))
        assert len(batches) == 2
        f, t = batches[0]
        assert set(f) == {"image"} and set(t) == {"angles", "labels", "landmarks"}
        assert f["image"].shape == (2, H, W, 1) and f["image"].dtype == np.float32
        assert 0.0 <= f["image"].min() and f["image"].max() <= 1.0
        assert t["angles"].shape == (2, 3) and t["angles"].dtype == np.float32
        assert t["labels"].shape == (2, H, W) and t["labels"].dtype == np.int32
        assert t["labels"].min() >= 0 and t["labels"].max() <= 17
        assert t["landmarks"].shape == (2, 68, 2) and t["landmarks"].dtype == np.float32


@pytest.mark.parametrize("H, W", [(H, W), (88, 32)])  # 2:1 and the films' own shape (2.75:1)
def test_eval_angles_labels_and_metadata(records, H, W):
    batches = _collect(build_eval_dataset(records, _cfg((H, W)), batch_size=3))
    feats = {k: np.concatenate([b[0][k] for b in batches]) for k in batches[0][0]}
    targ = {k: np.concatenate([b[1][k] for b in batches]) for k in batches[0][1]}
    meta = {k: np.concatenate([b[2][k] for b in batches]) for k in batches[0][2]}
    assert [n.decode() for n in meta["filename"]] == [r.filename for r in records]
    for i, rec in enumerate(records):
        s, top, left, h, w = meta["transform"][i]
        assert (h, w) == (rec.height, rec.width)
        assert s == pytest.approx(min(H / rec.height, W / rec.width), rel=1e-6)
        lm_model = rec.landmarks * s + np.array([left, top])
        np.testing.assert_allclose(meta["landmarks_model"][i], lm_model, atol=1e-3)
        np.testing.assert_allclose(meta["landmarks"][i], rec.landmarks, atol=1e-4)
        # Targets are the record angles; recomputed in the model frame they agree (isotropic letterbox).
        np.testing.assert_allclose(targ["angles"][i], rec.angles, atol=1e-5)
        np.testing.assert_allclose(cobb_angles(meta["landmarks_model"][i], H), rec.angles, atol=0.01)
        np.testing.assert_array_equal(targ["labels"][i], landmarks_to_label_map(lm_model, H, W))
        assert feats["image"][i].shape == (H, W, 1)


def test_eval_pipeline_deterministic_and_training_seeded(records):
    a = _collect(build_dataset(records, _cfg(), training=False))
    b = _collect(build_dataset(records, _cfg(), training=False))
    for x, y in zip(a, b):
        tf.nest.map_structure(np.testing.assert_array_equal, x, y)
    c = _collect(build_dataset(records, _cfg(), training=True, seed=3))
    d = _collect(build_dataset(records, _cfg(), training=True, seed=3))
    for x, y in zip(c, d):
        tf.nest.map_structure(np.testing.assert_array_equal, x, y)
    # Augmentation really changes the images.
    assert not np.array_equal(np.sort(np.concatenate([x[0]["image"].ravel() for x in a])),
                              np.sort(np.concatenate([x[0]["image"].ravel() for x in c])))
    e = _collect(build_dataset(records, _cfg(), training=True, seed=4))
    assert not all(np.array_equal(x[0]["image"], y[0]["image"]) for x, y in zip(c, e))


def test_cache_off_gives_same_eval_values(records):
    a = _collect(build_dataset(records, _cfg(), training=False))
    b = _collect(build_dataset(records, dataclasses.replace(_cfg(), cache=False), training=False))
    for x, y in zip(a, b):
        tf.nest.map_structure(np.testing.assert_array_equal, x, y)


HA, WA = 128, 64  # augmentation tests: vertebrae ~6 px tall so nearest-neighbour label warps are comparable


def _cfg_a(size=(HA, WA), **aug):
    return DataConfig(image_size=size, batch_size=2, augment=AugmentConfig(**aug))


def _dot_example(points, size=(HA, WA)):
    """Model-frame example: black image with 3x3 bright dots centred on the given landmark points."""
    HA, WA = size
    lm = sine_spine(HA, WA, amplitude=0.06, phase=0.4)
    img = np.zeros((HA, WA, 1), np.uint8)
    for k in points:
        j, i = int(np.floor(lm[k, 0])), int(np.floor(lm[k, 1]))
        lm[k] = (j + 0.5, i + 0.5)  # put the landmark exactly on a pixel centre
        img[i - 1 : i + 2, j - 1 : j + 2] = 255
    labels = landmarks_to_label_map(lm, HA, WA)
    ex = {"image": tf.constant(img), "labels": tf.constant(labels),
          "landmarks_model": tf.constant(lm, tf.float32), "angles": tf.constant(cobb_angles(lm, HA), tf.float32),
          "filename": tf.constant("x"), "transform": tf.zeros([5]), "landmarks": tf.constant(lm, tf.float32)}
    return lm, ex


GEOM_ONLY = dict(brightness=0.0, contrast=0.0, gamma=(1.0, 1.0), noise_std=0.0)


@pytest.mark.parametrize("seed, flip, HA, WA", [((1, 2), 0.0, HA, WA), ((5, 7), 1.0, HA, WA),
                                                ((11, 3), 1.0, HA, WA), ((5, 7), 1.0, 176, 64)])  # last: 2.75:1
def test_augmentation_moves_dots_with_landmarks(seed, flip, HA, WA):
    pts = [0, 21, 34, 46, 67]  # T1 TL, T6 TR, T9 BL, T12 BR, L5 BR
    lm, ex = _dot_example(pts, (HA, WA))
    cfg = _cfg_a((HA, WA), rotation_deg=10.0, scale_range=(0.9, 1.1), translate_frac=0.03, hflip_prob=flip, **GEOM_ONLY)
    out = augment_example(ex, tf.constant(seed, tf.int64), cfg)
    img = out["image"].numpy()[..., 0]
    lm2 = out["landmarks_model"].numpy()
    ys, xs = np.mgrid[0:HA, 0:WA] + 0.5
    # Where did each dotted landmark go? Flipping reorders corners (TL<->TR, BL<->BR).
    order = np.array([4 * v + c for v in range(17) for c in ((1, 0, 3, 2) if flip else (0, 1, 2, 3))])
    for k in pts:
        target = lm2[np.nonzero(order == k)[0][0]]
        win = (np.abs(xs - target[0]) < 3) & (np.abs(ys - target[1]) < 3)
        wgt = img * win
        assert wgt.sum() > 2.0, f"dot {k} missing near {target}"
        cx, cy = (wgt * xs).sum() / wgt.sum(), (wgt * ys).sum() / wgt.sum()
        assert math.hypot(cx - target[0], cy - target[1]) < 0.35, (k, cx, cy, target)
    # Vertebra vectors keep pointing right (TR.x > TL.x) after a flip.
    assert np.all(lm2[1::4, 0] > lm2[0::4, 0])
    # The label map is the rasterisation of the moved landmarks (which the dots above tie to the image).
    np.testing.assert_array_equal(out["labels"].numpy(), landmarks_to_label_map(lm2.astype(np.float64), HA, WA))
    # Angles recomputed from the moved landmarks with the model height; PT is invariant.
    np.testing.assert_allclose(out["angles"].numpy(), cobb_angles(lm2.astype(np.float64), HA), atol=1e-4)
    assert out["angles"].numpy()[0] == pytest.approx(cobb_angles(lm, HA)[0], abs=0.01)


def test_augmentation_rotation_only_is_exact_rotation():
    lm, ex = _dot_example([])
    cfg = _cfg_a(rotation_deg=8.0, scale_range=(1.0, 1.0), translate_frac=0.0, hflip_prob=0.0, **GEOM_ONLY)
    out = augment_example(ex, tf.constant((4, 4), tf.int64), cfg)
    lm2 = out["landmarks_model"].numpy().astype(np.float64)
    c = np.array([WA / 2, HA / 2])
    # Independent check: a rigid rotation about the centre keeps every distance to the centre.
    np.testing.assert_allclose(np.linalg.norm(lm2 - c, axis=1), np.linalg.norm(lm - c, axis=1), atol=1e-3)
    theta = np.arctan2(*(lm2[0] - c)[::-1]) - np.arctan2(*(lm[0] - c)[::-1])
    assert 0 < abs(theta) <= np.deg2rad(8.0) + 1e-6
    assert out["angles"].numpy()[0] == pytest.approx(cobb_angles(lm, HA)[0], abs=0.01)


def test_photometric_changes_image_only():
    lm, ex = _dot_example([10, 30])
    cfg = _cfg_a(rotation_deg=0.0, scale_range=(1.0, 1.0), translate_frac=0.0, hflip_prob=0.0)
    out = augment_example(ex, tf.constant((9, 9), tf.int64), cfg)
    np.testing.assert_array_equal(out["labels"].numpy(), ex["labels"].numpy())
    np.testing.assert_allclose(out["landmarks_model"].numpy(), lm, atol=1e-4)
    assert not np.allclose(out["image"].numpy(), ex["image"].numpy() / 255.0, atol=1e-3)


def test_tfrecord_source_equals_record_source(records, tmp_path):
    paths = convert_split("unused", str(tmp_path), "training", num_shards=3, records=records, progress=False)
    a = _collect(build_eval_dataset(records, _cfg()))
    b = _collect(build_eval_dataset(paths, _cfg()))
    c = _collect(build_eval_dataset(str(tmp_path / "training-*.tfrecord"), _cfg()))
    for x, y, z in zip(a, b, c):
        tf.nest.map_structure(np.testing.assert_array_equal, x, y)
        tf.nest.map_structure(np.testing.assert_array_equal, x, z)


def test_aasce_root_source_equals_tfrecords(tmp_path):
    root = tmp_path / "aasce"
    write_synthetic_dataset(root, 3, 0, 0, height_range=(160, 200), progress=False)
    recs = load_split(str(root), "training")
    paths = convert_split(str(root), str(tmp_path / "tfr"), "training", num_shards=2, progress=False)
    a = _collect(build_eval_dataset(str(root), _cfg(), split="training"))
    b = _collect(build_eval_dataset((str(root), "training"), _cfg()))
    c = _collect(build_eval_dataset(paths, _cfg()))
    d = _collect(build_eval_dataset(None, _cfg(), records=recs))
    for w, x, y, z in zip(a, b, c, d):
        for other in (x, y, z):
            tf.nest.map_structure(np.testing.assert_array_equal, w, other)


def test_bad_source_raises(tmp_path):
    with pytest.raises(ValueError, match="source"):
        build_dataset(42, _cfg(), training=False)
    with pytest.raises(ValueError, match="no TFRecord files match"):
        build_dataset(str(tmp_path / "nothing-*.tfrecord"), _cfg(), training=False)


def test_real_data_eval_angles_match_csv():
    root = os.path.join(REPO, "..", "shared", "aasce", "boostnet_labeldata")
    if not os.path.isdir(root):
        pytest.skip("real AASCE data not available at ../shared/aasce/boostnet_labeldata")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recs = load_split(root, "training", check_images=False, progress=False)[:6]
    cfg = DataConfig(image_size=(512, 256), batch_size=3)
    for f, t, m in build_eval_dataset(recs, cfg):
        for lm, ang in zip(m["landmarks_model"].numpy(), t["angles"].numpy()):
            np.testing.assert_allclose(cobb_angles(lm.astype(np.float64), 512), ang, atol=0.01)


def test_pure_hflip_mirrors_image_labels_and_landmarks():
    lm, ex = _dot_example([5, 40])
    cfg = _cfg_a(rotation_deg=0.0, scale_range=(1.0, 1.0), translate_frac=0.0, hflip_prob=1.0, **GEOM_ONLY)
    out = augment_example(ex, tf.constant((2, 2), tf.int64), cfg)
    np.testing.assert_allclose(out["image"].numpy(), ex["image"].numpy()[:, ::-1] / 255.0, atol=1e-5)
    mirrored = ex["labels"].numpy()[:, ::-1]
    fg = (mirrored > 0) | (out["labels"].numpy() > 0)
    assert (out["labels"].numpy()[fg] == mirrored[fg]).mean() > 0.9  # up to fillPoly's edge rule
    expected = lm.copy()
    expected[:, 0] = WA - expected[:, 0]
    swap = np.array([4 * v + c for v in range(17) for c in (1, 0, 3, 2)])
    np.testing.assert_allclose(out["landmarks_model"].numpy(), expected[swap], atol=1e-4)
    np.testing.assert_allclose(out["angles"].numpy(), cobb_angles(lm, HA), atol=0.01)


def _flat_example(values):
    lm = sine_spine(HA, WA)
    img = np.broadcast_to(np.asarray(values, np.uint8).reshape(1, -1, 1), (HA, WA, 1)).copy()
    return {"image": tf.constant(img), "labels": tf.constant(landmarks_to_label_map(lm, HA, WA)),
            "landmarks_model": tf.constant(lm, tf.float32), "angles": tf.zeros([3]), "filename": tf.constant("x"),
            "transform": tf.zeros([5]), "landmarks": tf.constant(lm, tf.float32)}


NO_GEOM = dict(rotation_deg=0.0, scale_range=(1.0, 1.0), translate_frac=0.0, hflip_prob=0.0)


def test_gamma_is_a_power_law():
    ex = _flat_example(np.linspace(10, 250, WA).round())
    cfg = _cfg_a(brightness=0.0, contrast=0.0, gamma=(0.5, 2.0), noise_std=0.0, **NO_GEOM)
    out = augment_example(ex, tf.constant((3, 1), tf.int64), cfg)["image"].numpy()[0, :, 0]
    x = ex["image"].numpy()[0, :, 0] / 255.0
    g = np.log(out[WA // 2]) / np.log(x[WA // 2])  # the gamma used, read from one pixel
    assert 0.5 <= g <= 2.0 and abs(g - 1.0) > 1e-3
    np.testing.assert_allclose(out, x ** g, atol=1e-5)


def test_noise_has_the_configured_std():
    ex = _flat_example([128] * WA)
    cfg = _cfg_a(brightness=0.0, contrast=0.0, gamma=(1.0, 1.0), noise_std=0.05, **NO_GEOM)
    out = augment_example(ex, tf.constant((6, 6), tf.int64), cfg)["image"].numpy()
    assert out.std() == pytest.approx(0.05, rel=0.05)
    assert out.mean() == pytest.approx(128 / 255.0, abs=2e-3)


FLAT = dict(brightness=0.0, contrast=0.0, gamma=(1.0, 1.0), noise_std=0.0, **NO_GEOM)


def test_fewer_grey_levels_quantise_to_the_drawn_bit_depth():
    ex = _flat_example(np.linspace(0, 255, WA).round())
    out = augment_example(ex, tf.constant((2, 9), tf.int64), _cfg_a(bit_depth_prob=1.0, bit_depth=(3, 3), **FLAT))
    levels = out["image"].numpy().ravel() * 7  # 3 bits: multiples of 1/7
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-5)
    assert len(np.unique(np.round(levels))) == 8


def test_jpeg_degrades_the_image_and_leaves_the_other_draws_alone():
    rng = np.random.default_rng(0)
    ex = _flat_example([0] * WA)
    ex["image"] = tf.constant(rng.integers(0, 256, (HA, WA, 1)).astype(np.uint8))  # texture: JPEG loses most of it
    seed = tf.constant((4, 2), tf.int64)
    aug = dict(rotation_deg=5.0, scale_range=(0.9, 1.1), translate_frac=0.03, hflip_prob=0.5)
    plain = augment_example(ex, seed, _cfg_a(**aug))
    lossy = augment_example(ex, seed, _cfg_a(jpeg_prob=1.0, jpeg_quality=(10, 10), **aug))
    # the geometry and photometric draws are the same; the image is the plain one, compressed
    np.testing.assert_array_equal(lossy["landmarks_model"].numpy(), plain["landmarks_model"].numpy())
    ok, enc = cv2.imencode(".jpg", np.round(plain["image"].numpy() * 255).astype(np.uint8),
                           [cv2.IMWRITE_JPEG_QUALITY, 10])
    by_cv2 = cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE) / 255.0
    diff = np.abs(lossy["image"].numpy()[..., 0] - plain["image"].numpy()[..., 0]).mean()
    assert diff > 0.02  # quality 10 on noise: far from the input
    assert np.abs(lossy["image"].numpy()[..., 0] - by_cv2).mean() < 0.25 * diff  # and close to libjpeg's own
    never = augment_example(ex, seed, _cfg_a(jpeg_prob=0.0, bit_depth_prob=0.0, **aug))
    np.testing.assert_array_equal(never["image"].numpy(), plain["image"].numpy())


def test_bad_degradation_settings_are_named():
    with pytest.raises(ValueError, match=r"data\.augment\.jpeg_quality"):
        AugmentConfig(jpeg_quality=(0, 50))
    with pytest.raises(ValueError, match=r"data\.augment\.bit_depth"):
        AugmentConfig(bit_depth=(8, 4))
    with pytest.raises(ValueError, match=r"data\.augment\.jpeg_prob"):
        AugmentConfig(jpeg_prob=1.5)
