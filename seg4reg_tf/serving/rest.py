"""TF Serving's REST API on a `PredictionCore` (http.server, one thread per request, bounded).

- `GET  /v1/models/NAME[/versions/N | /labels/L]`           -> `{"model_version_status": [...]}`
- `GET  /v1/models/NAME[/versions/N | /labels/L]/metadata`  -> `{"model_spec": ..., "metadata": {"signature_def": ...}}`
- `POST /v1/models/NAME[/versions/N | /labels/L]:predict`
  row format `{"signature_name": "...", "instances": [...]}` -> `{"predictions": [...]}`,
  columnar `{"inputs": {...}}` -> `{"outputs": {...}}`; binary values as `{"b64": "..."}` (string
  outputs whose name ends in `_bytes` come back that way too).
Errors: `{"error": "..."}` with HTTP 400 (bad request, JSON nested too deeply), 404 (unknown
model/version/signature/path), 408 (body not received within `body_timeout_s`), 411/400 (missing or
bad Content-Length), 413 (body over `max_body_bytes`); 5xx only for the server's own faults.
Slow clients: a connection that has not sent its request line and headers within `header_timeout_s`
(also the keep-alive idle limit) is closed; connections (`max_connections`) and requests being
worked on (`max_threads`) are counted apart, so idle or slow connections never take the slots that
complete requests need. Responses are strict JSON (never NaN or Infinity).
"""
from __future__ import annotations

import base64
import json
import logging
import re
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format

from seg4reg_tf.serving.core import PredictionCore
from seg4reg_tf.serving.errors import ServingError
from seg4reg_tf.serving.manager import ModelManager
from seg4reg_tf.serving.status import model_status
from seg4reg_tf.serving.tensors import np_dtype

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


def _bad(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, msg)


