"""pg_context_shift / Model.drop: cutting a span out of the KV cache in place.

With one layer, a token's cached key and value depend on that token alone (and on its
position through RoPE), so after cutting a span the cache must hold exactly what a fresh
evaluation of the shortened sequence computes: the next logits must equal transformers'
on the shortened sequence.  That checks the key re-rotation and the slot moves of flat
caches and of sliding-window rings.  With more layers the later tokens keep what they
computed while attending to the cut span (as llama.cpp's context shift), so only the
bookkeeping is checked there.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

import pygemma  # noqa: E402
from models import gemma2_hf_model, gemma3_hf_model, hf_logits, write_gguf_from_hf  # noqa: E402
from models import random_token_ids as token_ids  # noqa: E402


@pytest.fixture(scope="module")
def one_layer(tmp_path_factory):
    d = tmp_path_factory.mktemp("shift")
    g2 = gemma2_hf_model(seed=21, n_layers=1, sliding_window=16)
    g2_flat = gemma2_hf_model(seed=22, n_layers=1, sliding_window=4096)
    g3 = gemma3_hf_model(seed=23, n_layers=1, sliding_window=16)
    return {name: (hf, write_gguf_from_hf(hf, str(d / f"{name}.gguf"), "F32"))
            for name, hf in (("g2_ring", g2), ("g2_flat", g2_flat), ("g3_ring", g3))}


@pytest.mark.parametrize("name", ["g2_ring", "g2_flat", "g3_ring"])
@pytest.mark.parametrize("n_batch", [4, 64])
@pytest.mark.parametrize("span", [(1, 9), (5, 6), (3, 30)])
def test_cut_span_matches_fresh_evaluation(one_layer, name, n_batch, span):
    hf, path = one_layer[name]
    ids = token_ids(60, hf.config.vocab_size, seed=span[0] * 100 + span[1])
    p0, p1 = span
    short = ids[:p0] + ids[p1:]
    nxt = token_ids(3, hf.config.vocab_size, seed=9)[1:]
    ref = hf_logits(hf, short + nxt)
    with pygemma.Model(path, n_ctx=96, n_batch=n_batch, n_threads=2, precise=True) as m:
        m.eval(ids)
        assert m.drop(p0, p1)
        assert m.tokens == short and m.n_past == len(short)
        # the next tokens see the shortened sequence, at the shifted positions
        for k, t in enumerate(nxt):
            got = m.eval([t])
            assert np.abs(got - ref[len(short) + k]).max() < 1e-3, (name, n_batch, span, k)


def test_cut_in_llama_cpp_numerics(one_layer):
    """F16 cache: the re-rotated keys are rounded to F16 once more; the logits stay within
    that rounding of a fresh evaluation."""
    hf, path = one_layer["g2_ring"]
    ids = token_ids(40, hf.config.vocab_size, seed=4)
    short = ids[:2] + ids[12:]
    with pygemma.Model(path, n_ctx=64, n_batch=8, n_threads=2) as m:
        m.eval(ids)
        assert m.drop(2, 12)
        a = m.eval([7])
        b = m.logits(short + [7])[-1]
    assert a.argmax() == b.argmax()
    assert np.abs(a - b).max() < 2e-2 * np.abs(b).max()


def test_ring_without_the_needed_positions_refuses(one_layer):
    """A 16-token window with n_batch 4 keeps a ring of 20 slots: after 40 tokens, cutting
    [4, 30) would leave positions the ring no longer holds inside the next token's window."""
    hf, path = one_layer["g2_ring"]
    ids = token_ids(40, hf.config.vocab_size, seed=5)
    with pygemma.Model(path, n_ctx=64, n_batch=4, n_threads=2, precise=True) as m:
        m.eval(ids)
        before = m.eval([9])
        m.rewind(40)
        assert m.drop(4, 30) is False
        assert m.tokens == ids and m.n_past == 40       # unchanged
        assert np.abs(m.eval([9]) - before).max() == 0
        with pytest.raises(ValueError):
            m.drop(5, 100)
        with pytest.raises(ValueError):
            m.drop(7, 3)
        assert m.drop(10, 10)                            # empty span: nothing to do


def test_multi_layer_bookkeeping_and_tail_cut(tmp_path):
    """Several layers (sliding and global): cutting the tail equals a rewind exactly, and a
    cut in the middle leaves a cache that keeps generating."""
    hf = gemma3_hf_model(seed=24)
    path = write_gguf_from_hf(hf, str(tmp_path / "g3.gguf"), "F32")
    ids = token_ids(30, hf.config.vocab_size, seed=6)
    with pygemma.Model(path, n_ctx=64, n_batch=8, n_threads=2, precise=True) as m:
        m.eval(ids)
        assert m.drop(25, 30)
        tail_cut = m.eval([5])
        m.reset()
        m.eval(ids[:25])
        assert np.abs(m.eval([5]) - tail_cut).max() == 0
        m.reset()
        m.eval(ids)
        assert m.drop(3, 11)
        assert m.tokens == ids[:3] + ids[11:]
        out = m.eval([5])
        assert np.isfinite(out).all() and m.n_past == 23
