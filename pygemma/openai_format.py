"""OpenAI-shaped dicts for completions and chat completions (shared by the Python API and the
server): the same fields, names and nesting as api.openai.com returns."""
import time
import uuid


def new_id(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(stats):
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.cached_tokens},
    }


def completion_response(model, pieces):
    """Run `pieces` (the generate() iterator) to the end; return a text_completion dict."""
    text = "".join(pieces)
    stats = model.last_stats
    return {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model.name,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": stats.finish_reason}],
        "usage": usage(stats),
    }


def completion_chunks(model, pieces):
    """Yield text_completion chunk dicts: one per piece, then one with finish_reason and usage."""
    cid, created = new_id("cmpl"), int(time.time())

    def chunk(text, finish_reason):
        return {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model.name,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}],
        }

    for piece in pieces:
        yield chunk(piece, None)
    last = chunk("", model.last_stats.finish_reason)
    last["usage"] = usage(model.last_stats)
    yield last


# ---- logprobs ------------------------------------------------------------------------------
# `entries` are pygemma.generation.TokenLogprob objects; piece(id) gives a token's bytes.

def _token_text(piece, tid):
    return piece(tid).decode("utf-8", "replace")


def chat_logprobs(entries, piece):
    """A chat choice's "logprobs": {"content": [{token, logprob, bytes, top_logprobs}]}."""
    def one(tid, lp):
        b = piece(tid)
        return {"token": b.decode("utf-8", "replace"), "logprob": lp, "bytes": list(b)}

    content = []
    for e in entries:
        item = one(e.token, e.logprob)
        item["top_logprobs"] = [one(t, v) for t, v in e.top]
        content.append(item)
    return {"content": content, "refusal": None}


def completion_logprobs(entries, piece, text_offset=0):
    """A completion choice's "logprobs": parallel lists tokens / token_logprobs /
    top_logprobs (one {token: logprob} dict per token) / text_offset."""
    tokens, lps, tops, offsets = [], [], [], []
    for e in entries:
        text = _token_text(piece, e.token)
        tokens.append(text)
        lps.append(e.logprob)
        top = {}
        for t, v in e.top:
            top.setdefault(_token_text(piece, t), v)
        tops.append(top)
        offsets.append(text_offset)
        text_offset += len(text)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


# ---- chat completions ----------------------------------------------------------------------

def chat_completion(cid, created, model_name, text, finish_reason, stats, logprobs=None):
    """A "chat.completion" object."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model_name,
        "choices": [{"index": 0,
                     "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": logprobs,
                     "finish_reason": finish_reason}],
        "usage": usage(stats),
        "system_fingerprint": None,
    }


def chat_chunk(cid, created, model_name, delta, finish_reason=None, logprobs=None):
    """A "chat.completion.chunk" with one choice; delta: {"role"?, "content"?}."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model_name,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}],
    }


def usage_chunk(cid, created, model_name, stats, obj="chat.completion.chunk"):
    """The last chunk of a stream with stream_options.include_usage: no choices, the usage."""
    return {"id": cid, "object": obj, "created": created, "model": model_name,
            "system_fingerprint": None, "choices": [], "usage": usage(stats)}


def text_completion(cid, created, model_name, text, finish_reason, stats=None, logprobs=None):
    """A "text_completion" object (a stream chunk when stats is None)."""
    out = {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": model_name,
        "choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish_reason}],
        "system_fingerprint": None,
    }
    if stats is not None:
        out["usage"] = usage(stats)
    return out
