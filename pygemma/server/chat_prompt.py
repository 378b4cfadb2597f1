"""OpenAI chat messages -> the model's prompt text.

Roles: system (and OpenAI's newer "developer", the same thing), user, assistant.  Content is a
string or a list of text parts ({"type": "text", "text": ...}).  Gemma has no system role: the
system text goes at the start of the first user turn (pygemma/chat_template.py does the
rendering), and consecutive messages of one role are joined, since Gemma's templates require
user and model turns to alternate.
"""
from ..chat_template import ChatTemplate
from ..sampling import excerpt
from .errors import bad_request

ROLES = ("system", "developer", "user", "assistant")


def message_text(msg, i):
    """The text of messages[i] (validated)."""
    param = f"messages[{i}].content"
    content = msg.get("content")
    if content is None:
        if msg.get("role") == "assistant":
            return ""
        raise bad_request(f"{param} is required", param)
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(f"{param} must be a string or a list of content parts", param)
    texts = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise bad_request(f"{where} must be an object", where)
        kind = part.get("type")
        if kind != "text":
            raise bad_request(f"{where}.type = {excerpt(kind)}: only text parts are supported", where + ".type")
        text = part.get("text")
        if not isinstance(text, str):
            raise bad_request(f"{where}.text must be a string", where + ".text")
        texts.append(text)
    return "\n".join(texts)


def to_turns(messages):
    """Validate `messages` and return Gemma turns: [{"role": "user"|"assistant", "content"}]."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty array", "messages")
    system, turns = [], []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise bad_request(f"messages[{i}] must be an object", f"messages[{i}]")
        role = msg.get("role")
        if role not in ROLES:
            raise bad_request(f"messages[{i}].role = {excerpt(role)}: must be one of {', '.join(ROLES)}",
                              f"messages[{i}].role")
        text = message_text(msg, i)
        if role in ("system", "developer"):
            system.append(text)
        elif turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + text
        else:
            turns.append({"role": role, "content": text})
    sys_text = "\n\n".join(t for t in system if t)
    if sys_text:
        if turns and turns[0]["role"] == "user":
            turns[0]["content"] = sys_text + "\n\n" + turns[0]["content"]
        else:
            turns.insert(0, {"role": "user", "content": sys_text})
    if not turns:
        raise bad_request("messages has no user or assistant message", "messages")
    return turns


class PromptBuilder:
    """Renders turns with the model's own chat template, or Gemma's built-in format when the
    model has none (base models) or its template fails."""

    def __init__(self, model):
        self.model = model
        try:
            self.template = ChatTemplate.for_model(model)
        except Exception:
            self.template = ChatTemplate.for_model(model, "gemma")
        if self.template.is_raw:
            self.template = ChatTemplate.for_model(model, "gemma")
        self.builtin = ChatTemplate.for_model(model, "gemma")

    def render(self, turns):
        try:
            return self.template.render(turns, True)
        except Exception:
            return self.builtin.render(turns, True)

    def ids(self, messages):
        text = self.render(to_turns(messages))
        return self.model.tokenize(text, add_bos=False, special=True)
