"""Starting the server: the listening socket (next free port if the asked one is taken),
uvicorn in the foreground (--server: Ctrl-C/SIGTERM shut it down gracefully) or on a daemon
thread (behind the chatbot), and opening the web chat in a browser."""
import dataclasses
import errno
import os
import socket
import sys
import threading
import webbrowser

import uvicorn

from .app import DEFAULT_BODY_LIMIT, DEFAULT_QUEUE_SIZE, ServerState, create_app
from .connections import ConnectionLimits, set_nodelay, uvicorn_options
from .drain import DEFAULT_DRAIN_TIMEOUT, ENDING_GRACE, Drain, DrainingServer

PORT_TRIES = 10


def bind(host, port, tries=PORT_TRIES, say=None):
    """A listening socket on host:port, or on the next free port; (socket, port)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, proto = infos[0][:3]
    last = None
    for p in range(port, port + tries) if port else [0]:
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP
        sock = socket.socket(family, socket.SOCK_STREAM, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        set_nodelay(sock)           # inherited by the accepted sockets (Linux)
        try:
            sock.bind((host, p))
            sock.listen(2048)
            sock.set_inheritable(True)
            return sock, sock.getsockname()[1]
        except OSError as e:
            sock.close()
            if e.errno != errno.EADDRINUSE:
                raise
            last = e
            if say:
                say(f"pygemma: port {p} is already in use" + (f", trying {p + 1}" if p + 1 < port + tries else ""))
    raise OSError(errno.EADDRINUSE, f"ports {port} to {port + tries - 1} on {host} are all in use "
                                    f"({last}); choose another with --port") from None


def url_for(host, port):
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def browser_available():
    """A graphical browser can be opened (never a text browser taking over the terminal)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        webbrowser.get()
        return True
    except webbrowser.Error:
        return False


def open_browser(url):
    try:
        if browser_available():
            return webbrowser.open(url, new=2)
    except Exception:
        pass
    return False


LIMIT_OPTIONS = tuple(f.name for f in dataclasses.fields(ConnectionLimits))


class Server:
    """The HTTP server for `model`.  options: n_parallel, n_ctx, queue_size, body_limit,
    defaults (SamplingParams), model_id, reuse_default (slot 0 is the model's own sequence),
    allowed_hosts and cors_origins (see app.create_app);
    the connection limits header_timeout, body_idle_timeout, body_timeout, keep_alive_timeout
    (seconds) and max_connections (see connections.ConnectionLimits); drain_timeout: seconds
    running requests may take to finish once shutdown begins (see drain.py)."""

    def __init__(self, model, host="127.0.0.1", port=8080, api_key=None, log=True, say=None,
                 drain_timeout=DEFAULT_DRAIN_TIMEOUT, **options):
        self.say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.limits = ConnectionLimits(**{k: options.pop(k) for k in LIMIT_OPTIONS if k in options})
        options.setdefault("queue_size", DEFAULT_QUEUE_SIZE)
        options.setdefault("body_limit", DEFAULT_BODY_LIMIT)
        allowed_hosts, cors_origins = options.pop("allowed_hosts", None), options.pop("cors_origins", None)
        self.state = ServerState(model, **options)
        self.drain = Drain(drain_timeout, log=log)
        self.app = create_app(self.state, api_key=api_key, log=log, host=host, allowed_hosts=allowed_hosts,
                              cors_origins=cors_origins, drain=self.drain)
        self.sock, self.port = bind(host, port, say=self.say)
        self.host = host
        self.url = url_for(host, self.port)
        config = uvicorn.Config(self.app, log_level="warning" if log else "critical", access_log=False,
                                lifespan="on", ws="none",
                                # The drain runs before uvicorn's shutdown and leaves no request
                                # running (drain.py); this only bounds closing what is left.
                                timeout_graceful_shutdown=5, **uvicorn_options(self.limits))
        self.uvicorn = DrainingServer(config, self.drain, self.state.scheduler)
        self.thread = None

    def serve_forever(self):
        """Run in this (main) thread until Ctrl-C or SIGTERM."""
        try:
            self.uvicorn.run(sockets=[self.sock])
        finally:
            self.sock.close()

    def start(self, timeout=60):
        """Run on a daemon thread; returns once it accepts connections."""
        self.thread = threading.Thread(target=self.serve_forever, name="pygemma-server", daemon=True)
        self.thread.start()
        for _ in range(int(timeout * 20)):
            if self.uvicorn.started or not self.thread.is_alive():
                break
            self.thread.join(0.05)
        if not self.uvicorn.started:
            raise RuntimeError("the server did not start")
        return self

    def stop(self):
        """Shut down as on SIGTERM (drain included) and wait for it."""
        self.uvicorn.should_exit = True
        if self.thread is not None:
            self.thread.join(self.drain.timeout + ENDING_GRACE + 15)
            self.thread = None
