"""Every error the server reports, over raw HTTP: OpenAI's error shape and status codes, the API
key, body limits, and a bounded fuzz of random JSON bodies (never a 5xx, server healthy after)."""
import http.client as httplib
import json

import pytest

import pygemma

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from server_util import live_server  # noqa: E402

KEY = "s3cret-key"
LIMIT = 64 * 1024
N_CTX = 256


@pytest.fixture(scope="module")
def server():
    path = pygemma.model.default_model_path()
    if path is None:
        pytest.skip("default model package not installed")
    with live_server(str(path), n_ctx=N_CTX, n_parallel=2, api_key=KEY, body_limit=LIMIT,
                     defaults=pygemma.SamplingParams(max_tokens=4)) as (srv, _):
        yield srv


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
        yield c


def check_error(r, status, param=None, code=None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in r.text
    if param is not None:
        assert body["error"]["param"] == param, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


CHAT = "/v1/chat/completions"
MSGS = [{"role": "user", "content": "hi"}]


def test_api_key(server):
    url = server.url
    check_error(httpx.post(url + CHAT.lstrip("/"), json={"messages": MSGS}), 401, code="invalid_api_key")
    check_error(httpx.get(url + "v1/models", headers={"Authorization": "Bearer wrong"}), 401)
    check_error(httpx.get(url + "v1/models", headers={"Authorization": f"Basic {KEY}"}), 401)
    check_error(httpx.post(url + "tokenize", json={"content": "x"}), 401)
    assert httpx.get(url + "v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(url + "v1/models", headers={"x-api-key": KEY}).status_code == 200
    assert httpx.get(url + "health").status_code == 200                  # open
    assert httpx.get(url).status_code == 200                             # the web chat page is open


@pytest.mark.parametrize("body, param", [
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "tool", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content[0].type"),
    ({"messages": MSGS, "temperature": "hot"}, "temperature"),
    ({"messages": MSGS, "temperature": 2.5}, "temperature"),
    ({"messages": MSGS, "top_p": -0.1}, "top_p"),
    ({"messages": MSGS, "presence_penalty": 3}, "presence_penalty"),
    ({"messages": MSGS, "max_tokens": 0}, "max_tokens"),
    ({"messages": MSGS, "max_completion_tokens": "5"}, "max_completion_tokens"),
    ({"messages": MSGS, "seed": 1.5}, "seed"),
    ({"messages": MSGS, "stop": 7}, "stop"),
    ({"messages": MSGS, "stream": "yes"}, "stream"),
    ({"messages": MSGS, "stream_options": {"include_usage": True}}, "stream_options"),
    ({"messages": MSGS, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"messages": MSGS, "top_logprobs": 2}, "top_logprobs"),
    ({"messages": MSGS, "n": 2}, "n"),
    ({"messages": MSGS, "model": 5}, "model"),
    ({"messages": MSGS, "response_format": {"type": "json_schema", "json_schema": {}}}, "response_format.type"),
    ({"messages": MSGS, "response_format": "json"}, "response_format"),
])
def test_chat_bad_requests(http, body, param):
    check_error(http.post(CHAT, json=body), 400, param=param)


@pytest.mark.parametrize("body, param", [
    ({}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": [1, -2]}, "prompt"),
    ({"prompt": [1, 10**9]}, "prompt"),
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": "x", "logprobs": 6}, "logprobs"),
    ({"prompt": "x", "echo": True}, "echo"),
    ({"prompt": "x", "best_of": 3}, "best_of"),
])
def test_completion_bad_requests(http, body, param):
    check_error(http.post("/v1/completions", json=body), 400, param=param)


def test_prompt_longer_than_context(http):
    long = " ".join(["word"] * (N_CTX + 10))
    check_error(http.post(CHAT, json={"messages": [{"role": "user", "content": long}]}), 400,
                code="context_length_exceeded")
    check_error(http.post("/v1/completions", json={"prompt": list(range(10, N_CTX + 12))}), 400,
                code="context_length_exceeded")


@pytest.mark.parametrize("data", [b"{", b"not json", b"[1, 2]", b'"text"', b"", b"\xff\xfe",
                                  b'{"messages": NaN}', b"[" * 30000],
                         ids=["open", "text", "array", "string", "empty", "bytes", "nan", "deep"])
def test_malformed_json(http, data):
    for path in (CHAT, "/v1/completions", "/tokenize", "/detokenize"):
        check_error(http.post(path, content=data, headers={"content-type": "application/json"}), 400)


def test_tokenize_detokenize(http):
    toks = http.post("/tokenize", json={"content": "Hello world"}).json()["tokens"]
    assert toks and all(isinstance(t, int) for t in toks)
    assert http.post("/detokenize", json={"tokens": toks}).json() == {"content": "Hello world"}
    pieces = http.post("/tokenize", json={"content": "Hello world", "with_pieces": True}).json()["tokens"]
    assert [p["id"] for p in pieces] == toks and "".join(p["piece"] for p in pieces) == "Hello world"
    check_error(http.post("/tokenize", json={"content": 5}), 400, param="content")
    check_error(http.post("/detokenize", json={"tokens": ["a"]}), 400, param="tokens")
    check_error(http.post("/detokenize", json={"tokens": [-1]}), 400, param="tokens")


def test_not_found_and_method_not_allowed(http):
    check_error(http.get("/v2/everything"), 404)
    check_error(http.post("/v1/models"), 405)
    check_error(http.get(CHAT), 405)
    check_error(http.delete("/tokenize"), 405)
    check_error(http.get("/web/../../etc/passwd"), 404)


def test_body_too_large(server, http):
    big = json.dumps({"messages": [{"role": "user", "content": "x" * (LIMIT + 10)}]})
    check_error(http.post(CHAT, content=big, headers={"content-type": "application/json"}), 413)

    def chunks():                              # no Content-Length: refused while reading
        for _ in range(LIMIT // 1000 + 5):
            yield b" " * 1000
    check_error(http.post(CHAT, content=chunks(), headers={"content-type": "application/json"}), 413)
    # a lying Content-Length, raw: the server refuses before reading the body
    conn = http_client(server)
    conn.putrequest("POST", CHAT)
    conn.putheader("Authorization", f"Bearer {KEY}")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(10 * LIMIT))
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 413 and json.loads(r.read())["error"]["code"] == "request_too_large"
    conn.close()
    assert http.get("/health").status_code == 200


def http_client(server):
    return httplib.HTTPConnection("127.0.0.1", server.port, timeout=60)


def test_errors_inside_streams_are_sse_and_valid_requests_work(http):
    r = http.post(CHAT, json={"messages": MSGS, "max_tokens": 3, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [line for line in r.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)


# ---- fuzz ----------------------------------------------------------------------------------
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                     st.text(max_size=12))
_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
_FIELDS = ["model", "messages", "prompt", "temperature", "top_p", "max_tokens", "max_completion_tokens",
           "stop", "seed", "stream", "stream_options", "logprobs", "top_logprobs", "response_format",
           "presence_penalty", "frequency_penalty", "n", "content", "tokens", "top_k", "min_p",
           "echo", "add_special", "with_pieces", "repeat_penalty", "repeat_last_n"]
_message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "developer", "x"]),
                                  "content": st.one_of(st.text(max_size=20), _json)})
