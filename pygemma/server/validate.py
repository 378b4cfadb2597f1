"""Request bodies -> validated generation requests (400s name the offending field).

Sampling fields go through the shared SamplingParams.from_openai; this module checks the rest
of the OpenAI request shape (types, ranges, what pygemma does not support) and turns the
prompt or messages into token ids.
"""
import json

from ..sampling import SamplingParams, excerpt
from .errors import APIError, bad_request, too_large

MAX_TOP_LOGPROBS_CHAT = 20
MAX_LOGPROBS_COMPLETION = 5
# Bounds on the work and the answer of one /tokenize or /detokenize: about the text of the
# longest Gemma context (128K tokens), a second or less of a small CPU, answers of a few MB.
MAX_TOKENIZE_CHARS = 1 << 19
MAX_TOKENIZE_TOKENS = 1 << 18   # text can take several tokens per character (byte fallback)
MAX_DETOKENIZE_TOKENS = 1 << 18
MAX_PIECES = 1 << 16            # /tokenize with_pieces: about 30 bytes of JSON per token


class GenRequest:
    """What a handler hands to the scheduler, plus how to answer."""

    def __init__(self, ids, params, stream, include_usage, logprobs, json_mode):
        self.ids, self.params = ids, params
        self.stream, self.include_usage = stream, include_usage
        self.logprobs = logprobs            # None, or alternatives per token (0..20)
        self.json_mode = json_mode


def check_content_type(header):
    """JSON endpoints take JSON only (a charset parameter is fine).  A web page can POST
    text/plain or a form to any address without the browser asking first (CORS); a JSON
    content type needs the server's consent, which it does not give other origins."""
    media = (header or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        shown = excerpt(header) if header else "missing"
        raise APIError(415, f"Content-Type {shown}: the body must be JSON, sent with "
                            f"Content-Type: application/json", code="unsupported_media_type")


def parse_json(body):
    def no_constants(name):
        raise ValueError(f"{name} is not valid JSON")

    try:
        data = json.loads(body, parse_constant=no_constants)
    except (ValueError, RecursionError) as e:
        msg = str(e) if isinstance(e, ValueError) else "nested too deeply"
        raise bad_request(f"the request body is not valid JSON: {msg}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    return data


def _typed(body, key, types, what, default=None):
    v = body.get(key)
    if v is None:
        return default
    ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in _as_tuple(types))
    if not ok:
        raise bad_request(f"{key} = {_short(v)}: must be {what}", key)
    return v


def _as_tuple(types):
    return types if isinstance(types, tuple) else (types,)


_short = excerpt                 # a value quoted in a message: a short excerpt of it


def _int_in(body, key, lo, hi, default=None):
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise bad_request(f"{key} = {_short(v)}: must be an integer in [{lo}, {hi}]", key)
    return v


def _sampling(body, base):
    try:
        return SamplingParams.from_openai(body, base)
    except ValueError as e:
        msg = str(e)
        raise bad_request(msg, msg.split(" ", 1)[0]) from None


def _common(body, base):
    _typed(body, "model", str, "a string")
    _typed(body, "user", str, "a string")
    if _int_in(body, "n", 1, 1 << 31, 1) != 1:
        raise bad_request("n: only one choice per request is supported", "n")
    stream = _typed(body, "stream", bool, "a boolean", False)
    opts = _typed(body, "stream_options", dict, "an object", {})
    include_usage = _typed(opts, "include_usage", bool, "a boolean", False) if opts else False
    if opts and not stream:
        raise bad_request("stream_options is only allowed with stream: true", "stream_options")
    params = _sampling(body, base)
    return stream, include_usage, params


def _response_format(body):
    rf = _typed(body, "response_format", dict, "an object")
    if rf is None:
        return False
    kind = rf.get("type")
    if kind == "text":
        return False
    if kind == "json_object":
        return True
    if kind == "json_schema":
        raise bad_request("response_format json_schema is not supported; use json_object",
                          "response_format.type")
    raise bad_request(f"response_format.type = {_short(kind)}: must be text or json_object",
                      "response_format.type")


def _check_fits(ids, n_ctx):
    if len(ids) > n_ctx:
        raise APIError(400, f"the prompt has {len(ids)} tokens, more than the context of {n_ctx} "
                       f"tokens per slot", "messages", "context_length_exceeded")
    if not ids:
        raise bad_request("the prompt is empty", "prompt")


def chat_request(body, prompts, n_ctx, base):
    """POST /v1/chat/completions."""
    stream, include_usage, params = _common(body, base)
    logprobs = _typed(body, "logprobs", bool, "a boolean", False)
    top = _int_in(body, "top_logprobs", 0, MAX_TOP_LOGPROBS_CHAT)
    if top is not None and not logprobs:
        raise bad_request("top_logprobs requires logprobs: true", "top_logprobs")
    json_mode = _response_format(body)
    for key in ("tools", "functions"):
        if body.get(key):
            raise bad_request(f"{key}: tool calling is not supported", key)
    ids = prompts.ids(body.get("messages"))
    _check_fits(ids, n_ctx)
    return GenRequest(ids, params, stream, include_usage, (top or 0) if logprobs else None, json_mode)


def completion_request(body, model, n_ctx, base):
    """POST /v1/completions: prompt is a string, a token list, or a one-element list of either."""
    stream, include_usage, params = _common(body, base)
    logprobs = _int_in(body, "logprobs", 0, MAX_LOGPROBS_COMPLETION)
    if _typed(body, "echo", bool, "a boolean", False):
        raise bad_request("echo is not supported", "echo")
    if _typed(body, "suffix", str, "a string"):
        raise bad_request("suffix is not supported", "suffix")
    if _int_in(body, "best_of", 1, 1 << 31, 1) != 1:
        raise bad_request("best_of: only 1 is supported", "best_of")
    ids = prompt_ids(body.get("prompt"), model)
    _check_fits(ids, n_ctx)
    return GenRequest(ids, params, stream, include_usage, logprobs, _response_format(body))


def prompt_ids(prompt, model):
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]                      # a batch of one
    if isinstance(prompt, str):
        return model.tokenize(prompt, add_bos=True, special=True)
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool)
                                                   for t in prompt):
        bad = [t for t in prompt if not 0 <= t < model.n_vocab]
        if bad:
            raise bad_request(f"prompt: token id {_short(bad[0])} is out of range [0, {model.n_vocab})",
                              "prompt")
        return list(prompt)
    if isinstance(prompt, list) and len(prompt) > 1 and all(isinstance(p, (str, list)) for p in prompt):
        raise bad_request("prompt: only one prompt per request is supported", "prompt")
    raise bad_request("prompt must be a string or a non-empty array of token ids", "prompt")


