"""The chatbot's slash commands: their help text and what each one does.

Each handler takes (chat, arg) where `chat` is the running chatbot (pygemma.chat.Chatbot)
and returns False to leave the chat, anything else to go on."""
import os

COMMANDS = {
    "/help": ("[COMMAND]", "list the commands, or explain one"),
    "/exit": ("", "leave the chat (Ctrl-D and Ctrl-C at the prompt do too)"),
    "/stats": ("", "speed and token counts of the last reply: prompt and generation tok/s, "
                   "tokens evaluated and reused from the cache, time to first token"),
    "/context": ("", "how much of the context window the conversation uses"),
    "/clear": ("", "forget the whole conversation, back to just after the system prompt"),
    "/undo": ("", "drop the last exchange (your message and the reply)"),
    "/forget": ("", "drop the oldest exchange after the system prompt, to make room"),
    "/push": ("", "save this point of the conversation on a stack"),
    "/pop": ("", "go back to the last point saved with /push (and take it off the stack)"),
    "/stack": ("", "list the saved points"),
    "/dump": ("[FILE]", "show (or write to FILE) the raw token history, special tokens included"),
    "/manual": ("on|off", "type the turns yourself: your lines alternate between the user's "
                          "and the model's turn, and nothing is generated"),
    "/upload": ("FILE", "put a text file into your next message, as a fenced block with its name; "
                        "binary files and files that do not fit the context are refused"),
}

MAX_UPLOAD_BYTES = 8 << 20


def names():
    return list(COMMANDS)


def usage(name):
    args, text = COMMANDS[name]
    return f"{name} {args}".rstrip() + f"\n    {text}"


def cmd_help(chat, arg):
    if arg:
        name = arg if arg.startswith("/") else "/" + arg
        if name not in COMMANDS:
            chat.error(f"no such command: {name} (try /help)")
        else:
            chat.say(usage(name))
        return True
    lines = [f"  {(n + ' ' + a).rstrip():<18} {t.split(':')[0].split(',')[0]}" for n, (a, t) in COMMANDS.items()]
    chat.say("commands (Tab completes them; /help COMMAND for more):\n" + "\n".join(lines) +
             '\n  """ starts and ends a multi-line message')
    return True


def cmd_exit(chat, arg):
    return False


def cmd_stats(chat, arg):
    s = chat.conv.last_stats
    if s is None:
        chat.say("no reply yet")
        return True
    evaluated = s.prompt_tokens - s.cached_tokens
    chat.say(f"prompt: {s.prompt_tokens} tokens, {s.cached_tokens} reused from the cache, "
             f"{evaluated} evaluated in {s.prompt_seconds:.2f} s ({s.prompt_tokens_per_second:.1f} tok/s)\n"
             f"reply: {s.completion_tokens} tokens in {s.generation_seconds:.2f} s "
             f"({s.generation_tokens_per_second:.1f} tok/s), first token after "
             f"{s.time_to_first_token:.2f} s, finish: {s.finish_reason}")
    return True


def cmd_context(chat, arg):
    c = chat.conv
    chat.say(f"{c.used} of {c.n_ctx} context tokens used ({len(c.exchanges)} exchanges)")
    return True


def cmd_clear(chat, arg):
    chat.conv.clear()
    chat.say("conversation cleared")
    return True


def cmd_undo(chat, arg):
    chat.say("dropped the last exchange" if chat.conv.undo() else "nothing to undo")
    return True


def cmd_forget(chat, arg):
    shifted = chat.conv.forget()
    if shifted is False:
        chat.say("nothing to forget")
    elif shifted:
        chat.say(f"dropped the oldest exchange ({shifted} tokens cut from the cache, nothing re-evaluated)")
    else:
        chat.say("dropped the oldest exchange")
    return True


def cmd_push(chat, arg):
    n = chat.conv.push()
    chat.say(f"saved point {n} ({len(chat.conv.exchanges)} exchanges, {chat.conv.used} tokens)")
    return True


def cmd_pop(chat, arg):
    if chat.conv.pop():
        chat.say(f"back to the saved point ({len(chat.conv.exchanges)} exchanges, {chat.conv.used} tokens)")
    else:
        chat.say("the stack is empty (use /push first)")
    return True


def cmd_stack(chat, arg):
    st = chat.conv.stack
    if not st:
        chat.say("the stack is empty")
    else:
        chat.say("\n".join(f"  {i + 1}: {len(ex)} exchanges" for i, ex in enumerate(st)))
    return True


def cmd_dump(chat, arg):
    text = chat.conv.dump()
    if arg:
        with open(os.path.expanduser(arg), "w", encoding="utf-8") as f:
            f.write(text)
        chat.say(f"wrote {len(chat.conv.ids)} tokens to {arg}")
    else:
        chat.say(text)
    return True


def cmd_manual(chat, arg):
    if arg not in ("on", "off"):
        chat.error("usage: /manual on|off")
        return True
    chat.set_manual(arg == "on")
    return True


def read_text_file(path):
    """(name, text) of a text file, or raise ValueError saying why it is refused."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise ValueError(f"no such file: {path}")
    if os.path.getsize(path) > MAX_UPLOAD_BYTES:
        raise ValueError(f"{path} is too large ({os.path.getsize(path)} bytes)")
    with open(path, "rb") as f:
        data = f.read()
    if b"\x00" in data:
        raise ValueError(f"{path} is a binary file; only text files can be uploaded")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text; only text files can be uploaded") from None
    return os.path.basename(path), text


def cmd_upload(chat, arg):
    if not arg:
        chat.error("usage: /upload FILE")
        return True
    try:
        name, text = read_text_file(arg)
    except (ValueError, OSError) as e:
        chat.error(str(e))
        return True
    block = f"{name}:\n```\n{text.rstrip()}\n```"
    need = chat.conv.tokens_for(block)
    left = chat.conv.n_ctx - chat.conv.used - sum(chat.conv.tokens_for(b) for b in chat.uploads)
    if need >= left:
        chat.error(f"{name} is too large: it needs {need} tokens and {max(left, 0)} of "
                   f"{chat.conv.n_ctx} are left (try /clear, or restart with a larger -c N)")
        return True
    chat.uploads.append(block)
    chat.say(f"uploaded {name} ({need} tokens); it goes with your next message")
    return True


HANDLERS = {
    "/help": cmd_help, "/exit": cmd_exit, "/stats": cmd_stats, "/context": cmd_context,
    "/clear": cmd_clear, "/undo": cmd_undo, "/forget": cmd_forget, "/push": cmd_push,
    "/pop": cmd_pop, "/stack": cmd_stack, "/dump": cmd_dump, "/manual": cmd_manual,
    "/upload": cmd_upload,
}


def run(chat, line):
    """Run a command line starting with '/'.  Returns False to leave the chat."""
    name, _, arg = line.strip().partition(" ")
    if name not in HANDLERS:
        matches = [n for n in HANDLERS if n.startswith(name)]
        if len(matches) != 1:
            chat.error(f"unknown command {name} (try /help)")
            return True
        name = matches[0]
    return HANDLERS[name](chat, arg.strip())
