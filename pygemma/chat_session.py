"""The conversation of the chatbot, kept in the model's KV cache.

A conversation is a system prompt plus a list of exchanges (a user message and the model's
reply).  `ids` is always built from them the same way (`_build`), so any edit -- /undo,
/forget, /pop, /clear -- gives the token sequence a fresh conversation with those exchanges
would have had, and `Model.prefill` evaluates only what differs from the cached tokens:
a new turn evaluates just its own tokens, /undo and /clear only rewind the cache.  Replies
keep the tokens the model generated (never re-tokenized).

/forget drops the oldest exchange by shifting the KV cache (Model.drop): the later tokens
move down in place, nothing is re-evaluated, as llama.cpp's context shift.  A user turn's
header and its words are tokenized separately, so the turn that becomes the first one keeps
its tokens and the new sequence is the old one with one span cut out.
"""
import copy
import os
from dataclasses import dataclass, field
from typing import List, Optional

from . import errors

RAW_REPLY_LIMIT = 256          # raw-completion replies stop here unless -n is given


@dataclass
class Exchange:
    user: str                                     # what was typed (uploads included)
    reply: Optional[str] = None                   # None: the model's turn has not been taken yet
    reply_ids: List[int] = field(default_factory=list)
    complete: bool = True                         # False: cut off (Ctrl-C, -n, full context)


class ContextFull(Exception):
    """The conversation does not fit the context; the message says what to do."""


