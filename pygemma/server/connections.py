"""Connections with limits: uvicorn's h11 protocol plus the timeouts and caps it lacks.

uvicorn times out idle keep-alive connections (after a response) and can answer 503 above a
connection count (limit_concurrency), but a client may take forever to send a request: a
connection that sends nothing, a request line or headers sent a byte at a time (slow loris),
a body that stops half way.  Each holds a socket, and a few hundred of them exhaust the file
descriptors.  LimitedH11Protocol drops them:

  * headers: the request line and headers must be complete within `header_timeout` seconds of
    the request's first byte (of the connection's opening for a new connection);
  * body: the body must keep coming -- never `body_idle_timeout` seconds without a byte -- and
    be complete within `body_timeout` seconds of the headers;
  * sockets: connections beyond `max_connections` plus a margin are closed at once (within the
    margin uvicorn still reads their request to answer 503).

Nothing times out while the server is the one who is busy: once a request is complete the
timers stop, so a response (a stream of many minutes) is never cut.  A request dropped before
it was answered gets a 408 (when some of it arrived), then the connection closes.

Every connection gets TCP_NODELAY: responses leave in a few writes (headers, body, chunks of a
stream) and without it each write after the first waits for the client's delayed ACK (~40 ms
per request on a reused connection; bench/bench_keepalive.py).
"""
import dataclasses
import json
import socket

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import error_body


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    """Defaults suit an OpenAI-compatible server: requests are small JSON bodies, responses
    may stream for minutes (not limited here), clients keep connections in pools."""
    header_timeout: float = 10.0
    body_idle_timeout: float = 30.0
    body_timeout: float = 120.0     # 8 MB (the default body limit) needs ~70 KB/s
    # Idle keep-alive connections live long (uvicorn's default is 5 s): a client reusing one
    # just as the server closes it gets a reset, and OpenAI clients keep connections in a pool.
    keep_alive_timeout: float = 75.0
    max_connections: int = 512      # well below the usual 1024 file descriptors

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if not getattr(self, field.name) > 0:
                raise ValueError(f"{field.name} must be > 0, got {getattr(self, field.name)}")

    @property
    def hard_cap(self):
        """Open connections beyond this are closed before anything is read from them."""
        return self.max_connections + max(16, self.max_connections // 8)


def set_nodelay(sock):
    """TCP_NODELAY on a TCP socket (a no-op on others); accepted sockets inherit it on Linux."""
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:             # the client already went away
        pass


def _raw_response(status, reason, message, extra=b""):
    body = json.dumps(error_body(status, message)).encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n%s\r\n" % (status, reason, len(body), extra)) + body


HEADERS, BODY = "headers", "body"


class LimitedH11Protocol(H11Protocol):
    """uvicorn's H11Protocol with header/body timeouts, a hard connection cap and TCP_NODELAY.
    Subclass with `limits` set (see protocol_class); uvicorn creates one per connection."""

    limits = ConnectionLimits()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._phase = None          # HEADERS or BODY while the client owes us bytes, else None
        self._timer = None          # fires at the phase's next deadline
        self._begun = False         # some bytes of the request in HEADERS phase arrived
        self._body_deadline = 0.0
        self._last_data = 0.0

    # ---- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport):
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            set_nodelay(sock)
        if len(self.connections) > self.limits.hard_cap:
            transport.write(_raw_response(503, b"Service Unavailable",
                                          "too many open connections; retry later", b"retry-after: 1\r\n"))
            transport.close()
            return
        self._start_headers(begun=False)

    def data_received(self, data):
        super().data_received(data)
        self._track(begun=True)

    def on_response_complete(self):
        super().on_response_complete()
        # A pipelined request already (partly) buffered is a request begun: headers timeout.
        self._track(begun=bool(self.conn.trailing_data[0]))

    def connection_lost(self, exc):
        self._stop()
        super().connection_lost(exc)

    # ---- the timers ---------------------------------------------------------------------------
    def _track(self, begun):
        """Set the phase from h11's view of the client's side, after bytes were parsed."""
        if self.transport is None or self.transport.is_closing():
            return self._stop()
        state = self.conn.their_state
        if state is h11.IDLE and begun:
            if self._phase is not HEADERS:
                self._start_headers(begun=True)
            self._begun = True
        elif state is h11.SEND_BODY:
            now = self.loop.time()
            self._last_data = now
            if self._phase is not BODY:
                self._phase = BODY
                self._body_deadline = now + self.limits.body_timeout
                self._arm(min(self._body_deadline, now + self.limits.body_idle_timeout))
        elif state is not h11.IDLE or self._phase is not HEADERS:
            self._stop()        # request complete (or closed): the server's turn, no timeout

    def _start_headers(self, begun):
        self._phase, self._begun = HEADERS, begun
        self._arm(self.loop.time() + self.limits.header_timeout)

    def _arm(self, when):
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._on_timer)

    def _stop(self):
        self._phase = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self):
        self._timer = None
        if self._phase is BODY:
            now = self.loop.time()
            if self.flow is not None and self.flow.read_paused:
                # The app is not reading the body yet: the client is waiting on us.
                self._last_data = now
                self._body_deadline = max(self._body_deadline, now + self.limits.body_idle_timeout)
            due = min(self._body_deadline, self._last_data + self.limits.body_idle_timeout)
            if now < due:
                return self._arm(due)
            answer = self.cycle is not None and not self.cycle.response_started
            self._drop(answer, "the request body did not arrive in time")
        elif self._phase is HEADERS:
            self._drop(self._begun, "the request headers did not arrive in time")

    def _drop(self, answer, message):
        self._phase = None
        if self.transport.is_closing():
            return
        if answer:
            self.transport.write(_raw_response(408, b"Request Timeout", message))
        self.transport.close()


def protocol_class(limits):
    """The protocol class for uvicorn.Config(http=...) enforcing `limits`."""
    return type("LimitedH11Protocol", (LimitedH11Protocol,), {"limits": limits})


def uvicorn_options(limits):
    """uvicorn.Config keyword arguments for `limits`."""
    return dict(http=protocol_class(limits), timeout_keep_alive=limits.keep_alive_timeout,
                # uvicorn answers 503 to requests once this many connections (or requests) are open
                limit_concurrency=limits.max_connections)
