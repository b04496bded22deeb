"""Model warm-up (TF Serving's `--enable_model_warmup`): replay a version's warmup PredictLogs.

Before a version is served, the PredictionLog records of its `assets.extra/tf_serving_warmup_requests`
(at most `MAX_WARMUP_RECORDS`) run through `core.predict_on_version`, the path of client Predict calls.
An unreadable file, too many records or a failing request fails that version's load (the caller,
`manager.ModelManager`, reports it). Classify / Regress / MultiInference records are skipped with a
warning; records of no or another type fail the load, as in TF Serving.
"""
from __future__ import annotations

import logging
import os

import tensorflow as tf

from seg4reg_tf.export.layout import WARMUP_RELPATH
from seg4reg_tf.serving.core import DEFAULT_MAX_BATCH_SIZE, predict_on_version
from seg4reg_tf.serving.errors import ServingError, first_line
from seg4reg_tf.serving.request_limits import RequestLimits
from seg4reg_tf.serving.tensors import request_inputs
from seg4reg_tf.serving.versions import LoadedVersion

log = logging.getLogger("seg4reg_tf.serving")

MAX_WARMUP_RECORDS = 1000  # TF Serving's limit: more records fail the load


def read_warmup_records(path: str, limit: int | None = None) -> list:
    """PredictionLog messages of a warmup TFRecord file; ValueError naming the file (and record index)
    if it is unreadable, a record does not parse, or it holds more than `limit` (default
    MAX_WARMUP_RECORDS) records."""
    from tensorflow_serving.apis import prediction_log_pb2

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
        raise ValueError(f"{path}: cannot read warmup TFRecords after {len(out)} record(s): "
                         f"{first_line(err.message)}") from None
    return out


def run_warmup(lv: LoadedVersion, limits: RequestLimits | None = None,
               max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> int:
    """Replay `lv.path/assets.extra/tf_serving_warmup_requests` through `predict_on_version` with the
    server's request limits and chunk size (so warm-up traces the shapes that serving will run).

    Returns the number of Predict requests replayed (0 when there is no warmup file). Raises
    ValueError / ServingError naming the file and record on the first problem (the caller fails the load).
    """
    path = os.path.join(lv.path, WARMUP_RELPATH)
    if not os.path.isfile(path):
        return 0
    replayed = 0
    for i, entry in enumerate(read_warmup_records(path)):
        kind = entry.WhichOneof("log_type")
        if kind in ("classify_log", "regress_log", "multi_inference_log"):
            log.warning("%s: record %d: %s skipped (only Predict is served)", path, i, kind)
            continue
        if kind != "predict_log":
            raise ValueError(f"{path}: record {i}: unsupported log_type {kind!r} (expected predict_log)")
        request = entry.predict_log.request
        try:
            info = lv.signature(request.model_spec.signature_name)
            predict_on_version(lv, info.name, request_inputs(info, request), list(request.output_filter),
                               limits=limits, max_batch_size=max_batch_size)
        except ServingError as err:
            raise ServingError(err.code, f"{path}: record {i}: {err.message}") from None
        replayed += 1
    return replayed
