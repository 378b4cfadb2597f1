"""Hypothesis-generated request bodies against every endpoint of one live server: never a 5xx.

Bodies come in three kinds: any JSON value at all (and raw bytes that are not JSON) sent to any
endpoint with GET or POST; OpenAI-shaped requests (chat, completions, plain and streamed) whose
fields take realistic values, wrong types, nested objects, and numbers JSON can write but
float32 or int32 cannot hold (1e39, 1e-300, 1e400, 2**64, ...); and /tokenize, /detokenize
bodies.  Every answer must be below 500, errors in OpenAI's {"error": {...}} shape, and a
stream must carry no server_error event.  Generation stays cheap: the server's default
max_tokens is 4, and generated bodies never ask for more than 4 tokens (nor -1, "no limit").

Examples: PYGEMMA_HYPOTHESIS_EXAMPLES bodies in all (default 420, split evenly across the
tests), derandomized so CI runs are repeatable.  A soak run by hand, recording each 5xx body
to a JSON-lines file instead of stopping at the first:

    PYGEMMA_HYPOTHESIS_EXAMPLES=10000 PYGEMMA_HYPOTHESIS_5XX_LOG=/tmp/5xx.jsonl \\
        python -m pytest -q tests/test_server_hypothesis.py --hypothesis-show-statistics
"""
import collections
import json
import os

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pygemma.sampling import SamplingParams
from server_util import live_server

N_TESTS = 7
TOTAL_EXAMPLES = int(os.environ.get("PYGEMMA_HYPOTHESIS_EXAMPLES", "420"))
FIVE_XX_LOG = os.environ.get("PYGEMMA_HYPOTHESIS_5XX_LOG")
MAX_NEW_TOKENS = 4

