"""Chat templates: how a conversation becomes prompt text.

Three kinds, chosen by `ChatTemplate.for_model`:
  * the GGUF's own `tokenizer.chat_template` (Jinja, rendered in a sandbox),
  * the built-in Gemma turn format (`--chat-template gemma`),
  * none: raw-completion mode for base models (the text is the prompt).

Gemma has no system role: the system prompt is put at the start of the first user turn
(content = system + "\\n\\n" + user), as Gemma 3's own template does.  We always do that
ourselves, so templates that reject a system role (Gemma 2's) work too.
"""
import os

_SENTINEL = "\x00PYGEMMA\x00"


def builtin_gemma(messages, add_generation_prompt, bos_token="<bos>", **_):
    """Gemma's turn format, written out in Python (same text as Gemma's Jinja template)."""
    out = [bos_token]
    for m in messages:
        role = "model" if m["role"] == "assistant" else m["role"]
        out.append(f"<start_of_turn>{role}\n{m['content'].strip()}<end_of_turn>\n")
    if add_generation_prompt:
        out.append("<start_of_turn>model\n")
    return "".join(out)


class ChatTemplate:
    """Renders messages ([{"role": "user"|"assistant", "content": str}]) to prompt text.

    kind: "gguf" (the model's Jinja template), "gemma" (built-in) or "raw" (no template)."""

    def __init__(self, kind, source=None, bos_token="<bos>", eos_token="<eos>"):
        self.kind = kind
        self.bos_token, self.eos_token = bos_token, eos_token
        self._jinja = None
        if kind == "gguf":
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def raise_exception(msg):
                raise ValueError(f"chat template: {msg}")

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = raise_exception
            self._jinja = env.from_string(source)

    @classmethod
    def for_model(cls, model, force=None):
        """The template to chat with `model`; force: None (auto), "gemma", "gguf" or "raw"."""
        tok = model.tokenizer
        bos = tok.piece_bytes(tok.bos_id, special=True).decode("utf-8", "replace") if tok.bos_id >= 0 else ""
        eos = tok.piece_bytes(tok.eos_id, special=True).decode("utf-8", "replace") if tok.eos_id >= 0 else ""
        source = model.metadata.get("tokenizer.chat_template")
        if force in (None, "auto"):
            force = "gguf" if source else "raw"
        if force == "gguf" and not source:
            raise ValueError("the model has no tokenizer.chat_template; use --chat-template gemma")
        if force not in ("gguf", "gemma", "raw"):
            raise ValueError(f"unknown chat template {force!r} (gemma, gguf or raw)")
        return cls(force, source if force == "gguf" else None, bos, eos)

    @property
    def is_raw(self):
        return self.kind == "raw"

    def describe(self):
        return {"gguf": "chat, the model's chat template",
                "gemma": "chat, built-in Gemma template",
                "raw": "raw completion (the model has no chat template)"}[self.kind]

    def render(self, messages, add_generation_prompt):
        if self.kind == "raw":
            raise ValueError("raw mode has no template")
        if self.kind == "gemma":
            return builtin_gemma(messages, add_generation_prompt, self.bos_token)
        return self._jinja.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                  bos_token=self.bos_token, eos_token=self.eos_token)

    # ---- the pieces a conversation is built from -------------------------------------
    def prefix(self, system):
        """Text before the first user message's own words (BOS, turn header, system prompt):
        what every conversation with this system prompt starts with."""
        first = (system + "\n\n" + _SENTINEL) if system else _SENTINEL
        text = self.render([{"role": "user", "content": first}], True)
        return text[:text.index(_SENTINEL)]

    def end_of_reply(self):
        """Text the template puts after a model reply (e.g. "<end_of_turn>\\n")."""
        text = self.render([{"role": "user", "content": "hi"},
                            {"role": "assistant", "content": _SENTINEL}], False)
        return text[text.index(_SENTINEL) + len(_SENTINEL):]

    def user_turn(self, messages, content):
        """Text that adds a user message (then the model's turn header) after `messages`.
        messages: the earlier ones (system already merged into the first user message)."""
        before = self.render(messages, False) if messages else ""
        after = self.render(messages + [{"role": "user", "content": content}], True)
        common = len(os.path.commonprefix([before, after]))
        return after[common:]
