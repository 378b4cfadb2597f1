"""Terminal colours for the chatbot and a streaming light-Markdown highlighter.

Colours are on only when stdout is a terminal and NO_COLOR is not set."""
import os
import sys

RESET = "\x1b[0m"
STYLES = {
    "user": "\x1b[1;32m",       # bold green
    "model": "",                # default colour; Markdown adds bold/code/heading
    "system": "\x1b[2;36m",     # dim cyan: banner, command output
    "error": "\x1b[1;31m",      # bold red
    "bold": "\x1b[1m",
    "code": "\x1b[33m",         # yellow
    "heading": "\x1b[1;4;35m",  # bold underlined magenta
}


def colours_wanted(stream=None):
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR", "") != "":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Painter:
    """Wraps text in ANSI colours, or passes it through when colours are off."""

    def __init__(self, enabled):
        self.enabled = enabled

    def __call__(self, kind, text):
        code = STYLES.get(kind, "")
        if not self.enabled or not code:
            return text
        return code + text + RESET


class MarkdownStream:
    """Highlights **bold**, `code` and # headings in text that arrives in pieces.

    feed() returns what can be shown now; a lone trailing '*' is held back until the next
    piece tells whether it starts '**'.  flush() ends the reply (and any open style)."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.bold = self.code = self.heading = False
        self.line_start = True
        self.pending = ""

    def _style(self):
        out = RESET
        if self.heading:
            out += STYLES["heading"]
        if self.bold:
            out += STYLES["bold"]
        if self.code:
            out += STYLES["code"]
        return out

    def feed(self, text):
        if not self.enabled:
            return text
        text = self.pending + text
        self.pending = ""
        out = []
        i = 0
        while i < len(text):
            c = text[i]
            if c == "*" and not self.code:
                if i + 1 == len(text):
                    self.pending = c
                    break
                if text[i + 1] == "*":
                    self.bold = not self.bold
                    out.append("**" + self._style() if self.bold else self._style() + "**")
                    i += 2
                    self.line_start = False
                    continue
            if c == "`":
                self.code = not self.code
                out.append("`" + self._style() if self.code else self._style() + "`")
                i += 1
                self.line_start = False
                continue
            if c == "#" and self.line_start and not self.code:
                self.heading = True
                out.append(self._style())
            if c == "\n":
                if self.heading:
                    self.heading = False
                    out.append(self._style())
                self.line_start = True
            elif c != "#":
                self.line_start = False
            out.append(c)
            i += 1
        return "".join(out)

    def flush(self):
        if not self.enabled:
            return ""
        tail = self.pending
        self.pending = ""
        open_style = self.bold or self.code or self.heading
        self.bold = self.code = self.heading = False
        self.line_start = True
        return tail + (RESET if open_style else "")
