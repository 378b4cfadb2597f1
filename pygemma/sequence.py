"""One token sequence (a C pg_context: KV cache, activations, thread pool) over a loaded model.

Several Sequences share one Model's weights: the Python API uses a default one, the server one
per slot.  A Sequence keeps a mirror of the tokens in its KV cache, so `prefill` evaluates only
what a new prompt does not share with them.  Generation is step-wise (pygemma/generation.py):
the caller samples from `last_logits()`, then evaluates the chosen token -- alone with
`eval_one`, or together with other sequences' tokens in one pass over the weights with
`eval_batch`.

A Sequence is not thread-safe: one thread at a time drives it (the Model's lock for the
default one, the scheduler thread for server slots).
"""
import contextlib
import threading

import numpy as np

from . import errors
from ._closing import Closing
from ._ffi import check, ffi, lib
from ._lifetime import HandleGuard, wait_uninterrupted

# Batched decode: one pass over the weights for n sequences' next tokens.  Older cores without
# pg_eval_batch evaluate them one by one (same results, n passes).
_HAS_EVAL_BATCH = hasattr(lib, "pg_eval_batch")


def eval_batch(seqs, tokens):
    """Append tokens[i] to seqs[i] for every i (distinct sequences of the same model); each
    sequence's logits are then in its last_logits()."""
    if not seqs:
        return
    if len(seqs) != len(tokens):
        raise ValueError(f"{len(seqs)} sequences but {len(tokens)} tokens")
    for s, t in zip(seqs, tokens):
        s._live()
        s._check_fits(1)
        if not 0 <= int(t) < s.n_vocab:
            raise ValueError(f"token id {t} is out of range [0, {s.n_vocab})")
    if len(seqs) == 1 or not _HAS_EVAL_BATCH:
        for s, t in zip(seqs, tokens):
            s.eval_one(t)
        return
    # The first context does the work: it needs the largest n_ctx and room for n tokens.
    order = sorted(range(len(seqs)), key=lambda i: -seqs[i].n_ctx)
    seqs, tokens = [seqs[i] for i in order], [tokens[i] for i in order]
    step = max(1, seqs[0].n_batch)
    for i in range(0, len(seqs), step):
        _eval_batch(seqs[i:i + step], tokens[i:i + step])


def _eval_batch(seqs, tokens):
    with contextlib.ExitStack() as held:
        for s in seqs:
            held.enter_context(s._guard.use())
        ctxs = ffi.new("pg_context *[]", [s._ctx for s in seqs])
        toks = ffi.new("int32_t[]", [int(t) for t in tokens])
        status = lib.pg_eval_batch(ctxs, toks, len(seqs))
        for s, t in zip(seqs, tokens):       # resync each mirror with C (a failure may be partial)
            if lib.pg_context_n_past(s._ctx) == len(s._tokens) + 1:
                s._tokens.append(int(t))
    check(status)


