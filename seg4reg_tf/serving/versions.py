"""`LoadedVersion`: one loaded SavedModel version, its signatures, callables and batchers."""
from __future__ import annotations

import threading
from typing import Callable

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2

from seg4reg_tf.serving.batching import (
    BatchingConfig,
    BatchScheduler,
    QueueFullError,
    RequestCancelled,
    batch_size_of,
)
from seg4reg_tf.serving.errors import GRPC_BY_NUMBER, ServingError, first_line, invalid_argument
from seg4reg_tf.serving.metrics import ServingMetrics
from seg4reg_tf.serving.model_config import ModelOptions
from seg4reg_tf.serving.signatures import SignatureInfo, read_signature_defs, signature_info

Tensors = dict[str, np.ndarray]


class LoadedVersion:
    """One loaded SavedModel version: signatures, their callables and their batchers.

    `metrics` (optional) observes every model run and batch (`ServingMetrics`); `options`: what the
    SignatureDefs do not say (outputs that may be NaN, tf.Example inputs; `model_config.ModelOptions`)."""

    def __init__(self, name: str, version: int, path: str, batching: BatchingConfig,
                 metrics: ServingMetrics | None = None, options: ModelOptions | None = None) -> None:
        self.name, self.version, self.path = name, version, path
        self.options = ModelOptions() if options is None else options
        self._batching = batching
        self._metrics = metrics
        defs = read_signature_defs(path)
        self._loaded = tf.saved_model.load(path)
        self.signatures: dict[str, SignatureInfo] = {
            key: signature_info(key, sig) for key, sig in defs.items() if key in self._loaded.signatures}
        self._batchers: dict[str, BatchScheduler] = {}
        self._lock = threading.Lock()
        self.model_runs = 0

    def signature(self, signature_name: str) -> SignatureInfo:
        """The named signature ("" = serving_default); ServingError NOT_FOUND if absent."""
        key = signature_name or "serving_default"
        if key not in self.signatures:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Serving signature key {key!r} not found in model {self.name} version "
                               f"{self.version}; available: {sorted(self.signatures)}")
        return self.signatures[key]

    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        out = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in self.signatures.items():
            out.signature_def[key].CopyFrom(sig.proto)
        return out

    def run_direct(self, signature: str, inputs: Tensors) -> Tensors:
        """Run one signature on `{name: ndarray}`; raises ServingError."""
        fn = self._loaded.signatures[signature]
        info = self.signatures[signature]
        self.model_runs += 1
        if self._metrics is not None:
            self._metrics.record_model_run(self.name, self.version, signature, batch_size_of(inputs) or 1)
        try:
            tensors = {k: tf.constant(v, dtype=info.input_dtypes[k]) for k, v in inputs.items()}
            outputs = fn(**tensors)
        except tf.errors.OpError as err:
            code = GRPC_BY_NUMBER.get(err.error_code, grpc.StatusCode.INTERNAL)
            raise ServingError(code, first_line(err.message)) from None
        except (TypeError, ValueError) as err:
            raise invalid_argument(f"signature {signature!r}: {first_line(str(err))}") from None
        return {k: v.numpy() for k, v in outputs.items()}

    def run(self, signature: str, inputs: Tensors, cancelled: Callable[[], bool] | None = None) -> Tensors:
        """Run through the signature's batcher when batching is on and the signature is batchable.

        `cancelled()`: the caller is gone; queued work is dropped (ServingError CANCELLED)."""
        info = self.signatures[signature]
        if not self._batching.enabled or not info.batchable or batch_size_of(inputs) is None:
            return self.run_direct(signature, inputs)
        with self._lock:
            batcher = self._batchers.get(signature)
            if batcher is None:
                m = self._metrics
                batcher = BatchScheduler(lambda x, s=signature: self.run_direct(s, x), self._batching,
                                         name=f"{self.name}/{self.version}/{signature}",
                                         on_submit=m.record_batch_input if m else None,
                                         on_run=m.record_batch_processed if m else None)
                self._batchers[signature] = batcher
        try:
            return batcher.submit(inputs, cancelled=cancelled)
        except QueueFullError as err:
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err)) from None
        except RequestCancelled as err:
            raise ServingError(grpc.StatusCode.CANCELLED, str(err)) from None
        except RuntimeError as err:  # closed: unloaded while queued
            raise ServingError(grpc.StatusCode.UNAVAILABLE, str(err)) from None

    def batchers(self) -> dict[str, BatchScheduler]:
        with self._lock:
            return dict(self._batchers)

    def close(self) -> None:
        for batcher in self.batchers().values():
            batcher.close()
