"""Reading the person's lines: prompt_toolkit (line editing, history in ~/.pygemma_history,
Tab completion of commands) on a terminal, plain input() otherwise; \"\"\" multi-line input."""
import os
import sys

HISTORY_FILE = os.path.join(os.path.expanduser("~"), ".pygemma_history")


class LineReader:
    def __init__(self, commands):
        self._session = None
        if sys.stdin.isatty() and sys.stdout.isatty() and not os.environ.get("PYGEMMA_PLAIN_INPUT"):
            try:
                self._session = self._make_session(commands)
            except Exception:             # no prompt_toolkit, or an unusable terminal
                self._session = None

    @staticmethod
    def _make_session(commands):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import Completer, Completion
        from prompt_toolkit.history import FileHistory

        class CommandCompleter(Completer):
            def get_completions(self, document, complete_event):
                text = document.text_before_cursor
                if not text.startswith("/") or " " in text:
                    if text.startswith("/help ") and text.count(" ") == 1:
                        word = text[6:]
                        for c in commands:
                            if c[1:].startswith(word.lstrip("/")):
                                yield Completion(c, start_position=-len(word))
                    return
                for c in commands:
                    if c.startswith(text):
                        yield Completion(c, start_position=-len(text))

        try:
            history = FileHistory(HISTORY_FILE)
        except OSError:
            history = None
        return PromptSession(history=history, completer=CommandCompleter(),
                             complete_while_typing=False)

    @property
    def interactive(self):
        return self._session is not None

    def _read(self, prompt):
        if self._session is not None:
            return self._session.prompt(prompt)
        sys.stdout.write(prompt)
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    def read(self, prompt, more_prompt="... "):
        """One message: a line, or the lines between \"\"\" and \"\"\".  EOFError at the end of
        input, KeyboardInterrupt on Ctrl-C."""
        line = self._read(prompt)
        if not line.lstrip().startswith('"""'):
            return line
        first = line.lstrip()[3:]
        if first.rstrip().endswith('"""'):
            return first.rstrip()[:-3]
        lines = [first] if first else []
        while True:
            line = self._read(more_prompt)
            if line.rstrip().endswith('"""'):
                tail = line.rstrip()[:-3]
                if tail:
                    lines.append(tail)
                return "\n".join(lines)
            lines.append(line)
