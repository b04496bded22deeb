"""A local model server speaking TensorFlow Serving's gRPC (and, via `rest.py`, REST) APIs.

Serves any SavedModel with signatures from a TF Serving layout `BASE_PATH/<version>/saved_model.pb`:
- `tensorflow.serving.PredictionService`: Predict (model_spec name / version / version_label /
  signature_name, output_filter), GetModelMetadata (`signature_def`); Classify, Regress and
  MultiInference answer UNIMPLEMENTED.
- `tensorflow.serving.ModelService`: GetModelStatus.
The newest numeric version answers unless a version (or label) is asked for; BASE_PATH is polled and
complete new version directories are loaded, removed ones unloaded, while serving.

Model warmup (as TF Serving's `--enable_model_warmup`; off with `ServerConfig.enable_warmup=False`):
before a version is served, the PredictLog records of its `assets.extra/tf_serving_warmup_requests`
(at most 1000) are replayed through the same validation + batching path as client Predict calls.
As in TF Serving, an unreadable warmup file, more than 1000 records or a failing warmup request
fails the load of that version: it is logged, reported by GetModelStatus as END with the error,
never served, and retried once its files change; the server and other versions keep serving.
Classify / Regress / MultiInference records are skipped with a warning (this server does not
implement those APIs); records of no or another type fail the load, as in TF Serving.

Clients must raise gRPC's 4 MiB default message limits: the server accepts and sends messages up to
`ServerConfig.max_message_bytes` (256 MiB), e.g. `grpc.insecure_channel(target, options=[
("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)])`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
from concurrent import futures
from typing import Any, Callable

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from seg4reg_tf.serving.batching import BatchingConfig, BatchScheduler, QueueFullError, batch_size_of

log = logging.getLogger("seg4reg_tf.serving")

MAX_MESSAGE_BYTES = 256 << 20
_MAX_TENSOR_BYTES = 1 << 30  # refuse requests whose declared tensors would exceed 1 GiB
_MAX_BISECT_ITEMS = 64  # a failing batch up to this size is re-run per item to name the bad one
_INIT_OP_KEY = "__saved_model_init_op"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit: more records fail the load

Tensors = dict[str, np.ndarray]


class ServingError(Exception):
    """An error with a gRPC status code; REST maps it to an HTTP status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, msg)


# TF error codes have the same numbers as gRPC status codes.
_GRPC_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


@dataclasses.dataclass
class ServerConfig:
    """Flags of `seg4reg serve`. Ports 0 pick a free port; `rest_port=-1` disables REST."""

    model_base_path: str
    model_name: str = "seg4reg"
    port: int = 8500
    rest_port: int = 8501
    host: str = "127.0.0.1"
    max_batch_size: int = 8
    batch_timeout_ms: float = 5.0
    enable_batching: bool = True
    poll_seconds: float = 2.0
    num_versions: int = 0  # keep the newest N versions loaded; 0 = every complete version
    version_labels: dict[str, int] = dataclasses.field(default_factory=dict)
    max_message_bytes: int = MAX_MESSAGE_BYTES
    grpc_max_workers: int = 32
    max_concurrent_rpcs: int = 256
    enable_warmup: bool = True  # replay assets.extra/tf_serving_warmup_requests before serving

    def __post_init__(self) -> None:
        if not isinstance(self.model_base_path, (str, os.PathLike)) or not str(self.model_base_path):
            raise ValueError(f"model_base_path: expected a directory path, got {self.model_base_path!r}")
        self.model_base_path = str(self.model_base_path)
        if not isinstance(self.model_name, str) or not self.model_name or "/" in self.model_name:
            raise ValueError(f"model_name: expected a non-empty name without '/', got {self.model_name!r}")
        if not _is_int(self.port) or not 0 <= self.port <= 65535:
            raise ValueError(f"port: expected an int in [0, 65535], got {self.port!r}")
        if not _is_int(self.rest_port) or not -1 <= self.rest_port <= 65535:
            raise ValueError(f"rest_port: expected an int in [-1, 65535], got {self.rest_port!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host: expected a host name or address, got {self.host!r}")
        if not isinstance(self.poll_seconds, (int, float)) or isinstance(self.poll_seconds, bool) \
                or self.poll_seconds <= 0:
            raise ValueError(f"poll_seconds: expected a positive number, got {self.poll_seconds!r}")
        if not _is_int(self.num_versions) or self.num_versions < 0:
            raise ValueError(f"num_versions: expected an int >= 0, got {self.num_versions!r}")
        for label, version in self.version_labels.items():
            if not isinstance(label, str) or not label or not _is_int(version) or version < 0:
                raise ValueError(f"version_labels: expected label -> version >= 0, got {label!r}: {version!r}")
        for key in ("max_message_bytes", "grpc_max_workers", "max_concurrent_rpcs"):
            value = getattr(self, key)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{key}: expected a positive int, got {value!r}")
        if not isinstance(self.enable_warmup, bool):
            raise ValueError(f"enable_warmup: expected a bool, got {self.enable_warmup!r}")
        self.batching  # validates max_batch_size / batch_timeout_ms

    @property
    def batching(self) -> BatchingConfig:
        return BatchingConfig(enabled=self.enable_batching, max_batch_size=self.max_batch_size,
                              batch_timeout_ms=float(self.batch_timeout_ms))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------
