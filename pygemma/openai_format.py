"""OpenAI-shaped dicts for completions (shared by the Python API and the server)."""
import time
import uuid


def new_id(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(stats):
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
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
