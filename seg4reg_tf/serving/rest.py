"""TF Serving's REST API (`RestApi`, the request handler) served by `RestServer` (the asyncio `HttpServer`).

- `GET  /v1/models/NAME[/versions/N | /labels/L]`           -> `{"model_version_status": [...]}`
- `GET  /v1/models/NAME[/versions/N | /labels/L]/metadata`  -> `{"model_spec": ..., "metadata": {"signature_def": ...}}`
- `POST /v1/models/NAME[/versions/N | /labels/L]:predict`
  row format `{"signature_name": "...", "instances": [...]}` -> `{"predictions": [...]}`,
  columnar `{"inputs": {...}}` -> `{"outputs": {...}}`; binary values as `{"b64": "..."}` (`rest_json`).
- `POST ...:classify | :regress` -> 400 with TF Serving's message (every signature here is a predict one).
- `GET  <prometheus_path>` (when the monitoring config enables it) -> the metrics in Prometheus' text format.
Errors: `{"error": "..."}` with HTTP 400 (bad request, JSON nested too deeply), 404 (unknown
model/version/signature/path), 405 (method), 504 (not answered within `timeout_ms`); the HTTP layer's own
400/408/411/413/431/503 are in `http_server`. 5xx only for the server's own faults. Responses are strict
JSON (never NaN or Infinity).
"""
from __future__ import annotations

import json
import logging
import re
import time
from http import HTTPStatus
from typing import Any, Callable

import grpc
from google.protobuf import json_format

from seg4reg_tf.serving.core import PredictionCore
from seg4reg_tf.serving.errors import ServingError, invalid_argument
from seg4reg_tf.serving.http_server import HttpRequest, HttpResponse, HttpServer, json_error
from seg4reg_tf.serving.metrics import ServingMetrics
from seg4reg_tf.serving.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from seg4reg_tf.serving.rest_json import format_predict_response, parse_predict_body
from seg4reg_tf.serving.status import Resolve, StatusFn

log = logging.getLogger("seg4reg_tf.serving")

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                   r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<rest>/metadata|:predict|:classify|:regress)?/?$")

_HTTP_BY_GRPC = {
    grpc.StatusCode.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.FAILED_PRECONDITION: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.OUT_OF_RANGE: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    grpc.StatusCode.UNIMPLEMENTED: HTTPStatus.NOT_IMPLEMENTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: HTTPStatus.TOO_MANY_REQUESTS,
    grpc.StatusCode.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: HTTPStatus.GATEWAY_TIMEOUT,
}
_API = {":predict": "Predict", ":classify": "Classify", ":regress": "Regress"}


def _json(status: int, payload: Any) -> HttpResponse:
    try:
        return HttpResponse(status, json.dumps(payload, allow_nan=False).encode("utf-8"))
    except ValueError:  # a non-finite float slipped through: never send NaN / Infinity
        log.error("REST: refused to send a response holding NaN or Infinity")
        return json_error(500, "internal error: non-finite value in the response", close=False)


