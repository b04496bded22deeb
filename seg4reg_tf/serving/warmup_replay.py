"""Model warm-up (TF Serving's `--enable_model_warmup`): replay a version's warmup PredictLogs.

Before a version is served, the PredictionLog records of its `assets.extra/tf_serving_warmup_requests`
(at most `export.warmup_records.MAX_WARMUP_RECORDS`, read by `export.warmup_records.read_warmup_records`)
run through the `predict` callable it is given: the server passes `PredictionCore.predict`, the path of
client Predict calls, so warm-up traces the shapes serving runs.
An unreadable file, too many records or a failing request fails that version's load (the caller,
`manager.ModelManager`, reports it). Classify / Regress / MultiInference records are skipped with a
warning; records of no or another type fail the load, as in TF Serving.
"""
from __future__ import annotations

import logging
from typing import Callable

from seg4reg_tf import fileio
from seg4reg_tf.export.layout import WARMUP_RELPATH
from seg4reg_tf.export.warmup_records import read_warmup_records
from seg4reg_tf.serving.errors import ServingError
from seg4reg_tf.serving.tensors import request_inputs
from seg4reg_tf.serving.versions import LoadedVersion, Tensors

log = logging.getLogger("seg4reg_tf.serving")

# predict(version, signature name, inputs, output_filter) -> outputs; raises ServingError
PredictFn = Callable[[LoadedVersion, str, Tensors, list], Tensors]


def run_warmup(lv: LoadedVersion, predict: PredictFn) -> int:
    """Replay `lv.path/assets.extra/tf_serving_warmup_requests` through `predict` (the server's
    `PredictionCore.predict`: its request limits and chunk size, so warm-up traces what serving runs).

    Returns the number of Predict requests replayed (0 when there is no warmup file). Raises
    ValueError / ServingError naming the file and record on the first problem (the caller fails the load).
    """
    path = fileio.join(lv.path, WARMUP_RELPATH)
    if not fileio.isfile(path):
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
            predict(lv, info.name, request_inputs(info, request), list(request.output_filter))
        except ServingError as err:
            raise ServingError(err.code, f"{path}: record {i}: {err.message}") from None
        replayed += 1
    return replayed
