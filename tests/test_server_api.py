"""The server against the official `openai` client (and curl) on loopback: chat plain and
streamed, completions, models, seeds, stop strings, usage, JSON mode, logprobs, and the same
greedy text as pygemma.Model."""
import json
import shutil
import subprocess

import pytest

import pygemma

openai = pytest.importorskip("openai")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from models import gemma3_hf_model, write_gguf_from_hf  # noqa: E402
from server_util import live_server  # noqa: E402


@pytest.fixture(scope="module")
def base_path(model_path):
    return model_path


@pytest.fixture(scope="module")
def base(base_path):
    # a server-side default max_tokens (the CLI's -n) bounds requests that give none
    defaults = pygemma.SamplingParams(max_tokens=48)
    with live_server(base_path, n_ctx=512, n_parallel=2, defaults=defaults) as (server, model):
        yield server, model


@pytest.fixture(scope="module")
def client(base):
    return openai.OpenAI(base_url=base[0].url + "v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def it(tmp_path_factory):
    path = tmp_path_factory.mktemp("srv") / "tiny-it.gguf"
    write_gguf_from_hf(gemma3_hf_model(seed=3), str(path), "F32", chat_template=True, name="tiny-it")
    with live_server(str(path), n_ctx=256, n_parallel=1) as (server, model):
        yield server, model


def test_models(client, base):
    models = client.models.list()
    assert [m.id for m in models.data] == [base[0].state.model_id]
    assert models.data[0].object == "model"


def test_chat_plain_matches_model_greedy_and_usage(client, base):
    server, model = base
    msgs = [{"role": "user", "content": "Name a colour."}]
    r = client.chat.completions.create(model="anything", messages=msgs, temperature=0, max_tokens=12)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.created > 0
    assert r.model == server.state.model_id
    choice = r.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    # the same prompt through the Python API: the Gemma turn format, greedy
    prompt = "<bos><start_of_turn>user\nName a colour.<end_of_turn>\n<start_of_turn>model\n"
    ids = model.tokenize(prompt, add_bos=False, special=True)
    expected = "".join(model.generate(ids, temperature=0, max_tokens=12))
    assert choice.message.content == expected
    assert r.usage.prompt_tokens == len(ids)
    assert r.usage.completion_tokens == model.last_stats.completion_tokens
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_completion_matches_model_and_tokenize(client, base, base_path):
    server, model = base
    prompt = "The capital of France is"
    r = client.completions.create(model="x", prompt=prompt, temperature=0, max_tokens=10)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    with pygemma.Model(base_path, n_ctx=128) as m:
        expected = "".join(m.generate(prompt, temperature=0, max_tokens=10))
        n_prompt = len(m.tokenize(prompt))
    assert r.choices[0].text == expected
    assert r.choices[0].finish_reason == "length"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (n_prompt, 10)
    # token-list prompts give the same completion
    ids = server.state.model.tokenize(prompt)
    r2 = client.completions.create(model="x", prompt=ids, temperature=0, max_tokens=10)
    assert r2.choices[0].text == expected
    assert r2.usage.prompt_tokens_details is None or True   # not in the completions schema
    raw = r2.model_dump()
    assert raw["usage"]["prompt_tokens_details"]["cached_tokens"] == len(ids) - 1   # reused


def test_usage_counts_match_tokenize_endpoint(client, base):
    import httpx
    server, _ = base
    text = "Count these tokens, please."
    toks = httpx.post(server.url + "tokenize", json={"content": text, "add_special": True}).json()["tokens"]
    r = client.completions.create(model="x", prompt=text, temperature=0, max_tokens=3)
    assert r.usage.prompt_tokens == len(toks)
    back = httpx.post(server.url + "detokenize", json={"tokens": toks[1:]}).json()["content"]
    assert back == text


def test_chat_streaming_equals_plain_and_reports_usage(client):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
    plain = client.chat.completions.create(model="x", messages=msgs, temperature=0, max_tokens=10)
    stream = client.chat.completions.create(model="x", messages=msgs, temperature=0, max_tokens=10,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens


def test_completion_streaming(client):
    kw = dict(model="x", prompt="Once upon a time", temperature=0, max_tokens=8)
    plain = client.completions.create(**kw)
    text = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw) if c.choices)
    assert text == plain.choices[0].text