class Sequence(Closing):
    """A KV cache over `model`'s weights; n_ctx etc. default to the model's own settings."""

    def __init__(self, model, n_ctx=None, n_threads=None, n_batch=None, precise=None):
        self._guard = HandleGuard("sequence (or its model)")   # every C call on _ctx runs in use()
        self._ctx = None
        model._guard.check()
        self.model = model
        self.n_vocab = model.n_vocab
        cp = ffi.new("pg_context_params *")
        lib.pg_context_params_init(cp)
        n_ctx = model._ctx_args["n_ctx"] if n_ctx is None else n_ctx
        if n_ctx is not None and int(n_ctx) <= 0:
            raise ValueError(f"n_ctx must be positive, got {n_ctx}")
        cp.n_ctx = int(n_ctx or 0)
        cp.n_threads = int((model._ctx_args["n_threads"] if n_threads is None else n_threads) or 0)
        cp.n_batch = int((model._ctx_args["n_batch"] if n_batch is None else n_batch) or 0)
        cp.precise = 1 if (model._ctx_args["precise"] if precise is None else precise) else 0
        out = ffi.new("pg_context **")
        with model._guard.use():           # Model.close() waits for this and then closes us
            check(lib.pg_context_create(model._model, cp, out))
            self._ctx = out[0]
            model._sequences.add(self)
        self.n_ctx = int(lib.pg_context_n_ctx(self._ctx))
        self.n_batch = int(cp.n_batch or 512)
        self._tokens = []                    # mirror of the tokens in the KV cache

    # ---- lifecycle ------------------------------------------------------------------------
    def close(self):
        """Free the KV cache.  From any thread: a running eval is cancelled and waited for
        first; every later call raises ModelStateError."""
        guard = getattr(self, "_guard", None)
        if guard is None or not guard.close(cancel=self._cancel_running):
            return
        if self._ctx is not None:
            lib.pg_context_free(self._ctx)
            self._ctx = None

    def _cancel_running(self):
        if self._ctx is not None:
            lib.pg_context_cancel(self._ctx)

    def _live(self):
        self._guard.check()

    def held(self):
        """A context manager keeping the KV cache (and the memory last_logits() views) alive."""
        return self._guard.use()

    def cancel(self):
        """Ask an eval running on another thread to stop soon (it raises CancelledError)."""
        try:
            with self._guard.use():
                lib.pg_context_cancel(self._ctx)
        except errors.ModelStateError:
            pass                            # closed: nothing runs any more

    # ---- state ----------------------------------------------------------------------------
    @property
    def n_past(self):
        with self._guard.use():
            return lib.pg_context_n_past(self._ctx)

    @property
    def tokens(self):
        """The tokens currently in the KV cache."""
        self._live()
        return list(self._tokens)

    def common_prefix(self, ids):
        """How many leading tokens of `ids` are already cached."""
        self._live()
        n = 0
        for a, b in zip(self._tokens, ids):
            if a != b:
                break
            n += 1
        return n

    def reset(self):
        with self._guard.use():
            check(lib.pg_context_rewind(self._ctx, 0))
            self._tokens = []

    def rewind(self, n_past):
        """Keep only the first n_past cached tokens (re-evaluates if the
        sliding-window cache cannot go back that far)."""
        self._live()
        if not 0 <= n_past <= len(self._tokens):
            raise ValueError(f"cannot rewind to {n_past}: {len(self._tokens)} tokens are cached")
        if self.try_rewind(n_past):
            return
        keep = self._tokens[:n_past]
        self.reset()
        if keep:
            self._eval(keep)

    def try_rewind(self, n_past):
        """Rewind in place if the cache allows it (True); False leaves the cache untouched."""
        with self._guard.use():
            if lib.pg_context_rewind(self._ctx, n_past) == lib.PG_OK:
                del self._tokens[n_past:]
                return True
        return False

    def drop(self, start, end):
        """Remove the cached tokens [start, end), shifting the later ones down in the KV cache
        without re-evaluating them.  False (nothing changed) when the sliding-window cache
        cannot do it."""
        self._live()
        if not 0 <= start <= end <= len(self._tokens):
            raise ValueError(f"cannot drop tokens [{start}, {end}): {len(self._tokens)} tokens are cached")
        with self._guard.use():
            status = lib.pg_context_shift(self._ctx, start, end)
            if status == lib.PG_ERR_STATE:
                return False
            check(status)
            del self._tokens[start:end]
        return True

    # ---- evaluation -----------------------------------------------------------------------
    def _eval(self, ids, all_logits=None, interruptible=False):
        arr = np.ascontiguousarray(ids, dtype=np.int32)
        out = ffi.NULL if all_logits is None else ffi.cast("float *", all_logits.ctypes.data)
        ptr = ffi.cast("int32_t *", arr.ctypes.data)
        with self._guard.use():
            try:
                if interruptible and len(arr) > 1:
                    status = self._eval_interruptible(ptr, len(arr), out)
                else:
                    status = lib.pg_eval(self._ctx, ptr, len(arr), out)
            finally:
                # Cancelled (Ctrl-C) or failed evals may have stored some chunks: resync with C,
                # so what was evaluated stays usable.
                n_done = lib.pg_context_n_past(self._ctx) - len(self._tokens)
                self._tokens.extend(int(t) for t in arr[:n_done])
        check(status)

    def _eval_interruptible(self, ptr, n, out):
        """Run a long eval on a helper thread so Ctrl-C (delivered to this, the main thread) can
        cancel it.  The wait is on a completion event: after Ctrl-C the C call is cancelled and
        waited for to the end (a second Ctrl-C does not cut that wait short) before the
        KeyboardInterrupt goes on, so nothing is freed under it."""
        result, done = [], threading.Event()

        def work():
            try:
                result.append(lib.pg_eval(self._ctx, ptr, n, out))
            finally:
                done.set()

        threading.Thread(target=work, name="pygemma-eval", daemon=True).start()
        try:
            while not done.wait(0.05):
                pass
        except KeyboardInterrupt:
            lib.pg_context_cancel(self._ctx)
            wait_uninterrupted(done.wait)
            raise
        return result[0]

    def _check_fits(self, n_new):
        if len(self._tokens) + n_new > self.n_ctx:
            raise errors.ContextFullError(
                f"context full: {len(self._tokens)} cached + {n_new} new tokens exceed n_ctx = {self.n_ctx}")

    def checked_ids(self, ids):
        ids = [int(t) for t in ids]
        if not ids:
            raise ValueError("no tokens given")
        bad = [t for t in ids if not 0 <= t < self.n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is out of range [0, {self.n_vocab})")
        return ids

    def eval(self, ids, interruptible=True):
        """Append `ids` after the cached tokens; return the last one's logits (a copy)."""
        self._live()
        ids = self.checked_ids(ids)
        self._check_fits(len(ids))
        self._eval(ids, interruptible=interruptible)
        return self.last_logits().copy()

    def eval_one(self, token):
        """Append one token (the decode step); its logits are then in last_logits()."""
        self._live()
        self._check_fits(1)
        self._eval([token])

    def logits(self, ids):
        """Logits of every token of `ids`, evaluated from an empty cache: (len(ids), n_vocab)."""
        self._live()
        ids = self.checked_ids(ids)
        if len(ids) > self.n_ctx:
            raise errors.ContextFullError(f"{len(ids)} tokens exceed n_ctx = {self.n_ctx}")
        self.reset()
        out = np.empty((len(ids), self.n_vocab), dtype=np.float32)
        self._eval(ids, out, interruptible=True)
        return out

    def last_logits(self):
        """A read-only view of the last evaluated token's logits (valid until the next eval, and
        while the sequence is open: use it inside `with seq.held():` when another thread may
        close the model)."""
        self._live()
        ptr = lib.pg_context_logits(self._ctx)
        if ptr == ffi.NULL:
            raise errors.ModelStateError("no logits: evaluate at least one token first")
        return np.frombuffer(ffi.buffer(ptr, 4 * self.n_vocab), dtype=np.float32)

    def start_prefill(self, ids):
        """Rewind to the longest cached prefix of `ids` that leaves at least one token to run
        (its logits are needed); return (reused, rest): the tokens still to evaluate."""
        self._live()
        ids = self.checked_ids(ids)
        if len(ids) > self.n_ctx:
            raise errors.ContextFullError(
                f"prompt of {len(ids)} tokens does not fit in the context of {self.n_ctx} tokens")
        common = min(self.common_prefix(ids), len(ids) - 1)
        if common < len(self._tokens) and not self.try_rewind(common):
            # A sliding-window ring no longer holds what position `common` needs: start over.
            self.reset()
            common = 0
        return common, ids[common:]

    def prefill(self, ids, interruptible=True):
        """Make the cache hold exactly `ids`, reusing the longest cached prefix, and leave the
        logits of the last token ready.  Returns how many tokens were reused."""
        common, rest = self.start_prefill(ids)
        self._eval(rest, interruptible=interruptible)
        return common
