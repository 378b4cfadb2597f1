"""The real GPU kernels (kernels/*.cu), executed on the CPU.

tests/gpu_emu turns the CUDA sources into plain C++: every GPU thread is a fiber, and
__syncthreads() and the warp shuffles really wait for the other threads (a shuffle not every
lane reaches is reported as a deadlock), with host memory behind the runtime calls.  The
library built that way goes through the same C core path as a real GPU library, so these
tests run the mat-vec, tinyBLAS, attention (split keys, sliding rings, soft-caps), RoPE,
norms, GeGLU and argmax kernels and the forward orchestration against transformers, at
warp widths 32 (NVIDIA, RDNA) and 64 (CDNA); the decode graph is captured and replayed (the
emulator records launches and copies); the cuBLAS path runs against a plain GEMM standing
in for cublasGemmEx (tests/gpu_emu/cublas_v2.h).  What it cannot cover: the real cuBLAS,
real concurrency between blocks, and timing -- ci/gpu_check.sh does that on a GPU."""
import os
import platform
import shutil
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

from gpu_util import GpuModel, probe  # noqa: E402
from models import gemma2_hf_model, gemma3_hf_model, write_gguf_from_hf  # noqa: E402
from test_forward import token_ids  # noqa: E402
from test_gpu_runtime import FLOAT_TOL, prompt_tol, reference  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_emu(out, warp, blas):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the emulator needs a C++ compiler on x86-64")
    kernels = sorted(os.path.join(ROOT, "kernels", f) for f in os.listdir(os.path.join(ROOT, "kernels"))
                     if f.endswith(".cu"))
    cmd = [cxx, "-std=c++17", "-O1", "-fPIC", "-shared", "-Wall", "-Wno-unknown-pragmas", "-Werror",
           "-DPG_GPU_EMU=1", f"-DPG_WARP={warp}", "-DPG_GPU_CUBLAS=1" if blas == "cublas" else "-DPG_GPU_TINYBLAS=1",
           "-I", os.path.join(ROOT, "kernels"), "-I", os.path.join(ROOT, "tests", "gpu_emu"),
           "-x", "c++", *kernels, "-x", "none", os.path.join(ROOT, "tests", "gpu_emu", "pg_emu.cpp"), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return str(out)


@pytest.fixture(scope="module", params=[(32, "tinyblas"), (64, "tinyblas"), (32, "cublas")],
                ids=["warp32", "warp64", "cublas"])
def emu_lib(request, tmp_path_factory):
    warp, blas = request.param
    lib = build_emu(tmp_path_factory.mktemp("emu") / f"libemu{warp}{blas}.so", warp, blas)
    info = probe(lib)
    assert info.startswith(f"CPU emulation (warp {warp})") and info.endswith(blas)
    return lib


def graph_launches(lib_path):
    import ctypes
    return ctypes.CDLL(lib_path).pg_emu_graph_launches()


@pytest.fixture(scope="module")
def calm():
    return gemma2_hf_model(seed=1, proj_std=0.06, embed_std=0.1)


@pytest.mark.parametrize("type_name", ["Q4_K", "BF16"])
def test_prompt_and_decode_match_transformers(emu_lib, calm, tmp_path, type_name):
    """24 tokens in chunks of 19 (tinyBLAS or cuBLAS, one attention split) and 5 (the
    several-token mat-vec), then 8 decode steps
    (fused mat-vec, 4 key splits at n_ctx 1024, graph replay), the sliding ring (window 16)
    wrapping; with tinyBLAS float32 throughout, so the bound is test_forward's float bound."""
    ids = token_ids(32, calm.config.vocab_size, seed=6)
    path = write_gguf_from_hf(calm, str(tmp_path / f"g2_{type_name}.gguf"), type_name)
    ref = reference(calm, type_name, ids)
    replays = graph_launches(emu_lib)
    with GpuModel(path, emu_lib, n_gpu_layers=999, n_ctx=1024, n_batch=19) as g:   # chunks of 19 and 5
        got = np.concatenate([g.logits(ids[:24]), np.stack([g.eval([t]) for t in ids[24:]])])
        g.rewind(31)
        tok = g.eval_argmax([ids[31]])            # the device's argmax kernel
    assert graph_launches(emu_lib) - replays == 9   # every decode step replayed a graph
    # cuBLAS rounds prompt-chunk operands to F16/BF16 (test_gpu_runtime's bounds)
    tol = prompt_tol(type_name, probe(emu_lib).rsplit(", ", 1)[-1], 0)
    assert np.abs(got[:24] - ref[:24]).max() < tol
    assert np.abs(got[24:] - ref[24:]).max() < tol
    top2 = np.sort(ref[31])[-2:]
    assert top2[1] - top2[0] > 10 * FLOAT_TOL and tok == int(np.argmax(ref[31]))


def test_gemma3_partial_offload_default_numerics(emu_lib, tmp_path):
    """Gemma 3 (q/k norms, local/global RoPE bases, scaled global positions) with llama.cpp
    numerics (F16 KV cache, F16-rounded queries, GELU table), layers 4..6 on the device:
    the CPU's result within the CPU's own 8-bit activation rounding (F16 weights: none)."""
    hf = gemma3_hf_model(seed=2, proj_std=0.06, embed_std=0.1, rope_scaling_factor=8.0)
    path = write_gguf_from_hf(hf, str(tmp_path / "g3.gguf"), "F16")
    ids = token_ids(28, hf.config.vocab_size, seed=5)
    with GpuModel(path, None, precise=False, n_batch=20) as cpu, \
            GpuModel(path, emu_lib, n_gpu_layers=3, precise=False, n_batch=20) as g:
        want, got = cpu.logits(ids), g.logits(ids)
        tok_cpu, tok_gpu = cpu.eval_argmax([7]), g.eval_argmax([7])
    # F16 rounding points are the same on both sides; only summation order differs
    assert np.abs(got - want).max() < 1e-2
    assert tok_cpu == tok_gpu


def test_device_out_of_memory(emu_lib, calm, tmp_path, monkeypatch):
    """The library's own checks: weights that do not fit fail before any upload, a KV cache
    that does not fit fails its allocation; both as MemoryError suggesting a smaller -ngl."""
    path = write_gguf_from_hf(calm, str(tmp_path / "g2.gguf"), "Q8_0")
    monkeypatch.setenv("PG_EMU_MEM", str(200_000))
    with pytest.raises(MemoryError, match=r"-ngl 999 .*smaller -ngl.*the weights need"):
        GpuModel(path, emu_lib, n_gpu_layers=999)
    monkeypatch.setenv("PG_EMU_MEM", str(3_000_000))
    with pytest.raises(MemoryError, match=r"n_ctx=65536 .*smaller -ngl or context.*KV cache"):
        GpuModel(path, emu_lib, n_gpu_layers=2, n_ctx=65536)


@pytest.mark.parametrize("n_heads,n_kv_heads", [(4, 1), (2, 2)], ids=["gqa4", "mha"])
def test_head_groupings(emu_lib, tmp_path, n_heads, n_kv_heads):
    """Attention blocks serve 4, 2 or 1 query heads of a KV head: 4 query heads on one KV head
    (Gemma 3 270M/1B) and plain multi-head attention, prompt and decode, against transformers."""
    hf = gemma2_hf_model(seed=3, n_heads=n_heads, n_kv_heads=n_kv_heads, head_dim=32, proj_std=0.06,
                         embed_std=0.1)
    ids = token_ids(28, hf.config.vocab_size, seed=9)
    path = write_gguf_from_hf(hf, str(tmp_path / "g2.gguf"), "F32")
    ref = reference(hf, "F32", ids)
    with GpuModel(path, emu_lib, n_gpu_layers=999, n_ctx=512, n_batch=20) as g:
        got = np.concatenate([g.logits(ids[:20]), np.stack([g.eval([t]) for t in ids[20:]])])
    assert np.abs(got - ref).max() < FLOAT_TOL
