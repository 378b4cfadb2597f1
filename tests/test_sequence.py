"""Several Sequences (KV caches) over one model's weights: independent, equal to the Model's
own results, batched decoding equal to one-by-one decoding, step-wise generation."""
import numpy as np
import pytest

import pygemma
from pygemma.sampling import SamplingParams
from pygemma.sequence import eval_batch


@pytest.fixture(scope="module")
def model(model_path):
    with pygemma.Model(model_path, n_ctx=128, n_threads=2) as m:
        yield m


PROMPTS = ["The capital of France is", "Once upon a time", "1, 2, 3,", "def main():"]


def test_sequences_are_independent_and_match_the_model(model):
    seqs = [model.new_sequence() for _ in PROMPTS]
    ids = [model.tokenize(p) for p in PROMPTS]
    for s, i in zip(seqs, ids):
        s.eval(i[:3])
    for s, i in zip(seqs, ids):             # interleaved: each cache keeps its own tokens
        s.eval(i[3:])
    for s, i in zip(seqs, ids):
        assert s.tokens == i and s.n_past == len(i)
        model.reset()
        model.eval(i[:3])
        expected = model.eval(i[3:])
        assert np.array_equal(s.last_logits(), expected)
    for s in seqs:
        s.close()


def test_eval_batch_equals_one_by_one(model):
    ids = [model.tokenize(p) for p in PROMPTS]
    batched = [model.new_sequence() for _ in PROMPTS]
    single = [model.new_sequence() for _ in PROMPTS]
    for a, b, i in zip(batched, single, ids):
        a.eval(i)
        b.eval(i)
    for step in range(3):
        toks = [int(np.argmax(s.last_logits())) for s in single]
        eval_batch(batched, toks)
        for s, t in zip(single, toks):
            s.eval_one(t)
        for a, b in zip(batched, single):
            assert a.tokens == b.tokens
            assert np.array_equal(a.last_logits(), b.last_logits())
    with pytest.raises(ValueError):
        eval_batch(batched[:2], [1])
    with pytest.raises(ValueError):
        eval_batch(batched[:1], [model.n_vocab])


def test_stepwise_generation_equals_generate(model):
    prompt = model.tokenize("The quick brown fox")
    params = SamplingParams(temperature=0.7, seed=5, max_tokens=10, stop=("zzz",))
    expected = "".join(model.generate(prompt, params))
    seq = model.new_sequence()
    seq.prefill(prompt)
    gen = model.new_generation(seq, params)
    text = []
    while not gen.done:
        step = gen.step(seq.last_logits())
        text.append(step.text)
        if not gen.done:
            seq.eval_one(step.token)
    assert "".join(text) == expected
    assert gen.finish_reason == model.last_stats.finish_reason == "length"
    assert gen.stats.completion_tokens == 10


def test_prefix_reuse_and_context_limits(model):
    seq = model.new_sequence(n_ctx=32)
    a = model.tokenize("one two three four five")
    b = model.tokenize("one two three six")
    assert seq.prefill(a) == 0
    reused = seq.prefill(b)
    assert reused == seq.common_prefix(a) == len(model.tokenize("one two three")) and seq.tokens == b
    with pytest.raises(pygemma.ContextFullError):
        seq.prefill(list(range(10, 50)))
    assert seq.n_ctx == 32
    model_closed = pygemma.Model(model.path, n_ctx=16)
    extra = model_closed.new_sequence()
    model_closed.close()                     # closes its sequences first
    with pytest.raises(pygemma.ModelStateError):
        extra.eval([1])


def test_prefill_starts_over_when_the_sliding_ring_cannot_rewind():
    """Gemma 3 270M's sliding layers keep a ring of window + n_batch positions: after 700
    tokens, going back to position 100 is impossible, so the prompt is evaluated from 0."""
    path = pygemma.model.default_model_path()
    if path is None:
        pytest.skip("default model package not installed")
    with pygemma.Model(path, n_ctx=1024, n_threads=2, n_batch=64) as m:
        seq = m.new_sequence()
        long = m.tokenize(" ".join(f"w{i}" for i in range(300)))[:700]
        assert len(long) == 700
        seq.prefill(long)
        other = long[:100] + m.tokenize("and a different ending", add_bos=False)
        assert not seq.try_rewind(100) and seq.tokens == long      # refused, nothing changed
        assert seq.prefill(other) == 0                              # nothing reusable
        fresh = m.new_sequence()
        fresh.prefill(other)
        assert seq.tokens == other
        assert np.array_equal(seq.last_logits(), fresh.last_logits())
        assert seq.prefill(other[:-1] + [other[-1]]) == len(other) - 1   # the tail still rewinds
