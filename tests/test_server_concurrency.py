"""Concurrency: 16 clients on 4 slots give each the text it gets alone; a client that goes away
mid-stream frees its slot; a full queue answers 503 with Retry-After; prefix reuse."""
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from server_util import live_server  # noqa: E402

# every test runs on the native tier, on AVX2 and on scalar (tests/conftest.py cpu_tier)
pytestmark = pytest.mark.usefixtures("cpu_tier")


WORDS = ("river mountain kitchen violin rocket garden winter ocean forest engine castle "
         "pepper silver thunder meadow lantern").split()


def _request(i):
    # distinct first tokens (token prompts without BOS): no slot shares a prefix with another;
    # each prompt's greedy continuation repeats its own word, so the 16 replies differ on
    # every CPU tier (a vaguer prompt made the 270M answer alike for half of them)
    w = WORDS[i]
    return {"prompt": f"{w.capitalize()} {i + 3}, {w} {i + 4}, {w} {i + 5},", "temperature": 0, "max_tokens": 8}


def _completion(url, body):
    r = httpx.post(url + "v1/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def test_16_clients_on_4_slots(model_path):
    with live_server(model_path, n_ctx=128, n_parallel=4) as (server, model):
        bodies = []
        for i in range(16):
            ids = model.tokenize(_request(i)["prompt"], add_bos=False)
            bodies.append(dict(_request(i), prompt=ids))
        alone = [_completion(server.url, b)["choices"][0]["text"] for b in bodies]
        with ThreadPoolExecutor(16) as pool:
            together = list(pool.map(lambda b: _completion(server.url, b), bodies))
        assert [r["choices"][0]["text"] for r in together] == alone
        assert all(r["usage"]["completion_tokens"] == 8 for r in together)
        assert len(set(alone)) >= 12                # the outputs really differ
        assert httpx.get(server.url + "health").json()["busy"] == 0


def _record_jobs(server):
    """Every job a slot finishes with, in order (the scheduler's own bookkeeping)."""
    done = []
    sched = server.state.scheduler
    release = sched._release

    def recording(slot):
        if slot.job is not None:
            done.append(slot.job)
        release(slot)
    sched._release = recording
    return done


def _stream_first_token(url, body, holder):
    """Start a streamed request, read until the first content, then drop the connection."""
    host, port = url.split("//")[1].strip("/").split(":")
    sock = socket.create_connection((host, int(port)))
    data = json.dumps(body).encode()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    buf = b""
    while b'"text":"' not in buf.replace(b'"text":""', b""):
        chunk = sock.recv(65536)
        assert chunk, buf
        buf += chunk
    holder.append(sock)
    return sock


def test_disconnect_mid_stream_frees_the_slot(model_path):
    with live_server(model_path, n_ctx=512, n_parallel=1) as (server, _):
        long = {"prompt": "Write a long story about a dragon.", "max_tokens": 400, "stream": True,
                "temperature": 0.8, "seed": 1}
        jobs = _record_jobs(server)
        socks = []
        sock = _stream_first_token(server.url, long, socks)
        assert httpx.get(server.url + "health").json()["busy"] == 1
        sock.close()
        # the slot is free again within a token or two: a following request is served next
        r = _completion(server.url, {"prompt": "Hello", "max_tokens": 2, "temperature": 0})
        assert r["usage"]["completion_tokens"] == 2
        health = httpx.get(server.url + "health").json()
        assert health["busy"] == 0 and health["waiting"] == 0
        story, hello = jobs
        assert story.cancelled and story.stats.completion_tokens < 100      # not the 400 asked
        assert not hello.cancelled and hello.stats.completion_tokens == 2


def test_disconnect_while_waiting_non_stream(model_path):
    """A non-streamed request whose client gives up is dropped (it never takes the slot)."""
    with live_server(model_path, n_ctx=256, n_parallel=1) as (server, _):
        jobs = _record_jobs(server)
        socks = []
        _stream_first_token(server.url, {"prompt": "Once", "max_tokens": 200, "stream": True}, socks)
        with pytest.raises(httpx.TimeoutException):
            httpx.post(server.url + "v1/completions", json={"prompt": "Hi", "max_tokens": 50}, timeout=0.5)
        socks[0].close()
        r = _completion(server.url, {"prompt": "Hey", "max_tokens": 1})
        assert r["usage"]["completion_tokens"] == 1
        for _ in range(100):
            if httpx.get(server.url + "health").json()["busy"] == 0:
                break
            time.sleep(0.05)
        assert httpx.get(server.url + "health").json() == {"status": "ok", "slots": 1, "busy": 0, "waiting": 0}
        # the stream (cancelled) and "Hey" ran; "Hi" was dropped from the queue unserved
        assert [j.stats.prompt_tokens for j in jobs] == [2, 2] and jobs[0].cancelled
        assert jobs[1].stats.completion_tokens == 1


def test_queue_full_is_503_with_retry_after(model_path):
    with live_server(model_path, n_ctx=256, n_parallel=1, queue_size=1) as (server, _):
        socks = []
        _stream_first_token(server.url, {"prompt": "A", "max_tokens": 300, "stream": True}, socks)
        waiting = []
        t = threading.Thread(target=lambda: waiting.append(_completion(
            server.url, {"prompt": "B", "max_tokens": 1})))
        t.start()
        for _ in range(200):
            if httpx.get(server.url + "health").json()["waiting"] == 1:
                break
            time.sleep(0.02)
        r = httpx.post(server.url + "v1/completions", json={"prompt": "C", "max_tokens": 1}, timeout=30)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "server_busy" and r.json()["error"]["type"] == "server_error"
        socks[0].close()                      # the first one goes: the waiting one is served
        t.join(60)
        assert waiting and waiting[0]["usage"]["completion_tokens"] == 1


def test_prefix_reuse_of_a_growing_chat(model_path):
    with live_server(model_path, n_ctx=512, n_parallel=2) as (server, _):
        url = server.url + "v1/chat/completions"
        msgs = [{"role": "system", "content": "You are a helpful assistant who answers briefly."},
                {"role": "user", "content": "What is the capital of France?"}]
        r1 = httpx.post(url, json={"messages": msgs, "max_tokens": 6, "temperature": 0}, timeout=120).json()
        msgs += [{"role": "assistant", "content": r1["choices"][0]["message"]["content"]},
                 {"role": "user", "content": "And of Italy?"}]
        r2 = httpx.post(url, json={"messages": msgs, "max_tokens": 6, "temperature": 0}, timeout=120).json()
        cached = r2["usage"]["prompt_tokens_details"]["cached_tokens"]
        # everything up to the first reply was cached (the reply's own tokens may re-tokenize)
        assert cached >= r1["usage"]["prompt_tokens"] - 1
        assert cached < r2["usage"]["prompt_tokens"]


def test_a_failing_step_fails_only_its_requests(model_path, monkeypatch):
    from pygemma.server import scheduler
    real = scheduler.eval_batch
    calls = []

    def flaky(seqs, tokens):
        calls.append(len(seqs))
        if len(calls) == 2:
            raise MemoryError("simulated failure")
        return real(seqs, tokens)
    monkeypatch.setattr(scheduler, "eval_batch", flaky)
    with live_server(model_path, n_ctx=128, n_parallel=1) as (server, _):
        r = httpx.post(server.url + "v1/completions", json={"prompt": "Hi", "max_tokens": 5}, timeout=60)
        assert r.status_code == 500 and "Traceback" not in r.text
        assert r.json()["error"]["code"] == "generation_failed"
        assert "simulated failure" in r.json()["error"]["message"]
        ok = _completion(server.url, {"prompt": "Hi", "max_tokens": 3, "temperature": 0})
        assert ok["usage"]["completion_tokens"] == 3
        assert httpx.get(server.url + "health").json()["busy"] == 0