class Conversation:
    def __init__(self, model, template, system="", params=None):
        self.model, self.template = model, template
        self.system = system or ""
        self.params = params
        self.exchanges: List[Exchange] = []
        self.stack = []                           # /push points: copies of `exchanges`
        self.last_stats = None
        if template.is_raw:
            self._prefix = model.tokenize(self.system, add_bos=True, special=False)
            self._end = []
        else:
            self._prefix = model.tokenize(template.prefix(self.system), add_bos=False, special=True)
            self._end = model.tokenize(template.end_of_reply(), add_bos=False, special=True)
        self.ids = list(self._prefix)

    # ---- building the token sequence -------------------------------------------------
    def _messages(self, exchanges):
        out = []
        for i, ex in enumerate(exchanges):
            content = (self.system + "\n\n" + ex.user) if (i == 0 and self.system) else ex.user
            out.append({"role": "user", "content": content})
            if ex.reply is not None:
                out.append({"role": "assistant", "content": ex.reply})
        return out

    def _user_ids(self, exchanges, i):
        """Tokens of exchange i's user turn (and the model's turn header)."""
        ex = exchanges[i]
        if self.template.is_raw:
            return self.model.tokenize(ex.user, add_bos=False, special=False)
        if i == 0:
            full = self.template.render(self._messages(exchanges[:1])[:1], True)
            prefix = self.template.prefix(self.system)
            if not full.startswith(prefix):
                raise ValueError("the chat template does not render conversations incrementally")
            text = full[len(prefix):]
        else:
            text = self.template.user_turn(self._messages(exchanges[:i]), ex.user)
        # The turn header (e.g. "<end_of_turn>\n<start_of_turn>user\n") and the words are
        # tokenized apart: the same words as the first turn (after /forget) give the same tokens.
        cut = text.find(ex.user) if ex.user else -1
        if cut > 0:
            return (self.model.tokenize(text[:cut], add_bos=False, special=True)
                    + self.model.tokenize(text[cut:], add_bos=False, special=True))
        return self.model.tokenize(text, add_bos=False, special=True)

    def _build(self, exchanges):
        ids = list(self._prefix)
        bounds = []
        for i, ex in enumerate(exchanges):
            bounds.append(len(ids))
            ids += self._user_ids(exchanges, i)
            if ex.reply is not None:
                ids += ex.reply_ids
                if ex.complete or not self.template.is_raw:
                    ids += self._end
        return ids, bounds

    def _set(self, exchanges):
        ids, _ = self._build(exchanges)
        self.exchanges = exchanges
        self.ids = ids
        self._sync_cache()

    def _sync_cache(self):
        """Rewind the cache to what it shares with `ids` (the rest is evaluated on demand)."""
        cached = self.model.tokens
        n = 0
        for a, b in zip(cached, self.ids):
            if a != b:
                break
            n += 1
        if n < len(cached):
            self.model.rewind(n)

    # ---- queries ----------------------------------------------------------------------
    @property
    def n_ctx(self):
        return self.model.n_ctx

    @property
    def used(self):
        return len(self.ids)

    @property
    def awaiting_reply(self):
        return bool(self.exchanges) and self.exchanges[-1].reply is None

    def dump(self):
        """The raw token history as text, special tokens included."""
        return self.model.detokenize(self.ids, special=True)

    def tokens_for(self, text):
        return len(self.model.tokenize(text, add_bos=False, special=False))

    def full_message(self):
        return (f"context full ({self.used} of {self.n_ctx} tokens used): "
                f"use /forget or /clear to make room, or restart with a larger -c N")

    # ---- turns --------------------------------------------------------------------------
    def add_user(self, text):
        """Append a user message (no reply yet).  Raises ContextFull if it does not fit."""
        exchanges = self.exchanges + [Exchange(text)]
        ids, _ = self._build(exchanges)
        if len(ids) + 1 > self.n_ctx:
            raise ContextFull(f"that message needs {len(ids) - self.used} tokens but "
                              f"{self.n_ctx - self.used} are left; " + self.full_message())
        self.exchanges, self.ids = exchanges, ids

    def add_reply_text(self, text):
        """/manual: the model's turn typed by the person."""
        ex = self.exchanges[-1]
        ids = self.model.tokenize(text, add_bos=False, special=False)
        new = self.exchanges[:-1] + [Exchange(ex.user, text, ids, True)]
        built, _ = self._build(new)
        if len(built) > self.n_ctx:
            raise ContextFull(self.full_message())
        self._set(new)

    def reply(self):
        """Stream the model's reply to the last user message as text pieces.  The exchange is
        recorded when the generator ends, is closed, or is interrupted (Ctrl-C): what was
        shown is kept."""
        prompt = list(self.ids)
        params = self.params
        if self.template.is_raw and (params.max_tokens is None):
            params = params.replace(max_tokens=RAW_REPLY_LIMIT)
        shown = []
        finish = None
        try:
            for piece in self.model._generate(prompt, params):
                shown.append(piece)
                yield piece
            finish = self.model.last_stats.finish_reason
        finally:
            self.last_stats = self.model.last_stats
            self._record(prompt, "".join(shown), finish)

    def _record(self, prompt, text, finish):
        cached = self.model.tokens
        reply_ids = cached[len(prompt):] if cached[:len(prompt)] == prompt else []
        have = b"".join(self.model.tokenizer.piece_bytes(t) for t in reply_ids).decode("utf-8", "replace")
        if len(text) > len(have) and text.startswith(have):     # the last token shown is not evaluated yet
            reply_ids = reply_ids + self.model.tokenize(text[len(have):], add_bos=False)
        ex = self.exchanges[-1]
        self.exchanges[-1] = Exchange(ex.user, text, reply_ids, finish == "stop")
        self.ids, _ = self._build(self.exchanges)
        self.cut_off = finish != "stop"

    # ---- editing ------------------------------------------------------------------------
    def clear(self):
        self._set([])

    def undo(self):
        if not self.exchanges:
            return False
        self._set(self.exchanges[:-1])
        return True

    def forget(self):
        """Drop the oldest exchange.  Returns the number of tokens cut out of the KV cache in
        place (0 when the cache had to be rewound and re-evaluated instead), or False."""
        if not self.exchanges:
            return False
        old = self.ids
        exchanges = self.exchanges[1:]
        new, _ = self._build(exchanges)
        self.exchanges, self.ids = exchanges, new
        shifted = self._shift_cache(old, new)
        if not shifted:
            self._sync_cache()
        return shifted

    def _shift_cache(self, old, new):
        """If `new` is `old` with one span cut out and the cache holds that span, cut it out
        of the cache (Model.drop).  Returns the span's length, 0 if not done."""
        cached = self.model.tokens
        d = len(old) - len(new)
        if d <= 0 or cached != old[:len(cached)]:
            return 0
        start = len(os.path.commonprefix([old, new]))
        if new[start:] != old[start + d:] or start + d > len(cached):
            return 0
        return d if self.model.drop(start, start + d) else 0

    def push(self):
        self.stack.append(copy.deepcopy(self.exchanges))
        return len(self.stack)

    def pop(self):
        if not self.stack:
            return False
        self._set(self.stack.pop())
        return True

    def prefill(self):
        """Evaluate the conversation so far (e.g. the system prompt at start-up)."""
        if self.ids and len(self.ids) <= self.n_ctx:
            try:
                self.model.prefill(self.ids)
            except errors.ContextFullError:
                pass
