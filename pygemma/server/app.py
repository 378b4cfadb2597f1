"""The Starlette application: routes, error handlers, middleware, lifespan."""
import contextlib
import functools
import os
import sys
import time
import traceback

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.routing import Route

from ..sampling import SamplingParams
from . import generate, validate, web
from .chat_prompt import PromptBuilder
from .errors import APIError, JSONResponse, bad_request, error_body
from .middleware import AccessLog, APIKeyMiddleware
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

    def _too_large(self):
        return APIError(413, f"the request body is larger than {self.body_limit} bytes",
                        code="request_too_large")


def create_app(state, api_key=None, log=True):
    async def health(request):
        return JSONResponse({"status": "ok", **state.scheduler.stats()})

    async def models(request):
        return JSONResponse({"object": "list", "data": [
            {"id": state.model_id, "object": "model", "created": state.created, "owned_by": "pygemma"}]})

    async def tokenize(request):
        body = validate.parse_json(await state.read_body(request))
        content, add_special, with_pieces = validate.tokenize_request(body, state.model)
        ids = state.model.tokenize(content, add_bos=add_special, special=True)
        if with_pieces:
            return JSONResponse({"tokens": [
                {"id": t, "piece": state.model.piece_bytes(t).decode("utf-8", "replace")} for t in ids]})
        return JSONResponse({"tokens": ids})

    async def detokenize(request):
        body = validate.parse_json(await state.read_body(request))
        tokens = validate.detokenize_request(body, state.model)
        return JSONResponse({"content": state.model.detokenize(tokens)})

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
    if api_key:
        middleware.append(Middleware(APIKeyMiddleware, api_key=api_key))
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                     exception_handlers={APIError: api_error, HTTPException: http_error,
                                         Exception: internal_error})