# Loaded versions
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class SignatureInfo:
    """One signature: its SignatureDef proto and input dtypes / shapes (None = unknown dim)."""

    name: str
    proto: meta_graph_pb2.SignatureDef
    input_dtypes: dict[str, tf.DType]
    input_shapes: dict[str, tuple[int | None, ...] | None]
    output_dtypes: dict[str, tf.DType]

    @property
    def batchable(self) -> bool:
        """All inputs have a known rank >= 1 and a free leading dimension."""
        return all(s is not None and len(s) >= 1 and s[0] is None for s in self.input_shapes.values())


def _shape_of(info: meta_graph_pb2.TensorInfo) -> tuple[int | None, ...] | None:
    if info.tensor_shape.unknown_rank:
        return None
    return tuple(None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim)


def read_signature_defs(version_dir: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    """SignatureDefs of `version_dir/saved_model.pb` (first MetaGraph), without the init op."""
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    if not saved.meta_graphs:
        raise ValueError(f"{version_dir}/saved_model.pb: no MetaGraph")
    return {k: v for k, v in saved.meta_graphs[0].signature_def.items() if k != _INIT_OP_KEY}


class LoadedVersion:
    """One loaded SavedModel version: signatures, their callables and their batchers."""

    def __init__(self, name: str, version: int, path: str, batching: BatchingConfig) -> None:
        self.name, self.version, self.path = name, version, path
        self._batching = batching
        defs = read_signature_defs(path)
        self._loaded = tf.saved_model.load(path)
        self.signatures: dict[str, SignatureInfo] = {}
        for key, sig in defs.items():
            if key not in self._loaded.signatures:
                continue
            self.signatures[key] = SignatureInfo(
                key, sig,
                {k: tf.dtypes.as_dtype(v.dtype) for k, v in sig.inputs.items()},
                {k: _shape_of(v) for k, v in sig.inputs.items()},
                {k: tf.dtypes.as_dtype(v.dtype) for k, v in sig.outputs.items()},
            )
        self._batchers: dict[str, BatchScheduler] = {}
        self._lock = threading.Lock()
        self.model_runs = 0

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
        try:
            tensors = {k: tf.constant(v, dtype=info.input_dtypes[k]) for k, v in inputs.items()}
            outputs = fn(**tensors)
        except tf.errors.OpError as err:
            code = _GRPC_BY_NUMBER.get(err.error_code, grpc.StatusCode.INTERNAL)
            raise ServingError(code, _first_line(err.message)) from None
        except (TypeError, ValueError) as err:
            raise _invalid(f"signature {signature!r}: {_first_line(str(err))}") from None
        return {k: v.numpy() for k, v in outputs.items()}

    def run(self, signature: str, inputs: Tensors) -> Tensors:
        """Run through the signature's batcher when batching is on and the signature is batchable."""
        info = self.signatures[signature]
        if not self._batching.enabled or not info.batchable or batch_size_of(inputs) is None:
            return self.run_direct(signature, inputs)
        with self._lock:
            batcher = self._batchers.get(signature)
            if batcher is None:
                batcher = BatchScheduler(lambda x, s=signature: self.run_direct(s, x), self._batching,
                                         name=f"{self.name}/{self.version}/{signature}")
                self._batchers[signature] = batcher
        try:
            return batcher.submit(inputs)
        except QueueFullError as err:
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err)) from None
        except RuntimeError as err:  # closed: unloaded while queued
            raise ServingError(grpc.StatusCode.UNAVAILABLE, str(err)) from None

    def batchers(self) -> dict[str, BatchScheduler]:
        with self._lock:
            return dict(self._batchers)

    def close(self) -> None:
        for batcher in self.batchers().values():
            batcher.close()


