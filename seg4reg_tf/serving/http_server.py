"""`HttpServer`: HTTP/1.1 on asyncio for the REST front end. Reading a request never holds a thread.

Every connection is a coroutine on one event-loop thread; only complete requests reach the `handler`,
which runs in a pool of `workers` threads. Deadlines (seconds):
- request line + headers: in full within `header_timeout_s` of the connection being ready for a request
  (a total deadline, however regularly bytes trickle in; also the keep-alive idle limit). A partial
  request then gets 408 and is closed; an idle connection is closed silently.
- body: never silent for `body_timeout_s`, and in full within `body_timeout_s + length / MIN_BODY_RATE`
  (408 otherwise); no Content-Length on a POST -> 411, over `max_body_bytes` -> 413, bad head -> 400 / 431.
- response: written within `WRITE_TIMEOUT_S + length / MIN_BODY_RATE`, else the connection is dropped.
At `max_connections` open connections, a new one evicts the oldest connection that has no complete
request (idle or still sending); when every connection is being answered, the new one gets 503.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Callable

log = logging.getLogger("seg4reg_tf.serving")

MIN_BODY_RATE = 256 * 1024  # bytes/s a body (or response) must average after its fixed allowance
MAX_HEAD_BYTES = 64 * 1024  # request line + headers
MAX_HEADERS = 100
WRITE_TIMEOUT_S = 30.0


@dataclasses.dataclass
class HttpRequest:
    """A complete request. `headers` have lower-case names; `received` is `time.monotonic()` at completion."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    client: str = ""
    received: float = 0.0
    version: str = "HTTP/1.1"

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclasses.dataclass
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    close: bool = False


# handler(request, gone) -> response, in a worker thread; gone() is True once the client has disconnected
Handler = Callable[[HttpRequest, Callable[[], bool]], HttpResponse]


