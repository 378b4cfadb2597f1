"""Batch invariance: a sequence's logits are bit-identical however its tokens are evaluated.

The reference is the sequence evaluated one token at a time.  Against it, bit for bit:
prefill in chunks of random sizes (several n_batch values, all positions' logits at once),
and decoding inside pg_eval_batch together with other sequences in random compositions
(some advancing, some prefilling in between, in random order).  Every CPU tier this machine
can run (and the generic AVX-512 / NEON variants), default and precise numerics, quantized
and float weights, the real Gemma 3 270M too.  A kernel that sums in another order for
another batch shape fails here at the first differing bit.
"""
import contextlib

import numpy as np
import pytest

from pygemma import cpu
from pygemma._ffi import check, ffi, lib

pytest.importorskip("torch")
pytest.importorskip("transformers")
from models import gemma2_hf_model, gemma3_hf_model, random_token_ids, write_gguf_from_hf  # noqa: E402


def tier_variants():
    out = []
    feats = cpu.features().split()
    for t in cpu.supported_tiers():
        out.append((t, False))
        if (t == "avx512" and ("avx512vnni" in feats or "avx512bf16" in feats)) or (t == "neon" and "dotprod" in feats):
            out.append((t, True))
    return out


TIERS = tier_variants()


@contextlib.contextmanager
def kernels(tier, generic):
    with cpu.forced_tier(tier):
        lib.pg_kernels_set_generic(int(generic))
        try:
            yield
        finally:
            lib.pg_kernels_set_generic(0)


class Seqs:
    """One C model and contexts over it (the server's slots)."""

    def __init__(self, path, n_ctx=128, precise=False):
        out = ffi.new("pg_model **")
        check(lib.pg_model_load(path.encode(), ffi.NULL, out))
        self.model, self.n_ctx, self.precise = out[0], n_ctx, precise
        self.n_vocab = lib.pg_model_n_vocab(self.model)
        self.ctxs = []

    def context(self, n_batch, threads=2):
        cp = ffi.new("pg_context_params *")
        lib.pg_context_params_init(cp)
        cp.n_ctx, cp.n_batch, cp.n_threads, cp.precise = self.n_ctx, n_batch, threads, int(self.precise)
        c = ffi.new("pg_context **")
        check(lib.pg_context_create(self.model, cp, c))
        self.ctxs.append(c[0])
        return c[0]

    def eval(self, ctx, ids, all_logits=False):
        out = np.empty((len(ids), self.n_vocab), np.float32) if all_logits else None
        check(lib.pg_eval(ctx, ffi.new("int32_t[]", list(ids)), len(ids),
                          ffi.cast("float *", ffi.from_buffer(out)) if all_logits else ffi.NULL))
        return out

    def logits(self, ctx):
        return np.frombuffer(ffi.buffer(lib.pg_context_logits(ctx), 4 * self.n_vocab), np.float32).copy()

    def batch(self, ctxs, tokens):
        check(lib.pg_eval_batch(ffi.new("pg_context *[]", ctxs), ffi.new("int32_t[]", tokens), len(ctxs)))

    def close(self):
        for c in self.ctxs:
            lib.pg_context_free(c)
        lib.pg_model_free(self.model)


def one_at_a_time(s, ids):
    """(len(ids), V) logits after each token, evaluated alone."""
    ctx = s.context(n_batch=1)
    rows = []
    for t in ids:
        s.eval(ctx, [t])
        rows.append(s.logits(ctx))
    return np.stack(rows)


def assert_same(got, ref, what):
    if not np.array_equal(got, ref):
        bad = np.argwhere(got != ref)[0]
        raise AssertionError(f"{what}: differs at {tuple(bad)} by {np.abs(got - ref).max():.3g}")


