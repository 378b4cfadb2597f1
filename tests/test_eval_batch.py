"""pg_eval_batch: several sequences decode together in one pass over the weights.

Each sequence's logits must be those of transformers for that sequence alone, at
every batched step, while the sequences have different lengths (different
positions in one batch) and the sliding layers' rings wrap.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

from pygemma import errors  # noqa: E402
from pygemma._ffi import check, ffi, lib  # noqa: E402
from models import gemma2_hf_model, gemma3_hf_model, hf_logits, write_gguf_from_hf  # noqa: E402
from models import random_token_ids as token_ids  # noqa: E402

# every test runs on the native tier, on AVX2 and on scalar (tests/conftest.py cpu_tier)
pytestmark = pytest.mark.usefixtures("cpu_tier")


class Contexts:
    """A C model with several contexts (what the server's slots hold)."""

    def __init__(self, path, n, n_ctx=96, n_batch=4, precise=True):
        out = ffi.new("pg_model **")
        check(lib.pg_model_load(path.encode(), ffi.NULL, out))
        self.model = out[0]
        self.n_vocab = lib.pg_model_n_vocab(self.model)
        self.ctxs = []
        for _ in range(n):
            cp = ffi.new("pg_context_params *")
            lib.pg_context_params_init(cp)
            cp.n_ctx, cp.n_batch, cp.n_threads, cp.precise = n_ctx, n_batch, 2, int(precise)
            c = ffi.new("pg_context **")
            check(lib.pg_context_create(self.model, cp, c))
            self.ctxs.append(c[0])

    def eval(self, i, ids):
        arr = ffi.new("int32_t[]", ids)
        check(lib.pg_eval(self.ctxs[i], arr, len(ids), ffi.NULL))

    def batch(self, which, tokens):
        arr = ffi.new("pg_context *[]", [self.ctxs[i] for i in which])
        check(lib.pg_eval_batch(arr, ffi.new("int32_t[]", tokens), len(which)))

    def logits(self, i):
        p = lib.pg_context_logits(self.ctxs[i])
        return np.frombuffer(ffi.buffer(p, 4 * self.n_vocab), dtype=np.float32).copy()

    def n_past(self, i):
        return lib.pg_context_n_past(self.ctxs[i])

    def close(self):
        for c in self.ctxs:
            lib.pg_context_free(c)
        lib.pg_model_free(self.model)


@pytest.mark.parametrize("variant", ["gemma2", "gemma3"])
def test_batched_decode_matches_transformers(tmp_path, variant):
    hf = gemma2_hf_model(seed=11) if variant == "gemma2" else gemma3_hf_model(seed=12)
    path = write_gguf_from_hf(hf, str(tmp_path / "m.gguf"), "F32")
    vocab = hf.config.vocab_size
    # Three sequences, prompts of different lengths; then 30 batched steps take
    # each well past the sliding window (16) and around the ring (16 + 4 slots).
    seqs = [token_ids(n, vocab, seed=n) for n in (3, 9, 20)]
    steps = 30
    full = [list(s) for s in seqs]
    rng = np.random.default_rng(5)
    for f in full:
        f += rng.integers(4, vocab, size=steps).tolist()
    ref = [hf_logits(hf, f) for f in full]
    cs = Contexts(path, 3)
    try:
        for i, s in enumerate(seqs):
            cs.eval(i, s)
        for step in range(steps):
            # every other step one sequence sits out: batches of 3 and 2 rows
            which = [0, 1, 2] if step % 2 == 0 else [2, 0]
            pos = [cs.n_past(i) for i in which]
            cs.batch(which, [full[i][p] for i, p in zip(which, pos)])
            for i, p in zip(which, pos):
                assert cs.n_past(i) == p + 1
                assert np.abs(cs.logits(i) - ref[i][p]).max() < 1e-3, (variant, step, i)
    finally:
        cs.close()


def test_batched_decode_default_numerics_close_to_single(tmp_path):
    """In llama.cpp-compatible numerics (F16 cache, 8-bit activations) the batch uses
    matrix-matrix kernels where a single sequence uses matrix-vector ones: same
    argmax, logits within the activation-rounding noise."""
    hf = gemma2_hf_model(seed=13)
    path = write_gguf_from_hf(hf, str(tmp_path / "m.gguf"), "Q8_0")
    vocab = hf.config.vocab_size
    a, b = token_ids(12, vocab, 1), token_ids(7, vocab, 2)
    batched, single = Contexts(path, 2, precise=False), Contexts(path, 2, precise=False)
    try:
        for cs in (batched, single):
            cs.eval(0, a)
            cs.eval(1, b)
        for t in range(6):
            toks = [a[t], b[t]]
            batched.batch([0, 1], toks)
            for i in range(2):
                single.eval(i, [toks[i]])
                x, y = batched.logits(i), single.logits(i)
                assert x.argmax() == y.argmax()
                assert np.abs(x - y).max() < 0.05 * np.abs(y).max()
    finally:
        batched.close()
        single.close()


def test_batched_decode_errors(tmp_path):
    hf = gemma2_hf_model(seed=14)
    path = write_gguf_from_hf(hf, str(tmp_path / "m.gguf"), "F32")
    cs = Contexts(path, 3, n_ctx=8, n_batch=2)
    other = Contexts(path, 1)           # another model, n_ctx 96
    cp = ffi.new("pg_context_params *")
    lib.pg_context_params_init(cp)
    cp.n_ctx, cp.n_threads = 16, 1
    big = ffi.new("pg_context **")
    check(lib.pg_context_create(cs.model, cp, big))
    c = cs.ctxs

    def call(ctxs, toks):
        arr = ffi.new("pg_context *[]", ctxs)
        return check(lib.pg_eval_batch(arr, ffi.new("int32_t[]", toks), len(ctxs)))

    try:
        with pytest.raises(ValueError, match="appears twice"):
            call([c[0], c[0]], [5, 6])
        with pytest.raises(ValueError, match="exceed the first context's n_batch"):
            call(c, [5, 6, 7])
        with pytest.raises(ValueError, match="another model"):
            call([c[0], other.ctxs[0]], [5, 6])
        with pytest.raises(ValueError, match="out of range"):
            call([c[0], c[1]], [5, 10 ** 6])
        with pytest.raises(ValueError, match="n_ctx 16"):
            call([c[0], big[0]], [5, 6])
        cs.eval(1, [2] + [5] * 7)                  # sequence 1 is full
        with pytest.raises(errors.ContextFullError):
            call([c[0], c[1]], [5, 6])
        assert [cs.n_past(i) for i in range(3)] == [0, 8, 0]   # nothing changed
        call([c[2], c[0]], [2, 2])                 # and the contexts still work
        assert [cs.n_past(i) for i in range(3)] == [1, 8, 1]
    finally:
        lib.pg_context_free(big[0])
        cs.close()
        other.close()
