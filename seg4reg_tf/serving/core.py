"""The prediction core shared by gRPC, REST and warm-up: `predict_on_version` and `PredictionCore`."""
from __future__ import annotations

import logging
from typing import Callable, Mapping

import grpc
import numpy as np
import tensorflow as tf

from seg4reg_tf.serving.batching import DEFAULT_MAX_BATCH_SIZE, batch_size_of
from seg4reg_tf.serving.errors import ServingError, invalid_argument
from seg4reg_tf.serving.request_limits import RequestLimits, example_image_bytes, image_pixels, plan_chunks
from seg4reg_tf.serving.signatures import SignatureInfo
from seg4reg_tf.serving.tensors import check_finite, check_input
from seg4reg_tf.serving.versions import LoadedVersion, Tensors

log = logging.getLogger("seg4reg_tf.serving")

MAX_BISECT_ITEMS = 64  # a failing batch up to this size is re-run per item to name the bad one


def predict_on_version(lv: LoadedVersion, signature_name: str, inputs: Tensors,
                       output_filter: list[str] | None = None, *, limits: RequestLimits | None = None,
                       max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                       cancelled: Callable[[], bool] | None = None) -> Tensors:
    """Validate `inputs` against the signature of `lv`, run, and keep `output_filter` outputs.

    A batchable request is checked against `limits` (items, decoded pixels; INVALID_ARGUMENT
    naming the limit) and run in chunks (`request_limits.plan_chunks`) one after another, so other
    requests interleave; once `cancelled()` is true the remaining chunks are dropped (CANCELLED).
    A non-finite output is INTERNAL (never returned), bar the NaN of `lv.options.nan_outputs`."""
    limits = limits or RequestLimits()
    info = lv.signature(signature_name)
    if not inputs:
        raise invalid_argument(f"request has no inputs; signature {info.name!r} expects {sorted(info.input_dtypes)}")
    extra = sorted(set(inputs) - set(info.input_dtypes))
    missing = sorted(set(info.input_dtypes) - set(inputs))
    if extra or missing:
        raise invalid_argument(f"request inputs do not match signature {info.name!r}: unknown inputs {extra}, "
                               f"missing inputs {missing}; expected {sorted(info.input_dtypes)}")
    wanted = list(output_filter or [])
    unknown = sorted(set(wanted) - set(info.output_dtypes))
    if unknown:
        raise invalid_argument(f"output_filter names unknown outputs {unknown}; signature {info.name!r} "
                               f"has {sorted(info.output_dtypes)}")
    if len(set(wanted)) != len(wanted):
        raise invalid_argument(f"output_filter repeats an output: {wanted}")
    for name, arr in inputs.items():
        if arr.dtype.kind not in "OSU" and info.input_dtypes[name] == tf.string:
            raise invalid_argument(f"input {name!r}: expected strings (DT_STRING), got {arr.dtype}")
        check_input(name, arr, info)
        check_finite(name, arr)
    batched = info.batchable and batch_size_of(inputs) is not None
    if info.batchable and not batched:
        raise invalid_argument("inputs disagree on the batch (first) dimension: "
                               + str({k: list(v.shape) for k, v in inputs.items()}))
    if batched and batch_size_of(inputs) == 0:
        raise invalid_argument(f"empty batch: inputs {sorted(inputs)} have 0 items (shape [0, ...]); "
                               "send at least one")
    chunks = plan_request(info, inputs, limits, max_batch_size, lv.options.example_image_keys) \
        if batched else [(0, 0)]
    parts = []
    n = batch_size_of(inputs) or 0
    for start, stop in chunks:
        if cancelled is not None and parts and cancelled():
            raise ServingError(grpc.StatusCode.CANCELLED, f"request cancelled by the client after "
                               f"{start} of {n} items; the remaining work was dropped")
        part = inputs if len(chunks) == 1 else {k: v[start:stop] for k, v in inputs.items()}
        try:
            parts.append(lv.run(info.name, part, cancelled))
        except ServingError as err:
            if err.code == grpc.StatusCode.INVALID_ARGUMENT and batched:
                name_bad_item(lv, info.name, part, offset=start, total=n)
            raise
    if len(parts) == 1:
        outputs = parts[0]
    else:
        outputs = {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
    if wanted:
        outputs = {k: outputs[k] for k in wanted}
    for name, arr in outputs.items():
        if name in lv.options.nan_outputs:
            continue
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0].tolist()
            log.error("model %s version %d, signature %s: output %r is not finite at index %s",
                      lv.name, lv.version, info.name, name, bad)
            raise ServingError(grpc.StatusCode.INTERNAL,
                               f"the model produced a non-finite value in output {name!r} at index {bad}; "
                               "no answer is sent rather than NaN or Infinity")
    return outputs


