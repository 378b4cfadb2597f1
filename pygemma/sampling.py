"""Sampling parameters, the token sampler and the streamed-text filter.

`SamplingParams` is the one description of how to pick tokens, shared by the Python API, the
CLI (which maps its flags onto it) and the server (`SamplingParams.from_openai`).  `Sampler`
and `TextStream` are thin wrappers over the C core (csrc/sampler.c, csrc/textstream.c); the
semantics are documented in csrc/pygemma.h, section "Sampler".

Defaults are llama.cpp's (common/common.h, `common_params_sampling`): temperature 0.8, top_k 40,
top_p 0.95, min_p 0.05, repeat_penalty 1.0 (off), frequency/presence penalties 0,
penalty_last_n 64, random seed, same chain order (penalties, top-k, top-p, min-p, temperature).
Where we differ: no DRY, XTC, typical-p, top-n-sigma or mirostat stages (all off by default in
llama.cpp); seeds are 64-bit (llama.cpp's are 32-bit, with 0xFFFFFFFF meaning random -- here
None or -1); penalty_last_n = -1 means "every token since the last reset" rather than "the
context size" (the same thing when the sampler is reset per conversation).
"""
import dataclasses
import reprlib
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ._ffi import check, ffi, lib

SEED_RANDOM = 2**64 - 1          # PG_SAMPLER_SEED_RANDOM: the C core picks a seed
MAX_STOPS = lib.PG_TEXTSTREAM_MAX_STOPS
MAX_STOP_BYTES = lib.PG_TEXTSTREAM_MAX_STOP_BYTES


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


# Error messages quote a value through this: a request's 1 MB string or 4000-digit number is
# shown as a short excerpt, never echoed whole.
_excerpt = reprlib.Repr()
_excerpt.maxstring = _excerpt.maxlong = _excerpt.maxother = 40
_excerpt.maxlist = _excerpt.maxtuple = 4
excerpt = _excerpt.repr


def _as_float32(v):
    """v as the C core's float (float32), or None when it is no finite float32: overflow to
    inf (1e39), NaN/inf, or an integer too large for a double."""
    try:
        d = float(v)
    except OverflowError:
        return None
    with np.errstate(over="ignore"):
        f = np.float32(d)
    return float(f) if np.isfinite(f) else None


FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)      # the smallest normal float32