settings.register_profile(
    "pygemma-server", max_examples=max(1, -(-TOTAL_EXAMPLES // N_TESTS)), deadline=None,
    derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
PROFILE = settings.get_profile("pygemma-server")

GET_PATHS = ["/health", "/v1/health", "/v1/models", "/models", "/", "/web/index.html", "/nope"]
POST_PATHS = ["/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions",
              "/tokenize", "/detokenize"]


STATUS_COUNTS = collections.Counter()     # (path, status) -> requests: shown with -s


@pytest.fixture(scope="module")
def client(model_path):
    with live_server(model_path, n_ctx=128, n_threads=2, defaults=SamplingParams(max_tokens=MAX_NEW_TOKENS)) \
            as (server, _):
        with httpx.Client(base_url=server.url.rstrip("/"), timeout=120) as c:
            yield c
    print(f"\n{sum(STATUS_COUNTS.values())} requests; by endpoint and status:")
    for (path, status), n in sorted(STATUS_COUNTS.items()):
        print(f"  {path:24} {status}  {n}")


# ---- JSON text with literals Python's json.dumps cannot write ------------------------------

class Raw:
    """A JSON literal written as is: NaN, 1e400, a 500-digit integer, ..."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return f"Raw({self.text!r})"

    def value(self):
        def constant(name):
            return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]
        try:
            return json.loads(self.text, parse_constant=constant)
        except ValueError:
            return None


def dump(v):
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(k) + ":" + dump(x) for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(dump(x) for x in v) + "]"
    return json.dumps(v)


# ---- strategies -----------------------------------------------------------------------------

RAW_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "1e39", "-1e39", "3.5e38",
               "1e-300", "-1e-300", "1e-46", "-0.0", "-0", "4294967296", "9223372036854775807",
               "9223372036854775808", "18446744073709551616", "-9223372036854775809", "0.5e1", "1E2",
               "4.0", "-1.0", "2.00000000000000000001"]
EDGE_NUMBERS = [0, 1, -1, 2, 4, 5, 64, 2**31 - 1, 2**31, -2**31 - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63,
                2**64, -2**63, 10**30, 0.0, -0.0, 0.5, 1.0, 1.5, 2.0, 2.0000001, 1e-300, 1e300, 1e39,
                -1e39, 3.4028235e38, 1.17549435e-38, 1e-45, 5e-324, 1.7976931348623157e308]

# integers around Python's 4300-digit limit for int(str) (json.loads refuses longer ones)
raw_numbers = st.one_of(st.sampled_from(RAW_NUMBERS).map(Raw),
                        st.integers(1, 4400).map(lambda n: Raw("7" * n)))
numbers = st.one_of(st.sampled_from(EDGE_NUMBERS), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    raw_numbers)
texts = st.text(max_size=40)
json_scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(json_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=5), st.dictionaries(st.text(max_size=12), kids, max_size=5)), max_leaves=20)

# ---- OpenAI-shaped bodies: valid values (extremes of the valid ranges included), then 0-3
# fields replaced by anything at all, so most requests get past validation into the sampler.

def extremes(lo, hi, *inside):
    """Floats in [lo, hi], mostly the ends and the values float32 cannot tell apart."""
    edge = [lo, hi, *inside]
    return st.one_of(st.floats(lo, hi), st.sampled_from(edge))


TINY = [1e-300, 5e-324, 1e-45, 1.4e-45, 1e-38, 1.17549435e-38]
small_counts = st.one_of(st.integers(1, MAX_NEW_TOKENS), st.sampled_from([1.0, 4.0]))
token_ids = st.one_of(st.integers(0, 300), st.integers(262000, 262143), st.sampled_from([0, 1, 2, 105, 106, 107]))
wild_token_ids = st.one_of(token_ids, st.integers(), st.sampled_from([-1, 262144, 2**31 - 1, 2**31, -2**31, 2**64]))
short_texts = st.text(max_size=24)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "user"]),
     "content": st.one_of(short_texts, st.lists(st.fixed_dictionaries(
         {"type": st.just("text"), "text": short_texts}), min_size=1, max_size=2))},
    optional={"name": short_texts})
valid_messages = st.lists(message, min_size=1, max_size=3).map(
    lambda ms: ms if ms[-1]["role"] == "user" else ms + [{"role": "user", "content": "hi"}])

VALID_SAMPLING = {
    "model": short_texts, "user": short_texts, "n": st.just(1),
    "max_tokens": small_counts, "max_completion_tokens": small_counts,
    "temperature": extremes(0.0, 2.0, *TINY, 1.0), "top_p": extremes(0.0, 1.0, *TINY),
    "min_p": extremes(0.0, 1.0, *TINY), "top_k": st.one_of(st.integers(-5, 300000), st.sampled_from([0, 1, 2**31 - 1])),
    "seed": st.one_of(st.integers(0, 2**64 - 2), st.sampled_from([-1, 0, 2**63, 2**64 - 2])),
    "stop": st.one_of(short_texts, st.lists(st.text(min_size=1, max_size=4), max_size=4)),
    "presence_penalty": extremes(-2.0, 2.0, *TINY), "frequency_penalty": extremes(-2.0, 2.0, *TINY),
    "repeat_penalty": st.one_of(extremes(1e-6, 10.0, 1.0), st.sampled_from(TINY + [1e38, 3.4e38, 1e39, 1e300])),
    "repeat_last_n": st.integers(-1, 300),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "response_format": st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])}),
}


@st.composite
def mutated(draw, required, optional):
    """A body of valid fields, with 0-3 fields (or new keys) then set to any JSON value."""
    body = draw(st.fixed_dictionaries(required, optional=optional))
    keys = sorted(set(required) | set(optional))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.one_of(st.sampled_from(keys), st.text(max_size=10)))
        body[key] = draw(json_values)
    return body


chat_bodies = mutated({"messages": valid_messages}, {
    **VALID_SAMPLING, "stream": st.just(False), "logprobs": st.booleans(), "top_logprobs": st.integers(0, 20),
    "tools": st.just([]), "tool_choice": st.just("none")})
prompts = st.one_of(short_texts.filter(bool), st.lists(token_ids, min_size=1, max_size=12),
                    st.lists(short_texts.filter(bool), min_size=1, max_size=1),
                    st.lists(st.lists(wild_token_ids, min_size=1, max_size=6), min_size=1, max_size=2))
completion_bodies = mutated({"prompt": prompts}, {
    **VALID_SAMPLING, "stream": st.just(False), "logprobs": st.integers(0, 5), "echo": st.just(False),
    "suffix": st.just(""), "best_of": st.just(1)})
tokenize_bodies = mutated({"content": st.one_of(short_texts, st.lists(st.sampled_from(
    ["<start_of_turn>", "<end_of_turn>", "<bos>", "\u2581", " ", "\n", "a", "\ud800", "\U0001f600", "\udc80"]),
    max_size=12).map("".join))}, {"add_special": st.booleans(), "with_pieces": st.booleans()})
detokenize_bodies = mutated({"tokens": st.one_of(st.lists(token_ids, max_size=20), st.lists(wild_token_ids, max_size=20))}, {})


def cheap(body):
    """The body with any max_tokens / max_completion_tokens asking for more than MAX_NEW_TOKENS
    (or -1, no limit) replaced by MAX_NEW_TOKENS, so that no example generates for long."""
    if not isinstance(body, dict):
        return body
    for key in ("max_tokens", "max_completion_tokens"):
        v = body.get(key)
        v = v.value() if isinstance(v, Raw) else v
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and \
                (v > MAX_NEW_TOKENS or v == -1):
            body[key] = MAX_NEW_TOKENS
    return body


# ---- checking answers -------------------------------------------------------------------------

def record_or_fail(method, path, body, status, text):
    if FIVE_XX_LOG:
        with open(FIVE_XX_LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps({"method": method, "path": path, "body": body, "status": status,
                                "response": text[:2000]}) + "\n")
        return
    pytest.fail(f"{method} {path} -> {status}\nbody: {body[:2000]}\nresponse: {text[:2000]}")


def request(client, method, path, body):
    """Send body (bytes) and check the answer; streams are read to their end."""
    headers = {"content-type": "application/json"}
    shown = body.decode("utf-8", "backslashreplace")
    with client.stream(method, path, content=body, headers=headers) as r:
        text = r.read().decode("utf-8", "replace")
        STATUS_COUNTS[path, r.status_code] += 1
        if r.status_code >= 500:
            record_or_fail(method, path, shown, r.status_code, text)
            return
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            assert r.status_code == 200
            for line in text.splitlines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    event = json.loads(line[6:])
                    if isinstance(event.get("error"), dict) and event["error"].get("type") == "server_error":
                        record_or_fail(method, path, shown, 200, line)
            assert text.rstrip().endswith("data: [DONE]"), text[-500:]
        elif r.status_code >= 400 and r.headers.get("content-type", "").startswith("application/json"):
            assert isinstance(json.loads(text).get("error"), dict), text


def post(client, path, body):
    request(client, "POST", path, dump(cheap(body)).encode())


# ---- the tests ---------------------------------------------------------------------------------

@settings(PROFILE)
@given(st.sampled_from(["GET", "POST"]), st.sampled_from(GET_PATHS + POST_PATHS),
       st.one_of(json_values.map(lambda v: dump(cheap(v)).encode()), st.binary(max_size=64),
                 st.sampled_from([b"", b"{", b'{"messages": [', b"\xff\xfe", b"[]" * 1000, b"[" * 100000,
                                  b'{"a":' * 2000 + b"1" + b"}" * 2000])))
def test_any_body_any_endpoint(client, method, path, body):
    request(client, method, path, body)


@settings(PROFILE)
@given(chat_bodies)
def test_chat_completions(client, body):
    post(client, "/v1/chat/completions", body)


@settings(PROFILE)
@given(completion_bodies)
def test_completions(client, body):
    post(client, "/v1/completions", body)


@settings(PROFILE)
@given(st.one_of(chat_bodies.map(lambda b: ("/v1/chat/completions", b)),
                 completion_bodies.map(lambda b: ("/v1/completions", b))),
       st.one_of(st.none(), st.fixed_dictionaries({"include_usage": st.one_of(st.booleans(), json_values)})))
def test_streaming(client, path_body, stream_options):
    path, body = path_body
    body = {**body, "stream": True}
    if stream_options is not None:
        body["stream_options"] = stream_options
    post(client, path, body)


@settings(PROFILE)
@given(tokenize_bodies)
def test_tokenize(client, body):
    post(client, "/tokenize", body)


@settings(PROFILE)
@given(detokenize_bodies)
def test_detokenize(client, body):
    post(client, "/detokenize", body)


@settings(PROFILE)
@given(st.sampled_from(GET_PATHS), st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))
def test_get_endpoints(client, path, query):
    r = client.get(path, params=query)
    STATUS_COUNTS[path, r.status_code] += 1
    assert r.status_code < 500, (path, query, r.text[:500])