def _first_line(message: str) -> str:
    """The informative line of an error (TF graph errors: the op's message and node), <= 2000 chars."""
    node = re.search(r"Detected at node (\S+)", message)
    lines = []
    for line in re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message).splitlines():
        if not line.strip() or line[:1].isspace() or line.startswith(
                ("Graph execution error", "Detected at node", "<stack traces", "File ")):
            continue
        lines.append(line.strip())
    text = lines[0] if lines else message.strip() or "unknown error"
    if node and node[1] not in text:
        text += f" (at node {node[1]})"
    return text[:2000]


class ModelManager:
    """Watches `base_path` for numeric version directories holding `saved_model.pb`; loads/unloads."""

    def __init__(self, config: ServerConfig, on_event: Callable[[str], None] | None = None) -> None:
        self.config = config
        self._on_event = on_event or log.info
        self._versions: dict[int, LoadedVersion] = {}
        self._failed: dict[int, tuple[tuple, str]] = {}  # version -> (files fingerprint, error)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned_missing = False

    # -- discovery ---------------------------------------------------------------------------
    def _on_disk(self) -> dict[int, str]:
        base = self.config.model_base_path
        try:
            entries = os.listdir(base)
        except OSError as err:
            if not self._warned_missing:
                log.warning("model base path %s: %s; still polling", base, err)
                self._warned_missing = True
            return {}
        found = {}
        for entry in entries:
            path = os.path.join(base, entry)
            if entry.isdigit() and os.path.isfile(os.path.join(path, "saved_model.pb")):
                found[int(entry)] = path
        if self.config.num_versions:
            found = dict(sorted(found.items())[-self.config.num_versions:])
        return found

    def scan(self) -> None:
        """Load new complete versions and unload vanished ones (one poll)."""
        wanted = self._on_disk()
        with self._lock:
            current = set(self._versions)
        for version in sorted(set(wanted) - current, reverse=True):
            path = wanted[version]
            fingerprint = _fingerprint(path)
            if version in self._failed and self._failed[version][0] == fingerprint:
                continue  # retry a failed version only once its files change
            self._on_event(f"loading model {self.config.model_name} version {version} from {path}")
            try:
                loaded = LoadedVersion(self.config.model_name, version, path, self.config.batching)
            except Exception as err:  # noqa: BLE001 - a broken version must not stop the server
                self._failed[version] = (fingerprint, _first_line(str(err)))
                log.error("failed to load model %s version %d from %s: %s",
                          self.config.model_name, version, path, _first_line(str(err)))
                continue
            if self.config.enable_warmup:
                try:
                    n = run_warmup(loaded)
                except Exception as err:  # noqa: BLE001 - TF Serving fails the load; the server stays up
                    loaded.close()
                    message = err.message if isinstance(err, ServingError) else _first_line(str(err))
                    self._failed[version] = (fingerprint, f"warmup failed: {message}")
                    log.error("failed to load model %s version %d from %s: warmup failed: %s",
                              self.config.model_name, version, path, message)
                    continue
                if n:
                    self._on_event(f"model {self.config.model_name} version {version}: replayed {n} "
                                   f"warmup request(s) from {WARMUP_FILE}")
            self._failed.pop(version, None)
            with self._lock:
                self._versions[version] = loaded
            self._on_event(f"loaded model {self.config.model_name} version {version} "
                           f"(signatures: {', '.join(sorted(loaded.signatures))})")
        for version in sorted(current - set(wanted)):
            with self._lock:
                loaded = self._versions.pop(version)
            self._on_event(f"unloading model {self.config.model_name} version {version}")
            loaded.close()
            self._on_event(f"unloaded model {self.config.model_name} version {version}")
        for version in list(self._failed):
            if version not in wanted:
                self._failed.pop(version)

    def start(self) -> None:
        self.scan()
        self._thread = threading.Thread(target=self._poll, name="version-watcher", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.scan()
            except Exception:  # noqa: BLE001 - keep polling
                log.exception("version poll failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            versions, self._versions = list(self._versions.values()), {}
        for loaded in versions:
            loaded.close()

    # -- lookup ------------------------------------------------------------------------------
    def versions(self) -> dict[int, LoadedVersion]:
        with self._lock:
            return dict(self._versions)

    def failed(self) -> dict[int, str]:
        return {v: e for v, (_, e) in self._failed.items()}

    def get(self, name: str, version: int | None = None, label: str | None = None) -> LoadedVersion:
        """The loaded version for a model spec; ServingError NOT_FOUND / INVALID_ARGUMENT."""
        if name != self.config.model_name:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: {_describe(name, version, label)}: "
                               f"unknown model name {name!r} (serving {self.config.model_name!r})")
        if label is not None:
            if label not in self.config.version_labels:
                raise _invalid(f"Unrecognized servable version label: {label!r} "
                               f"(known: {sorted(self.config.version_labels)})")
            version = self.config.version_labels[label]
        versions = self.versions()
        if version is None:
            if not versions:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Servable not found for request: Latest({name}): no version loaded")
            return versions[max(versions)]
        if version not in versions:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({name}, {version}); "
                               f"loaded versions: {sorted(versions)}")
        return versions[version]