@dataclass(frozen=True)
class SamplingParams:
    """How to choose each token, and when to stop.

    temperature <= 0 is greedy; top_k <= 0 keeps the whole vocabulary; top_p = 1 and min_p = 0
    turn those stages off; repeat_penalty = 1 and the other penalties = 0 turn penalties off.
    seed None picks a random seed.  max_tokens None generates until end of turn or a full
    context.  stop: strings that end the output (not included in it).
    Invalid values raise ValueError naming the field.
    """

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: Optional[int] = None
    max_tokens: Optional[int] = None
    stop: Tuple[str, ...] = ()

    def __post_init__(self):
        # normalize the spellings front ends receive: a lone stop string, a list, -1 for "none"
        stop = self.stop
        if stop is None:
            stop = ()
        elif isinstance(stop, str):
            stop = (stop,)
        elif isinstance(stop, (list, tuple)):
            stop = tuple(stop)
        object.__setattr__(self, "stop", stop)
        if self.seed is not None and _is_int(self.seed) and self.seed == -1:
            object.__setattr__(self, "seed", None)
        if self.max_tokens is not None and _is_int(self.max_tokens) and self.max_tokens == -1:
            object.__setattr__(self, "max_tokens", None)
        self.validate()

    @classmethod
    def greedy(cls, **kw):
        """Always the most likely token (penalties, if given, still apply)."""
        return cls(temperature=0.0, **kw)

    def replace(self, **kw):
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **kw)

    def validate(self):
        """The checks of csrc/sampler.c's check_params, made on the float32 / int32 / uint64
        values the C core will receive, so nothing valid here is refused there."""
        def bad(field, value, why):
            raise ValueError(f"{field} = {excerpt(value)}: {why}")

        for field in ("temperature", "top_p", "min_p", "repeat_penalty",
                      "frequency_penalty", "presence_penalty"):
            v = getattr(self, field)
            if not _is_number(v):
                bad(field, v, "must be a number")
            f = _as_float32(v)
            if f is None:
                bad(field, v, f"must be finite, at most {FLOAT32_MAX:.7g} in magnitude (a 32-bit float)")
        for field in ("top_k", "penalty_last_n"):
            v = getattr(self, field)
            if not _is_int(v):
                bad(field, v, "must be an integer")
            if not -2**31 <= v < 2**31:
                bad(field, v, "out of the 32-bit range")
        if not 0.0 <= self.top_p <= 1.0:
            bad("top_p", self.top_p, "must be in [0, 1]")
        if not 0.0 <= self.min_p <= 1.0:
            bad("min_p", self.min_p, "must be in [0, 1]")
        # C divides positive logits by it: as a float32 it must be > 0 (1e-46 rounds to 0) and
        # its reciprocal finite (that of a subnormal like 1e-40 is inf), so: a normal float32
        if not _as_float32(self.repeat_penalty) >= FLOAT32_TINY:
            bad("repeat_penalty", self.repeat_penalty,
                f"must be at least {FLOAT32_TINY:.4g} (the smallest normal 32-bit float; 1 turns it off)")
        if self.penalty_last_n < -1:
            bad("penalty_last_n", self.penalty_last_n, "must be >= -1 (0 off, -1 since reset)")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < SEED_RANDOM):
            bad("seed", self.seed, f"must be None, -1 or an integer in [0, {SEED_RANDOM})")
        if self.max_tokens is not None and (not _is_int(self.max_tokens) or self.max_tokens < 0):
            bad("max_tokens", self.max_tokens, "must be None, -1 or an integer >= 0")
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) for s in self.stop):
            bad("stop", self.stop, "must be a string or a sequence of strings")
        if len(self.stop) > MAX_STOPS:
            bad("stop", self.stop, f"at most {MAX_STOPS} stop strings")
        for s in self.stop:
            if not s:
                bad("stop", self.stop, "stop strings must not be empty")
            try:
                size = len(s.encode("utf-8"))
            except UnicodeEncodeError:
                bad("stop", s, "stop strings must be valid Unicode (no lone surrogates)")
            if size > MAX_STOP_BYTES:
                bad("stop", s, f"a stop string is at most {MAX_STOP_BYTES} bytes")

    @property
    def is_greedy(self):
        return self.temperature <= 0.0 or self.top_k == 1

    def to_c(self):
        """A new `pg_sampler_params *` (cffi owned) with these values."""
        p = ffi.new("pg_sampler_params *")
        p.temperature = self.temperature
        p.top_k = self.top_k
        p.top_p = self.top_p
        p.min_p = self.min_p
        p.repeat_penalty = self.repeat_penalty
        p.frequency_penalty = self.frequency_penalty
        p.presence_penalty = self.presence_penalty
        p.penalty_last_n = self.penalty_last_n
        p.seed = SEED_RANDOM if self.seed is None else self.seed
        return p

    # OpenAI request field -> our field.  The llama.cpp server's extensions are accepted too.
    _OPENAI_FIELDS = {
        "temperature": "temperature",
        "top_p": "top_p",
        "seed": "seed",
        "presence_penalty": "presence_penalty",
        "frequency_penalty": "frequency_penalty",
        "stop": "stop",
        "max_tokens": "max_tokens",
        "max_completion_tokens": "max_tokens",   # the newer name wins when both are given
        "top_k": "top_k",
        "min_p": "min_p",
        "repeat_penalty": "repeat_penalty",
        "repeat_last_n": "penalty_last_n",
    }

    # OpenAI's documented ranges: requests outside them are rejected, as api.openai.com does.
    _OPENAI_RANGES = {
        "temperature": (0.0, 2.0),
        "top_p": (0.0, 1.0),
        "presence_penalty": (-2.0, 2.0),
        "frequency_penalty": (-2.0, 2.0),
        "max_tokens": (1, None),
        "max_completion_tokens": (1, None),
    }

    @classmethod
    def from_openai(cls, request, base=None):
        """Parameters from an OpenAI (chat) completion request body.

        Fields absent or null keep the value of `base` (default: SamplingParams()), so a
        server passes its configured defaults as `base`.  Fields that are not sampling
        fields (model, messages, stream, ...) are ignored.  Bad values raise ValueError
        naming the request field."""
        base = base if base is not None else cls()
        kw = {}
        for key, field in cls._OPENAI_FIELDS.items():
            if key == "max_tokens" and request.get("max_completion_tokens") is not None:
                continue
            v = request.get(key)
            if v is None:
                continue
            if field in ("temperature", "top_p", "min_p", "repeat_penalty",
                         "frequency_penalty", "presence_penalty"):
                if not _is_number(v):
                    raise ValueError(f"{key} = {excerpt(v)}: must be a number")
                try:
                    v = float(v)
                except OverflowError:           # a JSON integer of hundreds of digits
                    raise ValueError(f"{key} = {excerpt(v)}: must be a finite 32-bit float") from None
            elif field in ("top_k", "penalty_last_n", "max_tokens", "seed"):
                if isinstance(v, float) and v.is_integer():
                    v = int(v)
                if not _is_int(v):
                    raise ValueError(f"{key} = {excerpt(v)}: must be an integer")
            elif field == "stop":
                if not isinstance(v, (str, list, tuple)) or (
                        not isinstance(v, str) and not all(isinstance(s, str) for s in v)):
                    raise ValueError(f"{key} = {excerpt(v)}: must be a string or a list of strings")
                v = tuple(s for s in ((v,) if isinstance(v, str) else v) if s)  # "" means none
            lo, hi = cls._OPENAI_RANGES.get(key, (None, None))
            if field == "max_tokens" and v == -1:
                lo = None                       # llama.cpp's "no limit"
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                where = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise ValueError(f"{key} = {excerpt(v)}: must be {where}")
            kw[field] = v
        try:
            return base.replace(**kw)
        except ValueError as e:
            # name the request's spelling of the field where it differs from ours
            msg = str(e)
            for key, field in cls._OPENAI_FIELDS.items():
                if key in request and field != key and msg.startswith(field + " "):
                    msg = key + msg[len(field):]
            raise ValueError(msg) from None


