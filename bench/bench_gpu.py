"""GPU benchmark: prompt processing (pp512) and generation (tg128) of random-weight Gemma 2
9B-shaped models, all layers and the output head on the GPU (-ngl 999).

    python bench/bench_gpu.py --lib PATH/libpygemma_gpu.so --types BF16,Q8_0,Q6_K,Q4_0 \\
        --workdir /tmp/bench --out results/
    (smoke run: --shape gemma3-1b --layers 1 --vocab 2048 --types Q4_0)

For each type: `python -m pygemma.synth --shape 9b --type T` (a llama.cpp-style mix) writes the model (deleted after,
so the disk holds one at a time), then
  pp512  one 512-token chunk (n_batch 512), best of 3 after a warm-up, tok/s;
  tg128  128 greedy tokens after BOS through pg_eval_argmax (decode graph replay, only the
         token comes back), tok/s over the 128 steps;
  bw     device weight bytes (every offloaded matrix and the head, each read once per
         token) x tg tok/s, and its fraction of the device-to-device copy bandwidth measured
         here (bytes read + written per second, as copy benchmarks count it).
Writes bench_gpu.json and bench_gpu.md (a table) into --out.  No assertions: a measurement.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from gpu_util import GpuModel, probe  # noqa: E402
from pygemma._ffi import lib  # noqa: E402


def copy_bandwidth():
    """Device-to-device copy of 2 GiB through torch or cupy: (read + written bytes) / s."""
    n = 1 << 31
    try:
        import torch
        a = torch.empty(n, dtype=torch.uint8, device="cuda")
        b = torch.empty_like(a)
        for _ in range(3):
            b.copy_(a)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            b.copy_(a)
        end.record()
        torch.cuda.synchronize()
        sec = start.elapsed_time(end) / 1e3 / 10
        del a, b
        torch.cuda.empty_cache()
        return 2 * n / sec, "torch"
    except Exception:  # noqa: BLE001 -- try the next tool
        pass
    try:
        import cupy
        a = cupy.empty(n, dtype=cupy.uint8)
        b = cupy.empty_like(a)
        for _ in range(3):
            b[...] = a
        cupy.cuda.Device().synchronize()
        t = time.perf_counter()
        for _ in range(10):
            b[...] = a
        cupy.cuda.Device().synchronize()
        return 2 * n / ((time.perf_counter() - t) / 10), "cupy"
    except Exception:  # noqa: BLE001
        return None, "none"


def bench_type(lib_path, type_name, workdir, synth_args=(), n_pp=512, n_tg=128):
    path = os.path.join(workdir, f"synth-{type_name}.gguf")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pygemma.synth", "--type", type_name, "-o", path, "--quiet",
                    *synth_args], check=True, cwd=ROOT)
    synth_s = time.perf_counter() - t
    try:
        t = time.perf_counter()
        g = GpuModel(path, lib_path, n_gpu_layers=999, n_ctx=1024, n_batch=n_pp, precise=False, n_threads=8)
        load_s = time.perf_counter() - t
        with g:
            weight_bytes = lib.pg_model_gpu_bytes(g.model)
            prompt = [2] + [(1000 + 7 * i) % (g.n_vocab - 10) + 10 for i in range(n_pp - 1)]
            pp = []
            for _ in range(4):                       # the first is a warm-up
                g.rewind(0)
                t = time.perf_counter()
                g.eval(prompt)
                pp.append(time.perf_counter() - t)
            pp_tok_s = n_pp / min(pp[1:])
            g.rewind(0)
            tok = g.eval_argmax([2])
            g.eval_argmax([tok])                     # captures the decode graph
            t = time.perf_counter()
            for _ in range(n_tg):
                tok = g.eval_argmax([tok])
            tg_tok_s = n_tg / (time.perf_counter() - t)
            info = g.gpu_info
    finally:
        os.remove(path)
    return {"type": type_name, "pp512_tok_s": pp_tok_s, "tg128_tok_s": tg_tok_s,
            "weight_bytes": weight_bytes, "decode_bytes_per_s": weight_bytes * tg_tok_s,
            "synth_s": synth_s, "load_s": load_s, "gpu_info": info}


def table(results, copy_bw):
    lines = ["| type | weights GB | pp512 tok/s | tg128 tok/s | decode GB/s | % of copy bw |",
             "|---|---|---|---|---|---|"]
    for r in results:
        frac = f"{100 * r['decode_bytes_per_s'] / copy_bw:.0f}%" if copy_bw else "n/a"
        lines.append(f"| {r['type']} | {r['weight_bytes'] / 1e9:.2f} | {r['pp512_tok_s']:.0f} | "
                     f"{r['tg128_tok_s']:.1f} | {r['decode_bytes_per_s'] / 1e9:.0f} | {frac} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lib", required=True, help="libpygemma_gpu.so to benchmark")
    p.add_argument("--types", default="BF16,Q8_0,Q6_K,Q4_0")
    p.add_argument("--workdir", default="/tmp/pygemma-bench")
    p.add_argument("--out", default=".")
    p.add_argument("--shape", default="9b", help="pygemma.synth shape")
    p.add_argument("--layers", type=int, help="fewer layers (smoke runs)")
    p.add_argument("--vocab", type=int, help="smaller vocabulary (smoke runs)")
    a = p.parse_args(argv)
    synth_args = ["--shape", a.shape] + (["--layers", str(a.layers)] if a.layers else []) + \
        (["--vocab", str(a.vocab)] if a.vocab else [])
    os.makedirs(a.workdir, exist_ok=True)
    os.makedirs(a.out, exist_ok=True)
    device = probe(a.lib)
    copy_bw, tool = copy_bandwidth()
    print(f"device: {device}\ncopy bandwidth ({tool}): "
          f"{copy_bw / 1e12:.2f} TB/s (read + write)" if copy_bw else f"device: {device}\ncopy bandwidth: n/a",
          flush=True)
    results = []
    for t in a.types.split(","):
        r = bench_type(a.lib, t, a.workdir, synth_args)
        results.append(r)
        print(json.dumps(r), flush=True)
    md = table(results, copy_bw)
    print(md)
    with open(os.path.join(a.out, "bench_gpu.json"), "w") as f:
        json.dump({"device": device, "copy_bytes_per_s": copy_bw, "copy_tool": tool, "results": results,
                   "command": " ".join([sys.executable] + sys.argv)}, f, indent=1)
    with open(os.path.join(a.out, "bench_gpu.md"), "w") as f:
        f.write(f"device: {device}\n\ncopy bandwidth ({tool}): "
                f"{(copy_bw or 0) / 1e12:.2f} TB/s counting bytes read and written\n\n{md}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