class _HttpError(Exception):
    """A client mistake with its own HTTP status (408, 411, 413)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------------------------------------
# JSON <-> numpy
# ---------------------------------------------------------------------------------------------
def _decode_strings(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise _bad(f"{where}: binary values must be {{\"b64\": \"<base64>\"}}, got keys {sorted(value)}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError) as err:
            raise _bad(f"{where}: invalid base64: {err}") from None
    if isinstance(value, list):
        return [_decode_strings(v, where) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    raise _bad(f"{where}: expected a string or {{\"b64\": ...}}, got {type(value).__name__}")


def json_to_array(value: Any, dtype: tf.DType, where: str) -> np.ndarray:
    """A JSON value (nested lists) as an ndarray of the signature dtype; 400 when impossible."""
    try:
        if dtype == tf.string:
            decoded = _decode_strings(value, where)
            arr = np.empty(np.shape(decoded) if isinstance(decoded, list) else (), dtype=object)
            if isinstance(decoded, list):
                flat = np.array(decoded, dtype=object)
                if flat.shape != arr.shape:
                    raise ValueError("ragged nested lists")
                arr[...] = flat
            else:
                arr[()] = decoded
            return arr
        if _contains(value, (str, dict)):
            raise ValueError(f"expected numbers for {dtype.name}")
        return np.array(value, dtype=np_dtype(dtype))
    except ServingError:
        raise
    except (ValueError, TypeError, OverflowError) as err:
        raise _bad(f"{where}: cannot convert to a {dtype.name} tensor: {err}") from None


def _contains(value: Any, types: tuple) -> bool:
    if isinstance(value, list):
        return any(_contains(v, types) for v in value)
    return isinstance(value, types)


def array_to_json(name: str, arr: np.ndarray) -> Any:
    """ndarray -> JSON value; string outputs named `*_bytes` as {"b64"}, others as UTF-8 text."""
    if arr.dtype == object or arr.dtype.kind == "S":
        as_b64 = name.endswith("_bytes")

        def conv(x):
            x = x if isinstance(x, bytes) else bytes(x)
            if as_b64:
                return {"b64": base64.b64encode(x).decode("ascii")}
            return x.decode("utf-8", errors="replace")

        return np.vectorize(conv, otypes=[object])(arr).tolist() if arr.size else arr.tolist()
    return arr.tolist()


def _is_named(value: Any) -> bool:
    return isinstance(value, dict) and set(value) != {"b64"}


def parse_predict_body(body: Any, input_dtypes: dict[str, tf.DType]) -> tuple[dict[str, np.ndarray], bool]:
    """Row (`instances`) or columnar (`inputs`) JSON -> ({name: ndarray}, row_format)."""
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object with \"instances\" or \"inputs\"")
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise _bad("request must contain exactly one of \"instances\" (row format) or \"inputs\" (columnar)")
    names = sorted(input_dtypes)
    if has_rows:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise _bad("\"instances\" must be a non-empty list")
        if all(_is_named(r) for r in rows):
            keys = set(rows[0])
            for i, r in enumerate(rows):
                if set(r) != keys:
                    raise _bad(f"instance {i} has inputs {sorted(r)}, instance 0 has {sorted(keys)}")
            columns = {k: [r[k] for r in rows] for k in keys}
        elif any(_is_named(r) for r in rows):
            raise _bad("\"instances\" mixes named (object) and unnamed values")
        else:
            if len(names) != 1:
                raise _bad(f"unnamed instances need a single-input signature; inputs are {names}")
            columns = {names[0]: rows}
    else:
        cols = body["inputs"]
        if _is_named(cols):
            columns = dict(cols)
        else:
            if len(names) != 1:
                raise _bad(f"unnamed \"inputs\" need a single-input signature; inputs are {names}")
            columns = {names[0]: cols}
    unknown = sorted(set(columns) - set(input_dtypes))
    if unknown:
        raise _bad(f"unknown inputs {unknown}; signature expects {names}")
    return {k: json_to_array(v, input_dtypes[k], f"input {k!r}") for k, v in columns.items()}, has_rows


def format_predict_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    if not row_format:
        if len(outputs) == 1:
            (name, arr), = outputs.items()
            return {"outputs": array_to_json(name, arr)}
        return {"outputs": {k: array_to_json(k, v) for k, v in outputs.items()}}
    sizes = {v.shape[0] if v.ndim else None for v in outputs.values()}
    if len(sizes) != 1 or None in sizes:
        raise _bad("row format needs every output to share the batch dimension; use columnar \"inputs\"")
    if len(outputs) == 1:
        (name, arr), = outputs.items()
        return {"predictions": array_to_json(name, arr)}
    n = sizes.pop()
    as_json = {k: array_to_json(k, v) for k, v in outputs.items()}
    return {"predictions": [{k: as_json[k][i] for k in outputs} for i in range(n)]}


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    server_version = "seg4reg-serving"
    protocol_version = "HTTP/1.1"

    # set on the subclass made by RestServer
    core: PredictionCore
    manager: ModelManager
    max_body_bytes: int
    body_timeout_s: float
    work_slots: threading.BoundedSemaphore

    def log_message(self, fmt: str, *args) -> None:  # quiet; errors are logged below
        log.debug("rest %s - " + fmt, self.address_string(), *args)

    def _send(self, status: int, payload: dict) -> None:
        try:
            data = json.dumps(payload, allow_nan=False).encode("utf-8")
        except ValueError:  # a non-finite float slipped through: never send NaN / Infinity
            status, data = 500, b'{"error": "internal error: non-finite value in the response"}'
            log.error("REST: refused to send a response holding NaN or Infinity")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, err: ServingError) -> None:
        self._send(_HTTP_BY_GRPC.get(err.code, HTTPStatus.INTERNAL_SERVER_ERROR), {"error": err.message})

    def _route(self):
        m = _PATH.match(self.path.split("?", 1)[0])
        if not m:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Malformed request: {self.command} {self.path} (expected /v1/models/NAME...)")
        version = m["version"]
        if version is not None:
            if not version.isdigit():
                raise _bad(f"version must be a non-negative integer, got {version!r}")
            version = int(version)
        return m["name"], version, m["label"], m["rest"] or ""

    def do_GET(self) -> None:  # noqa: N802
        self._handle(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._handle(self._post)

    def _handle(self, fn) -> None:
        try:
            fn()
        except ServingError as err:
            self._error(err)
        except _HttpError as err:
            self.close_connection = True
            self._send(err.status, {"error": err.message})
        except RecursionError:
            self.close_connection = True
            self._send(400, {"error": "request JSON is nested too deeply"})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as err:  # noqa: BLE001 - never crash the server
            log.exception("REST request failed")
            self._error(ServingError(grpc.StatusCode.INTERNAL, f"internal error: {err}"))

    def _get(self) -> None:
        name, version, label, rest = self._route()
        if rest == "":
            status = model_status(self.manager, name, version, label)
            self._send(200, json_format.MessageToDict(
                status, always_print_fields_with_no_presence=True, preserving_proto_field_name=True))
        elif rest == "/metadata":
            lv = self.manager.get(name, version, label)
            self._send(200, {
                "model_spec": {"name": lv.name, "signature_name": "", "version": str(lv.version)},
                "metadata": {"signature_def": json_format.MessageToDict(
                    lv.signature_def_map(), preserving_proto_field_name=True)},
            })
        else:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"GET is not supported on {self.path}; use POST")

    def _read_json(self) -> Any:
        length = self.headers.get("Content-Length")
        if length is None:
            raise _HttpError(411, "a Content-Length header is required")
        if not length.strip().isdigit():
            raise _HttpError(400, "invalid Content-Length header (expected a number of bytes)")
        n = int(length)
        if n > self.max_body_bytes:
            raise _HttpError(413, f"request body of {n} bytes exceeds the limit of {self.max_body_bytes}")
        self.connection.settimeout(self.body_timeout_s)
        chunks, got = [], 0
        try:
            while got < n:
                chunk = self.rfile.read1(min(n - got, 1 << 20))
                if not chunk:
                    raise _HttpError(400, f"request body ended after {got} of {n} bytes (Content-Length)")
                chunks.append(chunk)
                got += len(chunk)
        except (TimeoutError, socket.timeout):
            raise _HttpError(408, f"request body not received: {got} of {n} bytes (Content-Length) "
                                  f"arrived, then nothing for {self.body_timeout_s:g} s") from None
        finally:
            self.connection.settimeout(self.timeout)
        try:
            return json.loads(b"".join(chunks))
        except RecursionError:
            raise _bad("request JSON is nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as err:
            raise _bad(f"JSON parse error: {err}") from None

    def _post(self) -> None:
        name, version, label, rest = self._route()
        body = self._read_json()
        if rest not in (":predict", ":classify", ":regress"):
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"POST is not supported on {self.path}")
        lv = self.manager.get(name, version, label)
        signature = body.get("signature_name", "") if isinstance(body, dict) else ""
        if not isinstance(signature, str):
            raise _bad("\"signature_name\" must be a string")
        if rest != ":predict":  # every signature here is a predict one: TF Serving's 400
            self.core.refuse_method(lv, signature, rest[1:])
        info = self.core.signature(lv, signature)
        inputs, row_format = parse_predict_body(body, info.input_dtypes)
        if not self.work_slots.acquire(timeout=30.0):
            raise ServingError(grpc.StatusCode.UNAVAILABLE, "server busy: every REST worker is computing; retry")
        try:
            outputs = self.core.predict(lv, info.name, inputs)
        finally:
            self.work_slots.release()
        self._send(200, format_predict_response(outputs, row_format))


class _BoundedServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, handler, max_threads: int) -> None:
        self._slots = threading.BoundedSemaphore(max_threads)
        super().__init__(address, handler)

    def handle_error(self, request, client_address):
        """One log line, no traceback: clients that disconnect or time out are not the server's fault."""
        import sys

        err = sys.exc_info()[1]
        if isinstance(err, (ConnectionError, TimeoutError, socket.timeout)):
            log.debug("REST client %s: %s", client_address[0], type(err).__name__)
        else:
            log.warning("REST connection from %s failed: %s: %s", client_address[0], type(err).__name__, err)

    def process_request(self, request, client_address):
        if not self._slots.acquire(timeout=5.0):
            try:
                body = b'{"error": "server overloaded, retry later"}'
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
            finally:
                self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class RestServer:
    """Serves the REST API in a background thread; `port` is the bound port."""

    def __init__(self, core: PredictionCore, manager: ModelManager, host: str, port: int,
                 max_body_bytes: int = 256 << 20, max_threads: int = 32, max_connections: int = 256,
                 header_timeout_s: float = 5.0, body_timeout_s: float = 10.0) -> None:
        """`max_threads` requests computing at once; `max_connections` open connections (each waits
        at most `header_timeout_s` for its request line and headers, `body_timeout_s` per body read)."""
        handler = type("Handler", (_Handler,), {"core": core, "manager": manager,
                                                "max_body_bytes": max_body_bytes, "timeout": header_timeout_s,
                                                "body_timeout_s": body_timeout_s,
                                                "work_slots": threading.BoundedSemaphore(max_threads)})
        server_cls = _BoundedServer
        if ":" in host:  # IPv6 literal
            server_cls = type("_BoundedServer6", (_BoundedServer,), {"address_family": socket.AF_INET6})
        self._httpd = server_cls((host.strip("[]"), port), handler, max_connections)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="rest", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
