"""The two generation endpoints: /v1/chat/completions and /v1/completions, plain or streamed."""
import time

from starlette.concurrency import run_in_threadpool

from .. import openai_format as fmt
from ..json_constraint import JsonConstraint, TokenBytes
from . import validate
from .errors import APIError, JSONResponse, error_body
from .streaming import GONE, SSEResponse, Watch, events, submit


async def _start(state, request, parse):
    body = await state.read_json(request)
    req = await run_in_threadpool(parse, body)       # tokenizing a long prompt takes a while
    constraint = None
    if req.json_mode:
        tb = await run_in_threadpool(TokenBytes.for_model, state.model)
        constraint = JsonConstraint(tb)
    job = submit(state.scheduler, req, constraint)
    request.scope.setdefault("state", {})["pg_job"] = job
    return req, job


async def _collect(state, job, receive):
    """Run a job to its end: (text, finish_reason, [TokenLogprob])."""
    texts, lps, finish = [], [], None
    async with Watch(state.scheduler, job, receive):
        async for event in events(job):
            if event[0] == "delta":
                texts.append(event[1])
                if event[2] is not None:
                    lps.append(event[2])
            elif event[0] == "done":
                finish = event[1]
            elif event is GONE:
                raise APIError(499, "the client closed the connection", code="client_closed")
            else:
                raise APIError(event[2], event[1], code="generation_failed")
    return "".join(texts), finish, lps


async def _respond(state, request, parse, id_prefix, chunks, logprobs_shape, response_shape):
    """Validate and submit the request, then stream its chunks or answer with the whole
    response: the plan both endpoints share, with their own shapes."""
    req, job = await _start(state, request, parse)
    cid, created, name = fmt.new_id(id_prefix), int(time.time()), state.model_id
    piece = state.model.piece_bytes
    if req.stream:
        return SSEResponse(state.scheduler, job, chunks(req, job, cid, created, name, piece))
    text, finish, lps = await _collect(state, job, request.receive)
    logprobs = logprobs_shape(lps, piece) if req.logprobs is not None else None
    return JSONResponse(response_shape(cid, created, name, text, finish, job.stats, logprobs))


async def chat_completions(state, request):
    return await _respond(state, request, lambda body: validate.chat_request(
        body, state.prompts, state.scheduler.n_ctx, state.defaults),
        "chatcmpl", _chat_chunks, fmt.chat_logprobs, fmt.chat_completion)


async def _chat_chunks(req, job, cid, created, name, piece):
    def chunk(delta, finish=None, lps=None):
        out = fmt.chat_chunk(cid, created, name, delta, finish,
                             fmt.chat_logprobs(lps, piece) if req.logprobs is not None and lps else None)
        if req.include_usage:
            out["usage"] = None
        return out

    yield chunk({"role": "assistant", "content": ""})
    held = []                                   # logprobs of tokens whose text is held back
    async for event in events(job):
        kind = event[0]
        if kind == "delta":
            if event[2] is not None:
                held.append(event[2])
            if event[1]:
                yield chunk({"content": event[1]}, lps=held)
                held = []
        elif kind == "done":
            if held:
                yield chunk({"content": ""}, lps=held)
            yield chunk({}, event[1])
            if req.include_usage:
                yield fmt.usage_chunk(cid, created, name, job.stats)
        elif event is not GONE:
            yield error_body(event[2], event[1], code="generation_failed")


async def completions(state, request):
    return await _respond(state, request, lambda body: validate.completion_request(
        body, state.model, state.scheduler.n_ctx, state.defaults),
        "cmpl", _completion_chunks, fmt.completion_logprobs, fmt.text_completion)


async def _completion_chunks(req, job, cid, created, name, piece):
    offset, held = 0, []

    def chunk(text, finish=None):
        nonlocal offset, held
        lps = fmt.completion_logprobs(held, piece, offset) if req.logprobs is not None else None
        offset += len(text)
        held = []
        out = fmt.text_completion(cid, created, name, text, finish, None, lps)
        if req.include_usage:
            out["usage"] = None
        return out

    async for event in events(job):
        kind = event[0]
        if kind == "delta":
            if event[2] is not None:
                held.append(event[2])
            if event[1]:
                yield chunk(event[1])
        elif kind == "done":
            yield chunk("", event[1])
            if req.include_usage:
                yield fmt.usage_chunk(cid, created, name, job.stats, "text_completion")
        elif event is not GONE:
            yield error_body(event[2], event[1], code="generation_failed")
