"""The C forward pass against transformers (the reference implementation).

Synthetic Gemma 2 / Gemma 3 models with random weights are built with
transformers, written to GGUF, and run through pygemma; logits must match at
every position.  Weights are large enough that both soft-caps change the
result, and sequences span several sliding windows.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

import pygemma  # noqa: E402
from models import (gemma2_hf_model, gemma3_hf_model, hf_logits, softcap_effect,  # noqa: E402
                    write_gguf_from_hf)

# every test runs on the native tier, on AVX2 and on scalar (tests/conftest.py cpu_tier)
pytestmark = pytest.mark.usefixtures("cpu_tier")

SEQ = 72          # 4.5 sliding windows of 16


def token_ids(n, vocab, seed=0):
    rng = np.random.default_rng(seed)
    return [2] + rng.integers(4, vocab, size=n - 1).tolist()


@pytest.fixture(scope="module")
def gemma2():
    return gemma2_hf_model(seed=1)


@pytest.fixture(scope="module")
def gemma3():
    return gemma3_hf_model(seed=2, rope_scaling_factor=8.0)


def run_pygemma(path, ids, **kw):
    kw.setdefault("precise", True)     # F32 KV cache and exact GELU, as transformers
    with pygemma.Model(path, n_ctx=kw.pop("n_ctx", 256), n_threads=kw.pop("n_threads", 2), **kw) as m:
        return m.logits(ids)


def test_gemma2_softcaps_matter(gemma2):
    ids = token_ids(SEQ, gemma2.config.vocab_size)
    effect = softcap_effect(gemma2, ids)
    assert effect["final"] > 1.0 and effect["attn"] > 0.1, effect


def test_gemma2_f32_matches_transformers(gemma2, tmp_path):
    ids = token_ids(SEQ, gemma2.config.vocab_size)
    path = write_gguf_from_hf(gemma2, str(tmp_path / "g2.gguf"), "F32")
    ours = run_pygemma(path, ids)
    ref = hf_logits(gemma2, ids)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-3


@pytest.mark.parametrize("n_batch", [1, 5, 16])
def test_gemma2_chunked_prefill_and_ring_cache(gemma2, tmp_path, n_batch):
    """Small batches make the sliding layers' ring (window + batch slots) wrap many times."""
    ids = token_ids(SEQ, gemma2.config.vocab_size, seed=3)
    path = write_gguf_from_hf(gemma2, str(tmp_path / "g2.gguf"), "F32")
    ours = run_pygemma(path, ids, n_batch=n_batch)
    assert np.abs(ours - hf_logits(gemma2, ids)).max() < 1e-3


def test_gemma2_query_pre_attn_scalar_override(tmp_path):
    """27B-style scaling (hidden/heads != head_dim) via the override."""
    hf = gemma2_hf_model(seed=4, head_dim=32, query_pre_attn_scalar=64)
    ids = token_ids(40, hf.config.vocab_size)
    path = write_gguf_from_hf(hf, str(tmp_path / "g2q.gguf"), "F32")
    ref = hf_logits(hf, ids)
    assert np.abs(run_pygemma(path, ids, query_pre_attn_scalar=64) - ref).max() < 1e-3
    # without the override the head_dim convention applies and the logits differ
    assert np.abs(run_pygemma(path, ids) - ref).max() > 1e-2


def test_gemma3_f32_matches_transformers(gemma3, tmp_path):
    ids = token_ids(SEQ, gemma3.config.vocab_size, seed=5)
    path = write_gguf_from_hf(gemma3, str(tmp_path / "g3.gguf"), "F32")
    ours = run_pygemma(path, ids, n_batch=7)
    assert np.abs(ours - hf_logits(gemma3, ids)).max() < 1e-3


def hf_with_weights(model, fn, act_block=None):
    """A copy of `model` whose 2-D weights went through fn (a quantize/dequantize
    round trip), and whose linear layers see their input rounded to 8-bit
    blocks of act_block values (None: unrounded), as llama.cpp's kernels do."""
    import copy
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in clone.named_parameters():
            if p.ndim == 2:
                p.copy_(torch.from_numpy(fn(p.detach().numpy().astype(np.float32))))
    if act_block:
        for mod in clone.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.register_forward_pre_hook(lambda m, args: (q8_round(args[0], act_block),))
    return clone


def q8_round(x, block):
    """x rounded as llama.cpp quantizes activations: blocks of `block` values,
    q = round-half-even(x * 127/max|x|), scale max|x|/127 rounded to F16 for the
    32-blocks (block_q8_0) and 1/(127/max|x|) in float32 for Q8_K's 256."""
    shape = x.shape
    b = x.reshape(-1, block).float()
    amax = b.abs().max(dim=1, keepdim=True).values
    inv = torch.where(amax > 0, 127.0 / torch.where(amax > 0, amax, 1), torch.zeros_like(amax))
    if block == 32:
        d = (amax / 127).to(torch.float16).float()
    else:
        d = torch.where(inv > 0, 1.0 / torch.where(inv > 0, inv, 1), torch.zeros_like(inv))
    q = torch.round(b * inv)
    return (q.double() * d.double()).float().reshape(shape)


def round_trip(type_name):
    from gguf.quants import dequantize, quantize
    qt = gguf.GGMLQuantizationType[type_name]
    if type_name in ("F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"):
        return lambda a: dequantize(quantize(a, qt), qt).reshape(a.shape)
    # gguf-py cannot quantize K-quants: quantize with pygemma, dequantize with gguf-py (the oracle)
    from pygemma import quants
    return lambda a: dequantize(quants.quantize(type_name, a), qt).reshape(a.shape)


