"""The terminal chatbot, driven through a pseudo-terminal (pexpect) and through pipes, with the
default 270M base model (raw-completion mode) and a tiny random instruction-formatted model
(the GGUF carries Gemma's chat template)."""
import os
import re
import subprocess
import sys
import time

import pytest

import pygemma
import pygemma.cpu
from pygemma.chat_session import Conversation
from pygemma.chat_style import MarkdownStream
from pygemma.chat_template import ChatTemplate, builtin_gemma
from pygemma.sampling import SamplingParams

from models import GEMMA_CHAT_TEMPLATE, gemma3_hf_model, write_gguf_from_hf

pexpect = pytest.importorskip("pexpect")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PROMPT = r">>>"


@pytest.fixture(scope="module")
def base_model(model_path):
    return model_path


@pytest.fixture(scope="module")
def it_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("chat") / "tiny-it.gguf"
    return write_gguf_from_hf(gemma3_hf_model(seed=3), str(path), "F32", chat_template=True,
                              name="tiny-it")


def _env(tmp_path, plain=True):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HOME=str(tmp_path), PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm")
    env.pop("NO_COLOR", None)
    if plain:
        env["PYGEMMA_PLAIN_INPUT"] = "1"
    return env


class Chat:
    """A chatbot in a pseudo-terminal; cmd() sends a line and returns its output (no colours)."""

    def __init__(self, tmp_path, *args, plain=True):
        self.p = pexpect.spawn(sys.executable, ["-m", "pygemma", "--log-disable", *args],
                               env=_env(tmp_path, plain), cwd=ROOT, encoding="utf-8",
                               timeout=120, dimensions=(50, 200))
        self.p.expect(PROMPT)
        self.banner = ANSI.sub("", self.p.before)

    def cmd(self, line):
        self.p.sendline(line)
        self.p.expect(PROMPT)
        out = ANSI.sub("", self.p.before).replace("\r", "")
        if out.startswith(" "):
            out = out[1:]
        # drop the echoed input line(s)
        n = line.count("\n") + 1
        return "\n".join(out.split("\n")[n:]).strip("\n")

    def context(self):
        m = re.search(r"(\d+) of (\d+) context tokens used", self.cmd("/context"))
        assert m, "no /context line"
        return int(m.group(1)), int(m.group(2))

    def exit(self):
        self.p.sendline("/exit")
        self.p.expect(pexpect.EOF)
        self.p.close()
        return self.p.exitstatus


# ---- units ------------------------------------------------------------------------------

def test_builtin_template_matches_gemma_jinja_template():
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    jinja = ImmutableSandboxedEnvironment().from_string(GEMMA_CHAT_TEMPLATE)
    msgs = [{"role": "user", "content": " sys\n\nhi "}, {"role": "assistant", "content": "hello\n"},
            {"role": "user", "content": "bye"}]
    for gen in (True, False):
        assert builtin_gemma(msgs, gen) == jinja.render(messages=msgs, add_generation_prompt=gen,
                                                        bos_token="<bos>")


def test_markdown_stream_highlights_across_pieces():
    md = MarkdownStream(True)
    out = "".join(md.feed(p) for p in ["# Ti", "tle\nsome *", "*bold*", "* and `co", "de` x"]) + md.flush()
    assert ANSI.sub("", out) == "# Title\nsome **bold** and `code` x"
    assert "\x1b[1m" in out and "\x1b[33m" in out and "\x1b[1;4;35m" in out
    plain = MarkdownStream(False)
    assert plain.feed("**a**") == "**a**" and plain.flush() == ""


