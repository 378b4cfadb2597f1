"""`pygemma --server` as a user runs it: the URL printed, the next port when the asked one is
taken, --api-key-file, one log line per request (none with --log-disable), graceful SIGTERM."""
import os
import re
import signal
import socket
import subprocess
import sys

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
from server_util import start_pygemma  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _wait_url(proc):
    lines = []
    while True:
        line = proc.stderr.readline()
        assert line, "".join(lines)
        lines.append(line)
        m = re.search(r"serving .* at (http://\S+/)", line)
        if m:
            return m.group(1), lines


def test_server_cli_port_taken_key_file_logs_and_sigterm(model_path, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    key = tmp_path / "key"
    key.write_text("file-key\n")
    proc = start_pygemma("-m", model_path, "--server", "--port", str(port), "-c", "128", "-np", "2",
                  "--api-key-file", str(key), "-n", "3")
    try:
        url, lines = _wait_url(proc)
        assert any(f"port {port} is already in use" in line for line in lines)
        assert not url.endswith(f":{port}/")
        r = httpx.post(url + "v1/completions", json={"prompt": "Hi", "temperature": 0},
                       headers={"Authorization": "Bearer file-key"}, timeout=60)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3   # -n is the default
        assert httpx.get(url + "v1/models").status_code == 401
        log = proc.stderr.readline() + proc.stderr.readline()
        assert re.search(r"POST /v1/completions 200 prompt=\d+ completion=3 .*\d\.\d+s", log), log
        assert re.search(r"GET /v1/models 401 ", log), log
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
        assert "Traceback" not in rest and "server stopped" in rest
    finally:
        busy.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_server_cli_log_disable_and_sigint(model_path):
    proc = start_pygemma("-m", model_path, "--server", "--port", "0", "-c", "64", "--log-disable", "--nobrowser")
    try:
        url, lines = _wait_url(proc)                # the URL line stays: it says where to go
        assert len(lines) == 1                      # but no loading messages
        assert httpx.post(url + "tokenize", json={"content": "a"}).status_code == 200
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=30)[1]
        assert err == ""                            # no request log, no shutdown message
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _run_chat(model_path, tmp_path, extra_path=None, *args):
    path = [p for p in (extra_path, ROOT, os.environ.get("PYTHONPATH")) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), HOME=str(tmp_path), PYGEMMA_PLAIN_INPUT="1")
    return subprocess.run([sys.executable, "-m", "pygemma", "-m", model_path, "-c", "64", *args],
                          input="/exit\n", capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_default_mode_chats_with_the_server_behind(model_path, tmp_path):
    r = _run_chat(model_path, tmp_path, None, "--port", "0")
    assert r.returncode == 0, r.stderr
    assert re.search(r"server:\s+http://127\.0\.0\.1:\d+/", r.stdout), r.stdout
    r = _run_chat(model_path, tmp_path, None, "--chat")
    assert r.returncode == 0 and "server:" not in r.stdout


def test_default_mode_without_the_server_extra(model_path, tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "uvicorn.py").write_text("raise ImportError('uvicorn is hidden by the test')\n")
    r = _run_chat(model_path, tmp_path, str(fake))
    assert r.returncode == 0, r.stderr
    assert "server:" not in r.stdout and ">>>" in r.stdout
    assert "no server" in r.stderr and "pygemma[server]" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pygemma", "-m", model_path, "--server", "--nobrowser"],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), ROOT])), cwd=ROOT)
    assert r.returncode == 1 and "pip install 'pygemma[server]'" in r.stderr
