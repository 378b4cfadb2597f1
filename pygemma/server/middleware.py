"""ASGI middleware: the Host header check, the API key check and the one-line-per-request log."""
import hmac
import ipaddress
import json
import re
import socket
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


# --host values that mean every interface
ALL_INTERFACES = ("0.0.0.0", "::", "")


def is_loopback_name(name):
    """localhost (RFC 6761: browsers resolve *.localhost to loopback themselves) or a
    loopback address: names no DNS answer can point elsewhere."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_host(host):
    """True when listening on `host` (a --host value: address or name) only accepts
    connections from this machine."""
    name = host.strip("[]").lower().rstrip(".")
    if is_loopback_name(name):
        return True
    try:
        ipaddress.ip_address(name)
        return False                    # an address, not a loopback one
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    addrs = [info[4][0].split("%")[0] for info in infos]
    return bool(addrs) and all(ipaddress.ip_address(a).is_loopback for a in addrs)


# A Host header: a name or IPv4 address, or an [IPv6] literal, then an optional :port
_HOST_HEADER = re.compile(r"(\[[0-9a-fA-F:.]+\]|[^\[\]:/@?#\s]+)(?::[0-9]*)?")


def host_name(header):
    """The host part of a Host header value, lowercased, without brackets or a final dot;
    None when it is no valid Host header."""
    m = _HOST_HEADER.fullmatch(header)
    return m and m.group(1).strip("[]").lower().rstrip(".")


class HostCheck:
    """403 unless the Host header names this server: loopback names and addresses always,
    plus `allowed` (exact names, or "*.example.com" for its subdomains).

    Against DNS rebinding: a web page whose name the attacker re-points at 127.0.0.1 reaches
    a loopback server with its own name in the Host header, which is refused here.  A request
    without a Host header (HTTP/1.0) cannot come from a browser and passes."""

    def __init__(self, app, allowed=()):
        self.app = app
        self.exact = {a.lower().strip("[]").rstrip(".") for a in allowed if not a.startswith("*.")}
        self.suffixes = tuple(a.lower()[1:].rstrip(".") for a in allowed if a.startswith("*."))

    def allows(self, header):
        name = host_name(header)
        if name is None:
            return False
        return is_loopback_name(name) or name in self.exact or name.endswith(self.suffixes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = [value for key, value in scope.get("headers", ()) if key == b"host"]
        if not headers or self.allows(headers[0].decode("latin-1")):
            return await self.app(scope, receive, send)
        shown = headers[0][:60].decode("latin-1")
        msg = (f"the Host header {shown!r} does not name this server; start it with "
               f"--allowed-hosts NAME to serve that name")
        start, body = _json_response(403, error_body(403, msg, code="invalid_host"))
        await send(start)
        await send(body)


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
    """One stderr line per request: method, path, status, prompt/completion tokens, seconds, and
    during a shutdown how the request ended (drain.py)."""

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
            # during a shutdown: "drained" (finished within the drain) or "shutdown" (ended by it;
            # a stream's status stays the 200 already sent, its last event is the error)
            ended = scope.get("state", {}).get("pg_ended")
            line = (f"pygemma: {scope['method']} {scope['path']} {status[0] or 500}{tokens} "
                    f"{time.perf_counter() - t0:.3f}s" + (f" ended={ended}" if ended else ""))
            print(line, file=self.out or sys.stderr, flush=True)
