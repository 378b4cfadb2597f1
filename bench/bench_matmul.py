"""Matmul kernel benchmark (not a test): memory read bandwidth, mat-vec GB/s
per weight type, mat-mat GFLOP/s, and the same through llama.cpp's ggml when
llama-cpp-python is installed.

    python bench/bench_matmul.py [--threads 2] [--types Q4_0,Q8_0,...] [--no-ggml] [--quick]

Mat-vec ("cold"): the weights are copied until the copies exceed four times
the last-level cache and the benchmark cycles through them, so every product
streams its weights from DRAM -- the decode situation for models larger than
the cache.  "hot" repeats one matrix (it stays in L2/L3).  Timings are the best
of several runs (wall clock), and the machine may be shared: compare the
ratios of runs made together.
"""
import argparse
import ctypes
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pygemma._ffi import check, ffi, lib  # noqa: E402

TYPE_IDS = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q2_K": 10,
            "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "BF16": 30}
# byte offsets of the fp16 scale fields of each block type
HALF_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
               "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


def llc_bytes():
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    for d in os.listdir(base) if os.path.isdir(base) else []:
        try:
            with open(os.path.join(base, d, "size")) as f:
                s = f.read().strip()
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1], 1)
            best = max(best, int(s.rstrip("KMG")) * mult)
        except (OSError, ValueError):
            pass
    return best or 32 << 20


def rand_weights(rng, name, rows, cols):
    """Random raw blocks of a (rows, cols) tensor with sane fp16 scales (uint8 (rows, row_bytes))."""
    t = TYPE_IDS[name]
    if name == "F32":
        return rng.standard_normal((rows, cols), dtype=np.float32).view(np.uint8)
    if name == "F16":
        return rng.standard_normal((rows, cols), dtype=np.float32).astype(np.float16).view(np.uint8)
    if name == "BF16":
        bits = rng.standard_normal((rows, cols), dtype=np.float32).view(np.uint32)
        return (bits >> 16).astype(np.uint16).view(np.uint8)
    bs, bb = lib.pg_type_block_size(t), lib.pg_type_block_bytes(t)
    nb = rows * cols // bs
    raw = rng.integers(0, 256, (nb, bb), dtype=np.uint8)
    for off in HALF_FIELDS[name]:
        raw[:, off:off + 2] = rng.uniform(0.002, 0.02, nb).astype(np.float16).view(np.uint8).reshape(nb, 2)
    return raw.reshape(rows, -1)


def best_time(fn, reps, tries=5):
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


