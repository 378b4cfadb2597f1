"""Step-wise generation: one sampled token at a time, for any driver.

A `Generation` turns the logits after each evaluated token into the next token and the text it
adds (stop strings and partial UTF-8 held back by TextStream), keeps the counters
(GenerationStats), optional logprobs and an optional constraint (pygemma/json_constraint.py),
and decides when to finish ("stop": end of turn or a stop string; "length": max_tokens or a
full context).  It never evaluates anything itself: the caller evaluates `step()`'s token --
Model.generate one sequence at a time, the server's scheduler all its slots in one batch.
"""
import time

import numpy as np

from .sampling import Sampler, TextStream, token_logprob, top_logprobs


class GenerationStats:
    """Counters of one generation (Model.last_stats; the server's usage and /stats in chat)."""

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


class TokenLogprob:
    """The chosen token's log-probability and the n most likely alternatives (model's softmax,
    before sampling penalties and truncation, as OpenAI reports them)."""

    __slots__ = ("token", "logprob", "top")

    def __init__(self, token, logprob, top):
        self.token, self.logprob, self.top = token, logprob, top     # top: [(id, logprob)]


class Step:
    """What one step produced: the token (None when generation ended without one), the text it
    released (may be "" while bytes are held back), and its logprob entry if asked for."""

    __slots__ = ("token", "text", "logprob")

    def __init__(self, token, text, logprob):
        self.token, self.text, self.logprob = token, text, logprob


class Generation:
    """Sampling state of one completion over a sequence whose prompt is already evaluated.

    history: the cached tokens (for the penalty window); n_ctx: the sequence's context size;
    eog_ids: end-of-generation token ids; piece: token id -> bytes; logprobs: None, or how many
    alternatives to report per token (0 = only the chosen one); constraint: None or an object
    with allowed(token) / advance(token) / mask(logits) / done (see json_constraint)."""

    def __init__(self, params, n_vocab, history, n_ctx, eog_ids, piece, stats=None,
                 logprobs=None, constraint=None):
        self.params = params
        self.sampler = Sampler(params, n_vocab)
        if params.penalty_last_n != 0:
            window = history if params.penalty_last_n < 0 else history[-params.penalty_last_n:]
            for t in window:
                self.sampler.accept(t)
        self.stream = TextStream(params.stop)
        self.limit = params.max_tokens or n_ctx       # None or 0: until the context is full
        self.n_cached = len(history)            # tokens in the sequence after the last eval
        self.n_ctx = n_ctx
        self.eog_ids = eog_ids
        self.piece = piece
        self.stats = stats or GenerationStats()
        self.logprobs = logprobs
        self.constraint = constraint
        self.finish_reason = None
        self.t_start = time.perf_counter()

    @property
    def done(self):
        return self.finish_reason is not None

    def _finish(self, reason):
        self.finish_reason = self.stats.finish_reason = reason
        self.stats.generation_seconds = time.perf_counter() - self.t_start

    def _sample(self, logits):
        c = self.constraint
        if c is None:
            return self.sampler.sample(logits)
        tok = self.sampler.sample(logits)
        if c.allowed(tok):
            return tok
        # The draw broke the constraint: draw again from the allowed tokens only.
        masked = np.array(logits, dtype=np.float32, copy=True)
        c.mask(masked)
        return self.sampler.sample(masked)

    def step(self, logits):
        """Choose the next token from `logits` (the last evaluated token's).  Returns a Step;
        when `done` afterwards, its token must not be evaluated."""
        if self.done:
            return Step(None, "", None)
        tok = self._sample(logits)
        if tok in self.eog_ids:
            self._finish("stop")
            return Step(None, self._flush(), None)
        lp = None
        if self.logprobs is not None:
            ids, lps = top_logprobs(logits, self.logprobs) if self.logprobs > 0 else ((), ())
            lp = TokenLogprob(tok, token_logprob(logits, tok),
                              [(int(i), float(v)) for i, v in zip(ids, lps)])
        self.stats.completion_tokens += 1
        if self.stats.completion_tokens == 1:
            self.stats.time_to_first_token = time.perf_counter() - self.t_start
        self.sampler.accept(tok)
        if self.constraint is not None:
            self.constraint.advance(tok)
        text = self.stream.feed(self.piece(tok))
        if self.stream.stopped:
            self._finish("stop")
        elif self.constraint is not None and self.constraint.done:
            self._finish("stop")
            text += self._flush()
        elif self.stats.completion_tokens >= self.limit or self.n_cached >= self.n_ctx:
            self._finish("length")                  # no room to evaluate this token
            text += self._flush()
        else:
            self.n_cached += 1
        return Step(tok, text, lp)

    def _flush(self):
        return "" if self.stream.stopped else self.stream.flush()

    def cancel(self, reason="cancelled"):
        if not self.done:
            self._finish(reason)