def test_second_turn_evaluates_only_new_tokens(it_model):
    with pygemma.Model(it_model, n_ctx=512) as m:
        conv = Conversation(m, ChatTemplate.for_model(m), "be brief", SamplingParams.greedy(max_tokens=8))
        conv.prefill()
        conv.add_user("hello world")
        "".join(conv.reply())
        in_cache = len(m.tokens)
        assert in_cache > len(conv._prefix) and conv.ids[:in_cache] == m.tokens
        conv.add_user("what is the capital")
        ids2 = list(conv.ids)
        "".join(conv.reply())
        s = m.last_stats
        turn = "<end_of_turn>\n<start_of_turn>user\nwhat is the capital<end_of_turn>\n<start_of_turn>model\n"
        new = m.tokenize(turn, add_bos=False, special=True)
        assert s.prompt_tokens == len(ids2) and s.cached_tokens == in_cache
        # what was evaluated: this turn's tokens, plus the last reply token when -n cut it off
        assert ids2[-len(new):] == new
        assert len(new) <= s.prompt_tokens - s.cached_tokens <= len(new) + 1


def test_forget_shifts_the_cache(it_model):
    """/forget cuts the oldest exchange out of the KV cache in place: nothing is re-evaluated,
    the cache then holds exactly the tokens of a conversation that never had that exchange,
    and the next turn evaluates only its own tokens."""
    params = SamplingParams.greedy(max_tokens=6)
    with pygemma.Model(it_model, n_ctx=512) as m:
        t = ChatTemplate.for_model(m)
        a = Conversation(m, t, "sys", params)
        for text in ("first question", "second question"):
            a.add_user(text)
            "".join(a.reply())
        kept = a.exchanges[1]
        # every turn keeps its own words once replies are recorded
        assert "user\nsys\n\nfirst question<end_of_turn>" in a.dump()
        assert "<start_of_turn>user\nsecond question<end_of_turn>" in a.dump()
        before = len(m.tokens)
        evaluated = []
        seq = m._seq                                   # the model's default Sequence
        real_eval = seq._eval
        seq._eval = lambda ids, *rest, **kw: (evaluated.append(len(ids)), real_eval(ids, *rest, **kw))[1]
        cut = a.forget()
        assert cut > 0 and evaluated == []
        assert m.tokens == a.ids[:len(m.tokens)] and len(m.tokens) == before - cut
        dump_a, ids_a = a.dump(), list(a.ids)
        a.add_user("third")
        "".join(a.reply())
        s = m.last_stats
        assert s.cached_tokens == before - cut
        seq._eval = real_eval
    with pygemma.Model(it_model, n_ctx=512) as m:
        b = Conversation(m, ChatTemplate.for_model(m), "sys", params)
        b.add_user(kept.user)
        b.add_reply_text(kept.reply)
        assert b.dump() == dump_a
        fresh, _ = b._build([kept])               # kept: the generated reply tokens
        assert ids_a == fresh                     # the same tokens as a fresh conversation
        if kept.reply == kept.reply.strip():      # the template trims message text
            assert dump_a == t.render([{"role": "user", "content": "sys\n\n" + kept.user},
                                       {"role": "assistant", "content": kept.reply}], False)


# ---- the chatbot in a terminal -------------------------------------------------------------

def test_base_model_raw_mode_banner_reply_and_stats(base_model, tmp_path):
    c = Chat(tmp_path, "-m", base_model, "-c", "256", "-n", "8")
    assert "pygemma " + pygemma.__version__ in c.banner
    assert "raw completion" in c.banner and "Gemma 3 270m" in c.banner
    assert pygemma.cpu.tier_name() in c.banner
    reply = c.cmd("The capital of France is")
    assert reply.strip()
    used1, n_ctx = c.context()
    assert n_ctx == 256 and used1 > 6
    c.cmd(" and the capital of Spain is")
    stats = c.cmd("/stats")
    m = re.search(r"prompt: (\d+) tokens, (\d+) reused from the cache, (\d+) evaluated", stats)
    assert m and int(m.group(2)) >= used1 - 1 and int(m.group(3)) <= 12
    assert c.exit() == 0