class Ours:
    def __init__(self, threads):
        p = ffi.new("pg_pool **")
        check(lib.pg_pool_create(threads, p))
        self.pool = p[0]

    def read_bw(self, nbytes):
        raw = np.ones(nbytes // 8 + 8, np.uint64)
        buf = raw[(-raw.ctypes.data % 64) // 8:][:nbytes // 8]      # 64-byte aligned
        ptr = ffi.cast("void *", buf.ctypes.data)
        return nbytes / best_time(lambda: lib.pg_mem_read(self.pool, ptr, nbytes), 1, tries=7)

    def matmul_fn(self, name, mats, cols, ntok, rng):
        """A callable running one product per call, cycling through `mats`."""
        rows = mats[0].shape[0]
        x = rng.standard_normal((ntok, cols), dtype=np.float32)
        y = np.empty((ntok, rows), np.float32)
        t = TYPE_IDS[name]
        ws = [ffi.cast("void *", m.ctypes.data) for m in mats]
        xp, yp = ffi.cast("float *", x.ctypes.data), ffi.cast("float *", y.ctypes.data)
        state = {"i": 0, "keep": (mats, x, y)}    # the C core writes through raw pointers

        def run():
            i = state["i"]
            state["i"] = (i + 1) % len(ws)
            check(lib.pg_matmul(self.pool, t, ws[i], rows, cols, xp, ntok, yp))
        return run


class GGML:
    """mul_mat through llama.cpp's bundled ggml (ctypes), with its own thread pool."""

    def __init__(self, threads, lib_dir=None):
        if lib_dir:
            d = lib_dir
        else:
            import llama_cpp
            d = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
        self.base = ctypes.CDLL(os.path.join(d, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
        self.cpu = ctypes.CDLL(os.path.join(d, "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
        C = ctypes

        class InitParams(C.Structure):
            _fields_ = [("mem_size", C.c_size_t), ("mem_buffer", C.c_void_p), ("no_alloc", C.c_bool)]

        class TPParams(C.Structure):
            _fields_ = [("cpumask", C.c_bool * 512), ("n_threads", C.c_int), ("prio", C.c_int),
                        ("poll", C.c_uint32), ("strict_cpu", C.c_bool), ("paused", C.c_bool)]

        class CPlan(C.Structure):
            _fields_ = [("work_size", C.c_size_t), ("work_data", C.c_void_p), ("n_threads", C.c_int),
                        ("threadpool", C.c_void_p), ("abort_callback", C.c_void_p),
                        ("abort_callback_data", C.c_void_p), ("use_ref", C.c_bool)]
        self.InitParams, self.CPlan = InitParams, CPlan
        b, c = self.base, self.cpu
        b.ggml_init.restype = C.c_void_p
        b.ggml_init.argtypes = [InitParams]
        b.ggml_free.argtypes = [C.c_void_p]
        b.ggml_new_tensor_2d.restype = C.c_void_p
        b.ggml_new_tensor_2d.argtypes = [C.c_void_p, C.c_int, C.c_int64, C.c_int64]
        b.ggml_mul_mat.restype = C.c_void_p
        b.ggml_mul_mat.argtypes = [C.c_void_p] * 3
        b.ggml_new_graph_custom.restype = C.c_void_p
        b.ggml_new_graph_custom.argtypes = [C.c_void_p, C.c_size_t, C.c_bool]
        b.ggml_build_forward_expand.argtypes = [C.c_void_p, C.c_void_p]
        b.ggml_get_data.restype = C.c_void_p
        b.ggml_get_data.argtypes = [C.c_void_p]
        b.ggml_threadpool_params_default.restype = TPParams
        b.ggml_threadpool_params_default.argtypes = [C.c_int]
        c.ggml_threadpool_new.restype = C.c_void_p
        c.ggml_threadpool_new.argtypes = [C.POINTER(TPParams)]
        c.ggml_graph_plan.restype = CPlan
        c.ggml_graph_plan.argtypes = [C.c_void_p, C.c_int, C.c_void_p]
        c.ggml_graph_compute.argtypes = [C.c_void_p, C.POINTER(CPlan)]
        c.ggml_cpu_init()
        tpp = b.ggml_threadpool_params_default(threads)
        self.tp = c.ggml_threadpool_new(C.byref(tpp))
        self.threads = threads
        self.keep = []

    def matmul_fn(self, name, mats, cols, ntok, rng):
        """One graph with a mul_mat per matrix copy; a call computes them all, returns the count."""
        C, b = ctypes, self.base
        rows, nbytes = mats[0].shape[0], mats[0].nbytes
        ctx = b.ggml_init(self.InitParams(len(mats) * (nbytes + 4096) + ntok * (cols + rows) * 4 + (64 << 20), None, False))
        xs = b.ggml_new_tensor_2d(ctx, 0, cols, ntok)
        ctypes.memmove(b.ggml_get_data(xs), rng.standard_normal((ntok, cols), dtype=np.float32).ctypes.data, ntok * cols * 4)
        gf = b.ggml_new_graph_custom(ctx, 2 * len(mats) + 16, False)
        for m in mats:
            w = b.ggml_new_tensor_2d(ctx, TYPE_IDS[name], cols, rows)
            ctypes.memmove(b.ggml_get_data(w), m.ctypes.data, nbytes)
            b.ggml_build_forward_expand(gf, b.ggml_mul_mat(ctx, w, xs))
        plan = self.cpu.ggml_graph_plan(gf, self.threads, self.tp)
        work = ctypes.create_string_buffer(plan.work_size + 64)
        plan.work_data = ctypes.addressof(work)
        self.keep.append((ctx, work, plan))

        def run():
            self.cpu.ggml_graph_compute(gf, C.byref(plan))
        return run, len(mats)

    def free(self):
        for ctx, _, _ in self.keep:
            self.base.ggml_free(ctx)
        self.keep.clear()


def copies_for(nbytes, llc):
    return max(1, -(-4 * llc // nbytes))      # 4x the LLC, like the read-bandwidth buffer


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--types", default="Q4_0,Q8_0,Q4_K,Q6_K,Q5_0,F16,BF16,F32")
    ap.add_argument("--ntok", type=int, default=512)
    ap.add_argument("--no-ggml", action="store_true")
    ap.add_argument("--ggml-dir", default=os.environ.get("PYGEMMA_BENCH_GGML_DIR"),
                    help="directory of another build's libggml-base.so / libggml-cpu.so (e.g. an AVX2-only "
                         "llama-cpp-python in its own venv: .../site-packages/llama_cpp/lib)")
    ap.add_argument("--quick", action="store_true", help="one shape, fewer repetitions")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    llc = llc_bytes()
    ours = Ours(args.threads)
    ggml = None
    if not args.no_ggml:
        try:
            ggml = GGML(args.threads, args.ggml_dir)
        except Exception as e:  # noqa: BLE001 -- optional comparison
            print(f"(ggml comparison off: {e})")
    print(f"kernels: {ffi.string(lib.pg_kernels_name()).decode()}, threads: {args.threads}, LLC {llc >> 20} MiB")
    bw_bytes = min(max(8 * llc, 256 << 20), 4 << 30) // 64 * 64    # 8x the LLC: no cache reuse
    bw = ours.read_bw(bw_bytes)
    print(f"memory read bandwidth ({args.threads} threads, {bw_bytes >> 20} MiB buffer): {bw / 1e9:.1f} GB/s\n")

    shapes = [(4096, 4096)] if args.quick else [(4096, 4096), (14336, 3584)]
    rounds = 2 if args.quick else 4
    hdr = f"{'type':6} {'shape':>11} {'cold GB/s':>9} {'%bw':>5} {'hot GB/s':>8}"
    if ggml:
        hdr += f" {'ggml cold':>9} {'ratio':>6}"
    print("mat-vec (1 token): weight bytes streamed per second")
    print(hdr)
    for name in args.types.split(","):
        for rows, cols in shapes:
            w = rand_weights(rng, name, rows, cols)
            n = copies_for(w.nbytes, llc)
            mats = [w] + [w.copy() for _ in range(n - 1)]
            f = ours.matmul_fn(name, mats, cols, 1, rng)
            hot_f = ours.matmul_fn(name, [w], cols, 1, rng)
            gf, cnt = ggml.matmul_fn(name, mats, cols, 1, rng) if ggml else (None, 0)
            t_cold = t_hot = t_g = float("inf")
            for _ in range(rounds):     # alternate, best of each: fair on a shared machine
                t_cold = min(t_cold, best_time(f, n, tries=1))
                t_hot = min(t_hot, best_time(hot_f, 20, tries=1))
                if gf:
                    t_g = min(t_g, best_time(gf, 1, tries=1) / cnt)
            cold, hot = w.nbytes / t_cold, w.nbytes / t_hot
            line = f"{name:6} {rows:>5}x{cols:<5} {cold / 1e9:9.1f} {100 * cold / bw:4.0f}% {hot / 1e9:8.1f}"
            if gf:
                ggml.free()
                g = w.nbytes / t_g
                line += f" {g / 1e9:9.1f} {cold / g:5.2f}x"
            print(line, flush=True)
            del mats
    rows = cols = 4096
    print(f"\nmat-mat ({args.ntok} tokens, {rows}x{cols}): GFLOP/s")
    print(f"{'type':6} {'ours':>8}" + (f" {'ggml':>8} {'ratio':>6}" if ggml else ""))
    for name in args.types.split(","):
        w = rand_weights(rng, name, rows, cols)
        flops = 2.0 * rows * cols * args.ntok
        f = ours.matmul_fn(name, [w], cols, args.ntok, rng)
        gf, _ = ggml.matmul_fn(name, [w], cols, args.ntok, rng) if ggml else (None, 0)
        t = tg = float("inf")
        for _ in range(rounds):
            t = min(t, best_time(f, 1, tries=1))
            if gf:
                tg = min(tg, best_time(gf, 1, tries=1))
        line = f"{name:6} {flops / t / 1e9:8.1f}"
        if gf:
            ggml.free()
            line += f" {flops / tg / 1e9:8.1f} {tg / t:5.2f}x"
        print(line, flush=True)
    lib.pg_pool_free(ours.pool)


if __name__ == "__main__":
    main()
