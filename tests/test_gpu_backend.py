"""The C core's GPU plumbing, without a GPU: a fake GPU library (tests/fake_gpu_backend.c,
compiled here) implements kernels/pg_gpu_abi.h in plain float32 C.  These tests check
loading (dlopen, ABI version, missing entry), the probe, the -ngl layer split, handing the
residual stream to the library and back (partial and full offload must give the CPU's
logits), the greedy token path, and how device failures and out-of-memory surface."""
import os

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import pygemma  # noqa: E402
from gpu_util import GpuModel, build_fake, probe  # noqa: E402
from models import gemma2_hf_model, gemma3_hf_model, write_gguf_from_hf  # noqa: E402

N_LAYERS = 4
# The fake library computes in float32 with transformers' order of operations, as the CPU's
# precise=True path does; the two differ only in float summation order (SIMD dot products,
# double-accumulated softmax sum), i.e. a few ulps of logits of size ~10 after 4 layers.
TOL = 2e-4


@pytest.fixture(scope="module")
def fake_lib(tmp_path_factory):
    out = build_fake(tmp_path_factory.mktemp("fake") / "libfake_gpu.so")
    if out is None:
        pytest.skip("no C compiler")
    return out


@pytest.fixture(scope="module")
def g2_path(tmp_path_factory):
    hf = gemma2_hf_model(seed=11, n_layers=N_LAYERS, proj_std=0.06, embed_std=0.1)
    return write_gguf_from_hf(hf, str(tmp_path_factory.mktemp("g2") / "g2.gguf"), "F16")


@pytest.fixture(scope="module")
def g3_path(tmp_path_factory):
    hf = gemma3_hf_model(seed=12, proj_std=0.06, embed_std=0.1)
    return write_gguf_from_hf(hf, str(tmp_path_factory.mktemp("g3") / "g3.gguf"), "Q8_0")


@pytest.fixture
def fake_env(monkeypatch, tmp_path):
    """A clean fake-device environment with a call log; returns the log reader."""
    for k in ("FAKE_GPU_FAIL", "FAKE_GPU_MEM"):
        monkeypatch.delenv(k, raising=False)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_GPU_LOG", str(log))
    return lambda: log.read_text().splitlines() if log.exists() else []


def ids_of(n, seed=0, vocab=300):
    rng = np.random.default_rng(seed)
    return [2] + rng.integers(4, vocab - 1, size=n - 1).tolist()


# ---- loading and probing ----------------------------------------------------------------

def test_probe_reports_the_device(fake_lib, fake_env):
    info = probe(fake_lib)
    assert info.startswith("Fake GPU (16.0 GiB") and "fake" in info