def test_template_chat_commands(it_model, tmp_path):
    c = Chat(tmp_path, "-m", it_model, "-c", "512", "-n", "6", "-p", "be brief")
    assert "the model's chat template" in c.banner and "tiny-it" in c.banner
    assert "/undo" in c.cmd("/help") and "exchange" in c.cmd("/help undo")
    empty = c.cmd("/dump")
    assert empty.startswith("<bos><start_of_turn>user\nbe brief")
    used0, _ = c.context()
    c.cmd("hello world")
    d1 = c.cmd("/dump")
    assert "hello world<end_of_turn>\n<start_of_turn>model\n" in d1 and d1.startswith(empty)
    used1, _ = c.context()
    assert used1 > used0
    # /undo restores the exact earlier state
    c.cmd("a second message")
    assert c.context()[0] > used1
    assert "dropped" in c.cmd("/undo")
    assert c.cmd("/dump") == d1 and c.context()[0] == used1
    # /push, /pop, /stack
    assert "saved point 1" in c.cmd("/push")
    c.cmd("more words")
    assert "1: 1 exchanges" in c.cmd("/stack")
    c.cmd("/pop")
    assert c.cmd("/dump") == d1 and "empty" in c.cmd("/stack")
    # /clear goes back to the system prompt
    c.cmd("/clear")
    assert c.cmd("/dump") == empty and c.context()[0] == used0
    # /manual: typed turns; then /forget of a manual conversation equals the shorter one
    c.cmd("/manual on")
    for line in ("What is the capital", "Paris", "hello world", "the cat sat"):
        c.cmd(line)
    c.cmd("/manual off")
    full = c.cmd("/dump")
    assert "<start_of_turn>model\nParis<end_of_turn>" in full
    c.cmd("/forget")
    forgotten = c.cmd("/dump")
    c.cmd("/clear")
    c.cmd("/manual on")
    c.cmd("hello world")
    c.cmd("the cat sat")
    c.cmd("/manual off")
    assert c.cmd("/dump") == forgotten
    assert forgotten == ("<bos><start_of_turn>user\nbe brief\n\nhello world<end_of_turn>\n"
                         "<start_of_turn>model\nthe cat sat<end_of_turn>")     # (cmd() strips newlines)
    # a reply generated after /forget equals the one after the same conversation built fresh
    r1 = c.cmd("the dog")
    c.cmd("/clear")
    c.cmd("/manual on")
    for line in ("What is", "Paris", "hello world", "the cat sat"):
        c.cmd(line)
    c.cmd("/manual off")
    c.cmd("/forget")
    assert c.cmd("/dump") == forgotten
    assert c.cmd("the dog") == r1
    # multi-line input
    c.cmd("/clear")
    c.cmd('"""\nline one\nline two\n"""')
    assert "line one\nline two<end_of_turn>" in c.cmd("/dump")
    # /dump FILE
    out = tmp_path / "dump.txt"
    assert "wrote" in c.cmd(f"/dump {out}")
    assert out.read_text(encoding="utf-8").startswith("<bos><start_of_turn>user")
    assert "unknown command" in c.cmd("/nope")
    assert c.exit() == 0


def test_upload(it_model, tmp_path):
    small = tmp_path / "notes.txt"
    small.write_text("the cat sat on the mat\n", encoding="utf-8")
    big = tmp_path / "big.txt"
    big.write_text("the cat sat on the mat " * 400, encoding="utf-8")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)))
    c = Chat(tmp_path, "-m", it_model, "-c", "256", "-n", "4")
    used0, _ = c.context()
    assert "too large" in c.cmd(f"/upload {big}")
    assert "binary" in c.cmd(f"/upload {binary}")
    assert "no such file" in c.cmd(f"/upload {tmp_path / 'missing.txt'}")
    assert c.context()[0] == used0
    assert "uploaded notes.txt" in c.cmd(f"/upload {small}")
    c.cmd("what does it say")
    dump = c.cmd("/dump")
    assert "notes.txt:\n```\nthe cat sat on the mat\n```\n\nwhat does it say<end_of_turn>" in dump
    assert c.exit() == 0


def test_context_overflow_is_a_message_not_a_crash(it_model, tmp_path):
    c = Chat(tmp_path, "-m", it_model, "-c", "64", "-n", "8")
    out = c.cmd("hello world " * 40)
    assert "context full" in out and "/forget" in out and "-c N" in out
    for _ in range(8):
        out = c.cmd("the cat sat on the mat")
        if "context full" in out:
            break
    assert "context full" in out
    used, n_ctx = c.context()
    assert used <= n_ctx
    c.cmd("/forget")
    assert c.context()[0] < used
    assert c.exit() == 0