def _fingerprint(path: str) -> tuple:
    """(relative path, size, mtime) of every file under a version directory."""
    out = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            out.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


def _describe(name: str, version: int | None, label: str | None) -> str:
    if label is not None:
        return f"Labeled({name}, {label})"
    return f"Latest({name})" if version is None else f"Specific({name}, {version})"


# ---------------------------------------------------------------------------------------------
# Transport-independent prediction core (used by gRPC and REST)
# ---------------------------------------------------------------------------------------------
def _np_dtype(dtype: tf.DType) -> np.dtype:
    return np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)


def tensor_proto_to_ndarray(name: str, proto, expected: tf.DType) -> np.ndarray:
    """Decode a request TensorProto after checking dtype and declared size; ServingError if bad."""
    if proto.dtype != expected.as_datatype_enum:
        got = types_pb2.DataType.Name(proto.dtype) if proto.dtype in types_pb2.DataType.values() \
            else str(proto.dtype)
        raise _invalid(f"input {name!r}: expected dtype {types_pb2.DataType.Name(expected.as_datatype_enum)}, "
                       f"got {got}")
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(d < 0 for d in dims):
        raise _invalid(f"input {name!r}: tensor shape must be fully defined, got {dims}")
    n = int(np.prod(dims, dtype=np.float64)) if dims else 1
    itemsize = 1 if expected == tf.string else expected.size
    if n * itemsize > _MAX_TENSOR_BYTES:
        raise _invalid(f"input {name!r}: shape {dims} declares more than {_MAX_TENSOR_BYTES} bytes")
    if proto.tensor_content and len(proto.tensor_content) != n * itemsize:
        raise _invalid(f"input {name!r}: tensor_content holds {len(proto.tensor_content)} bytes, "
                       f"shape {dims} of {expected.name} needs {n * itemsize}")
    if expected == tf.string and len(proto.string_val) not in (n, 1) and n:
        raise _invalid(f"input {name!r}: {len(proto.string_val)} string values for shape {dims} "
                       f"({n} elements)")
    try:
        arr = tf.make_ndarray(proto)
    except Exception as err:  # noqa: BLE001
        raise _invalid(f"input {name!r}: cannot parse tensor: {_first_line(str(err))}") from None
    if arr.size != n:
        raise _invalid(f"input {name!r}: {arr.size} values for shape {dims} ({n} elements)")
    return arr


