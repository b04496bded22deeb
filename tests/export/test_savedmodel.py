"""export_model: TF Serving layout, signatures, fresh-process equivalence, rejection of bad images."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.data.preprocess import decode_image, preprocess
from seg4reg_tf.export.layout import latest_version_dir
from seg4reg_tf.export.savedmodel import export_model
from tests.export import helpers_export as he
from tests.fixtures import (
    MEASURABLE_OUTPUTS,
    MODEL_OUTPUTS,
    check_signatures,
    label_encoded_jpeg,
    label_encoded_png16,
    label_map_spine,
    tiny_data_config,
)

REPO = Path(__file__).resolve().parents[2]


def _png_header_only(height: int, width: int) -> bytes:
    """A PNG whose IHDR claims height x width but carries no pixel data (a decompression-bomb stand-in)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + iend


def _jpeg_with_claimed_size(height: int, width: int) -> bytes:
    """A small real JPEG whose SOF0 header is patched to claim height x width."""
    data = bytearray(cv2.imencode(".jpg", np.full((80, 80), 128, np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _test_images() -> list[bytes]:
    _, lab_a = label_map_spine(300, 150)
    _, lab_b = label_map_spine(200, 180, phase=1.0)
    rgb = cv2.cvtColor((lab_a * 15).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    rgb[..., 2] = 255 - rgb[..., 2]
    return [label_encoded_jpeg(lab_a), label_encoded_png16(lab_b),
            cv2.imencode(".png", rgb)[1].tobytes()]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("models") / "seg4reg"
    model = he.oracle_model(oracle=False)  # smooth in its input: numeric comparisons are meaningful
    cfg = tiny_data_config(image_size=he.ORACLE_SIZE, clahe=True)  # the training preprocessing, CLAHE included
    path = he.export_oracle(base, 1, model=model, preprocessing=cfg)
    return base, Path(path), model, cfg


@pytest.fixture(scope="module")
def serving_fn(exported):
    return tf.saved_model.load(str(exported[1])).signatures["serving_default"]


def test_layout_and_no_overwrite(exported):
    base, path, model, cfg = exported
    assert path == base / "1"
    assert (path / "saved_model.pb").is_file()
    assert (path / "variables" / "variables.index").is_file()
    assert (path / "assets.extra" / "tf_serving_warmup_requests").is_file()
    with pytest.raises(FileExistsError, match="1"):
        he.export_oracle(base, 1, model=model, preprocessing=cfg)
    assert sorted(p.name for p in base.iterdir()) == ["1"]  # no temp dir left, nothing partial
    assert latest_version_dir(base) == path
    with pytest.raises(ValueError, match="version"):
        he.export_oracle(base, 0, model=model, preprocessing=cfg)


def test_signature_defs(exported):
    _, path, _, _ = exported
    check_signatures(path, he.ORACLE_SIZE, attention_size=(he.H // 2, he.W // 2))  # the oracle pools by 2


@pytest.mark.slow
def test_fresh_process_matches_python_pipeline(exported, tmp_path):
    _, path, model, cfg = exported
    images = _test_images()
    for k, data in enumerate(images):
        (tmp_path / f"in{k}.bin").write_bytes(data)
    script = textwrap.dedent(
        f"""
        import numpy as np, tensorflow as tf
        fn = tf.saved_model.load({str(path)!r}).signatures["serving_default"]
        data = [open({str(tmp_path)!r} + f"/in{{k}}.bin", "rb").read() for k in range({len(images)})]
        out = fn(image_bytes=tf.constant(data))
        np.savez({str(tmp_path / "out.npz")!r}, **{{k: v.numpy() for k, v in out.items() if v.dtype != tf.string}})
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = dict(np.load(tmp_path / "out.npz"))

    prepped = [preprocess(decode_image(tf.constant(d)), cfg) for d in images]
    batch = tf.stack([p[0] for p in prepped])
    transforms = np.stack([p[1].numpy() for p in prepped])
    ref = {k: np.asarray(v) for k, v in model({"image": batch}, training=False).items()}

    for key in ("cobb_angles", "cobb_angles_image", "cobb_angles_segmentation", "consistency", "attention_map"):
        np.testing.assert_allclose(got[key], ref[key], atol=1e-4, err_msg=key)
    labels_ref = np.argmax(ref["segmentation"], axis=-1)
    assert got["vertebra_labels"].dtype == np.uint8
    assert np.mean(got["vertebra_labels"] != labels_ref) < 1e-3
    sizes = np.array([[300, 150], [200, 180], [300, 150]])
    np.testing.assert_array_equal(got["original_size"], sizes)
    scale = np.minimum(he.H / sizes[:, 0], he.W / sizes[:, 1])  # letterbox scale by hand
    np.testing.assert_allclose(got["scale"], scale, rtol=1e-6)
    np.testing.assert_allclose(got["scale"], transforms[:, 0], rtol=1e-6)
    np.testing.assert_allclose(got["padding"], transforms[:, 1:3], atol=1e-4)
    pad = np.stack([(he.H - sizes[:, 0] * scale) / 2, (he.W - sizes[:, 1] * scale) / 2], axis=1)
    np.testing.assert_allclose(got["padding"], pad, atol=0.51)  # centre padding, up to rounding


@pytest.mark.numeric
def test_predict_image_and_example_agree_with_bytes(exported):
    _, path, model, cfg = exported
    loaded = tf.saved_model.load(str(path))
    images = _test_images()[:2]
    by_bytes = loaded.signatures["serving_default"](image_bytes=tf.constant(images))
    examples = [
        tf.train.Example(features=tf.train.Features(feature={
            "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[d]))})).SerializeToString()
        for d in images
    ]
    by_example = loaded.signatures["predict_example"](examples=tf.constant(examples))
    assert set(by_example) == set(by_bytes)
    for key in by_bytes:
        if by_bytes[key].dtype == tf.string:
            assert by_example[key].numpy().tolist() == by_bytes[key].numpy().tolist(), key
            continue
        np.testing.assert_allclose(by_example[key].numpy(), by_bytes[key].numpy(), atol=1e-6, err_msg=key)
    batch = tf.stack([preprocess(decode_image(tf.constant(d)), cfg)[0] for d in images])
    by_image = loaded.signatures["predict_image"](image=batch)
    assert set(by_image) == set(MODEL_OUTPUTS) | set(MEASURABLE_OUTPUTS)
    np.testing.assert_allclose(by_image["cobb_angles"].numpy(), by_bytes["cobb_angles"].numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: label_encoded_png16(np.zeros((40, 200), np.uint8)), "size out of range.*40.*200"),
        (lambda: _png_header_only(50000, 50000), "size out of range.*50000"),
        (lambda: _png_header_only(8000, 7000), "at most 50000000 pixels.*8000.*7000"),
        (lambda: _jpeg_with_claimed_size(50000, 50000), "size out of range.*50000"),
        (lambda: b"this is not an image at all", "not a JPEG or PNG"),
        (lambda: b"", "not a JPEG or PNG"),
    ],
    ids=["tiny", "png-bomb", "too-many-pixels", "jpeg-bomb", "garbage", "empty"],
)
def test_rejects_bad_images(serving_fn, make, pattern):
    fn = serving_fn
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        fn(image_bytes=tf.constant([make()]))


def test_rejects_truncated_image(serving_fn):
    fn = serving_fn
    data = _test_images()[0]
    with pytest.raises(tf.errors.InvalidArgumentError):
        fn(image_bytes=tf.constant([data[: len(data) // 3]]))


def test_bad_config_and_model(tmp_path):
    with pytest.raises(ValueError, match=r"^preprocessing\.image_size: expected \(height, width\) ints >= 16"):
        he.export_oracle(tmp_path / "m", 1, preprocessing={"image_size": [0, 64]})
    assert not (tmp_path / "m" / "1").exists()


@pytest.mark.numeric
def test_the_input_contract_comes_from_the_model(tmp_path):
    """export_model(model, base, version) takes the preprocessing the model carries; a model without one
    (a plain Keras model, a Seg4RegPlus saved before models carried it) needs it passed, and a
    contradicting one is refused naming the field. Nothing is written when refused."""
    from seg4reg_tf.models import build_model
    from seg4reg_tf.training.config import ExperimentConfig
    from tests.fixtures import tiny_model_config

    base = tmp_path / "m"
    with pytest.raises(ValueError, match=r"^preprocessing: Functional .* carries no input contract"):
        export_model(he.oracle_model(), base, 1)
    with pytest.raises(TypeError, match=r"^base_path: expected a directory path, got DataConfig"):
        export_model(he.oracle_model(), tiny_data_config(image_size=he.ORACLE_SIZE), 1)  # a data config: no more
    data = tiny_data_config(clahe=True, clahe_tiles=(4, 4))
    model = build_model(tiny_model_config(), data)
    with pytest.raises(ValueError, match=r"^preprocessing: differs from the model's own \(preprocessing\.clahe: "
                                         r"True != False"):
        export_model(model, base, 1, preprocessing=tiny_data_config())
    with pytest.raises(ValueError, match=r"^config\.data: does not describe the model's preprocessing "
                                         r"\(preprocessing\.clahe_tiles: \(4, 4\) != \(8, 8\)"):
        export_model(model, base, 1, config=ExperimentConfig(data=tiny_data_config(clahe=True)))
    assert not base.exists() or not any(base.iterdir())

    path = export_model(model, base, 1)  # CLAHE with 4 x 4 tiles in the graph, as the model was built
    image = label_encoded_png16(label_map_spine(200, 90)[1])
    got = tf.saved_model.load(path).signatures["serving_default"](image_bytes=tf.constant([image]))

    def angles(data_cfg):
        batch = preprocess(decode_image(tf.constant(image)), data_cfg)[0][None]
        return np.asarray(model({"image": batch}, training=False)["cobb_angles"])

    np.testing.assert_allclose(got["cobb_angles"].numpy(), angles(data), atol=1e-4)
    assert np.abs(angles(tiny_data_config()) - angles(data)).max() > 1e-3  # CLAHE matters: a real check
