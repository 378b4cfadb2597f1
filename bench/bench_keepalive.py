"""Per-request overhead on a reused (keep-alive) connection.

    python bench/bench_keepalive.py                    # default 270M model, 200 requests each
    python bench/bench_keepalive.py -m model.gguf -n 500

Starts the server in this process (pygemma.Server on a free 127.0.0.1 port, default model via
pygemma.Model()), then over ONE http.client connection -- reused, and without client-side
TCP_NODELAY, as many HTTP clients run -- sends N small GET /health and N small POST /tokenize
requests and prints the p50/p90 latency of each.  http.client writes a POST's headers and its
body in two send() calls, so a server that delays its ACK of the headers (Linux does on a
connection in request/response rhythm) holds the body back by the client's Nagle algorithm;
a server whose responses leave in pieces without TCP_NODELAY waits on the client's delayed ACK.
Either shows up here as ~40 ms per request.  This script only measures; it asserts nothing.
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import pygemma                                      # noqa: E402
from pygemma.server import Server                   # noqa: E402


def timed_requests(conn, method, path, body, n, warmup=10):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    times = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        elapsed = time.perf_counter() - t0
        if response.status != 200:
            raise SystemExit(f"{method} {path}: HTTP {response.status}")
        if i >= warmup:
            times.append(elapsed)
    return times


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-m", "--model", default=None, help="a .gguf (default: the Gemma 3 270M package)")
    p.add_argument("-n", "--requests", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    model = pygemma.Model(args.model, n_ctx=256, n_threads=args.threads) if args.model else \
        pygemma.Model(n_ctx=256, n_threads=args.threads)
    server = Server(model, host="127.0.0.1", port=0, n_ctx=256, log=False, say=lambda msg: None).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        rows = [("GET /health", timed_requests(conn, "GET", "/health", None, args.requests)),
                ("POST /tokenize", timed_requests(conn, "POST", "/tokenize",
                                                  json.dumps({"content": "hello world"}).encode(),
                                                  args.requests))]
        conn.close()
    finally:
        server.stop()
        model.close()
    print(f"{args.requests} requests each over one reused connection (no client TCP_NODELAY)")
    print(f"{'request':<16} {'p50 ms':>8} {'p90 ms':>8} {'mean ms':>8}")
    for name, times in rows:
        print(f"{name:<16} {percentile(times, 0.5) * 1e3:8.2f} {percentile(times, 0.9) * 1e3:8.2f} "
              f"{statistics.fmean(times) * 1e3:8.2f}")


if __name__ == "__main__":
    main()
