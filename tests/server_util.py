"""A live pygemma server on a free loopback port, in this process (uvicorn on a thread)."""
import contextlib

import pygemma


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