def _logits_buffer(logits, n_vocab):
    a = np.ascontiguousarray(logits, dtype=np.float32)
    if a.ndim != 1 or a.shape[0] != n_vocab:
        raise ValueError(f"logits must have shape ({n_vocab},), got {a.shape}")
    return a


class Sampler:
    """Draws tokens from logits with `params`; call accept() for each context token
    (prompt and generated alike) so the penalty window sees them."""

    def __init__(self, params: SamplingParams, n_vocab: int):
        params.validate()
        self.params = params
        self.n_vocab = int(n_vocab)
        out = ffi.new("pg_sampler **")
        check(lib.pg_sampler_create(params.to_c(), self.n_vocab, out))
        self._s = ffi.gc(out[0], lib.pg_sampler_free)

    @property
    def seed(self):
        """The seed in use (the one picked when params.seed is None)."""
        return int(lib.pg_sampler_seed(self._s))

    def sample(self, logits) -> int:
        a = _logits_buffer(logits, self.n_vocab)
        tok = ffi.new("int32_t *")
        check(lib.pg_sampler_sample(self._s, ffi.from_buffer("float[]", a), tok))
        return int(tok[0])

    def accept(self, token: int):
        check(lib.pg_sampler_accept(self._s, int(token)))

    def accept_many(self, tokens):
        for t in tokens:
            check(lib.pg_sampler_accept(self._s, int(t)))

    def reset(self):
        lib.pg_sampler_reset(self._s)

    def candidates(self, logits):
        """(ids, probs): what the next sample() would choose from, in draw order; draws nothing."""
        a = _logits_buffer(logits, self.n_vocab)
        ids = np.empty(self.n_vocab, dtype=np.int32)
        probs = np.empty(self.n_vocab, dtype=np.float32)
        n = ffi.new("int32_t *")
        check(lib.pg_sampler_candidates(self._s, ffi.from_buffer("float[]", a), self.n_vocab,
                                        ffi.from_buffer("int32_t[]", ids),
                                        ffi.from_buffer("float[]", probs), n))
        return ids[:n[0]].copy(), probs[:n[0]].copy()


def top_logprobs(logits, k):
    """(ids, logprobs) of the k most likely tokens under log_softmax(logits), best first."""
    a = np.ascontiguousarray(logits, dtype=np.float32).reshape(-1)
    ids = np.empty(k, dtype=np.int32)
    lps = np.empty(k, dtype=np.float32)
    check(lib.pg_sampler_top_logprobs(ffi.from_buffer("float[]", a), a.shape[0], int(k),
                                      ffi.from_buffer("int32_t[]", ids), ffi.from_buffer("float[]", lps)))
    return ids, lps


def token_logprob(logits, token):
    """log_softmax(logits)[token]."""
    a = np.ascontiguousarray(logits, dtype=np.float32).reshape(-1)
    out = ffi.new("float *")
    check(lib.pg_sampler_token_logprob(ffi.from_buffer("float[]", a), a.shape[0], int(token), out))
    return float(out[0])


class TextStream:
    """Turns streamed token bytes into text safe to show: whole UTF-8 characters only, stop
    strings cut off (see csrc/pygemma.h).  feed() after a stop returns ""."""

    def __init__(self, stops=()):
        if isinstance(stops, str):
            stops = (stops,)
        enc = [s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in stops]
        self.stops = tuple(stops)
        self._keep = [ffi.new("char[]", b) for b in enc]        # alive while the C call copies them
        arr = ffi.new("char *[]", self._keep) if enc else ffi.NULL
        lens = ffi.new("size_t[]", [len(b) for b in enc]) if enc else ffi.NULL
        out = ffi.new("pg_textstream **")
        check(lib.pg_textstream_create(arr, lens, len(enc), out))
        self._ts = ffi.gc(out[0], lib.pg_textstream_free)
        self._out = ffi.new("const char **")
        self._n = ffi.new("size_t *")
        self._stopped = ffi.new("int *")

    def feed(self, b: bytes) -> str:
        check(lib.pg_textstream_feed(self._ts, b, len(b), self._out, self._n, self._stopped))
        return ffi.unpack(self._out[0], self._n[0]).decode("utf-8")

    def flush(self) -> str:
        check(lib.pg_textstream_flush(self._ts, self._out, self._n))
        return ffi.unpack(self._out[0], self._n[0]).decode("utf-8")

    @property
    def stopped(self) -> bool:
        return lib.pg_textstream_stop_index(self._ts) >= 0

    @property
    def stop(self):
        """The stop string that ended the stream, or None."""
        i = lib.pg_textstream_stop_index(self._ts)
        return self.stops[i] if i >= 0 else None

    @property
    def held(self) -> int:
        """Bytes fed but not yet returned."""
        return int(lib.pg_textstream_held(self._ts))

    def reset(self):
        lib.pg_textstream_reset(self._ts)
