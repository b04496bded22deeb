"""`ModelServer`: wires the version manager, the prediction core and the gRPC and REST front ends.

Serves any SavedModel with signatures from a TF Serving layout `BASE_PATH/<version>/saved_model.pb`:
- `tensorflow.serving.PredictionService`: Predict (model_spec name / version / version_label /
  signature_name, output_filter), GetModelMetadata (`signature_def`); Classify, Regress and
  MultiInference answer UNIMPLEMENTED (`grpc_api`).
- `tensorflow.serving.ModelService`: GetModelStatus (`grpc_api`, `status`); TF Serving's REST API (`rest`).
The newest numeric version answers unless a version (or label) is asked for; BASE_PATH is polled and
complete new version directories are loaded, removed ones unloaded, while serving (`manager`).

Model warmup (as TF Serving's `--enable_model_warmup`; off with `ServerConfig.enable_warmup=False`):
before a version is served, the PredictLog records of its `assets.extra/tf_serving_warmup_requests`
(at most 1000) are replayed through the same validation + batching path as client Predict calls
(`warmup`). As in TF Serving, an unreadable warmup file, more than 1000 records or a failing warmup
request fails the load of that version: it is logged, reported by GetModelStatus as END with the error,
never served, and retried once its files change; the server and other versions keep serving.

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
from seg4reg_tf.serving.rest import RestServer

__all__ = ["MAX_MESSAGE_BYTES", "ModelServer", "ServerConfig"]

log = logging.getLogger("seg4reg_tf.serving")


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
        self._rest: RestServer | None = None
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
            try:
                self._rest = RestServer(self.core, self.manager, self.config.host, self.config.rest_port,
                                        max_body_bytes=self.config.max_message_bytes,
                                        header_timeout_s=self.config.rest_header_timeout_s,
                                        body_timeout_s=self.config.rest_body_timeout_s)
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