def check_input(name: str, arr: np.ndarray, info: SignatureInfo) -> None:
    """Rank and fixed dims of `arr` against the signature; ServingError INVALID_ARGUMENT if not."""
    shape = info.input_shapes[name]
    if shape is None:
        return
    if arr.ndim != len(shape):
        raise _invalid(f"input {name!r}: expected rank {len(shape)} (shape "
                       f"{[-1 if d is None else d for d in shape]}), got rank {arr.ndim} (shape {list(arr.shape)})")
    for axis, (want, got) in enumerate(zip(shape, arr.shape)):
        if want is not None and want != got:
            raise _invalid(f"input {name!r}: dimension {axis} must be {want}, got {got} "
                           f"(shape {list(arr.shape)})")


class PredictionCore:
    """Resolves model specs and runs validated predictions: what gRPC and REST share."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    def signature(self, lv: LoadedVersion, signature_name: str) -> SignatureInfo:
        key = signature_name or "serving_default"
        if key not in lv.signatures:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Serving signature key {key!r} not found in model {lv.name} version "
                               f"{lv.version}; available: {sorted(lv.signatures)}")
        return lv.signatures[key]

    def predict(self, lv: LoadedVersion, signature_name: str, inputs: Tensors,
                output_filter: list[str] | None = None) -> Tensors:
        """Validate `inputs` against the signature, run, and keep `output_filter` outputs."""
        info = self.signature(lv, signature_name)
        if not inputs:
            raise _invalid(f"request has no inputs; signature {info.name!r} expects {sorted(info.input_dtypes)}")
        extra = sorted(set(inputs) - set(info.input_dtypes))
        missing = sorted(set(info.input_dtypes) - set(inputs))
        if extra or missing:
            raise _invalid(f"request inputs do not match signature {info.name!r}: unknown inputs {extra}, "
                           f"missing inputs {missing}; expected {sorted(info.input_dtypes)}")
        wanted = list(output_filter or [])
        unknown = sorted(set(wanted) - set(info.output_dtypes))
        if unknown:
            raise _invalid(f"output_filter names unknown outputs {unknown}; signature {info.name!r} "
                           f"has {sorted(info.output_dtypes)}")
        if len(set(wanted)) != len(wanted):
            raise _invalid(f"output_filter repeats an output: {wanted}")
        for name, arr in inputs.items():
            if arr.dtype.kind not in "OSU" and info.input_dtypes[name] == tf.string:
                raise _invalid(f"input {name!r}: expected strings (DT_STRING), got {arr.dtype}")
            check_input(name, arr, info)
        batched = info.batchable and batch_size_of(inputs) is not None
        if info.batchable and not batched:
            raise _invalid("inputs disagree on the batch (first) dimension: "
                           + str({k: list(v.shape) for k, v in inputs.items()}))
        try:
            outputs = lv.run(info.name, inputs)
        except ServingError as err:
            if err.code == grpc.StatusCode.INVALID_ARGUMENT and batched:
                self._name_bad_item(lv, info.name, inputs, err)
            raise
        if wanted:
            outputs = {k: outputs[k] for k in wanted}
        return outputs

    @staticmethod
    def _name_bad_item(lv: LoadedVersion, signature: str, inputs: Tensors, err: ServingError) -> None:
        """Re-run a failed batch item by item and raise an error naming the first bad item."""
        n = batch_size_of(inputs) or 0
        if not 1 < n <= _MAX_BISECT_ITEMS:
            return
        for i in range(n):
            try:
                lv.run_direct(signature, {k: v[i:i + 1] for k, v in inputs.items()})
            except ServingError as item_err:
                raise _invalid(f"batch item {i} of {n} is invalid: {item_err.message}") from None


# ---------------------------------------------------------------------------------------------
# Model warmup
# ---------------------------------------------------------------------------------------------
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
                         f"{_first_line(err.message)}") from None
    return out


def request_inputs(info, request) -> dict:
    """The named input tensors of a PredictRequest as arrays of the signature's dtypes (INVALID_ARGUMENT
    for an alias the signature lacks or an unparsable tensor)."""
    inputs = {}
    for name, proto in request.inputs.items():
        if name not in info.input_dtypes:
            raise _invalid(f"input tensor alias not found in signature: {name!r}; signature "
                           f"{info.name!r} expects {sorted(info.input_dtypes)}")
        inputs[name] = tensor_proto_to_ndarray(name, proto, info.input_dtypes[name])
    return inputs


def run_warmup(lv: LoadedVersion) -> int:
    """Replay `lv.path/assets.extra/tf_serving_warmup_requests` through the Predict path.

    Returns the number of Predict requests replayed (0 when there is no warmup file). Raises
    ValueError / ServingError naming the file and record on the first problem (the caller fails the load).
    """
    path = os.path.join(lv.path, WARMUP_FILE)
    if not os.path.isfile(path):
        return 0
    core = PredictionCore(None)  # predict() on a given version does not use the manager
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
            info = core.signature(lv, request.model_spec.signature_name)
            core.predict(lv, info.name, request_inputs(info, request), list(request.output_filter))
        except ServingError as err:
            raise ServingError(err.code, f"{path}: record {i}: {err.message}") from None
        replayed += 1
    return replayed


# ---------------------------------------------------------------------------------------------
# gRPC servicers
# ---------------------------------------------------------------------------------------------
def _spec_version(spec) -> tuple[int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return int(spec.version.value), None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def _abort(context: grpc.ServicerContext, err: ServingError):
    context.abort(err.code, err.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService on a PredictionCore."""

    def __init__(self, core: PredictionCore) -> None:
        self.core = core

    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        try:
            version, label = _spec_version(request.model_spec)
            lv = self.core.manager.get(request.model_spec.name, version, label)
            info = self.core.signature(lv, request.model_spec.signature_name)
            outputs = self.core.predict(lv, info.name, request_inputs(info, request), list(request.output_filter))
            response = predict_pb2.PredictResponse()
            response.model_spec.name = lv.name
            response.model_spec.version.value = lv.version
            response.model_spec.signature_name = info.name
            for name, arr in outputs.items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(arr))
            return response
        except ServingError as err:
            _abort(context, err)
        except Exception as err:  # noqa: BLE001 - never crash the server
            log.exception("Predict failed")
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {_first_line(str(err))}")

    def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            fields = list(request.metadata_field)
            if not fields:
                raise _invalid("GetModelMetadataRequest must specify at least one metadata_field "
                               "(supported: 'signature_def')")
            bad = [f for f in fields if f != "signature_def"]
            if bad:
                raise _invalid(f"Metadata field {bad[0]!r} is not supported (supported: 'signature_def')")
            version, label = _spec_version(request.model_spec)
            lv = self.core.manager.get(request.model_spec.name, version, label)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = lv.name
            response.model_spec.version.value = lv.version
            packed = any_pb2.Any()
            packed.Pack(lv.signature_def_map())
            response.metadata["signature_def"].CopyFrom(packed)
            return response
        except ServingError as err:
            _abort(context, err)

    def _unimplemented(self, what: str, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      f"{what} is not implemented by this server; use Predict")

    def Classify(self, request, context):  # noqa: N802
        self._unimplemented("Classify", context)

    def Regress(self, request, context):  # noqa: N802
        self._unimplemented("Regress", context)

    def MultiInference(self, request, context):  # noqa: N802
        self._unimplemented("MultiInference", context)