_bodies = st.one_of(
    _json,
    st.dictionaries(st.sampled_from(_FIELDS), _json, max_size=6),
    st.fixed_dictionaries({"messages": st.lists(_message, max_size=3)},
                          optional={k: _json for k in _FIELDS if k != "messages"}),
    st.fixed_dictionaries({"prompt": st.one_of(st.text(max_size=20), st.lists(st.integers(-5, 300000), max_size=5))},
                          optional={k: _json for k in _FIELDS if k != "prompt"}),
)
_ENDPOINTS = [CHAT, "/v1/completions", "/tokenize", "/detokenize"]


def _bounded(body):
    """Keep generation short: cap token counts (validation still sees every other value)."""
    if isinstance(body, dict):
        for k in ("max_tokens", "max_completion_tokens"):
            v = body.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 4:
                body[k] = 4
    return body


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(endpoint=st.sampled_from(_ENDPOINTS), body=_bodies)
def test_fuzz_never_5xx(http, endpoint, body):
    data = json.dumps(_bounded(body))
    r = http.post(endpoint, content=data, headers={"content-type": "application/json"})
    assert r.status_code < 500, (endpoint, data, r.text)
    if r.status_code >= 400:
        check_error(r, r.status_code)


def test_healthy_after_fuzz(http):
    assert http.get("/health").json()["status"] == "ok"
    r = http.post(CHAT, json={"messages": MSGS, "max_tokens": 2, "temperature": 0})
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_web_chat_files(tmp_path, monkeypatch):
    from pygemma.server import web
    path = pygemma.model.default_model_path()
    (tmp_path / "index.html").write_text("<!doctype html><title>chat</title>")
    (tmp_path / "app.js").write_text("console.log('hi');")
    monkeypatch.setattr(web, "WEB_DIR", str(tmp_path))
    with live_server(str(path), n_ctx=64, api_key=KEY) as (srv, _):
        r = httpx.get(srv.url)                              # open, even with a key
        assert r.status_code == 200 and r.text.startswith("<!doctype html>")
        assert r.headers["content-type"].startswith("text/html")
        r = httpx.get(srv.url + "web/app.js")
        assert r.status_code == 200 and "console.log" in r.text
        check_error(httpx.get(srv.url + "web/missing.js"), 404)
        check_error(httpx.get(srv.url + "web/%2e%2e/%2e%2e/etc/passwd"), 404)
    monkeypatch.setattr(web, "WEB_DIR", str(tmp_path / "nowhere"))
    with live_server(str(path), n_ctx=64) as (srv, _):
        r = httpx.get(srv.url)
        assert r.status_code == 200 and "web chat is not installed" in r.text
        check_error(httpx.get(srv.url + "web/app.js"), 404)


def test_a_bug_is_a_json_500_without_traceback(http, monkeypatch, capfd):
    from pygemma.server import validate

    def broken(body, *a):
        raise RuntimeError("a simulated bug")
    monkeypatch.setattr(validate, "tokenize_request", broken)
    r = http.post("/tokenize", json={"content": "x"})
    err = check_error(r, 500)
    assert err["type"] == "server_error" and "simulated" not in r.text
    assert "RuntimeError: a simulated bug" in capfd.readouterr().err      # logged for the operator
    monkeypatch.undo()
    assert http.post("/tokenize", json={"content": "x"}).status_code == 200
