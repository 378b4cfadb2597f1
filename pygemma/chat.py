"""The terminal chatbot: `pygemma -m MODEL` (or --chat).

Ties together the conversation (chat_session), the template (chat_template), the commands
(chat_commands), input (chat_input) and colours (chat_style)."""
import os
import sys

from . import __version__, chat_commands
from .chat_input import LineReader
from .chat_session import ContextFull, Conversation
from .chat_style import MarkdownStream, Painter, colours_wanted
from .chat_template import ChatTemplate
from .errors import ContextFullError

PROMPT = ">>> "


class Chatbot:
    def __init__(self, model, template, system, params, out=None):
        self.model = model
        self.out = out or sys.stdout
        self.paint = Painter(colours_wanted(self.out))
        self.conv = Conversation(model, template, system, params)
        self.uploads = []
        self.manual = False
        self.reader = LineReader(chat_commands.names())

    # ---- output -----------------------------------------------------------------------
    def write(self, text):
        self.out.write(text)
        self.out.flush()

    def say(self, text):
        self.write(self.paint("system", text) + "\n")

    def error(self, text):
        self.write(self.paint("error", "error: " + text) + "\n")

    def banner(self, server_url=None):
        from . import cpu
        lines = [f"pygemma {__version__}",
                 f"model:   {self.model.name} ({os.path.basename(self.model.path)}), "
                 f"context {self.model.n_ctx} tokens",
                 f"compute: CPU {cpu.tier_name()} ({cpu.features()}), {_threads()} threads",
                 f"mode:    {self.conv.template.describe()}"]
        if server_url:
            lines.append(f"server:  {server_url}")
        if self.conv.system:
            lines.append(f"system:  {self.conv.system}")
        lines.append('type /help for commands, """ for multi-line input, Ctrl-D or /exit to leave')
        self.say("\n".join(lines))

    # ---- modes --------------------------------------------------------------------------
    def set_manual(self, on):
        self.manual = on
        if on:
            self.say("manual mode: type the user's and the model's turns yourself")
        else:
            self.say("manual mode off")
            if self.conv.awaiting_reply:
                self._reply()

    def _prompt(self):
        if self.manual:
            return "model>>> " if self.conv.awaiting_reply else "user>>> "
        return PROMPT

    # ---- turns --------------------------------------------------------------------------
    def _user_message(self, text):
        if self.uploads:
            text = "\n\n".join(self.uploads + [text])
        try:
            self.conv.add_user(text)
        except ContextFull as e:
            self.error(str(e))
            return
        self.uploads = []
        if not self.manual:
            self._reply()

    def _reply(self):
        md = MarkdownStream(self.paint.enabled)
        pieces = self.conv.reply()
        interrupted = False
        try:
            for piece in pieces:
                self.write(md.feed(piece))
        except KeyboardInterrupt:
            interrupted = True
        except ContextFullError:
            pass
        finally:
            pieces.close()
            self.write(md.flush() + "\n")
        if interrupted:
            self.say("[stopped]")
        stats = self.conv.last_stats
        if stats is not None and stats.finish_reason == "length" and self.conv.used >= self.conv.n_ctx - 1:
            self.error(self.conv.full_message())
        elif not interrupted and self.conv.used >= self.conv.n_ctx - 1:
            self.error(self.conv.full_message())

    def handle(self, line):
        """One line from the person.  Returns False to leave."""
        if line.startswith("/") and line[1:2].isalpha():
            return chat_commands.run(self, line)
        if not line.strip():
            return True
        if self.manual and self.conv.awaiting_reply:
            try:
                self.conv.add_reply_text(line)
            except ContextFull as e:
                self.error(str(e))
            return True
        self._user_message(line)
        return True

    def loop(self):
        """Read and answer until /exit, Ctrl-D or Ctrl-C at the prompt."""
        self.conv.prefill()
        while True:
            try:
                line = self.reader.read(self.paint("user", self._prompt()) if not self.reader.interactive
                                        else self._prompt())
            except (EOFError, KeyboardInterrupt):
                self.write("\n")
                return 0
            try:
                if self.handle(line) is False:
                    return 0
            except KeyboardInterrupt:
                self.say("[interrupted]")
            except ContextFullError as e:
                self.error(f"{e}; use /forget or /clear, or restart with a larger -c N")
            except (OSError, ValueError) as e:
                self.error(str(e))


def _threads():
    from .cpu import physical_cores
    return physical_cores()


def run_chat(args, model, params, server_url=None):
    forced = getattr(args, "chat_template", None)
    template = ChatTemplate.for_model(model, forced)
    try:
        bot = Chatbot(model, template, args.prompt or "", params)
    except Exception as e:                  # a GGUF template we cannot render (jinja2 errors too)
        if template.kind != "gguf" or forced == "gguf":
            raise ValueError(f"chat template: {e}") from None
        print(f"pygemma: the model's chat template failed ({e}); using the built-in Gemma template",
              file=sys.stderr)
        bot = Chatbot(model, ChatTemplate.for_model(model, "gemma"), args.prompt or "", params)
    bot.banner(server_url)
    return bot.loop()