def plan_request(info: SignatureInfo, inputs: Tensors, limits: RequestLimits, max_batch_size: int,
                 example_image_keys: Mapping[str, str] | None = None) -> list[tuple[int, int]]:
    """Check a batched request against `limits`; the (start, stop) chunks to run (see `predict_on_version`).
    The string inputs named in `example_image_keys` are serialized tf.Examples holding the image in that
    feature (`model_config.ModelOptions`): parsed here, INVALID_ARGUMENT when malformed."""
    example_image_keys = example_image_keys or {}
    n = batch_size_of(inputs) or 0
    if n > limits.max_images:
        raise invalid_argument(f"request too large: {n} items in one Predict; the limit is {limits.max_images} "
                               "(server flag --max-images-per-request); send them in several requests")
    pixels = [0] * n
    for name, arr in inputs.items():
        if arr.dtype.kind in "OSU" and arr.ndim == 1:
            for i, value in enumerate(arr):
                data = value if isinstance(value, bytes) else bytes(value)
                if name in example_image_keys:
                    try:
                        data = example_image_bytes(data, i, example_image_keys[name], name)
                    except ValueError as err:
                        raise invalid_argument(str(err)) from None
                pixels[i] += image_pixels(data) or 0
        elif arr.dtype.kind in "fiu" and arr.ndim >= 3:
            pixels = [p + int(np.prod(arr.shape[1:3])) for p in pixels]
    total = sum(pixels)
    if total > limits.max_request_pixels:
        raise invalid_argument(f"request too large: its images decode to {total} pixels; the limit is "
                               f"{limits.max_request_pixels} per Predict (server flag --max-request-pixels)")
    return plan_chunks(pixels, max_batch_size, limits.max_chunk_pixels)


def name_bad_item(lv: LoadedVersion, signature: str, inputs: Tensors, *, offset: int = 0,
                  total: int | None = None) -> None:
    """Re-run a failed batch item by item and raise an error naming the first bad item."""
    n = batch_size_of(inputs) or 0
    total = n if total is None else total
    if not 1 < total or n > MAX_BISECT_ITEMS:
        return
    for i in range(n):
        try:
            lv.run_direct(signature, {k: v[i:i + 1] for k, v in inputs.items()})
        except ServingError as item_err:
            raise invalid_argument(f"batch item {offset + i} of {total} is invalid: {item_err.message}") from None


class PredictionCore:
    """Validated predictions with the server's request limits and chunk size: what gRPC, REST and warm-up
    share. It knows loaded versions only; resolving a model spec is the manager's (`ModelManager.resolve`)."""

    def __init__(self, limits: RequestLimits | None = None, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> None:
        self.limits = limits or RequestLimits()
        self.max_batch_size = max_batch_size

    def signature(self, lv: LoadedVersion, signature_name: str) -> SignatureInfo:
        """The named signature of `lv` ("" = serving_default); NOT_FOUND if absent."""
        return lv.signature(signature_name)

    def refuse_method(self, lv: LoadedVersion, signature_name: str, method: str) -> None:
        """What TF Serving answers to Classify / Regress (`method` "classify" | "regress") on a predict
        signature: INVALID_ARGUMENT naming the expected and the actual method (NOT_FOUND if absent)."""
        info = self.signature(lv, signature_name)
        noun = {"classify": "classification", "regress": "regression"}[method]
        raise invalid_argument(f"Expected {noun} signature method_name to be tensorflow/serving/{method}. "
                               f"Was: {info.proto.method_name}")

    def predict(self, lv: LoadedVersion, signature_name: str, inputs: Tensors,
                output_filter: list[str] | None = None, cancelled: Callable[[], bool] | None = None) -> Tensors:
        """`predict_on_version` with this core's request limits and chunk size."""
        return predict_on_version(lv, signature_name, inputs, output_filter, limits=self.limits,
                                  max_batch_size=self.max_batch_size, cancelled=cancelled)
