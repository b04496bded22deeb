"""`ModelServer`: wires the version manager, the prediction core, the metrics and the gRPC and REST front ends.

Serves any SavedModel with signatures from TF Serving layouts `BASE_PATH/<version>/saved_model.pb`, one
model (`ServerConfig.model_base_path`) or several (`ServerConfig.models`, TF Serving's model config file):
- `tensorflow.serving.PredictionService`: Predict (model_spec name / version / version_label /
  signature_name, output_filter), GetModelMetadata (`signature_def`); Classify and Regress answer as TF
  Serving does on a predict signature, MultiInference is UNIMPLEMENTED (`grpc_api`).
- `tensorflow.serving.ModelService`: GetModelStatus (`grpc_api`, `status`); TF Serving's REST API (`rest`),
  and the Prometheus metrics page on the REST port when `ServerConfig.prometheus_path` is set (`metrics`).
Each model's version policy (default: the newest version only, as TF Serving) picks the versions served;
base paths are polled, new versions loaded and warmed up (state LOADING), then AVAILABLE, and versions no
longer wanted unloaded once a wanted one is AVAILABLE (`model_versions`). The newest AVAILABLE version
answers unless a version (or label) is asked for.

Model warmup (as TF Serving's `--enable_model_warmup`; off with `ServerConfig.enable_warmup=False`):
before a version is AVAILABLE, the PredictLog records of its `assets.extra/tf_serving_warmup_requests`
(at most 1000) are replayed through the same validation + batching path as client Predict calls
(`warmup`). As in TF Serving, an unreadable warmup file, more than 1000 records or a failing warmup
request fails the load of that version: it is logged, reported by GetModelStatus as END with the error,
never served, and retried once its files change; the server and other versions keep serving.

Start-up order: `seg4reg serve` starts as TF Serving does (`start(load_first=True)`): every model of the
initial config is loaded and warmed up first, and the ports open once each has a version AVAILABLE; a model
without one (no version directory, or every version failed to load) ends the start with `ModelLoadError`
naming it and why. Later versions still go START / LOADING -> AVAILABLE while the server runs (what the
readiness probe checks). Without `load_first` the ports open first and `start()` waits for the first scan of
the base paths (`wait_for_models=False` returns at once).

Clients must raise gRPC's 4 MiB default message limits: the server accepts and sends messages up to
`ServerConfig.max_message_bytes` (256 MiB), e.g. `grpc.insecure_channel(target, options=[
("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)])`.

`ServerConfig` lives in `serving.config`; it is re-exported here (`from seg4reg_tf.serving.server
import ModelServer, ServerConfig`).
"""
from __future__ import annotations

import logging
import threading
from concurrent import futures

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from seg4reg_tf.serving.config import MAX_MESSAGE_BYTES, ServerConfig
from seg4reg_tf.serving.core import PredictionCore
from seg4reg_tf.serving.grpc_api import ModelServicer, PredictionServicer
from seg4reg_tf.serving.manager import ModelManager
from seg4reg_tf.serving.metrics import ServingMetrics
from seg4reg_tf.serving.rest import RestApi, RestServer
from seg4reg_tf.serving.status import model_status

__all__ = ["MAX_MESSAGE_BYTES", "ModelLoadError", "ModelServer", "ServerConfig"]

log = logging.getLogger("seg4reg_tf.serving")


class ModelLoadError(RuntimeError):
    """A model of the initial config has no version AVAILABLE after the first load; the message names each
    such model, its base path and why (the versions' load errors, or no version found)."""


