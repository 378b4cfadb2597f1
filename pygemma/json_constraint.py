"""Constrained decoding to one valid JSON object (the server's response_format json_object).

`JsonAutomaton` is a byte-level pushdown automaton for RFC 8259 JSON whose top-level value is
an object: states are small immutable tuples, so a token's bytes can be tried from a state
without touching it.  `JsonConstraint` follows the generated tokens and answers, for the
sampler (pygemma/generation.py): may this token come next (`allowed`), and which tokens may
(`mask`, only needed when the sampled token was refused).

`TokenBytes` holds what the masks need, computed once per model: every token's bytes, sorted
so that the tokens sharing a prefix form a contiguous range (a trie without nodes: a range is
split by the byte at the next depth with bisect), and the "plain string" tokens -- complete
UTF-8 text without quote, backslash or control bytes -- which inside a string are always
allowed and leave the state as it was, so the search only walks the other tokens there.

Limits that keep the output finite and well-formed: at most MAX_WS whitespace bytes in a row,
at most MAX_DEPTH nested containers; strings must be valid UTF-8 with valid escapes.
"""
import bisect

import numpy as np

MAX_WS = 24
MAX_DEPTH = 32

# Modes.  A state is (mode, stack, a, b): stack is a str of "o"/"a" (open objects/arrays);
# a and b depend on the mode (whitespace run, string sub-state, number sub-state, literal rest).
START, VALUE, ARR_FIRST, OBJ_FIRST, OBJ_KEY, COLON, AFTER, STR, NUM, LIT, DONE = range(11)

_WS = frozenset(b" \t\n\r")
_DIGITS = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = frozenset(b'"\\/bfnrtu')
_LITERALS = {ord("t"): b"rue", ord("f"): b"alse", ord("n"): b"ull"}

# String sub-states (a = 1 for a key, b = sub-state): 0 plain; -1 after a backslash;
# 1..4 hex digits of \\u still expected (as 10 + n); utf-8 continuation bytes expected as
# 20 + n, with the allowed range of the first continuation byte encoded in the next 2 values.
S_PLAIN, S_ESC = 0, -1

# Number sub-states (b): after "-", after a leading "0", in the integer digits, after ".",
# in the fraction, after "e", after the exponent sign, in the exponent.
N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP = range(8)
_NUM_END = frozenset((N_ZERO, N_INT, N_FRAC, N_EXP))       # a number may end here

INITIAL = (START, "", 0, 0)


def _ws(state, byte):
    """Whitespace in a structural mode: count the run."""
    mode, stack, a, b = state
    return (mode, stack, a + 1, b) if a < MAX_WS else None


def _value(stack, byte):
    """The first byte of a value (whitespace handled by the caller)."""
    if byte == 0x22:
        return (STR, stack, 0, S_PLAIN)
    if byte == 0x7B:
        return (OBJ_FIRST, stack + "o", 0, 0) if len(stack) < MAX_DEPTH else None
    if byte == 0x5B:
        return (ARR_FIRST, stack + "a", 0, 0) if len(stack) < MAX_DEPTH else None
    if byte == 0x2D:
        return (NUM, stack, 0, N_MINUS)
    if byte == 0x30:
        return (NUM, stack, 0, N_ZERO)
    if byte in _DIGITS:
        return (NUM, stack, 0, N_INT)
    rest = _LITERALS.get(byte)
    if rest is not None:
        return (LIT, stack, rest, 0)
    return None


def _close(stack):
    """After a value or a closing bracket: DONE at the top level, else AFTER."""
    return (DONE, "", 0, 0) if not stack else (AFTER, stack, 0, 0)


def _after(stack, a, byte):
    if byte in _WS:
        return (AFTER, stack, a + 1, 0) if a < MAX_WS else None
    top = stack[-1]
    if byte == 0x2C:
        return (OBJ_KEY, stack, 0, 0) if top == "o" else (VALUE, stack, 0, 0)
    if (byte == 0x7D and top == "o") or (byte == 0x5D and top == "a"):
        return _close(stack[:-1])
    return None