def test_seeded_sampling_is_deterministic(client):
    kw = dict(model="x", messages=[{"role": "user", "content": "Tell me a story."}],
              temperature=1.0, max_tokens=16, seed=1234)
    a = client.chat.completions.create(**kw).choices[0].message.content
    b = client.chat.completions.create(**kw).choices[0].message.content
    assert a == b
    others = {client.chat.completions.create(**dict(kw, seed=s)).choices[0].message.content
              for s in (1, 2, 3)}
    assert len(others | {a}) > 1          # the seed matters


def test_stop_sequences(client):
    kw = dict(model="x", prompt="1, 2, 3, 4, 5,", temperature=0, max_tokens=20)
    full = client.completions.create(**kw).choices[0].text
    assert "," in full.strip()
    cut = full.index(",", 1)
    stop = full[cut:cut + 2] if len(full) > cut + 1 else ","
    r = client.completions.create(stop=[stop], **kw)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == full[:full.index(stop)]


def _valid_json_prefix(text):
    from pygemma.json_constraint import INITIAL, feed_bytes
    return feed_bytes(INITIAL, text.encode()) is not None


def test_json_mode_output_parses(client):
    parsed = 0
    for question in ('Return {"answer": 4} if 2+2=4.', 'Reply with exactly {"ok": true}',
                     'Output the JSON object {"a": 1, "b": 2} and nothing else.'):
        r = client.chat.completions.create(
            model="x", temperature=0, max_tokens=60, response_format={"type": "json_object"},
            frequency_penalty=1.0, messages=[{"role": "user", "content": question}])
        text = r.choices[0].message.content
        if r.choices[0].finish_reason == "stop":        # the object is complete: it parses
            assert isinstance(json.loads(text), dict), text
            parsed += 1
        else:                                           # cut by max_tokens: still valid so far
            assert _valid_json_prefix(text), text
    assert parsed >= 1


def test_json_mode_tiny_model(it):
    server, _ = it
    c = openai.OpenAI(base_url=server.url + "v1", api_key="x", max_retries=0)
    for seed in range(3):
        r = c.chat.completions.create(model="x", messages=[{"role": "user", "content": "json"}],
                                      temperature=1.0, seed=seed, max_tokens=60,
                                      response_format={"type": "json_object"})
        text = r.choices[0].message.content
        if r.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(text), dict)
        else:                                       # cut by max_tokens: a valid JSON prefix
            assert _valid_json_prefix(text), text


def test_chat_logprobs_shape(client):
    r = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Hi"}],
                                       temperature=0, max_tokens=5, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(e.token for e in content) == r.choices[0].message.content
    for e in content:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3 and bytes(e.bytes).decode() == e.token
        assert e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob >= e.top_logprobs[2].logprob
        assert e.top_logprobs[0].token == e.token           # greedy: the chosen one is the best
        assert abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6


def test_completion_logprobs_shape(client):
    r = client.completions.create(model="x", prompt="The sky is", temperature=0, max_tokens=4, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 4
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset[0] == 0 and all(len(t) <= 2 for t in lp.top_logprobs)
    assert all(v <= 0 for v in lp.token_logprobs)


def test_chat_with_template_model_and_system_prompt(it):
    server, model = it
    c = openai.OpenAI(base_url=server.url + "v1", api_key="x", max_retries=0)
    msgs = [{"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": "world"}]}]
    r = c.chat.completions.create(model="x", messages=msgs, temperature=0, max_tokens=6)
    # the GGUF's template with the system text at the start of the first user turn
    prompt = ("<bos><start_of_turn>user\nbe brief\n\nhello\nworld<end_of_turn>\n"
              "<start_of_turn>model\n")
    ids = model.tokenize(prompt, add_bos=False, special=True)
    assert r.usage.prompt_tokens == len(ids)
    assert r.choices[0].message.content == "".join(model.generate(ids, temperature=0, max_tokens=6))


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_seed_curl_example_verbatim(base):
    port = base[0].port
    cmd = (f'curl http://localhost:{port}/v1/chat/completions -H "Content-Type: application/json" '
           '-d \'{"model": "gemma-9b-it", "messages": [{"role": "user", "content": "Say this is a test!"}], '
           '"temperature": 0.0}\'')
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=300, check=True).stdout
    r = json.loads(out)
    assert r["object"] == "chat.completion" and r["choices"][0]["message"]["role"] == "assistant"
    assert r["choices"][0]["finish_reason"] in ("stop", "length")
    assert r["usage"]["total_tokens"] == r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"]
    assert r["usage"]["completion_tokens"] <= 48