def tokenize_request(body, model):
    """POST /tokenize {"content": str, "add_special"?: bool, "with_pieces"?: bool}."""
    content = body.get("content")
    if not isinstance(content, str):
        raise bad_request("content must be a string", "content")
    if len(content) > MAX_TOKENIZE_CHARS:
        raise too_large(f"content has {len(content)} characters; /tokenize takes at most "
                        f"{MAX_TOKENIZE_CHARS}", "content")
    add_special = _typed(body, "add_special", bool, "a boolean", False)
    with_pieces = _typed(body, "with_pieces", bool, "a boolean", False)
    return content, add_special, with_pieces


def check_answer_size(ids, with_pieces):
    """Refuse the /tokenize answers that would be huge (with_pieces: ~30 bytes per token)."""
    if len(ids) > MAX_TOKENIZE_TOKENS:
        raise too_large(f"the content is {len(ids)} tokens; /tokenize answers at most "
                        f"{MAX_TOKENIZE_TOKENS}", "content")
    if with_pieces and len(ids) > MAX_PIECES:
        raise too_large(f"the content is {len(ids)} tokens; with_pieces answers at most {MAX_PIECES} "
                        f"(send less text, or leave out with_pieces)", "with_pieces")


def detokenize_request(body, model):
    """POST /detokenize {"tokens": [int]}."""
    tokens = body.get("tokens")
    if isinstance(tokens, list) and len(tokens) > MAX_DETOKENIZE_TOKENS:
        raise too_large(f"tokens has {len(tokens)} ids; /detokenize takes at most "
                        f"{MAX_DETOKENIZE_TOKENS}", "tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool)
                                               for t in tokens):
        raise bad_request("tokens must be an array of integers", "tokens")
    bad = [t for t in tokens if not 0 <= t < model.n_vocab]
    if bad:
        raise bad_request(f"tokens: id {_short(bad[0])} is out of range [0, {model.n_vocab})", "tokens")
    return tokens