def _string(state, byte):
    _, stack, key, sub = state
    if sub == S_PLAIN:
        if byte == 0x22:
            return (COLON, stack, 0, 0) if key else _close(stack)
        if byte == 0x5C:
            return (STR, stack, key, S_ESC)
        if byte < 0x20:
            return None
        if byte < 0x80:
            return state
        # UTF-8 lead byte: how many continuation bytes, and the range of the first one
        # (excludes overlong forms and surrogates, as a strict decoder does).
        if 0xC2 <= byte <= 0xDF:
            return (STR, stack, key, 21)
        if byte == 0xE0:
            return (STR, stack, key, 122)       # 2 more, first in A0..BF
        if byte == 0xED:
            return (STR, stack, key, 222)       # 2 more, first in 80..9F
        if 0xE1 <= byte <= 0xEF:
            return (STR, stack, key, 22)
        if byte == 0xF0:
            return (STR, stack, key, 123)       # 3 more, first in 90..BF
        if byte == 0xF4:
            return (STR, stack, key, 223)       # 3 more, first in 80..8F
        if 0xF1 <= byte <= 0xF3:
            return (STR, stack, key, 23)
        return None
    if sub == S_ESC:
        if byte not in _ESCAPES:
            return None
        return (STR, stack, key, 14 if byte == 0x75 else S_PLAIN)
    if 11 <= sub <= 14:
        if byte not in _HEX:
            return None
        return (STR, stack, key, S_PLAIN if sub == 11 else sub - 1)
    # continuation bytes: sub = 20 + n (any 80..BF), 120 + n (first A0..BF / 90..BF),
    # 220 + n (first 80..9F / 80..8F)
    kind, n = divmod(sub, 100)[0], sub % 10
    lo, hi = 0x80, 0xBF
    if kind == 1:
        lo = 0xA0 if n == 2 else 0x90
    elif kind == 2:
        hi = 0x9F if n == 2 else 0x8F
    if not lo <= byte <= hi:
        return None
    return (STR, stack, key, S_PLAIN if n == 1 else 20 + n - 1)


def _number(state, byte):
    _, stack, _, sub = state
    digit = byte in _DIGITS
    if sub == N_MINUS:
        return (NUM, stack, 0, N_ZERO if byte == 0x30 else N_INT) if digit else None
    if sub in (N_ZERO, N_INT):
        if digit and sub == N_INT:
            return state
        if byte == 0x2E:
            return (NUM, stack, 0, N_DOT)
        if byte in (0x65, 0x45):
            return (NUM, stack, 0, N_E)
    elif sub in (N_DOT, N_FRAC):
        if digit:
            return (NUM, stack, 0, N_FRAC)
        if sub == N_FRAC and byte in (0x65, 0x45):
            return (NUM, stack, 0, N_E)
    elif sub == N_E:
        if byte in (0x2B, 0x2D):
            return (NUM, stack, 0, N_ESIGN)
        if digit:
            return (NUM, stack, 0, N_EXP)
    elif sub in (N_ESIGN, N_EXP):
        if digit:
            return (NUM, stack, 0, N_EXP)
    if sub in _NUM_END:
        return _after(stack, 0, byte)           # the byte ends the number (numbers are never top level)
    return None


def feed(state, byte):
    """The state after one more byte, or None if the byte cannot come next."""
    mode = state[0]
    if mode == STR:
        return _string(state, byte)
    if mode == NUM:
        return _number(state, byte)
    if mode == AFTER:
        return _after(state[1], state[2], byte)
    if mode == LIT:
        rest = state[2]
        if byte != rest[0]:
            return None
        return (LIT, state[1], rest[1:], 0) if len(rest) > 1 else _close(state[1])
    if mode == DONE:
        return None
    if byte in _WS:
        return _ws(state, byte)
    stack = state[1]
    if mode == START:
        return (OBJ_FIRST, "o", 0, 0) if byte == 0x7B else None
    if mode == VALUE:
        return _value(stack, byte)
    if mode == ARR_FIRST:
        return _close(stack[:-1]) if byte == 0x5D else _value(stack, byte)
    if mode == OBJ_FIRST:
        if byte == 0x7D:
            return _close(stack[:-1])
        return (STR, stack, 1, S_PLAIN) if byte == 0x22 else None
    if mode == OBJ_KEY:
        return (STR, stack, 1, S_PLAIN) if byte == 0x22 else None
    if mode == COLON:
        return (VALUE, stack, 0, 0) if byte == 0x3A else None
    return None