def test_probe_without_device(fake_lib, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_GPU_FAIL", "device")
    with pytest.raises(pygemma.GPUError, match="no GPU device found"):
        probe(fake_lib)


def test_probe_missing_library(tmp_path):
    with pytest.raises(pygemma.GPUError, match="cannot load GPU library .*nope.so"):
        probe(str(tmp_path / "nope.so"))


def test_library_without_entry_point(tmp_path):
    lib = build_fake(tmp_path / "noentry.so", "FAKE_NO_ENTRY") or pytest.skip("no C compiler")
    with pytest.raises(pygemma.GPUError, match="not a pygemma GPU library .*pg_gpu_backend_v1"):
        probe(lib)


def test_abi_version_mismatch(tmp_path):
    lib = build_fake(tmp_path / "abi99.so", "FAKE_ABI_VERSION=99") or pytest.skip("no C compiler")
    with pytest.raises(pygemma.GPUError, match="ABI version 99, this pygemma needs 1: rebuild"):
        probe(lib)


def test_load_error_names_the_library_in_model_load(g2_path, tmp_path):
    with pytest.raises(pygemma.GPUError, match="cannot load GPU library"):
        GpuModel(g2_path, str(tmp_path / "missing.so"), n_gpu_layers=2)


# ---- the layer split --------------------------------------------------------------------

@pytest.mark.parametrize("ngl, on_gpu, output", [(0, 0, False), (1, 1, False), (3, 3, False),
                                                 (4, 4, False), (5, 4, True), (999, 4, True)])
def test_layer_split(g2_path, fake_lib, fake_env, ngl, on_gpu, output):
    with GpuModel(g2_path, fake_lib, n_gpu_layers=ngl) as m:
        assert m.n_gpu_layers == on_gpu
        if on_gpu == 0:
            assert m.gpu_info == "" and fake_env() == []
            return
        suffix = " + output" if output else ""
        assert m.gpu_info == f"Fake GPU (16.0 GiB), {on_gpu}/{N_LAYERS} layers{suffix} on GPU"
        assert fake_env()[0] == f"model_create first_layer={N_LAYERS - on_gpu} output={int(output)} n_layer=4"
        m.eval(ids_of(5))
        fwd = [ln for ln in fake_env() if ln.startswith("forward")]
        # the CPU keeps the head unless the output is offloaded: then only the last row comes back
        want = "logits_rows=1 argmax=0 x_out=0" if output else "logits_rows=0 argmax=0 x_out=1"
        assert fwd == [f"forward n=5 pos=0 {want} trace=0"]


def test_no_library_means_cpu(g2_path):
    with GpuModel(g2_path, None, n_gpu_layers=999) as m:
        assert m.n_gpu_layers == 0 and m.gpu_info == ""


# ---- partial offload == full offload == CPU ------------------------------------------------

@pytest.mark.parametrize("ngl", [1, 2, 4, 999])
def test_offload_matches_cpu(g2_path, fake_lib, fake_env, ngl):
    """Chunked prefill (ring of the sliding layers wraps: window 16, 40 tokens), all-logits
    eval, then single-token decoding after a rewind."""
    prompt = ids_of(40, seed=1)
    with GpuModel(g2_path, None, n_batch=7) as cpu, \
            GpuModel(g2_path, fake_lib, n_gpu_layers=ngl, n_batch=7) as gpu:
        np.testing.assert_allclose(gpu.logits(prompt), cpu.logits(prompt), atol=TOL, rtol=0)
        for m in (cpu, gpu):
            m.rewind(34)                 # the rings (16 + 7 slots) still hold 19..33
        for tok in prompt[34:40]:
            np.testing.assert_allclose(gpu.eval([tok]), cpu.eval([tok]), atol=TOL, rtol=0)
    fwd = [ln for ln in fake_env() if ln.startswith("forward")]
    assert len(fwd) == 6 + 6            # 40 tokens in chunks of 7, then 6 decode steps
    assert fwd[5].startswith("forward n=5 pos=35") and fwd[6].startswith("forward n=1 pos=34")


def test_gemma3_quantized_partial_offload(g3_path, fake_lib, fake_env):
    """Gemma 3: q/k norms, local/global RoPE bases on the device side; Q8_0 weights through
    the host's dequantizer.  The CPU quantizes activations to 8 bits for Q8_0 products,
    the fake library does not: compare the fake against itself across splits instead, and
    against the CPU within that rounding."""
    prompt = ids_of(30, seed=2)
    with GpuModel(g3_path, fake_lib, n_gpu_layers=3) as part, \
            GpuModel(g3_path, fake_lib, n_gpu_layers=999) as full, GpuModel(g3_path, None) as cpu:
        lp, lf, lc = part.logits(prompt), full.logits(prompt), cpu.logits(prompt)
    assert np.abs(lf - lc).max() < 0.05 * np.abs(lc).max()
    # layers 0..3 on the CPU in `part` carry the CPU's activation rounding: between the two
    assert np.abs(lp - lc).max() < np.abs(lf - lc).max() + TOL
    assert np.abs(lp - lf).max() > 0


def test_trace_hidden_spans_cpu_and_gpu_layers(g2_path, fake_lib, fake_env):
    prompt = ids_of(9, seed=3)
    with GpuModel(g2_path, None) as cpu, GpuModel(g2_path, fake_lib, n_gpu_layers=2) as gpu:
        h_cpu, h_gpu = cpu.hidden(prompt), gpu.hidden(prompt)
    assert np.abs(h_gpu).min(axis=(1, 2)).shape == (N_LAYERS,)
    assert np.all(np.abs(h_gpu).max(axis=(1, 2)) > 0)        # every layer's slot written
    np.testing.assert_allclose(h_gpu, h_cpu, atol=TOL * 10, rtol=1e-5)
    assert "trace=1" in [ln for ln in fake_env() if ln.startswith("forward")][0]


# ---- the greedy token ---------------------------------------------------------------------

def test_eval_argmax_on_device_returns_only_the_token(g2_path, fake_lib, fake_env):
    prompt = ids_of(12, seed=4)
    with GpuModel(g2_path, None) as cpu, GpuModel(g2_path, fake_lib, n_gpu_layers=999) as gpu:
        want = cpu.greedy(prompt, 8)
        assert gpu.greedy(prompt, 8) == want
        assert gpu.last_logits() is None          # only the token came back
        assert cpu.last_logits() is not None
        assert want[-1] == int(np.argmax(cpu.last_logits()))
    fwd = [ln for ln in fake_env() if ln.startswith("forward")]
    assert fwd[-1] == "forward n=1 pos=18 logits_rows=0 argmax=1 x_out=0 trace=0"


def test_eval_argmax_with_cpu_head(g2_path, fake_lib, fake_env):
    prompt = ids_of(12, seed=4)
    with GpuModel(g2_path, None) as cpu, GpuModel(g2_path, fake_lib, n_gpu_layers=2) as gpu:
        assert gpu.greedy(prompt, 5) == cpu.greedy(prompt, 5)
        assert gpu.last_logits() is not None


# ---- failures -----------------------------------------------------------------------------

def test_weights_out_of_memory_suggests_smaller_ngl(g2_path, fake_lib, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_GPU_MEM", "100000")
    with pytest.raises(MemoryError, match=r"GPU out of memory with -ngl 999 .*try a smaller -ngl"):
        GpuModel(g2_path, fake_lib, n_gpu_layers=999)


def test_kv_cache_out_of_memory(g2_path, fake_lib, fake_env, monkeypatch):
    with GpuModel(g2_path, fake_lib, n_gpu_layers=1, n_ctx=64) as m:
        weights = int(lib_bytes(m))
    monkeypatch.setenv("FAKE_GPU_MEM", str(weights + 1000))
    with pytest.raises(MemoryError, match=r"n_ctx=4096 with 1 layers on the GPU; try a smaller -ngl"):
        GpuModel(g2_path, fake_lib, n_gpu_layers=1, n_ctx=4096)


def lib_bytes(m):
    from pygemma._ffi import lib
    return lib.pg_model_gpu_bytes(m.model)


def test_device_failures_are_gpu_errors(g2_path, fake_lib, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_GPU_FAIL", "model")
    with pytest.raises(pygemma.GPUError, match="uploading the model to the GPU: kernel image"):
        GpuModel(g2_path, fake_lib, n_gpu_layers=2)
    monkeypatch.setenv("FAKE_GPU_FAIL", "seq")
    with pytest.raises(pygemma.GPUError, match="creating the GPU KV cache: stream creation failed"):
        GpuModel(g2_path, fake_lib, n_gpu_layers=2)
    monkeypatch.delenv("FAKE_GPU_FAIL")
    with GpuModel(g2_path, fake_lib, n_gpu_layers=2) as m:
        monkeypatch.setenv("FAKE_GPU_FAIL", "forward")
        with pytest.raises(pygemma.GPUError, match="GPU forward pass: an illegal memory access"):
            m.eval(ids_of(3))
        assert m.last_logits() is None
        monkeypatch.delenv("FAKE_GPU_FAIL")
        assert m.eval(ids_of(3)) is not None       # the context still works


def test_set_option_errors(fake_lib):
    from pygemma._ffi import check, lib
    check(lib.pg_gpu_set_option(fake_lib.encode(), b"tinyblas", 1))
    with pytest.raises(ValueError, match="GPU option 'fast': unknown GPU option 'fast'"):
        check(lib.pg_gpu_set_option(fake_lib.encode(), b"fast", 1))


def test_no_cpu_kv_cache_for_offloaded_layers(g2_path, fake_lib, fake_env):
    with GpuModel(g2_path, fake_lib, n_gpu_layers=3, n_ctx=128) as m:
        from pygemma._ffi import lib
        assert lib.pg_context_gpu_bytes(m.ctx) > 0
    assert os.path.exists(fake_lib)


def test_context_shift_asks_for_reevaluation(g2_path, fake_lib, fake_env):
    """The device does not shift its KV cache: PG_ERR_STATE, as for a ring that lost the
    keys, so Model.drop() returns False and the chatbot re-evaluates instead."""
    from pygemma._ffi import lib
    with GpuModel(g2_path, fake_lib, n_gpu_layers=2) as m:
        m.eval(ids_of(10))
        assert lib.pg_context_shift(m.ctx, 2, 5) == lib.PG_ERR_STATE
        assert lib.pg_context_n_past(m.ctx) == 10


def test_eval_batch_with_offload_matches_cpu(g2_path, fake_lib, fake_env):
    """Two contexts of one offloaded model in one pg_eval_batch: each keeps its own device
    KV cache, so they run one after the other; the results are the CPU's."""
    from pygemma._ffi import check, ffi, lib
    prompts = [ids_of(7, seed=20), ids_of(11, seed=21)]
    nxt = [17, 23]
    with GpuModel(g2_path, fake_lib, n_gpu_layers=3) as a, GpuModel(g2_path, None) as cpu:
        cp = ffi.new("pg_context_params *")
        lib.pg_context_params_init(cp)
        cp.n_ctx, cp.precise, cp.n_threads = 256, 1, 2
        out = ffi.new("pg_context **")
        check(lib.pg_context_create(a.model, cp, out))
        second = out[0]
        try:
            for ctx, p in zip((a.ctx, second), prompts):
                check(lib.pg_eval(ctx, ffi.new("int32_t[]", p), len(p), ffi.NULL))
            ctxs = ffi.new("pg_context *[2]", [a.ctx, second])
            check(lib.pg_eval_batch(ctxs, ffi.new("int32_t[2]", nxt), 2))
            for ctx, p, t in zip((a.ctx, second), prompts, nxt):
                cpu.rewind(0)
                want = cpu.eval(p + [t])
                got = np.frombuffer(ffi.buffer(lib.pg_context_logits(ctx), 4 * a.n_vocab), np.float32)
                np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
                assert lib.pg_context_n_past(ctx) == len(p) + 1
        finally:
            lib.pg_context_free(second)
