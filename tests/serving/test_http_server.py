"""The asyncio HTTP/1.1 layer of the REST front end on its own (an echo handler, raw sockets): keep-alive,
pipelining, Expect: 100-continue, and the client mistakes it answers itself."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from seg4reg_tf.serving.http_server import HttpResponse, HttpServer


def echo(request, gone):
    if request.path == "/slow":
        time.sleep(0.3)
    payload = {"method": request.method, "target": request.target, "body": request.body.decode("latin-1"),
               "thread": threading.current_thread().name}
    return HttpResponse(200, json.dumps(payload).encode())


@pytest.fixture(scope="module")
def port():
    server = HttpServer(echo, "127.0.0.1", 0, max_body_bytes=1000, header_timeout_s=1.0, body_timeout_s=1.0,
                        workers=4)
    server.start()
    yield server.port
    server.stop()


def read_responses(sock: socket.socket, n: int, timeout: float = 5.0) -> list[tuple[int, dict, bytes]]:
    """n responses (status, headers, body) read from a socket."""
    sock.settimeout(timeout)
    data, out = b"", []
    while len(out) < n:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            length = int(headers.get("content-length", 0))
            if len(rest) >= length:
                out.append((int(lines[0].split()[1]), headers, rest[:length]))
                data = rest[length:]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return out


def test_keep_alive_and_pipelining(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b?x=1 HTTP/1.1\r\n\r\n")
        (st1, h1, b1), (st2, h2, b2) = read_responses(s, 2)
        assert st1 == st2 == 200 and "connection" not in h1
        assert json.loads(b1)["body"] == "abc" and json.loads(b2)["target"] == "/b?x=1"
        s.sendall(b"GET /c HTTP/1.1\r\nConnection: close\r\n\r\n")
        ((status, headers, _),) = read_responses(s, 1)
        assert status == 200 and headers["connection"] == "close"
        assert s.recv(10) == b""


def test_http_1_0_closes_and_expect_continue(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert read_responses(s, 1)[0][0] == 200 and s.recv(10) == b""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /e HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        s.settimeout(5)
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"body")
        assert json.loads(read_responses(s, 1)[0][2])["body"] == "body"


@pytest.mark.parametrize("raw,status", [
    (b"NONSENSE\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n\r\n", 411),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    (b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nX: " + b"y" * 70_000, 431),
    (b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 408),  # then silent
    (b"GET / HTTP/1.1\r\nHost: x\r\n", 408),  # headers never finished
])
def test_client_mistakes_are_answered_and_closed(port, raw, status):
    with socket.create_connection(("127.0.0.1", port)) as s:
        t0 = time.monotonic()
        s.sendall(raw)
        responses = read_responses(s, 1)
        assert responses and responses[0][0] == status, responses
        assert responses[0][1]["connection"] == "close" and json.loads(responses[0][2])["error"]
        assert s.recv(10) == b"" and time.monotonic() - t0 < 4.0


def test_idle_connection_closed_silently_and_workers_only_see_complete_requests(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        t0 = time.monotonic()
        assert s.recv(10) == b""  # nothing sent: closed after the 1 s deadline, no answer
        assert 0.8 < time.monotonic() - t0 < 4.0
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]  # 20 idle > 4 workers
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
            assert json.loads(read_responses(s, 1)[0][2])["thread"].startswith("rest")
    finally:
        for s in socks:
            s.close()