def check_invariance(path, seqs, seed, precise=False, n_ctx=128):
    """seqs: token id lists.  Chunked prefill and random pg_eval_batch mixes against one-at-a-time."""
    rng = np.random.default_rng(seed)
    s = Seqs(path, n_ctx=n_ctx, precise=precise)
    try:
        refs = [one_at_a_time(s, ids) for ids in seqs]
        # 1. prefill in chunks: every position's logits in one pg_eval, several n_batch values
        for n_batch in sorted({1, 2, 3, 7, 8, 16, int(rng.integers(4, 40)), 64}):
            ctx = s.context(n_batch=n_batch)
            assert_same(s.eval(ctx, seqs[0], all_logits=True), refs[0], f"prefill with n_batch={n_batch}")
        # 2. ragged pieces through one context: the last token's logits after each piece
        ctx, pos = s.context(n_batch=int(rng.integers(2, 24))), 0
        while pos < len(seqs[1]):
            k = int(rng.integers(1, 12))
            s.eval(ctx, seqs[1][pos:pos + k])
            pos = min(pos + k, len(seqs[1]))
            assert_same(s.logits(ctx), refs[1][pos - 1], f"pieces, after {pos} tokens")
        # 3. pg_eval_batch: random subsets in random order advance one token each; between
        #    steps some sequence may prefill a few tokens alone
        ctxs = [s.context(n_batch=int(rng.integers(len(seqs), 20))) for _ in seqs]   # a batch uses its first
        # context's buffers, which hold n_batch rows
        done = [0] * len(seqs)
        steps = 0
        while any(d < len(ids) for d, ids in zip(done, seqs)):
            live = [i for i, ids in enumerate(seqs) if done[i] < len(ids)]
            if rng.random() < 0.25:
                i = int(rng.choice(live))
                k = int(min(rng.integers(1, 6), len(seqs[i]) - done[i]))
                s.eval(ctxs[i], seqs[i][done[i]:done[i] + k])
                done[i] += k
                assert_same(s.logits(ctxs[i]), refs[i][done[i] - 1], f"sequence {i} prefilled to {done[i]}")
                continue
            pick = [int(i) for i in rng.permutation(live)[:int(rng.integers(1, len(live) + 1))]]
            s.batch([ctxs[i] for i in pick], [seqs[i][done[i]] for i in pick])
            steps += 1
            for i in pick:
                done[i] += 1
                assert_same(s.logits(ctxs[i]), refs[i][done[i] - 1],
                            f"sequence {i} at token {done[i]} in a batch of {len(pick)} (step {steps})")
    finally:
        s.close()


SYNTH = [("gemma2", "Q4_0"), ("gemma2", "Q8_0"), ("gemma3", "Q4_K"), ("gemma3", "Q6_K"),
         ("gemma2", "Q5_1"), ("gemma3", "F16"), ("gemma2", "BF16")]


@pytest.fixture(scope="module")
def synth_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inv")
    made = {}
    for variant, dtype in SYNTH:
        hf = gemma2_hf_model(seed=21, n_layers=3) if variant == "gemma2" else gemma3_hf_model(seed=22, n_layers=4)
        made[(variant, dtype)] = (str(write_gguf_from_hf(hf, str(d / f"{variant}-{dtype}.gguf"), dtype=dtype)),
                                  hf.config.vocab_size)
    return made


@pytest.mark.parametrize("tier,generic", TIERS)
@pytest.mark.parametrize("variant,dtype", SYNTH)
def test_synthetic_models(synth_files, tier, generic, variant, dtype):
    path, vocab = synth_files[(variant, dtype)]
    seqs = [random_token_ids(n, vocab, seed=n) for n in (37, 29, 23, 41)]
    with kernels(tier, generic):
        check_invariance(path, seqs, seed=hash((tier, generic, variant, dtype)) % 1000)


@pytest.mark.parametrize("tier,generic", TIERS)
def test_precise_numerics(synth_files, tier, generic):
    path, vocab = synth_files[("gemma3", "Q4_K")]
    seqs = [random_token_ids(n, vocab, seed=100 + n) for n in (31, 19, 26)]
    with kernels(tier, generic):
        check_invariance(path, seqs, seed=5, precise=True)


@pytest.mark.parametrize("tier,generic", TIERS)
def test_real_gemma3_270m(model_path, tier, generic):
    """The real 270M (Q4_K_M: Q4_K/Q5_0/Q6_K/Q8_0 tensors, a 262144-token head)."""
    seqs = [random_token_ids(n, 262144, seed=200 + n) for n in (14, 9, 11)]
    with kernels(tier, generic):
        check_invariance(model_path, seqs, seed=9, n_ctx=64)
