"""Warm-up records (`export.warmup_records`): written, read back under one limit, replayed against the export."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.export import warmup_records
from seg4reg_tf.export.warmup_records import read_warmup_records, synthetic_images, write_warmup_requests
from tests.export import helpers_export as he


def test_synthetic_images_decode_8_and_16_bit():
    images = synthetic_images(((100, 70),))
    assert len(images) == 2
    jpg = cv2.imdecode(np.frombuffer(images[0], np.uint8), cv2.IMREAD_UNCHANGED)
    png = cv2.imdecode(np.frombuffer(images[1], np.uint8), cv2.IMREAD_UNCHANGED)
    assert jpg.shape == (100, 70) and jpg.dtype == np.uint8
    assert png.shape == (100, 70) and png.dtype == np.uint16 and png.max() > 255


def test_write_and_read_back(tmp_path):
    images = [b"\x89PNG fake 1", b"\xff\xd8\xff fake 2"]
    path = write_warmup_requests(tmp_path / "assets.extra" / "tf_serving_warmup_requests", images)
    logs = read_warmup_records(path)
    assert len(logs) == 3  # one per image + one batch
    for log, expected in zip(logs, [[images[0]], [images[1]], images]):
        req = log.predict_log.request
        assert req.model_spec.signature_name == "serving_default"
        assert req.model_spec.name == "seg4reg"
        assert list(req.inputs) == ["image_bytes"]
        assert req.inputs["image_bytes"].dtype == tf.string.as_datatype_enum
        assert list(tf.make_ndarray(req.inputs["image_bytes"])) == expected
    with pytest.raises(ValueError, match="warmup_images"):
        write_warmup_requests(tmp_path / "x", [])


def test_exported_warmup_replays(tmp_path):
    path = Path(he.export_oracle(tmp_path / "m", 3))
    logs = read_warmup_records(path / "assets.extra" / "tf_serving_warmup_requests")
    assert len(logs) == 5  # 4 synthetic images (2 sizes x 8/16-bit) + 1 batch
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    for log in logs:
        data = tf.make_ndarray(log.predict_log.request.inputs["image_bytes"])
        out = fn(image_bytes=tf.constant(list(data)))
        assert out["cobb_angles"].shape == (len(data), 3)
        assert np.all(np.isfinite(out["cobb_angles"].numpy()))


def test_one_limit_for_writing_and_reading(tmp_path, monkeypatch):
    """MAX_WARMUP_RECORDS (TF Serving's) bounds what is written and what a reader accepts; a file that is
    not TFRecords is refused naming it."""
    monkeypatch.setattr(warmup_records, "MAX_WARMUP_RECORDS", 3)
    with pytest.raises(ValueError, match=r"warmup_images: at most 2 images, got 3"):
        write_warmup_requests(tmp_path / "w", [b"1", b"2", b"3"])  # 3 single requests + 1 batch = 4 records
    path = write_warmup_requests(tmp_path / "ok", [b"1", b"2"])  # 3 records: at the limit
    assert len(read_warmup_records(path)) == 3
    with pytest.raises(ValueError, match=r"ok: number of warmup records exceeds the maximum \(2\)"):
        read_warmup_records(path, limit=2)
    monkeypatch.setattr(warmup_records, "MAX_WARMUP_RECORDS", 2)
    with pytest.raises(ValueError, match=r"exceeds the maximum \(2\)"):
        read_warmup_records(path)  # the module's limit is the default
    (tmp_path / "junk").write_bytes(b"not a TFRecord file at all")
    with pytest.raises(ValueError, match=r"junk: cannot read warmup TFRecords after 0 record\(s\)"):
        read_warmup_records(tmp_path / "junk")
