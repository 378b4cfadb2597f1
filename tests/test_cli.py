"""The `pygemma` command line: --cli completions, subcommands and error exits."""
import io
import os
import subprocess
import sys

import pytest

import pygemma

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "pygemma", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_cli_greedy_completion_matches_api(model_path):
    r = run("-m", model_path, "--cli", "-p", "The capital of France is", "-n", "12", "--temp", "0",
            "--log-disable", "-c", "128")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    with pygemma.Model(model_path, n_ctx=128) as m:
        expected = "".join(m.generate("The capital of France is", max_tokens=12, temperature=0))
    assert r.stdout == "The capital of France is" + expected + "\n"


def test_cli_no_display_prompt_and_prompt_file(model_path, tmp_path):
    f = tmp_path / "prompt.txt"
    f.write_text("four score and seven", encoding="utf-8")
    r = run("-m", model_path, "--cli", "-f", str(f), "-n", "4", "--temp", "0", "--no-display-prompt", "-c", "64")
    assert r.returncode == 0, r.stderr
    assert not r.stdout.startswith("four score")
    assert "loading" in r.stderr            # messages go to stderr unless --log-disable


def test_cli_default_model_is_used(model_path):
    r = run("--cli", "-p", "Hello", "-n", "2", "--temp", "0", "--log-disable", "-c", "64")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Hello")


def test_cli_missing_and_corrupt_model(tmp_path):
    r = run("-m", str(tmp_path / "missing.gguf"), "--cli", "-p", "x")
    assert r.returncode == 1
    assert r.stderr.startswith("pygemma: error:") and len(r.stderr.strip().splitlines()) == 1
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(100))
    r = run("-m", str(bad), "--cli", "-p", "x")
    assert r.returncode == 1
    assert "pygemma: error:" in r.stderr and "Traceback" not in r.stderr


def test_cli_bad_sampling_flag():
    r = run("--cli", "-p", "x", "--top-p", "2")
    assert r.returncode == 1 and "top_p" in r.stderr


def test_info_subcommand(model_path):
    r = run("info", model_path)
    assert r.returncode == 0
    assert "gemma3.block_count" in r.stdout and "token_embd.weight" in r.stdout
    r = run("info", "/dev/null")
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0 and pygemma.__version__ in r.stdout
    r = run("--help")
    assert r.returncode == 0 and "--cli" in r.stdout


def test_loading_progress_in_a_pipe_is_plain_lines(model_path):
    """In a log or a pipe: one plain line per 10% (no carriage returns piling up)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "pygemma", "-m", model_path, "--cli", "-p", "hi", "-n", "1",
                        "-c", "64"], capture_output=True, timeout=300, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "\r" not in err
    shown = [int(ln.split("loading model:")[1].strip().rstrip("%")) for ln in err.split("\n")
             if ln.startswith("loading model:")]
    assert shown[0] == 0 and shown[-1] == 100 and 10 <= len(shown) <= 12
    assert shown == sorted(shown)


def test_loading_progress_on_a_terminal_is_one_line(model_path, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = pexpect.spawn(sys.executable, ["-m", "pygemma", "-m", model_path, "--cli", "-p", "hi", "-n", "1",
                                           "-c", "64"], env=env, cwd=ROOT, timeout=120)
    child.expect(pexpect.EOF)
    text = child.before.decode()
    line = next(ln for ln in text.split("\n") if "loading model:" in ln)
    shown = [int(part.split("%")[0]) for part in line.split("\rloading model:")[1:]]
    assert shown[0] == 0 and shown[-1] == 100 and shown == sorted(shown)


def test_progress_line_modes():
    from pygemma.progress import ProgressLine

    class Stream(io.StringIO):
        def __init__(self, tty):
            super().__init__()
            self.tty = tty

        def isatty(self):
            return self.tty

    plain = Stream(False)
    line = ProgressLine(plain, step=25)
    for k in range(101):
        line.update(k / 100, f"work {k}%")
    line.finish()
    assert plain.getvalue() == "work 0%\nwork 25%\nwork 50%\nwork 75%\nwork 100%\n"
    tty = Stream(True)
    line = ProgressLine(tty, interval=0)
    line.update(0.0, "long text 0%")
    line.update(1.0, "x 100%")
    line.finish()
    assert tty.getvalue() == "\rlong text 0%\rx 100%      \n"      # the shorter line blanks the rest
    quiet = Stream(True)
    ProgressLine(quiet).finish()
    assert quiet.getvalue() == ""


def test_load_progress_callback(model_path):
    seen = []
    with pygemma.Model(model_path, n_ctx=64, progress=seen.append) as m:
        assert m.n_vocab > 0
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 50
    # returning False cancels the load
    with pytest.raises(pygemma.errors.CancelledError, match="cancelled"):
        pygemma.Model(model_path, progress=lambda f: f < 0.5)

    # an exception in the callback (e.g. Ctrl-C) cancels the load and comes back out
    def boom(f):
        if f > 0.3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        pygemma.Model(model_path, progress=boom)
