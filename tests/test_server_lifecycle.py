"""Connection limits and graceful shutdown (pygemma/server/connections.py, drain.py).

Slow or idle clients are dropped (headers, body, keep-alive timeouts; a hard connection cap)
while others are served and streams longer than every timeout are not cut; accepted sockets
have TCP_NODELAY; SIGTERM drains: running streams finish or end with an error event then
[DONE], new requests get 503, exit code 0, no traceback."""
import http.client
import json
import os
import re
import signal
import socket
import threading
import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from server_util import live_server, start_pygemma  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COUNTING = "1, 2, 3, 4, 5,"             # the 270M counts on and on: streams as long as asked


def _connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=15)


def _until_closed(sock):
    """Everything the server sends until it closes the connection, and how long that took."""
    t0, data = time.monotonic(), b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - t0


def _response(sock):
    """One whole response with a Content-Length (head and body), read from a kept-alive socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def _get(port, path="/health"):
    sock = _connect(port)
    with sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        return _until_closed(sock)[0]


def _post_head(path, length):
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_slow_headers_are_dropped_while_others_are_served(model_path):
    with live_server(model_path, n_ctx=64, header_timeout=1.0) as (server, _):
        loris = _connect(server.port)
        silent = _connect(server.port)                    # opens and never sends a byte
        stop = threading.Event()

        def trickle():                                    # one header byte every 0.1 s
            request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
            for byte in request:
                if stop.wait(0.1):
                    return
                try:
                    loris.send(bytes([byte]))
                except OSError:
                    return
        thread = threading.Thread(target=trickle)
        thread.start()
        try:
            answers = []
            for _ in range(5):                            # other clients meanwhile: answered
                answers.append(_get(server.port))
                time.sleep(0.1)
            data, elapsed = _until_closed(loris)
            assert elapsed < 3.0
            assert data.startswith(b"HTTP/1.1 408 ")      # it had begun a request: told why
            data, _ = _until_closed(silent)
            assert data == b""                            # never spoke: closed silently
            assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers)
            assert _get(server.port).startswith(b"HTTP/1.1 200 ")
        finally:
            stop.set()
            thread.join()
            loris.close()
            silent.close()


def test_idle_keep_alive_connection_is_closed(model_path):
    with live_server(model_path, n_ctx=64, keep_alive_timeout=1.0, header_timeout=5.0) as (server, _):
        sock = _connect(server.port)
        with sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head, _ = _response(sock)
            assert head.startswith(b"HTTP/1.1 200 ") and b"connection: close" not in head.lower()
            rest, elapsed = _until_closed(sock)
            assert rest == b"" and 0.5 < elapsed < 3.0


def test_partial_and_trickling_bodies_are_dropped(model_path):
    with live_server(model_path, n_ctx=64, body_idle_timeout=1.0, body_timeout=2.0) as (server, _):
        body = json.dumps({"content": "hello " * 20}).encode()
        stalled = _connect(server.port)                   # half the body, then silence
        with stalled:
            stalled.sendall(_post_head("/tokenize", len(body)) + body[:len(body) // 2])
            data, elapsed = _until_closed(stalled)
            assert data.startswith(b"HTTP/1.1 408 ") and elapsed < 3.0
        trickle = _connect(server.port)                   # a byte every 0.2 s: never idle 1 s,
        with trickle:                                     # but not done within 2 s either
            trickle.sendall(_post_head("/tokenize", len(body)))
            t0 = time.monotonic()
            try:
                for byte in body:
                    trickle.send(bytes([byte]))
                    time.sleep(0.2)
            except OSError:
                pass
            data, _ = _until_closed(trickle)
            assert data.startswith(b"HTTP/1.1 408 ") and 1.5 < time.monotonic() - t0 < 4.0
        sock = _connect(server.port)                      # a whole body is answered
        with sock:
            sock.sendall(_post_head("/tokenize", len(body)) + body)
            head, answer = _response(sock)
            assert head.startswith(b"HTTP/1.1 200 ") and json.loads(answer)["tokens"]


def test_streams_outlive_every_timeout(model_path):
    # 120 tokens take well over 0.4 s even on a fast machine (the 270M decodes ~100 tokens/s)
    with live_server(model_path, n_ctx=256, header_timeout=0.2, body_idle_timeout=0.2,
                     body_timeout=0.2, keep_alive_timeout=0.2) as (server, _):
        t0 = time.monotonic()
        client = Client(server.port, True, 120)
        client.run()
        assert time.monotonic() - t0 > 0.4               # it did outlast the timeouts
        assert client.status == 200 and client.events[-1] == "[DONE]"
        assert '"finish_reason":"length"' in client.events[-2]


def test_accepted_connections_have_tcp_nodelay(model_path):
    with live_server(model_path, n_ctx=64) as (server, _):
        assert server.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        sock = _connect(server.port)
        with sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert _response(sock)[0].startswith(b"HTTP/1.1 200 ")
            conns = list(server.uvicorn.server_state.connections)
            assert len(conns) == 1
            accepted = conns[0].transport.get_extra_info("socket")
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_connections_beyond_the_hard_cap_are_refused(model_path):
    with live_server(model_path, n_ctx=64, max_connections=2, header_timeout=30.0) as (server, _):
        cap = server.limits.hard_cap
        idle = [_connect(server.port) for _ in range(cap)]
        try:
            deadline = time.monotonic() + 10
            while len(server.uvicorn.server_state.connections) < cap and time.monotonic() < deadline:
                time.sleep(0.02)
            extra = _connect(server.port)
            with extra:
                data, elapsed = _until_closed(extra)
            assert data.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in data.lower()
            assert elapsed < 2.0
        finally:
            for s in idle:
                s.close()


# ---- graceful shutdown ----------------------------------------------------------------------

def _read_stderr_until(proc, pattern, lines):
    while True:
        line = proc.stderr.readline()
        assert line, "".join(lines)
        lines.append(line)
        m = re.search(pattern, line)
        if m:
            return m


class Client(threading.Thread):
    """One completion request on its own connection (http.client: no pooling, no retries);
    keeps the status and the SSE data lines, or the JSON body."""

    def __init__(self, port, stream, max_tokens):
        super().__init__()
        self.port, self.stream, self.started = port, stream, threading.Event()
        self.body = json.dumps({"prompt": COUNTING, "max_tokens": max_tokens, "temperature": 0,
                                "stream": stream})
        self.status, self.events, self.json = None, [], None

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("POST", "/v1/completions", self.body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            self.status = response.status
            if not self.stream or response.status != 200:
                self.json = json.loads(response.read())
                return
            for line in response:
                if line.startswith(b"data: "):
                    self.events.append(line[6:].decode().strip())
                    self.started.set()
                    if self.events[-1] == "[DONE]":
                        return
        finally:
            self.started.set()
            conn.close()


def test_sigterm_drains_then_ends_streams_with_an_error_event(model_path):
    proc = start_pygemma("-m", model_path, "--server", "--port", "0", "-c", "512", "-np", "4",
                         "--nobrowser", "--drain-timeout", "2", "-t", "2")
    try:
        lines = []
        port = int(_read_stderr_until(proc, r"serving .* at http://127\.0\.0\.1:(\d+)/", lines).group(1))
        clients = [Client(port, True, 400), Client(port, True, 400), Client(port, False, 400),
                   Client(port, True, 4)]
        for c in clients[:3]:
            c.start()
        deadline = time.monotonic() + 60                  # all three generating
        while b'"busy":3' not in _get(port, "/health") and time.monotonic() < deadline:
            time.sleep(0.1)
        clients[3].start()                                # short: finishes during the drain
        assert clients[3].started.wait(60)
        proc.send_signal(signal.SIGTERM)
        _read_stderr_until(proc, r"shutting down: waiting up to 2 s", lines)
        refused = _get(port, "/health")                   # during the drain
        assert refused.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in refused.lower()
        for c in clients:
            c.join(60)
        rest = proc.communicate(timeout=60)[1]
        log = "".join(lines) + rest
        assert proc.returncode == 0, log
        assert "Traceback" not in log and "Exception" not in log, log
        for c in clients[:2]:                             # long streams: ended by the shutdown
            assert c.status == 200 and c.events[-1] == "[DONE]", (c.status, c.events[-3:])
            error = json.loads(c.events[-2])["error"]
            assert "shutting down" in error["message"] and error["type"] == "server_error"
        plain = clients[2]                                # not streamed: a 503 JSON error
        assert plain.status == 503 and "shutting down" in plain.json["error"]["message"]
        short = clients[3]                                # finished within the drain
        assert short.events[-1] == "[DONE]" and '"finish_reason":"length"' in short.events[-2]
        assert log.count("pygemma: ending POST /v1/completions") == 3, log
        # the access log says what happened to each: 3 ended by the shutdown; the short one
        # finished (ended=drained when it was still running as the drain began)
        posts = re.findall(r"pygemma: POST /v1/completions .*", log)
        assert len(posts) == 4 and sum("ended=shutdown" in p for p in posts) == 3, log
        assert not [p for p in posts if "ended=shutdown" not in p and not re.search(r" 200 .*s( ended=drained)?$", p)], log
        assert re.search(r"GET /health 503 ", log), log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stop_in_process_ends_a_running_stream_and_the_scheduler(model_path):
    """Server.stop() (the chatbot's background server, tests) drains like SIGTERM does."""
    with live_server(model_path, n_ctx=512, drain_timeout=0.5) as (server, _):
        client = Client(server.port, True, 400)
        client.start()
        assert client.started.wait(60)
        sched = server.state.scheduler
        t0 = time.monotonic()
        server.stop()
        assert time.monotonic() - t0 < 10
        client.join(10)
    assert client.events[-1] == "[DONE]" and "shutting down" in client.events[-2]
    assert sched.thread is None and not sched.running and all(s.free for s in sched.slots)
    assert not [t for t in threading.enumerate() if t.name == "pygemma-scheduler"]
