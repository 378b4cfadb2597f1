"""Graceful shutdown: stop admitting, let running requests finish, end the rest cleanly.

On SIGTERM / Ctrl-C (uvicorn's should_exit) DrainingServer drains BEFORE uvicorn's own shutdown
(which would stop listening, wait timeout_graceful_shutdown for responses, then cancel the
tasks still running -- a traceback each, and streams cut without an end):

  1. the AdmissionGate answers every new request 503 with Retry-After (the server still
     listens, so clients and load balancers get an answer rather than a refused connection);
  2. requests already admitted run on, up to `timeout` seconds (a second Ctrl-C: no wait);
  3. the scheduler stops; the jobs still queued or generating get a 503 error event, which a
     stream sends as `data: {"error": ...}` then `data: [DONE]` and a plain request as a 503
     JSON error; their access log lines say ended=shutdown;
  4. a request still not answered a few seconds later (a client not reading) loses its
     connection; then uvicorn's shutdown closes the idle connections and the lifespan ends.
"""
import asyncio
import json
import sys
import time

import uvicorn

from .errors import error_body

DEFAULT_DRAIN_TIMEOUT = 10.0
ENDING_GRACE = 3.0          # seconds for ended requests to send their last events
POLL = 0.05


class Drain:
    """The requests admitted and not yet answered, and whether the server is draining."""

    def __init__(self, timeout=DEFAULT_DRAIN_TIMEOUT, log=True, out=None):
        if timeout < 0:
            raise ValueError(f"the drain timeout must be >= 0, got {timeout}")
        self.timeout = timeout
        self.log, self.out = log, out
        self.draining = False
        self.active = {}            # key -> (ASGI scope, start time) of each running request

    def say(self, msg):
        if self.log:
            print(msg, file=self.out or sys.stderr, flush=True)

    async def run(self, server, scheduler):
        """Steps 1-4 of the module's docstring; `server` is the uvicorn.Server."""
        self.draining = True
        if self.active:
            self.say(f"pygemma: shutting down: waiting up to {self.timeout:g} s for "
                     f"{len(self.active)} running request(s) (Ctrl-C again: end them now)")
        await self._wait(self.timeout, lambda: server.force_exit)
        now = time.perf_counter()
        for scope, t0 in self.active.values():
            scope.setdefault("state", {})["pg_ended"] = "shutdown"
            self.say(f"pygemma: ending {scope['method']} {scope['path']} (running {now - t0:.1f} s): "
                     f"the server is shutting down")
        await asyncio.to_thread(scheduler.stop)      # joins the thread: not on the event loop
        await self._wait(ENDING_GRACE)
        for conn in list(server.server_state.connections):
            cycle = getattr(conn, "cycle", None)
            if cycle is not None and not cycle.response_complete:
                conn.transport.abort()               # its send()/receive() return at once

    async def _wait(self, seconds, stop=lambda: False):
        """Until no request runs, `seconds` passed, or stop()."""
        deadline = time.monotonic() + seconds
        while self.active and time.monotonic() < deadline and not stop():
            await asyncio.sleep(POLL)


_REFUSAL = json.dumps(error_body(503, "the server is shutting down; retry later",
                                 code="server_shutting_down")).encode()


class AdmissionGate:
    """ASGI middleware: counts the running requests into `drain`; while it drains, refuses new
    ones (503 + Retry-After) and asks clients to close the connections it answers on."""

    def __init__(self, app, drain):
        self.app, self.drain = app, drain

    async def __call__(self, scope, receive, send):
        drain = self.drain
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if drain.draining:
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"), (b"content-length", b"%d" % len(_REFUSAL)),
                (b"retry-after", b"1"), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": _REFUSAL})
            return

        async def send_closing(message):
            if message["type"] == "http.response.start" and drain.draining:
                message = dict(message, headers=[*message.get("headers", ()), (b"connection", b"close")])
            await send(message)

        key = object()
        drain.active[key] = (scope, time.perf_counter())
        try:
            await self.app(scope, receive, send_closing)
        finally:
            del drain.active[key]
            if drain.draining:
                scope.setdefault("state", {}).setdefault("pg_ended", "drained")


class DrainingServer(uvicorn.Server):
    """uvicorn.Server that drains (Drain.run) before its own shutdown."""

    def __init__(self, config, drain, scheduler):
        super().__init__(config)
        self.drain, self.scheduler = drain, scheduler

    async def shutdown(self, sockets=None):
        await self.drain.run(self, self.scheduler)
        await super().shutdown(sockets=sockets)
