"""Server memory under large requests: does the resident set plateau or grow?

    python bench/bench_server_memory.py                      # default 270M model, 1000 requests
    python bench/bench_server_memory.py -m model.gguf -n 2000 --every 100

Starts `pygemma --server` as a child process on a free 127.0.0.1 port, then sends N large
requests in a fixed rotation, one at a time over keep-alive connections: /tokenize of ~400 KB
of text (with_pieces on every other one), /detokenize of 200,000 ids, a chat completion whose
prompt fills most of the context, a completion from a long token-id prompt, a request refused
for its size (413) and one refused by validation (400, a 1 MB stop list).  Every `--every`
requests it reads the server's VmRSS from /proc and prints it.  Growth that stops (a plateau
after the first rounds: allocator pools, caches warmed) is fine; growth in every interval is a
leak.  Answers other than
the expected status are counted and shown (an older server may answer differently), a 5xx
stops the run.  This script only measures.
"""
import argparse
import collections
import json
import os
import socket
import subprocess
import sys
import time

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def requests_rotation(n_ctx):
    words = " ".join(f"word{i} and some more text, item {i}." for i in range(12000))   # ~400 KB
    long_prompt = " ".join(f"The {i}th line of a long story." for i in range(n_ctx // 13))   # ~85% of the context
    return [
        ("POST", "/tokenize", {"content": words}, 200),
        ("POST", "/tokenize", {"content": words[:60000], "with_pieces": True}, 200),
        ("POST", "/detokenize", {"tokens": [(i * 7919) % 200000 + 300 for i in range(200000)]}, 200),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": long_prompt}],
                                          "max_tokens": 8, "temperature": 0}, 200),
        ("POST", "/v1/completions", {"prompt": [2] + [(i * 31) % 5000 + 300 for i in range(n_ctx - 40)],
                                     "max_tokens": 8, "temperature": 0}, 200),
        ("POST", "/tokenize", {"content": "x" * (1 << 20)}, 413),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                          "stop": ["s"] * 200000}, 400),
    ]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-m", "--model", default=None, help="a .gguf (default: the Gemma 3 270M package)")
    p.add_argument("-n", "--requests", type=int, default=1000)
    p.add_argument("--every", type=int, default=100, help="print the RSS every this many requests")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=1024)
    args = p.parse_args()

    port = free_port()
    cmd = [sys.executable, "-m", "pygemma", "--server", "--nobrowser", "--log-disable", "--port", str(port),
           "-t", str(args.threads), "-c", str(args.ctx), "--body-limit", str(32 << 20)]
    if args.model:
        cmd += ["-m", args.model]
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=300) as client:
            for _ in range(600):
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None:
                    raise SystemExit("the server exited: " + server.stderr.read().decode()[-2000:])
                time.sleep(0.1)
            rotation = requests_rotation(args.ctx)
            bodies = [(m, path, json.dumps(b).encode(), want) for m, path, b, want in rotation]
            print(f"pygemma server pid {server.pid}, {args.requests} large requests "
                  f"(rotation of {len(bodies)}: {', '.join(f'{p} {w}' for _, p, _, w in bodies)})")
            print(f"{'requests':>9} {'RSS MB':>8} {'seconds':>8}")
            print(f"{0:>9} {rss_mb(server.pid):8.1f} {0.0:8.1f}")
            statuses = collections.Counter()
            t0 = time.perf_counter()
            for i in range(1, args.requests + 1):
                method, path, body, want = bodies[(i - 1) % len(bodies)]
                r = client.request(method, path, content=body, headers={"content-type": "application/json"})
                statuses[path, want, r.status_code] += 1
                if r.status_code >= 500:
                    raise SystemExit(f"request {i} {path}: HTTP {r.status_code}: {r.text[:300]}")
                if i % args.every == 0:
                    print(f"{i:>9} {rss_mb(server.pid):8.1f} {time.perf_counter() - t0:8.1f}", flush=True)
            print("answers (path, expected, got: count):",
                  ", ".join(f"{p} {w}->{g}: {n}" for (p, w, g), n in sorted(statuses.items())))
    finally:
        server.terminate()
        server.wait(60)


if __name__ == "__main__":
    main()
