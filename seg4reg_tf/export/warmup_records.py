"""TF Serving warm-up records, written and read: `assets.extra/tf_serving_warmup_requests`, a TFRecord
file of PredictionLog messages (`export_model` writes it; `serving.warmup` and the pipeline's
load check read it with `read_warmup_records`, at most `MAX_WARMUP_RECORDS`)."""
from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np
import tensorflow as tf

from seg4reg_tf import fileio

MAX_WARMUP_RECORDS = 1000  # TF Serving's limit: more records fail the load


def synthetic_images(sizes: Sequence[tuple[int, int]] = ((256, 128), (300, 160))) -> list[bytes]:
    """Small synthetic spine-like X-rays (a bright curved column on a gradient): one 8-bit JPEG and
    one 16-bit PNG per (height, width) in `sizes`."""
    out = []
    for k, (h, w) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        centre = w / 2 + 0.1 * w * np.sin(2 * np.pi * yy / h + k)
        img = 0.2 + 0.2 * yy / h + 0.6 * np.exp(-(((xx - centre) / (0.08 * w)) ** 2))
        img = np.clip(img, 0, 1)
        out.append(cv2.imencode(".jpg", np.round(img * 255).astype(np.uint8))[1].tobytes())
        out.append(cv2.imencode(".png", np.round(img * 65535).astype(np.uint16))[1].tobytes())
    return out


def prediction_log(images: Sequence[bytes], model_name: str = "seg4reg", signature: str = "serving_default"):
    """A PredictionLog holding one PredictRequest with `image_bytes` = images."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(list(images), dtype=tf.string))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def write_warmup_requests(path, images: Sequence[bytes], model_name: str = "seg4reg") -> str:
    """Write one single-image request per image and one batched request of all of them.

    Args:
        path: output file (usually `<version dir>/assets.extra/tf_serving_warmup_requests`).
        images: JPEG/PNG byte strings the model accepts.
    """
    images = list(images)
    if not images:
        raise ValueError("warmup_images: expected at least one JPEG/PNG byte string, got none")
    logs = [prediction_log([img], model_name) for img in images]
    if len(images) > 1:
        logs.append(prediction_log(images, model_name))
    if len(logs) > MAX_WARMUP_RECORDS:
        raise ValueError(f"warmup_images: at most {MAX_WARMUP_RECORDS - 1} images, got {len(images)}")
    p = os.fspath(path)  # any TensorFlow filesystem
    fileio.makedirs(os.path.dirname(p))
    with tf.io.TFRecordWriter(p) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return p


def read_warmup_records(path, limit: int | None = None) -> list:
    """PredictionLog messages of a warm-up TFRecord file; ValueError naming the file (and record index)
    if it is unreadable, a record does not parse, or it holds more than `limit` (default
    MAX_WARMUP_RECORDS) records."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = str(path)
    limit = MAX_WARMUP_RECORDS if limit is None else limit
    out = []
    try:
        for i, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
            if i >= limit:
                raise ValueError(f"{path}: number of warmup records exceeds the maximum ({limit})")
            entry = prediction_log_pb2.PredictionLog()
            try:
                entry.ParseFromString(record)
            except Exception as err:  # noqa: BLE001 - protobuf DecodeError
                raise ValueError(f"{path}: record {i} is not a PredictionLog: {err}") from None
            out.append(entry)
    except tf.errors.OpError as err:
        first = (err.message or "").strip().splitlines()
        raise ValueError(f"{path}: cannot read warmup TFRecords after {len(out)} record(s): "
                         f"{first[0] if first else type(err).__name__}") from None
    return out
