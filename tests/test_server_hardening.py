"""The server's request safety: heavy work off the event loop, size limits, validation that
matches what the C core accepts, and safe network defaults (Host check against DNS rebinding,
no cross-origin access, JSON content type only, the API key out of the process list)."""
import os
import re
import subprocess
import sys
import threading
import time

import pytest

import pygemma
from pygemma.sampling import FLOAT32_TINY, Sampler, SamplingParams

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pygemma import cli  # noqa: E402
from pygemma.server import validate  # noqa: E402
from pygemma.server.app import host_allowlist  # noqa: E402
from pygemma.server.middleware import HostCheck, is_loopback_host  # noqa: E402
from server_util import live_server  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAT = "/v1/chat/completions"
MSGS = [{"role": "user", "content": "hi"}]
N_CTX = 256
FLOAT_FIELDS = ("temperature", "top_p", "min_p", "repeat_penalty", "frequency_penalty",
                "presence_penalty")


@pytest.fixture(scope="module")
def server(model_path):
    with live_server(model_path, n_ctx=N_CTX, defaults=SamplingParams(max_tokens=1)) as (srv, _):
        yield srv


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def error_of(r, status, param=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    if param is not None:
        assert err["param"] == param, err
    return err


# ---- the event loop stays free ------------------------------------------------------------

def test_health_answers_promptly_during_big_tokenizes(server, http):
    text = ("The quick brown fox jumps over the lazy dog. " * 20000)[:validate.MAX_TOKENIZE_CHARS]
    results = []
    posts = [threading.Thread(target=lambda: results.append(
        httpx.post(server.url + "tokenize", json={"content": text}, timeout=120)))
        for _ in range(4)]          # four at once: a second or more of tokenizing, even on a fast CPU
    for t in posts:
        t.start()
    delays = []
    while any(t.is_alive() for t in posts):
        t0 = time.perf_counter()
        assert http.get("/health").status_code == 200
        delays.append(time.perf_counter() - t0)
        time.sleep(0.02)
    for t in posts:
        t.join()
    assert [r.status_code for r in results] == [200] * 4
    assert len(results[0].json()["tokens"]) > 100000
    assert delays, "the tokenizes ended before /health was asked"
    assert max(delays) < 0.5, delays


def test_oversized_tokenize_and_detokenize_are_413(http):
    big = "a" * (validate.MAX_TOKENIZE_CHARS + 1)
    err = error_of(http.post("/tokenize", json={"content": big}), 413, "content")
    assert err["code"] == "request_too_large"
    digits = "7" * (validate.MAX_TOKENIZE_TOKENS + 1)       # one token per digit: too long an answer
    error_of(http.post("/tokenize", json={"content": digits}), 413, "content")
    error_of(http.post("/detokenize", json={"tokens": [1] * (validate.MAX_DETOKENIZE_TOKENS + 1)}),
             413, "tokens")
    many = "hi " * (validate.MAX_PIECES + 10)
    error_of(http.post("/tokenize", json={"content": many, "with_pieces": True}), 413, "with_pieces")
    assert len(http.post("/tokenize", json={"content": many}).json()["tokens"]) > validate.MAX_PIECES


# ---- validation = what the C core accepts ---------------------------------------------------

@pytest.mark.parametrize("value", [1e-300, 1e-46, 1e-40, 1e39, 3.5e38, -1e39, 10**30, 10**400,
                                   "nan", "1", True, [1], {"a": 1}])
@pytest.mark.parametrize("field", [*FLOAT_FIELDS, "top_k", "repeat_last_n", "seed", "max_tokens",
                                   "max_completion_tokens", "n", "best_of", "logprobs"])
def test_numeric_edges_are_400_never_500(http, field, value):
    # a prompt 3 tokens short of the context: "no limit" (max_tokens 1e39) ends quickly too, and
    # the slot's cache holds it after the first request
    prompt = [2] + http.post("/tokenize", json={"content": "hi"}).json()["tokens"] * (N_CTX - 4)
    r = http.post("/v1/completions", json={"prompt": prompt, field: value})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        err = r.json()["error"]
        assert err["param"] == field and len(err["message"]) < 200, err
    if (field == "repeat_penalty" and value != 10**30) or not isinstance(value, (int, float)) \
            or isinstance(value, bool):
        assert r.status_code == 400           # zero/inf as a float32, or not a number at all


@pytest.mark.parametrize("value", [1e-300, 1e39, 10**400, "nan", -1])
def test_chat_top_logprobs_edges(http, value):
    r = http.post(CHAT, json={"messages": MSGS, "logprobs": True, "top_logprobs": value})
    error_of(r, 400, "top_logprobs")


_numbers = st.one_of(st.floats(), st.integers(min_value=-2**1100, max_value=2**1100),
                     st.sampled_from([FLOAT32_TINY, FLOAT32_TINY / 2, 3.4028235e38, 3.4028236e38,
                                      3.5e38, 1e-45, 1e-300, 0.0, -0.0]))


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(FLOAT_FIELDS), value=_numbers)
def test_what_validation_accepts_the_c_sampler_accepts(field, value):
    try:
        params = SamplingParams(**{field: value})
    except ValueError as e:
        assert len(str(e)) < 200
        return
    Sampler(params, 16)            # a C refusal raises here