def test_ctrl_c_stops_a_reply_and_keeps_it(base_model, tmp_path):
    # greedy continuation of a base model: long (it loops) rather than ended by EOS
    c = Chat(tmp_path, "-m", base_model, "-c", "4096", "-n", "3000")
    c.p.sendline("Once upon a time")
    c.p.expect("Once upon a time\r\n")        # the echo
    c.p.expect(r"\w")                          # the reply has begun
    shown = c.p.before + c.p.after
    time.sleep(1)
    c.p.sendintr()
    c.p.expect(r"\[stopped\]")
    shown = ANSI.sub("", shown + c.p.before).replace("\r", "").replace("^C", "").strip()
    c.p.expect(PROMPT)
    used, _ = c.context()
    assert 6 < used < 3000
    dump = c.cmd("/dump")
    assert dump.startswith("<bos>Once upon a time") and len(shown) > 1
    assert shown in dump                        # what was said is kept
    # Ctrl-C at the prompt leaves cleanly
    c.p.sendintr()
    c.p.expect(pexpect.EOF)
    c.p.close()
    assert c.p.exitstatus == 0


def test_prompt_toolkit_line_editing_and_completion(it_model, tmp_path):
    c = Chat(tmp_path, "-m", it_model, "-c", "256", "-n", "4", plain=False)
    c.p.send("/cont\t\r")
    c.p.expect(r"(\d+) of 256 context tokens used")
    c.p.expect(PROMPT)
    c.p.sendeof()
    c.p.expect(pexpect.EOF)
    c.p.close()
    assert c.p.exitstatus == 0
    assert "/cont" in (tmp_path / ".pygemma_history").read_text(encoding="utf-8")


def test_pipes_give_plain_text(it_model, tmp_path):
    env = _env(tmp_path)
    env.pop("PYGEMMA_PLAIN_INPUT")
    r = subprocess.run([sys.executable, "-m", "pygemma", "-m", it_model, "--chat", "-c", "256", "-n", "5",
                        "-p", "**be** `brief`"],
                       input="hello world\n/context\n/stats\n/help\n", capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout
    assert "of 256 context tokens used" in r.stdout and "reused from the cache" in r.stdout
    assert "loading model: 100%" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pygemma", "-m", it_model, "--log-disable"],
                       input="", capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stderr == ""


def test_help_manual_and_usage(tmp_path):
    env = _env(tmp_path)
    r = subprocess.run([sys.executable, "-m", "pygemma", "--help"], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=60)
    assert r.returncode == 0
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "MODES", "OPTIONS", "EXAMPLES"):
        assert f"\n{section}\n" in "\n" + r.stdout
    assert "you are mosaic's godzilla" in r.stdout and "-ngl 999" in r.stdout
    assert "--recompile --gpu nvidia" in r.stdout
    r = subprocess.run([sys.executable, "-m", "pygemma", "-h"], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("usage:") and "SYNOPSIS" not in r.stdout


def test_broken_gguf_template_falls_back_to_builtin(tmp_path):
    path = write_gguf_from_hf(gemma3_hf_model(seed=1, n_layers=2), str(tmp_path / "bad.gguf"), "F32",
                              chat_template="{{ bos_token }}{% for m in messages %}{{ m.nope() }}{% endfor %}")
    env = _env(tmp_path)
    r = subprocess.run([sys.executable, "-m", "pygemma", "-m", path, "-c", "128", "-n", "2", "--log-disable"],
                       input="hi\n/dump\n", capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "using the built-in Gemma template" in r.stderr and "Traceback" not in r.stderr
    assert "built-in Gemma template" in r.stdout
    assert "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n" in r.stdout
    r = subprocess.run([sys.executable, "-m", "pygemma", "-m", path, "-c", "128", "--chat-template", "gguf"],
                       input="", capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 1 and "chat template" in r.stderr and "Traceback" not in r.stderr