def feed_bytes(state, data):
    for byte in data:
        state = feed(state, byte)
        if state is None:
            return None
    return state


def _is_plain_string(data):
    """Bytes that, inside a string, are always allowed and keep the plain string state."""
    if not data or any(b < 0x20 or b in (0x22, 0x5C) for b in data):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return feed_bytes((STR, "", 0, S_PLAIN), data) == (STR, "", 0, S_PLAIN)


class TokenBytes:
    """Every token's bytes, indexed for the masks (built once per model)."""

    def __init__(self, pieces):
        self.pieces = [bytes(p) for p in pieces]
        self.n_vocab = len(self.pieces)
        plain = np.fromiter((_is_plain_string(p) for p in self.pieces), dtype=bool, count=self.n_vocab)
        self.plain = plain
        nonempty = [i for i, p in enumerate(self.pieces) if p]
        self.all = self._sorted(nonempty)
        self.special = self._sorted([i for i in nonempty if not plain[i]])

    def _sorted(self, ids):
        ids.sort(key=self.pieces.__getitem__)
        return ids, [self.pieces[i] for i in ids]

    @classmethod
    def for_model(cls, model):
        """Cached on the model: the pieces of all its tokens."""
        tb = getattr(model, "_token_bytes", None)
        if tb is None:
            tb = model._token_bytes = cls([model.tokenizer.piece_bytes(i) for i in range(model.n_vocab)])
        return tb

    def allowed_from(self, state):
        """Bool mask (n_vocab) of the tokens whose bytes can follow `state`."""
        mask = np.zeros(self.n_vocab, dtype=bool)
        if state[0] == STR and state[3] == S_PLAIN:
            mask |= self.plain
            ids, keys = self.special
        else:
            ids, keys = self.all
        self._walk(mask, ids, keys, 0, len(keys), 0, state)
        return mask

    def _walk(self, mask, ids, keys, lo, hi, depth, state):
        """Mark the tokens in keys[lo:hi] (all sharing their first `depth` bytes, which led to
        `state`) that stay valid; ranges are split by the byte at `depth`."""
        while lo < hi and len(keys[lo]) == depth:      # tokens ending here (they sort first)
            mask[ids[lo]] = True
            lo += 1
        while lo < hi:
            byte = keys[lo][depth]
            prefix = keys[lo][:depth + 1]
            end = bisect.bisect_left(keys, prefix[:-1] + bytes([byte + 1]), lo, hi) if byte < 255 else hi
            nxt = feed(state, byte)
            if nxt is not None:
                self._walk(mask, ids, keys, lo, end, depth + 1, nxt)
            lo = end


class JsonConstraint:
    """Keeps generation inside one JSON object; `done` once the object is complete."""

    def __init__(self, token_bytes):
        self.tb = token_bytes
        self.state = INITIAL

    @property
    def done(self):
        return self.state[0] == DONE

    def allowed(self, token):
        return 0 <= token < self.tb.n_vocab and bool(self.tb.pieces[token]) and \
            feed_bytes(self.state, self.tb.pieces[token]) is not None

    def advance(self, token):
        nxt = feed_bytes(self.state, self.tb.pieces[token])
        if nxt is None:
            raise ValueError(f"token {token} breaks the JSON constraint")
        self.state = nxt

    def mask(self, logits):
        """Set the logits of every token that cannot come next to -inf (in place)."""
        logits[~self.tb.allowed_from(self.state)] = -np.inf
