"""Issue 21: slow and idle REST clients never keep a complete request from being served.

Hundreds of connections trickle one header byte at a time (a slowloris): each connection gets a
total deadline for its request line + headers (`rest_header_timeout_s`, 2 s here), after which the
server closes it, and a normal predict sent meanwhile is answered at once. Loopback only, bounded.
"""
from __future__ import annotations

import base64
import json
import selectors
import socket
import threading
import time

import pytest

from seg4reg_tf.serving.server import ModelServer, ServerConfig
from tests.serving.serving_testmodel import half_image, png, save_version

pytestmark = pytest.mark.slow  # starts a server

GOOD = png(half_image())
DEADLINE_S = 2.0


class Tricklers:
    """`n` connections that each send one byte of a never-ending request header every `every_s` seconds,
    and note when the server closes them (monotonic seconds since `start`)."""

    def __init__(self, port: int, n: int, every_s: float = 0.5) -> None:
        self.socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setblocking(False)
            self.socks.append(s)
        self.every_s = every_s
        self.closed_at: dict[int, float] = {}
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._header = b"POST /v1/models/seg4reg:predict HTTP/1.1\r\nX-Slow: " + b"a" * 10_000
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for i, s in enumerate(self.socks):
            sel.register(s, selectors.EVENT_READ, i)
        sent = 0
        next_send = time.monotonic()
        while not self._stop.is_set() and len(self.closed_at) < len(self.socks):
            for key, _ in sel.select(timeout=0.05):
                i = key.data
                try:
                    data = key.fileobj.recv(65536)
                except (ConnectionError, OSError):
                    data = b""
                if not data:  # closed by the server (a 408 answer, if any, came before)
                    self.closed_at[i] = time.monotonic() - self.start
                    sel.unregister(key.fileobj)
            if time.monotonic() >= next_send:
                byte = self._header[sent % len(self._header):][:1]
                for i, s in enumerate(self.socks):
                    if i not in self.closed_at:
                        try:
                            s.send(byte)
                        except (BlockingIOError, ConnectionError, OSError):
                            pass
                sent += 1
                next_send += self.every_s
        sel.close()

    def open_count(self) -> int:
        return len(self.socks) - len(self.closed_at)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for s in self.socks:
            s.close()


def _predict(port: int, timeout: float = 30.0) -> tuple[int, dict, float]:
    """(status, JSON body, seconds) of one complete REST predict on a fresh connection."""
    body = json.dumps({"instances": [{"b64": base64.b64encode(GOOD).decode()}]}).encode()
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"POST /v1/models/seg4reg:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        data = b""
        while True:
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                if len(rest) >= length:
                    return int(head.split()[1]), json.loads(rest[:length]), time.monotonic() - t0
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before a full answer: {data[:200]!r}")
            data += chunk


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("models"))
    save_version(base, 1, gain=1.0)
    config = ServerConfig(model_base_path=base, port=0, rest_port=0, enable_warmup=False,
                          rest_header_timeout_s=DEADLINE_S, rest_body_timeout_s=DEADLINE_S)
    with ModelServer(config) as srv:
        assert _predict(srv.rest_port)[0] == 200  # warm: the first run traces the graph
        yield srv


def test_trickling_headers_do_not_starve_a_complete_request(server):
    """300 connections trickling one header byte every 0.5 s (never tripping a per-read timeout)."""
    tricklers = Tricklers(server.rest_port, 300)
    try:
        time.sleep(0.5)
        status, body, seconds = _predict(server.rest_port)
        assert status == 200 and body["predictions"][0]["cobb_angles"] == pytest.approx([5, 10, 15])
        assert seconds < 3.0, f"a complete request waited {seconds:.1f} s behind trickling connections"
        # every trickler is closed by its total header deadline, however regularly it sends
        limit = time.monotonic() + DEADLINE_S + 5.0
        while tricklers.open_count() and time.monotonic() < limit:
            time.sleep(0.1)
        assert tricklers.open_count() == 0, f"{tricklers.open_count()} of 300 trickling connections still open " \
                                            f"{time.monotonic() - tricklers.start:.1f} s after they connected"
        assert max(tricklers.closed_at.values()) < DEADLINE_S + 3.0
    finally:
        tricklers.close()
    assert _predict(server.rest_port)[0] == 200


def test_trickling_body_is_closed_by_its_deadline(server):
    """Complete headers, then a body trickled one byte every 0.5 s: a 408 within the deadline."""
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=15) as s:
        s.sendall(b"POST /v1/models/seg4reg:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        t0 = time.monotonic()
        s.settimeout(0.5)
        data = b""
        while time.monotonic() - t0 < DEADLINE_S + 20:
            try:
                s.send(b"[")
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionError, OSError):
                break
            if not chunk:
                break
            data += chunk
        seconds = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    # the body's total deadline: 2 s + 100 kB at 256 KiB/s, however regularly it trickles
    assert DEADLINE_S < seconds < DEADLINE_S + 3.0, seconds


def test_full_connection_table_evicts_unfinished_connections(tmp_path):
    """With room for 16 connections and a long header deadline, 40 trickling connections cannot lock a
    complete request out: a new connection evicts the oldest one that has not sent a complete request."""
    base = str(tmp_path / "m")
    save_version(base, 1, gain=1.0)
    config = ServerConfig(model_base_path=base, port=0, rest_port=0, enable_warmup=False,
                          rest_header_timeout_s=60.0, rest_max_connections=16)
    with ModelServer(config) as srv:
        assert _predict(srv.rest_port)[0] == 200
        tricklers = Tricklers(srv.rest_port, 40)
        try:
            time.sleep(1.0)
            assert tricklers.open_count() <= 16, "connections beyond the limit stayed open"
            for _ in range(3):
                status, body, seconds = _predict(srv.rest_port)
                assert status == 200 and seconds < 3.0, (status, seconds)
        finally:
            tricklers.close()


def test_rest_answer_deadline_gives_504_and_drops_the_remaining_work(tmp_path, monkeypatch):
    """--rest_api_timeout_in_ms: a request still computing at its deadline is answered 504, and its
    remaining chunks never run."""
    from seg4reg_tf.serving import versions

    runs = []
    original = versions.LoadedVersion.run_direct

    def slow_run(self, signature, inputs):
        runs.append(len(next(iter(inputs.values()))))
        time.sleep(0.6)
        return original(self, signature, inputs)

    monkeypatch.setattr(versions.LoadedVersion, "run_direct", slow_run)
    base = str(tmp_path / "m")
    save_version(base, 1, gain=1.0)
    config = ServerConfig(model_base_path=base, port=0, rest_port=0, enable_warmup=False, enable_batching=False,
                          max_batch_size=1, rest_api_timeout_ms=300)
    with ModelServer(config) as srv:
        body = json.dumps({"instances": [{"b64": base64.b64encode(GOOD).decode()}] * 4}).encode()
        with socket.create_connection(("127.0.0.1", srv.rest_port), timeout=30) as s:
            s.sendall(b"POST /v1/models/seg4reg:predict HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            data = b""
            while b"}" not in data:
                data += s.recv(65536)
    assert data.startswith(b"HTTP/1.1 504"), data[:300]
    assert b"rest_api_timeout_in_ms" in data
    assert runs == [1], f"chunks run after the deadline: {runs}"  # 4 chunks of 1 image; only the first ran