def model_status(manager: ModelManager, name: str, version: int | None = None,
                 label: str | None = None) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatusResponse for all loaded (and failed) versions, or for one version."""
    if name != manager.config.model_name:
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name!r}")
    if label is not None:
        version = manager.get(name, None, label).version
    response = get_model_status_pb2.GetModelStatusResponse()
    loaded, failed = manager.versions(), manager.failed()
    states = {v: ("AVAILABLE", "") for v in loaded}
    states.update({v: ("END", e) for v, e in failed.items() if v not in loaded})
    if version is not None:
        if version not in states:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find version {version} of model {name!r}; "
                               f"loaded versions: {sorted(loaded)}")
        states = {version: states[version]}
    if not states:
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name!r}")
    for v in sorted(states, reverse=True):
        state, error = states[v]
        entry = response.model_version_status.add()
        entry.version = v
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
        if error:
            entry.status.error_code = 13  # INTERNAL (tensorflow.error.Code)
            entry.status.error_message = error
    return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: GetModelStatus (HandleReloadConfigRequest UNIMPLEMENTED)."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            version, label = _spec_version(request.model_spec)
            return model_status(self.manager, request.model_spec.name, version, label)
        except ServingError as err:
            _abort(context, err)


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------
class ModelServer:
    """gRPC + REST server for one model. `start()` loads versions and binds; `stop()` shuts down.

    After `start()`, `port` / `rest_port` hold the bound ports (useful with 0 = any free port).
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.manager = ModelManager(config)
        self.core = PredictionCore(self.manager)
        self.port: int | None = None
        self.rest_port: int | None = None
        self._grpc: grpc.Server | None = None
        self._rest = None
        self._stopped = threading.Event()

    def start(self) -> "ModelServer":
        self.manager.start()
        options = [("grpc.max_send_message_length", self.config.max_message_bytes),
                   ("grpc.max_receive_message_length", self.config.max_message_bytes),
                   ("grpc.so_reuseport", 0)]
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.config.grpc_max_workers, thread_name_prefix="grpc"),
            options=options, maximum_concurrent_rpcs=self.config.max_concurrent_rpcs)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.core), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.manager), self._grpc)
        address = f"{self.config.host}:{self.config.port}"
        if ":" in self.config.host and not self.config.host.startswith("["):
            address = f"[{self.config.host}]:{self.config.port}"
        try:
            self.port = self._grpc.add_insecure_port(address)
        except RuntimeError as err:
            self.manager.stop()
            raise OSError(f"cannot bind gRPC to {address}: {err}") from None
        if not self.port:
            self.manager.stop()
            raise OSError(f"cannot bind gRPC to {address} (port in use?)")
        self._grpc.start()
        log.info("gRPC PredictionService/ModelService on %s:%d", self.config.host, self.port)
        if self.config.rest_port >= 0:
            from seg4reg_tf.serving.rest import RestServer

            try:
                self._rest = RestServer(self.core, self.manager, self.config.host, self.config.rest_port,
                                        max_body_bytes=self.config.max_message_bytes)
            except OSError:
                self._grpc.stop(0)
                self.manager.stop()
                raise
            self.rest_port = self._rest.port
            self._rest.start()
            log.info("REST API on http://%s:%d/v1/models/%s", self.config.host, self.rest_port,
                     self.config.model_name)
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting requests, finish in-flight ones (up to `grace` s), unload models."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._rest is not None:
            self._rest.stop()
        if self._grpc is not None:
            self._grpc.stop(grace).wait(grace + 1)
        self.manager.stop()
        log.info("server stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until `stop()` has been called (True) or `timeout` passes (False)."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(grace=1.0)