@pytest.fixture(scope="module")
def gemma2_calm():
    """Weights scaled ~1/sqrt(fan-in): a well-conditioned model in which a
    rounding difference in one activation does not blow up through the layers."""
    return gemma2_hf_model(seed=1, proj_std=0.06, embed_std=0.1)


# Quantized weights: the oracle holds the same rounded weights (quantized by
# gguf-py where it can, dequantized by gguf-py always).  pygemma also rounds
# each linear layer's input to 8-bit blocks, as llama.cpp does; the oracle
# `ref_act` models that rounding and `ref_exact` does not.  We must track
# ref_act much more closely than ref_act differs from ref_exact (what remains
# is float summation order flipping the odd rounding boundary), and stay far
# below what the weight rounding itself moves the logits.
@pytest.mark.parametrize("type_name,act_block", [
    ("Q8_0", 32), ("Q4_0", 32), ("Q4_1", 32), ("Q5_0", 32), ("Q5_1", 32),
    ("Q2_K", 256), ("Q3_K", 256), ("Q4_K", 256), ("Q5_K", 256), ("Q6_K", 256),
])
def test_gemma2_quantized_weights_match_rounded_reference(gemma2_calm, tmp_path, type_name, act_block):
    ids = token_ids(48, gemma2_calm.config.vocab_size, seed=6)
    path = write_gguf_from_hf(gemma2_calm, str(tmp_path / f"g2_{type_name}.gguf"), type_name)
    ours = run_pygemma(path, ids)
    rounded = round_trip(type_name)
    ref_act = hf_logits(hf_with_weights(gemma2_calm, rounded, act_block), ids)
    ref_exact = hf_logits(hf_with_weights(gemma2_calm, rounded), ids)
    # Summation order differs from torch's, so the odd activation lands on the
    # other side of a rounding boundary and the difference propagates; still we
    # stay closer to the oracle that rounds like we do than to the one that doesn't.
    assert np.abs(ours - ref_act).mean() < np.abs(ours - ref_exact).mean()
    assert np.abs(ours - ref_act).max() < 0.25          # logits span about +-15 here
    if type_name in ("Q2_K", "Q4_0", "Q4_K"):           # the weight rounding is really there
        assert np.abs(hf_logits(gemma2_calm, ids) - ref_exact).max() > 1.0


# F16 weights multiply float32 activations; BF16 weights multiply activations
# rounded to BF16 (relative error 2^-9, as llama.cpp's BF16 path), which the
# oracle does not model.  Logits span about +-15.
@pytest.mark.parametrize("type_name,tol", [("F16", 2e-3), ("BF16", 0.1)])
def test_gemma2_half_weights_match_rounded_reference(gemma2_calm, tmp_path, type_name, tol):
    ids = token_ids(48, gemma2_calm.config.vocab_size, seed=6)
    path = write_gguf_from_hf(gemma2_calm, str(tmp_path / f"g2_{type_name}.gguf"), type_name)
    ref = hf_logits(hf_with_weights(gemma2_calm, round_trip(type_name)), ids)
    assert np.abs(run_pygemma(path, ids) - ref).max() < tol


def test_incremental_eval_matches_batch(gemma2, tmp_path):
    ids = token_ids(40, gemma2.config.vocab_size, seed=7)
    path = write_gguf_from_hf(gemma2, str(tmp_path / "g2.gguf"), "F32")
    with pygemma.Model(path, n_ctx=64, n_threads=2) as m:
        full = m.logits(ids)
        m.reset()
        m.eval(ids[:25])
        for i in range(25, 40):
            last = m.eval([ids[i]])
            assert np.abs(last - full[i]).max() < 1e-3
        assert m.n_past == 40
        # rewind and redo the tail
        m.rewind(30)
        assert m.n_past == 30
        again = m.eval(ids[30:])
        assert np.abs(again - full[-1]).max() < 1e-3


def test_context_overflow_and_bad_tokens(gemma2, tmp_path):
    path = write_gguf_from_hf(gemma2, str(tmp_path / "g2.gguf"), "F32")
    with pygemma.Model(path, n_ctx=16, n_threads=1) as m:
        m.eval(list(range(4, 14)))
        with pytest.raises(pygemma.ContextFullError, match="n_ctx"):
            m.eval(list(range(4, 14)))
        assert m.n_past == 10          # nothing lost
        with pytest.raises(ValueError, match="out of range"):
            m.eval([m.n_vocab])
        with pytest.raises(pygemma.ContextFullError):
            m.logits(list(range(4, 30)))
        m.eval([5])
        assert m.n_past == 11
    with pytest.raises(pygemma.ModelStateError):
        m.eval([5])


def test_llamafile_runs_like_its_gguf(gemma2, tmp_path):
    """A llamafile (ZIP with a stub prefix; Python's zipfile does not page-align
    the member, so tensor data lands unaligned) gives the same logits."""
    from gguf_samples import zip_with_python
    ids = token_ids(24, gemma2.config.vocab_size, seed=8)
    path = write_gguf_from_hf(gemma2, str(tmp_path / "g2.gguf"), "Q8_0")
    with open(path, "rb") as f:
        data = f.read()
    lf = tmp_path / "g2.llamafile"
    lf.write_bytes(zip_with_python([("g2.gguf", data)]))
    np.testing.assert_array_equal(run_pygemma(str(lf), ids), run_pygemma(path, ids))
