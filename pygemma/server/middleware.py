"""ASGI middleware: the API key check and the one-line-per-request log."""
import hmac
import json
import sys
import time

from .errors import error_body

# Paths served without a key: the health probe and the web chat (which asks for the key).
OPEN_PATHS = ("/health", "/", "/favicon.ico")
OPEN_PREFIXES = ("/web/",)


def _json_response(status, body, headers=()):
    data = json.dumps(body).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(data)).encode()), *headers]}
    return start, {"type": "http.response.body", "body": data}


class APIKeyMiddleware:
    """401 unless `Authorization: Bearer KEY` matches (constant-time comparison)."""

    def __init__(self, app, api_key):
        self.app = app
        self.key = api_key.encode("utf-8")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or \
                scope["path"].startswith(OPEN_PREFIXES) or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = token.strip()
            elif name == b"x-api-key" and not given:
                given = value.strip()
        if given and hmac.compare_digest(given, self.key):
            return await self.app(scope, receive, send)
        msg = "invalid API key" if given else "missing API key: send the header 'Authorization: Bearer KEY'"
        start, body = _json_response(401, error_body(401, msg, code="invalid_api_key"),
                                     [(b"www-authenticate", b"Bearer")])
        await send(start)
        await send(body)


class AccessLog:
    """One stderr line per request: method, path, status, prompt/completion tokens, seconds."""

    def __init__(self, app, enabled=True, out=None):
        self.app, self.enabled, self.out = app, enabled, out

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.enabled:
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [0]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            job = scope.get("state", {}).get("pg_job")
            tokens = ""
            if job is not None:
                tokens = f" prompt={job.stats.prompt_tokens} completion={job.stats.completion_tokens}"
                if job.stats.cached_tokens:
                    tokens += f" cached={job.stats.cached_tokens}"
            line = (f"pygemma: {scope['method']} {scope['path']} {status[0] or 500}{tokens} "
                    f"{time.perf_counter() - t0:.3f}s")
            print(line, file=self.out or sys.stderr, flush=True)
