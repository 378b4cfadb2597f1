"""Starting the server: the listening socket (next free port if the asked one is taken),
uvicorn in the foreground (--server: Ctrl-C/SIGTERM shut it down gracefully) or on a daemon
thread (behind the chatbot), and opening the web chat in a browser."""
import errno
import os
import socket
import sys
import threading
import webbrowser

import uvicorn

from .app import DEFAULT_BODY_LIMIT, DEFAULT_QUEUE_SIZE, ServerState, create_app

PORT_TRIES = 10


def bind(host, port, tries=PORT_TRIES, say=None):
    """A listening socket on host:port, or on the next free port; (socket, port)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family = infos[0][0]
    last = None
    for p in range(port, port + tries) if port else [0]:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


class Server:
    """The HTTP server for `model`.  options: n_parallel, n_ctx, queue_size, body_limit,
    defaults (SamplingParams), model_id, reuse_default (slot 0 is the model's own sequence)."""

    def __init__(self, model, host="127.0.0.1", port=8080, api_key=None, log=True, say=None, **options):
        self.say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
        options.setdefault("queue_size", DEFAULT_QUEUE_SIZE)
        options.setdefault("body_limit", DEFAULT_BODY_LIMIT)
        self.state = ServerState(model, **options)
        self.app = create_app(self.state, api_key=api_key, log=log)
        self.sock, self.port = bind(host, port, say=self.say)
        self.host = host
        self.url = url_for(host, self.port)
        config = uvicorn.Config(self.app, log_level="warning" if log else "critical", access_log=False,
                                lifespan="on", timeout_graceful_shutdown=3, ws="none",
                                # Idle keep-alive connections live long (uvicorn's default is
                                # 5 s): a client reusing one just as the server closes it gets a
                                # reset, and OpenAI clients keep connections in a pool.
                                timeout_keep_alive=75)
        self.uvicorn = uvicorn.Server(config)
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
        self.uvicorn.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
            self.thread = None