def test_messages_quote_short_excerpts(http):
    huge = "x" * 100000
    cases = [(CHAT, {"messages": MSGS, "temperature": huge}, "temperature"),
             (CHAT, {"messages": MSGS, "stop": [huge]}, "stop"),
             (CHAT, {"messages": [{"role": huge, "content": "hi"}]}, "messages[0].role"),
             (CHAT, {"messages": [{"role": "user", "content": [{"type": huge}]}]},
              "messages[0].content[0].type"),
             (CHAT, {"messages": MSGS, "response_format": {"type": huge}}, "response_format.type"),
             (CHAT, {"messages": MSGS, "n": huge}, "n"),
             (CHAT, {"messages": MSGS, "seed": 10**4000}, "seed"),
             ("/v1/completions", {"prompt": [1, 10**4000]}, "prompt"),
             ("/detokenize", {"tokens": [10**4000]}, "tokens")]
    for path, body, param in cases:
        err = error_of(http.post(path, json=body), 400, param)
        assert len(err["message"]) < 200, err["message"][:300]
    assert "x" * 15 in error_of(http.post(CHAT, json=cases[0][1]), 400)["message"]   # an excerpt


def test_token_ids_must_be_integers(http):
    error_of(http.post("/v1/completions", json={"prompt": [1.0, 2.0]}), 400, "prompt")
    error_of(http.post("/v1/completions", json={"prompt": [True, 2]}), 400, "prompt")
    error_of(http.post("/detokenize", json={"tokens": [1.5]}), 400, "tokens")
    error_of(http.post("/detokenize", json={"tokens": [2.0]}), 400, "tokens")
    error_of(http.post("/detokenize", json={"tokens": [False]}), 400, "tokens")


# ---- network defaults -----------------------------------------------------------------------

def test_host_header_is_checked_on_loopback(server, http):
    port = server.port
    err = error_of(http.get("/health", headers={"Host": "evil.example"}), 403)
    assert err["code"] == "invalid_host"
    error_of(http.post("/tokenize", json={"content": "a"}, headers={"Host": f"evil.example:{port}"}), 403)
    error_of(http.get("/", headers={"Host": "localhost.evil.example"}), 403)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST", "localhost."):
        assert http.get("/health", headers={"Host": host}).status_code == 200, host
    assert http.post("/tokenize", json={"content": "a"},
                     headers={"Host": f"localhost:{port}"}).status_code == 200


def test_host_policy():
    assert is_loopback_host("127.0.0.1") and is_loopback_host("localhost") and is_loopback_host("::1")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("::")
    assert not is_loopback_host("192.0.2.7")
    assert host_allowlist("127.0.0.1") == []                    # loopback names only
    assert host_allowlist("0.0.0.0") is None                    # every name: no check
    assert host_allowlist("127.0.0.1", ["*"]) is None
    assert host_allowlist("0.0.0.0", ["pygemma.lan"]) == ["pygemma.lan"]
    check = HostCheck(None, ["pygemma.lan", "*.example.org"])
    assert check.allows("pygemma.lan:8080") and check.allows("a.example.org")
    assert check.allows("[::1]:80") and check.allows("127.0.0.2")
    for bad in ("example.org", "evil.lan", "pygemma.lan.evil", "evil@localhost", "", "[::1"):
        assert not check.allows(bad), bad


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_json_endpoints_require_a_json_content_type(http, content_type):
    headers = {"content-type": content_type} if content_type else {}
    for path, body in ((CHAT, b'{"messages": [{"role": "user", "content": "hi"}]}'),
                       ("/v1/completions", b'{"prompt": "hi"}'),
                       ("/tokenize", b'{"content": "hi"}'), ("/detokenize", b'{"tokens": [1]}')):
        err = error_of(http.post(path, content=body, headers=headers), 415)
        assert err["code"] == "unsupported_media_type"
    r = http.post("/tokenize", content=b'{"content": "hi"}',
                  headers={"content-type": "Application/JSON; charset=utf-8"})
    assert r.status_code == 200