class ModelServer:
    """gRPC + REST server for the configured models. `start()` binds and loads; `stop()` shuts down.

    After `start()`, `port` / `rest_port` hold the bound ports (useful with 0 = any free port).
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = ServingMetrics(m.name for m in config.served_models)
        self.core = PredictionCore(config.limits, config.max_batch_size)
        self.manager = ModelManager(config, metrics=self.metrics, predict=self.core.predict)
        self.metrics.watch_versions(self.manager.all_states)
        self.port: int | None = None
        self.rest_port: int | None = None
        self._grpc: grpc.Server | None = None
        self._rest: RestServer | None = None
        self._stopped = threading.Event()

    def _status(self, name: str, version: int | None = None, label: str | None = None):
        return model_status(self.manager.states, self.manager.label_version, name, version, label)

    def start(self, wait_for_models: bool = True, load_first: bool = False) -> "ModelServer":
        """Bind gRPC and REST, then start loading; `wait_for_models`: return after the first scan.
        `load_first` (TF Serving's order): load and warm up every model first, bind after; ModelLoadError
        (nothing bound, polling stopped) when a model has no version AVAILABLE."""
        if load_first:
            self.manager.start(wait=True)
            missing = self._not_available()
            if missing:
                self.manager.stop()
                raise ModelLoadError("; ".join(missing))
        try:
            self._bind()
        except OSError:
            if load_first:
                self.manager.stop()  # nothing left running behind a start that failed
            raise
        if not load_first:
            self.manager.start(wait=wait_for_models)
        return self

    def _bind(self) -> None:
        """Bind and start gRPC and REST (OSError naming the address that cannot be bound)."""
        options = [("grpc.max_send_message_length", self.config.max_message_bytes),
                   ("grpc.max_receive_message_length", self.config.max_message_bytes),
                   ("grpc.so_reuseport", 0)]
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.config.grpc_max_workers, thread_name_prefix="grpc"),
            options=options, maximum_concurrent_rpcs=self.config.max_concurrent_rpcs)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.core, self.manager.resolve, self.metrics), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self._status), self._grpc)
        address = f"{self.config.host}:{self.config.port}"
        if ":" in self.config.host and not self.config.host.startswith("["):
            address = f"[{self.config.host}]:{self.config.port}"
        try:
            self.port = self._grpc.add_insecure_port(address)
        except RuntimeError as err:
            raise OSError(f"cannot bind gRPC to {address}: {err}") from None
        if not self.port:
            raise OSError(f"cannot bind gRPC to {address} (port in use?)")
        if self.config.rest_port >= 0:
            cfg = self.config
            api = RestApi(self.core, self.manager.resolve, self._status, self.metrics,
                          prometheus_path=cfg.prometheus_path, timeout_ms=cfg.rest_api_timeout_ms)
            try:
                self._rest = RestServer(api, cfg.host, cfg.rest_port, max_body_bytes=cfg.max_message_bytes,
                                        header_timeout_s=cfg.rest_header_timeout_s,
                                        body_timeout_s=cfg.rest_body_timeout_s,
                                        max_connections=cfg.rest_max_connections, workers=cfg.rest_threads)
            except OSError as err:
                self._grpc.stop(0)
                raise OSError(f"cannot bind REST to {cfg.host}:{cfg.rest_port}: {err}") from None
            self.rest_port = self._rest.port
        self._grpc.start()
        log.info("gRPC PredictionService/ModelService on %s:%d", self.config.host, self.port)
        if self._rest is not None:
            self._rest.start()
            names = ", ".join(m.name for m in self.config.served_models)
            log.info("REST API on http://%s:%d/v1/models/{%s}", self.config.host, self.rest_port, names)
            if self.config.prometheus_path:
                log.info("Prometheus metrics on http://%s:%d%s", self.config.host, self.rest_port,
                         self.config.prometheus_path)

    def _not_available(self) -> list[str]:
        """Why each model without an AVAILABLE version has none (empty: every model is served)."""
        missing = []
        for model in self.config.served_models:
            if self.manager.versions(model.name):
                continue
            failed = self.manager.failed(model.name)
            why = ("; ".join(f"version {v} failed to load: {err}" for v, err in sorted(failed.items())) if failed
                   else "no version directory (a number holding saved_model.pb) the version policy picks")
            missing.append(f"model {model.name!r} (base path {model.base_path}) has no version AVAILABLE: {why}")
        return missing

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting requests, finish in-flight ones (up to `grace` s), unload models."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._rest is not None:
            self._rest.stop(grace)
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
