"""Generation through pygemma.Model: sampling, stops, streaming and the OpenAI-shaped dicts."""
import numpy as np
import pytest

import pygemma


@pytest.fixture(scope="module")
def model(model_path):
    with pygemma.Model(model_path, n_ctx=256, n_threads=2) as m:
        yield m


PROMPT = "The three primary colors are"


def gen_ids(model, **kw):
    list(model.generate(PROMPT, **kw))
    return model.tokens[len(model.tokenize(PROMPT)):]


def test_same_seed_same_output(model):
    a = "".join(model.generate(PROMPT, max_tokens=16, temperature=1.0, seed=1234))
    b = "".join(model.generate(PROMPT, max_tokens=16, temperature=1.0, seed=1234))
    c = "".join(model.generate(PROMPT, max_tokens=16, temperature=1.0, seed=99))
    assert a == b
    assert a != c


def test_top_k_1_is_greedy(model):
    greedy = "".join(model.generate(PROMPT, max_tokens=12, temperature=0))
    topk1 = "".join(model.generate(PROMPT, max_tokens=12, temperature=1.5, top_k=1, seed=7))
    assert greedy == topk1
    # and greedy is the argmax chain of eval()
    model.reset()
    ids = model.tokenize(PROMPT)
    logits = model.eval(ids)
    first = int(np.argmax(logits))
    assert model.detokenize([first]) == greedy[:len(model.detokenize([first]))]


def test_max_tokens_and_finish_reason(model):
    pieces = list(model.generate(PROMPT, max_tokens=5, temperature=0))
    assert model.last_stats.completion_tokens == 5
    assert model.last_stats.finish_reason == "length"
    assert "".join(pieces)


def test_stop_string_cuts_output(model):
    full = "".join(model.generate(PROMPT, max_tokens=24, temperature=0))
    stop = full[5:9]
    assert stop and stop in full
    cut = "".join(model.generate(PROMPT, max_tokens=24, temperature=0, stop=[stop]))
    assert cut == full[:full.index(stop)]
    assert model.last_stats.finish_reason == "stop"


def test_pieces_are_whole_utf8_characters(model):
    prompt = "Emoji and CJK: 😀🎉 日本語の文章と絵文字"
    pieces = list(model.generate(prompt, max_tokens=40, temperature=1.0, seed=3))
    for p in pieces:
        assert "\ufffd" not in p
        p.encode("utf-8")


def test_prefix_reuse_evaluates_only_new_tokens(model):
    model.reset()
    list(model.generate(PROMPT, max_tokens=4, temperature=0))
    longer = PROMPT + " red, yellow and blue. The three secondary colors are"
    list(model.generate(longer, max_tokens=4, temperature=0))
    n_prompt = len(model.tokenize(longer))
    assert model.last_stats.prompt_tokens == n_prompt
    assert model.last_stats.cached_tokens >= len(model.tokenize(PROMPT))


def test_create_completion_shapes(model):
    out = model.create_completion(PROMPT, max_tokens=6, temperature=0)
    assert out["object"] == "text_completion"
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 6
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + 6
    chunks = list(model.create_completion(PROMPT, max_tokens=6, temperature=0, stream=True))
    assert "".join(c["choices"][0]["text"] for c in chunks) == out["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"] == out["usage"]


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="temperature"):
        list(model.generate(PROMPT, temperature=float("nan")))
    with pytest.raises(ValueError, match="top_p"):
        list(model.generate(PROMPT, top_p=1.5))
    with pytest.raises(pygemma.ContextFullError):
        list(model.generate("word " * 400))
    with pytest.raises(ValueError):
        model.eval([])
    # the model still works afterwards
    assert "".join(model.generate(PROMPT, max_tokens=3, temperature=0))


def test_closed_model_raises():
    path = pygemma.model.default_model_path()
    if path is None:
        pytest.skip("default model package not installed")
    m = pygemma.Model(path, n_ctx=64, n_threads=1)
    m.close()
    with pytest.raises(pygemma.ModelStateError):
        m.tokenize("hi")
    with pytest.raises(pygemma.ModelStateError):
        list(m.generate("hi"))
    m.close()   # idempotent


def test_missing_and_corrupt_model_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        pygemma.Model(str(tmp_path / "nope.gguf"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    with pytest.raises(pygemma.GGUFError):
        pygemma.Model(str(bad))


def test_gpu_layers_without_gpu_warns_and_runs_on_cpu():
    path = pygemma.model.default_model_path()
    if path is None:
        pytest.skip("default model package not installed")
    with pytest.warns(RuntimeWarning, match="CPU"):
        m = pygemma.Model(path, n_ctx=64, n_threads=1, n_gpu_layers=999)
    with m:
        assert "".join(m.generate("Hello", max_tokens=2, temperature=0))
