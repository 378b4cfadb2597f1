"""A live pygemma server on a free loopback port: in this process (uvicorn on a thread), or
as `python -m pygemma` in a child process."""
import contextlib
import os
import subprocess
import sys

import pygemma

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_pygemma(*args):
    """`python -m pygemma ARGS` of this checkout, stderr piped (text), no browser to open."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return subprocess.Popen([sys.executable, "-m", "pygemma", *args], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, env=env, cwd=ROOT, text=True)


@contextlib.contextmanager
def live_server(model_path, n_ctx=512, n_threads=2, **options):
    """Yields (server, model): the server's model is also usable directly (its default
    sequence is not one of the server's slots)."""
    from pygemma.server import Server
    options.setdefault("log", False)
    model = pygemma.Model(model_path, n_ctx=n_ctx, n_threads=n_threads)
    server = Server(model, host="127.0.0.1", port=0, n_ctx=n_ctx, say=lambda msg: None, **options).start()
    try:
        yield server, model
    finally:
        server.stop()
        model.close()
