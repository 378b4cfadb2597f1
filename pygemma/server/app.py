"""The Starlette application: routes, error handlers, middleware, lifespan."""
import contextlib
import functools
import json
import os
import sys
import time
import traceback

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Route

from ..sampling import SamplingParams
from . import generate, validate, web
from .chat_prompt import PromptBuilder
from .drain import AdmissionGate
from .errors import APIError, JSONResponse, bad_request, error_body
from .middleware import ALL_INTERFACES, AccessLog, APIKeyMiddleware, HostCheck, is_loopback_host
from .scheduler import Scheduler

DEFAULT_BODY_LIMIT = 8 << 20
DEFAULT_QUEUE_SIZE = 64


class ServerState:
    """What the handlers share: the model, its slots' scheduler, the prompt builder, settings."""

    def __init__(self, model, n_parallel=1, n_ctx=None, queue_size=DEFAULT_QUEUE_SIZE,
                 body_limit=DEFAULT_BODY_LIMIT, defaults=None, model_id=None, reuse_default=False):
        """reuse_default: slot 0 is the model's own sequence (when nothing else uses it, as
        in --server mode: one KV cache less)."""
        if n_parallel < 1:
            raise ValueError(f"the number of parallel slots must be >= 1, got {n_parallel}")
        self.model = model
        seqs = []
        if reuse_default and (n_ctx is None or n_ctx == model.n_ctx):
            seqs.append(model._seq)
        while len(seqs) < n_parallel:
            seqs.append(model.new_sequence(n_ctx=n_ctx))
        self.scheduler = Scheduler(model, seqs, queue_size)
        self.prompts = PromptBuilder(model)
        self.defaults = defaults or SamplingParams()
        self.model_id = model_id or os.path.basename(model.path)
        self.body_limit = body_limit
        self.created = int(time.time())

    async def read_body(self, request):
        """The request body, refusing (413) as soon as it grows past the limit."""
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise bad_request("invalid Content-Length header")
            if int(length) > self.body_limit:
                raise self._too_large()
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.body_limit:
                    raise self._too_large()
                chunks.append(chunk)
        except ClientDisconnect:
            raise APIError(499, "the client closed the connection", code="client_closed") from None
        return b"".join(chunks)

    async def read_json(self, request):
        """The body of a JSON endpoint as a dict: 415 unless sent as JSON, 413 past the
        limit, 400 unless a JSON object.  Parsed off the event loop (a few MB take a while)."""
        validate.check_content_type(request.headers.get("content-type"))
        return await run_in_threadpool(validate.parse_json, await self.read_body(request))

    def _too_large(self):
        return APIError(413, f"the request body is larger than {self.body_limit} bytes",
                        code="request_too_large")


def json_list(items, chunk=4096):
    """json.dumps(items), a slice at a time: one json.dumps of 200K ids holds the GIL for
    ~0.1 s, while between slices the event loop's thread can take it."""
    return "[" + ",".join(json.dumps(items[i:i + chunk], ensure_ascii=False, separators=(",", ":"))[1:-1]
                          for i in range(0, len(items), chunk)) + "]"


def host_allowlist(host, allowed_hosts=None):
    """The Host header names HostCheck accepts besides loopback ones, or None for any.

    A loopback server is checked by default (DNS rebinding would otherwise open it to every
    web page); one on other interfaces only when --allowed-hosts names what it answers to."""
    allowed = [h.strip() for h in allowed_hosts or () if h.strip()]
    if "*" in allowed or (not allowed and not is_loopback_host(host)):
        return None
    if not is_loopback_host(host) and host not in ALL_INTERFACES:
        allowed.append(host)            # the address it listens on
    return allowed


def create_app(state, api_key=None, log=True, host="127.0.0.1", allowed_hosts=None,
               cors_origins=None, drain=None):
    """host: the address the server listens on; allowed_hosts: more Host header names to
    accept ("*": any); cors_origins: origins whose pages may call the API ("*": any);
    drain: the Drain whose AdmissionGate refuses requests during shutdown (drain.py)."""
    async def health(request):
        return JSONResponse({"status": "ok", **state.scheduler.stats()})

    async def models(request):
        return JSONResponse({"object": "list", "data": [
            {"id": state.model_id, "object": "model", "created": state.created, "owned_by": "pygemma"}]})

    # Tokenizing (C, without the GIL; the tokenizer is immutable, so threads share it) and
    # rendering the answer run on worker threads: the event loop stays free for /health.
    def tokenize_answer(body):
        content, add_special, with_pieces = validate.tokenize_request(body, state.model)
        ids = state.model.tokenize(content, add_bos=add_special, special=True)
        validate.check_answer_size(ids, with_pieces)
        if with_pieces:
            ids = [{"id": t, "piece": state.model.piece_bytes(t).decode("utf-8", "replace")} for t in ids]
        return Response(f'{{"tokens":{json_list(ids)}}}'.encode("utf-8"), media_type="application/json")

    def detokenize_answer(body):
        tokens = validate.detokenize_request(body, state.model)
        return JSONResponse({"content": state.model.detokenize(tokens)})

    async def tokenize(request):
        return await run_in_threadpool(tokenize_answer, await state.read_json(request))

    async def detokenize(request):
        return await run_in_threadpool(detokenize_answer, await state.read_json(request))

    async def chat(request):
        return await generate.chat_completions(state, request)

    async def completions(request):
        return await generate.completions(state, request)

    async def internal_error(request, exc):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        return JSONResponse(error_body(500, "internal server error (see the server's log)"),
                            status_code=500)

    def guarded(handler):
        """A bug in a handler becomes a JSON 500 here, inside the app: Starlette's last-resort
        handler would re-raise it to uvicorn, which then drops the keep-alive connection."""
        @functools.wraps(handler)
        async def run(request):
            try:
                return await handler(request)
            except (APIError, HTTPException):
                raise
            except Exception as exc:            # noqa: BLE001 -- the operator gets the traceback
                return await internal_error(request, exc)
        return run

    health, models, tokenize, detokenize, chat, completions = map(
        guarded, (health, models, tokenize, detokenize, chat, completions))

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/completions", completions, methods=["POST"]),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/detokenize", detokenize, methods=["POST"]),
        *web.routes(),
    ]

    async def api_error(request, exc):
        return exc.response()

    async def http_error(request, exc):
        message = {404: f"no such endpoint: {request.method} {request.url.path}",
                   405: f"method {request.method} is not allowed on {request.url.path}"}.get(
                       exc.status_code, exc.detail)
        return JSONResponse(error_body(exc.status_code, message), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state.scheduler.start()
        try:
            yield
        finally:
            state.scheduler.stop()

    middleware = [Middleware(AccessLog, enabled=log)]
    if drain is not None:                   # inside the log: refusals are logged
        middleware.append(Middleware(AdmissionGate, drain=drain))
    allowed = host_allowlist(host, allowed_hosts)
    if allowed is not None:
        middleware.append(Middleware(HostCheck, allowed=allowed))
    # No origin but the server's own (the web chat) may call it unless --cors-origins says so;
    # preflights are answered here, before the key check (browsers send them without the key).
    middleware.append(Middleware(CORSMiddleware, allow_origins=list(cors_origins or ()),
                                 allow_methods=["GET", "POST"], max_age=600,
                                 allow_headers=["Authorization", "Content-Type", "X-API-Key"]))
    if api_key:
        middleware.append(Middleware(APIKeyMiddleware, api_key=api_key))
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                     exception_handlers={APIError: api_error, HTTPException: http_error,
                                         Exception: internal_error})