class _Reject(Exception):
    """Answer `status` with a JSON error and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclasses.dataclass(eq=False)
class _Conn:
    writer: asyncio.StreamWriter
    task: asyncio.Task | None
    waiting: bool = True  # no complete request yet (evictable)
    buf: bytearray = dataclasses.field(default_factory=bytearray)


def json_error(status: int, message: str, close: bool = True) -> HttpResponse:
    return HttpResponse(status, json.dumps({"error": message}).encode("utf-8"), close=close)


class HttpServer:
    """Serves `handler` on (host, port) from a background thread; `port` is the bound port."""

    def __init__(self, handler: Handler, host: str, port: int, *, max_body_bytes: int = 256 << 20,
                 header_timeout_s: float = 5.0, body_timeout_s: float = 10.0, max_connections: int = 1024,
                 workers: int = 32) -> None:
        self._handler = handler
        self.max_body_bytes, self.max_connections = max_body_bytes, _fd_budget(max_connections)
        self.header_timeout_s, self.body_timeout_s = header_timeout_s, body_timeout_s
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host.strip("[]"), port), family=family, backlog=1024)
        self.port = self._sock.getsockname()[1]
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="rest")
        self._loop = asyncio.new_event_loop()
        self._conns: dict[int, _Conn] = {}  # insertion order = age
        self._closing = False
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._run, name="rest-loop", daemon=True)
        self.evicted = 0  # connections closed to make room for new ones

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        ready = threading.Event()
        self._loop.call_soon(ready.set)
        self._thread.start()
        ready.wait(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, sock=self._sock, backlog=1024))
        self._loop.run_forever()

    def stop(self, grace: float = 2.0) -> None:
        """Stop accepting, close idle connections, let requests being answered finish (up to `grace` s)."""
        if not self._thread.is_alive():
            self._sock.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(grace), self._loop).result(grace + 10)
        except Exception:  # noqa: BLE001 - stopping must not raise
            log.exception("REST shutdown")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if not self._thread.is_alive():
            self._loop.close()

    async def _shutdown(self, grace: float) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns.values()):
            if conn.waiting:
                conn.writer.transport.abort()
        end = time.monotonic() + grace
        while any(not c.waiting for c in self._conns.values()) and time.monotonic() < end:
            await asyncio.sleep(0.05)
        tasks = [c.task for c in self._conns.values() if c.task is not None]
        for conn in list(self._conns.values()):
            conn.writer.transport.abort()
            if conn.task is not None:
                conn.task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    # -- one connection -------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer, asyncio.current_task())
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        try:
            if self._closing or (len(self._conns) >= self.max_connections and not self._evict()):
                await self._write(conn, json_error(503, "server overloaded: every connection is being answered; "
                                                        "retry later"), keep=False)
                return
            self._conns[id(conn)] = conn
            while not self._closing:
                conn.waiting = True
                request = await self._read_request(reader, conn, client)
                if request is None:
                    break
                conn.waiting = False
                response = await self._dispatch(request, writer)
                if request.method == "HEAD":
                    response = dataclasses.replace(response, body=b"", close=True)
                keep = not response.close and _keep_alive(request)
                if not await self._write(conn, response, keep) or not keep:
                    break
        except _Reject as reject:
            conn.waiting = False
            await self._write(conn, json_error(reject.status, reject.message), keep=False)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        except Exception:  # noqa: BLE001 - never let one connection hurt the server
            log.exception("REST connection from %s failed", client)
        finally:
            self._conns.pop(id(conn), None)
            writer.close()  # flushes what is left, then closes; a client that never reads is cut off below
            asyncio.get_running_loop().call_later(WRITE_TIMEOUT_S, writer.transport.abort)

    def _evict(self) -> bool:
        """Close the oldest connection without a complete request; False if there is none."""
        for key, conn in self._conns.items():
            if conn.waiting:
                del self._conns[key]
                conn.writer.transport.abort()
                self.evicted += 1
                log.debug("REST: %d connections open; closed the oldest unfinished one", self.max_connections)
                return True
        return False

    async def _fill(self, reader: asyncio.StreamReader, conn: _Conn, timeout: float, limit: int) -> bool:
        """Read more bytes into conn.buf within `timeout` s; False at end of stream."""
        chunk = await asyncio.wait_for(reader.read(limit), timeout=max(timeout, 0.001))
        conn.buf += chunk
        return bool(chunk)

    async def _read_request(self, reader: asyncio.StreamReader, conn: _Conn, client: str) -> HttpRequest | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.header_timeout_s
        while True:
            while conn.buf[:2] == b"\r\n":  # tolerated empty lines between requests
                del conn.buf[:2]
            end = conn.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(conn.buf) > MAX_HEAD_BYTES:
                raise _Reject(431, f"request line and headers exceed {MAX_HEAD_BYTES} bytes")
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise asyncio.TimeoutError
                if not await self._fill(reader, conn, remaining, 65536):
                    return None  # the client closed the connection
            except asyncio.TimeoutError:
                if not conn.buf:
                    return None  # idle keep-alive connection: close quietly
                raise _Reject(408, f"request line and headers not received within {self.header_timeout_s:g} s "
                                   f"({len(conn.buf)} bytes arrived)") from None
        head = bytes(conn.buf[:end]).decode("latin-1")
        del conn.buf[:end + 4]
        method, target, version, headers = _parse_head(head)
        body = await self._read_body(reader, conn, method, headers)
        return HttpRequest(method, target, headers, body, client, time.monotonic(), version)

    async def _read_body(self, reader: asyncio.StreamReader, conn: _Conn, method: str,
                         headers: dict[str, str]) -> bytes:
        if "transfer-encoding" in headers:
            raise _Reject(411, "chunked request bodies are not supported: send a Content-Length header")
        length = headers.get("content-length")
        if length is None:
            if method in ("POST", "PUT", "PATCH"):
                raise _Reject(411, "a Content-Length header is required")
            return b""
        if not length.strip().isdigit():
            raise _Reject(400, "invalid Content-Length header (expected a number of bytes)")
        n = int(length)
        if n > self.max_body_bytes:
            raise _Reject(413, f"request body of {n} bytes exceeds the limit of {self.max_body_bytes}")
        if n and headers.get("expect", "").lower() == "100-continue" and len(conn.buf) < n:
            conn.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        loop = asyncio.get_running_loop()
        allowed = self.body_timeout_s + n / MIN_BODY_RATE
        deadline = loop.time() + allowed
        while len(conn.buf) < n:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise _Reject(408, f"request body not received within {allowed:.3g} s: {len(conn.buf)} of "
                                       f"{n} bytes (Content-Length) arrived")
                if not await self._fill(reader, conn, min(self.body_timeout_s, remaining), min(n - len(conn.buf),
                                                                                               1 << 20)):
                    raise _Reject(400, f"request body ended after {len(conn.buf)} of {n} bytes (Content-Length)")
            except asyncio.TimeoutError:
                if deadline - loop.time() <= 0:
                    continue  # the total deadline: answered at the top of the loop
                raise _Reject(408, f"request body not received: {len(conn.buf)} of {n} bytes (Content-Length) "
                                   f"arrived, then nothing for {self.body_timeout_s:g} s") from None
        body = bytes(conn.buf[:n])
        del conn.buf[:n]
        return body

    async def _dispatch(self, request: HttpRequest, writer: asyncio.StreamWriter) -> HttpResponse:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._handler, request, writer.transport.is_closing)
        except RuntimeError:  # executor shut down: the server is stopping
            return json_error(503, "server is shutting down")
        except Exception as err:  # noqa: BLE001 - the handler answers its own errors; this is a bug
            log.exception("REST handler failed")
            return json_error(500, f"internal error: {type(err).__name__}")

    async def _write(self, conn: _Conn, response: HttpResponse, keep: bool) -> bool:
        """Send a response; False when the connection had to be dropped."""
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Unknown"
        head = (f"HTTP/1.1 {response.status} {reason}\r\nServer: seg4reg-serving\r\n"
                f"Content-Type: {response.content_type}\r\nContent-Length: {len(response.body)}\r\n"
                + ("" if keep else "Connection: close\r\n") + "\r\n").encode("latin-1")
        writer = conn.writer
        try:
            writer.write(head + response.body)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S + len(response.body) / MIN_BODY_RATE)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            writer.transport.abort()
            return False
        return True


def _fd_budget(wanted: int) -> int:
    """`wanted`, capped at half the process's open-file limit (models, gRPC and logs need the rest)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return wanted
    if soft == resource.RLIM_INFINITY or wanted <= soft // 2:
        return wanted
    log.warning("REST: at most %d open connections (half the open-file limit %d), not %d", soft // 2, soft, wanted)
    return max(16, soft // 2)


def _parse_head(head: str) -> tuple[str, str, str, dict[str, str]]:
    """(method, target, HTTP version, {lower-case name: value}) of a request head; _Reject 400 / 431 / 505."""
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
        raise _Reject(400, f"malformed request line {lines[0][:100]!r} (expected 'METHOD /path HTTP/1.1')")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _Reject(505 if version.startswith("HTTP/") else 400, f"unsupported protocol {version[:20]!r}")
    if len(lines) - 1 > MAX_HEADERS:
        raise _Reject(431, f"more than {MAX_HEADERS} header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise _Reject(400, f"malformed header line {line[:100]!r}")
        key, value = name.lower(), value.strip()
        if key in headers and key == "content-length" and headers[key] != value:
            raise _Reject(400, "conflicting Content-Length headers")
        headers[key] = value if key not in headers or key == "content-length" else f"{headers[key]}, {value}"
    return method.upper(), target, version, headers


def _keep_alive(request: HttpRequest) -> bool:
    tokens = {t.strip().lower() for t in request.headers.get("connection", "").split(",")}
    if request.version == "HTTP/1.0":
        return False
    return "close" not in tokens