class RestApi:
    """Answers one complete HTTP request (called in an `HttpServer` worker thread)."""

    def __init__(self, core: PredictionCore, resolve: Resolve, status: StatusFn,
                 metrics: ServingMetrics | None = None, prometheus_path: str = "", timeout_ms: int = 30_000) -> None:
        self.core, self.resolve, self.status = core, resolve, status
        self.metrics = metrics or ServingMetrics()
        self.prometheus_path = prometheus_path
        self.timeout_s = timeout_ms / 1000.0

    def __call__(self, request: HttpRequest, gone: Callable[[], bool]) -> HttpResponse:
        try:
            return self._answer(request, gone)
        except ServingError as err:
            return json_error(_HTTP_BY_GRPC.get(err.code, HTTPStatus.INTERNAL_SERVER_ERROR), err.message, close=False)
        except RecursionError:
            return json_error(400, "request JSON is nested too deeply", close=False)
        except Exception as err:  # noqa: BLE001 - never crash the server
            log.exception("REST request failed")
            return json_error(500, f"internal error: {err}", close=False)

    def _answer(self, request: HttpRequest, gone: Callable[[], bool]) -> HttpResponse:
        path = request.path
        if self.prometheus_path and path == self.prometheus_path:
            if request.method not in ("GET", "HEAD"):
                return json_error(405, f"{request.method} is not supported on {path}; use GET", close=False)
            return HttpResponse(200, self.metrics.render().encode("utf-8"), PROMETHEUS_CONTENT_TYPE)
        m = _PATH.match(path)
        if not m:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {request.method} {request.target[:200]} "
                                                          "(expected /v1/models/NAME...)")
        name, label, rest = m["name"], m["label"], m["rest"] or ""
        version = m["version"]
        if version is not None:
            if not version.isdigit():
                raise invalid_argument(f"version must be a non-negative integer, got {version!r}")
            version = int(version)
        if request.method in ("GET", "HEAD"):
            return self._get(name, version, label, rest, path)
        if request.method != "POST":
            return json_error(405, f"{request.method} is not supported; use GET or POST", close=False)
        if rest not in _API:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"POST is not supported on {path}")
        with self.metrics.observe(name, _API[rest], "REST") as record:
            return self._post(request, gone, name, version, label, rest, record)

    def _get(self, name: str, version: int | None, label: str | None, rest: str, path: str) -> HttpResponse:
        if rest == "":
            return _json(200, json_format.MessageToDict(self.status(name, version, label),
                                                        always_print_fields_with_no_presence=True,
                                                        preserving_proto_field_name=True))
        if rest == "/metadata":
            lv = self.resolve(name, version, label)
            return _json(200, {
                "model_spec": {"name": lv.name, "signature_name": "", "version": str(lv.version)},
                "metadata": {"signature_def": json_format.MessageToDict(
                    lv.signature_def_map(), preserving_proto_field_name=True)},
            })
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"GET is not supported on {path}; use POST")

    def _post(self, request: HttpRequest, gone: Callable[[], bool], name: str, version: int | None,
              label: str | None, rest: str, record) -> HttpResponse:
        deadline = request.received + self.timeout_s
        if time.monotonic() > deadline:
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               f"request not started within the REST timeout of {self.timeout_s * 1000:g} ms "
                               "(every REST worker was busy); retry")
        body = _parse_json(request.body)
        lv = self.resolve(name, version, label)
        record.version = lv.version
        signature = body.get("signature_name", "") if isinstance(body, dict) else ""
        if not isinstance(signature, str):
            raise invalid_argument("\"signature_name\" must be a string")
        if rest != ":predict":  # every signature here is a predict one: TF Serving's 400
            record.signature_name = signature or "serving_default"
            self.core.refuse_method(lv, signature, rest[1:])
        info = self.core.signature(lv, signature)
        record.signature_name = info.name
        try:
            inputs, row_format = parse_predict_body(body, info.input_dtypes)
        except RecursionError:
            raise invalid_argument("request JSON is nested too deeply") from None
        try:
            outputs = self.core.predict(lv, info.name, inputs,
                                        cancelled=lambda: gone() or time.monotonic() > deadline)
        except ServingError as err:
            if err.code == grpc.StatusCode.CANCELLED and not gone():
                raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                   f"request not answered within the REST timeout of {self.timeout_s * 1000:g} ms "
                                   "(--rest_api_timeout_in_ms); the remaining work was dropped") from None
            raise
        return _json(200, format_predict_response(outputs, row_format, lv.options.nan_outputs))


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise invalid_argument("request JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise invalid_argument(f"JSON parse error: {err}") from None


class RestServer:
    """The REST API on (host, port) in a background thread; `port` is the bound port."""

    def __init__(self, api: RestApi, host: str, port: int, *, max_body_bytes: int = 256 << 20,
                 header_timeout_s: float = 5.0, body_timeout_s: float = 10.0, max_connections: int = 1024,
                 workers: int = 32) -> None:
        self._http = HttpServer(api, host, port, max_body_bytes=max_body_bytes, header_timeout_s=header_timeout_s,
                                body_timeout_s=body_timeout_s, max_connections=max_connections, workers=workers)
        self.port = self._http.port

    def start(self) -> None:
        self._http.start()

    def stop(self, grace: float = 2.0) -> None:
        self._http.stop(grace)