def test_no_cross_origin_access_by_default(http):
    preflight = http.options(CHAT, headers={"Origin": "http://evil.example",
                                            "Access-Control-Request-Method": "POST",
                                            "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code >= 400
    assert "access-control-allow-origin" not in preflight.headers
    simple = http.get("/v1/models", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_allowed_hosts_and_cors_origins_options(model_path):
    with live_server(model_path, n_ctx=64, allowed_hosts=["pygemma.lan"],
                     cors_origins=["http://app.example"]) as (srv, _):
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            assert c.get("/health", headers={"Host": "pygemma.lan:8080"}).status_code == 200
            assert c.get("/health", headers={"Host": "other.lan"}).status_code == 403
            ok = c.options(CHAT, headers={"Origin": "http://app.example",
                                          "Access-Control-Request-Method": "POST",
                                          "Access-Control-Request-Headers": "content-type, authorization"})
            assert ok.status_code == 200
            assert ok.headers["access-control-allow-origin"] == "http://app.example"
            no = c.options(CHAT, headers={"Origin": "http://evil.example",
                                          "Access-Control-Request-Method": "POST"})
            assert no.status_code >= 400 and "access-control-allow-origin" not in no.headers


# ---- the command line -----------------------------------------------------------------------

def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def test_api_key_from_the_environment_stays_out_of_the_process_list(model_path):
    key = "env-key-7d1f2c"
    proc = subprocess.Popen([sys.executable, "-m", "pygemma", "-m", model_path, "--server",
                             "--port", "0", "-c", "64", "--nobrowser", "--log-disable"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=_env(PYGEMMA_API_KEY=key), cwd=ROOT)
    try:
        line = proc.stderr.readline()
        m = re.search(r"serving .* at (http://\S+/)", line)
        assert m, line
        url = m.group(1)
        assert httpx.get(url + "v1/models", timeout=30).status_code == 401
        assert httpx.get(url + "v1/models", headers={"Authorization": f"Bearer {key}"},
                         timeout=30).status_code == 200
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            assert key.encode() not in f.read()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_exposure_warning():
    lines = cli.exposure_warning("0.0.0.0", 8080, has_key=False)
    text = "\n".join(lines)
    assert len(lines) >= 4 and "WARNING" in text and "WITHOUT an API key" in text
    assert "0.0.0.0:8080" in text and "PYGEMMA_API_KEY" in text
    assert cli.exposure_warning("192.0.2.7", 80, has_key=False)
    assert cli.exposure_warning("0.0.0.0", 8080, has_key=True) == []
    for host in ("127.0.0.1", "localhost", "::1"):
        assert cli.exposure_warning(host, 8080, has_key=False) == []


def test_server_on_every_interface_without_a_key_warns_at_start(tmp_path):
    # the warning comes before the model loads: a missing model shows it without binding 0.0.0.0
    r = subprocess.run([sys.executable, "-m", "pygemma", "-m", str(tmp_path / "none.gguf"), "--server",
                        "--host", "0.0.0.0", "--nobrowser"], capture_output=True, text=True,
                       env=_env(), cwd=ROOT, timeout=60)
    assert r.returncode == 1 and "model file not found" in r.stderr
    assert "WITHOUT an API key" in r.stderr and r.stderr.count("WARNING") >= 4
    r = subprocess.run([sys.executable, "-m", "pygemma", "-m", str(tmp_path / "none.gguf"), "--server",
                        "--host", "0.0.0.0", "--nobrowser"], capture_output=True, text=True,
                       env=_env(PYGEMMA_API_KEY="k"), cwd=ROOT, timeout=60)
    assert "WARNING" not in r.stderr
