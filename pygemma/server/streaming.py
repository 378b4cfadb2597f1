"""Running a job for a handler: submitting it, watching the client, streaming events as SSE.

A client that goes away cancels its job: a watcher task waits for the ASGI "http.disconnect"
message (sent by the server once the request body is read and the connection closes), tells the
scheduler, and ends the event stream, so the slot is free again within a token or two.
"""
import asyncio
import json

from .errors import APIError
from .scheduler import Job, QueueFull

GONE = ("gone",)


def submit(scheduler, req, constraint=None):
    loop = asyncio.get_running_loop()
    job = Job(req.ids, req.params, loop, asyncio.Queue(), req.logprobs, constraint)
    try:
        scheduler.submit(job)
    except QueueFull as e:
        raise APIError(503, f"the server is busy: {e}; retry later", code="server_busy",
                       headers={"Retry-After": "1"}) from None
    return job


async def _wait_disconnect(receive):
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class Watch:
    """Cancels `job` when the client disconnects (use as an async context manager)."""

    def __init__(self, scheduler, job, receive):
        self.scheduler, self.job, self.receive = scheduler, job, receive
        self.task = None

    async def _watch(self):
        await _wait_disconnect(self.receive)
        self.scheduler.cancel(self.job)
        self.job.queue.put_nowait(GONE)

    async def __aenter__(self):
        self.task = asyncio.ensure_future(self._watch())
        return self

    async def __aexit__(self, *exc):
        self.task.cancel()
        if not self.job.finished:
            self.scheduler.cancel(self.job)


async def events(job):
    """The job's events until it ends: ("delta", text, logprob), then ("done", reason),
    ("error", message) or GONE."""
    while True:
        event = await job.queue.get()
        yield event
        if event[0] != "delta":
            return


class SSEResponse:
    """An ASGI response streaming `chunks` (an async iterator of JSON-able dicts) as server-sent
    events, then `data: [DONE]`.  Disconnects cancel the job (see Watch)."""

    def __init__(self, scheduler, job, chunks):
        self.scheduler, self.job, self.chunks = scheduler, job, chunks

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8"),
                                (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]})
        async with Watch(self.scheduler, self.job, receive):
            try:
                async for chunk in self.chunks:
                    data = json.dumps(chunk, separators=(",", ":"))     # ASCII: always encodable
                    await send({"type": "http.response.body",
                                "body": b"data: " + data.encode() + b"\n\n", "more_body": True})
                await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
            except OSError:
                pass                                  # the client is gone
