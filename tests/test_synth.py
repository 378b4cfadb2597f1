"""Synthetic models: the test-model builders (tests/models.py), checked with gguf-py."""
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import models  # noqa: E402  (tests/models.py)

TOKENS = [2] + list(range(300, 340))


@pytest.fixture(scope="module")
def g2():
    return models.gemma2_hf_model(seed=1)


@pytest.fixture(scope="module")
def g3():
    return models.gemma3_hf_model(seed=2, rope_scaling_factor=8)


def test_tiny_vocab_layout():
    v = models.tiny_vocab()
    assert 300 <= len(v) <= 600
    assert v.tokens[:4] == ["<pad>", "<eos>", "<bos>", "<unk>"]
    assert len(set(v.tokens)) == len(v)
    for t in ("<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>"):
        assert v.types[v.ids[t]] == models.CONTROL
    first = v.ids["<0x00>"]
    assert [v.tokens[first + b] for b in range(256)] == [f"<0x{b:02X}>" for b in range(256)]
    assert all(v.types[first + b] == models.BYTE for b in range(256))
    assert sum(t == models.USER_DEFINED for t in v.types) >= 2
    normal = [i for i, t in enumerate(v.types) if t == models.NORMAL]
    assert "\u2581" in v.ids and "\u2581the" in v.ids
    scores = [v.scores[i] for i in normal]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
    # every multi-character piece can be built by merging two shorter pieces
    for i in normal:
        p = v.tokens[i]
        if len(p) > 1:
            assert any(p[:k] in v.ids and p[k:] in v.ids for k in range(1, len(p))), p


def test_softcaps_change_the_logits(g2):
    effect = models.softcap_effect(g2, TOKENS)
    assert effect["final"] > 1.0
    assert effect["attn"] > 0.5
    logits = models.hf_logits(g2, TOKENS)
    assert np.isfinite(logits).all() and np.abs(logits).max() <= 30.0 + 1e-3
    # most logits are not saturated, so comparisons against them stay sensitive
    assert (np.abs(logits) > 25).mean() < 0.05


@pytest.mark.parametrize("variant", sorted(models.VARIANTS))
def test_variants(variant):
    m = models.hf_model(variant, n_layers=2 if variant.startswith("gemma2") else 6)
    c = m.config
    assert c.num_attention_heads * c.head_dim in (256, 512)
    if variant == "gemma2-27b-like":
        assert c.query_pre_attn_scalar == c.hidden_size // c.num_attention_heads != c.head_dim
    logits = models.hf_logits(m, TOKENS[:20])
    assert logits.shape == (20, len(models.tiny_vocab())) and np.isfinite(logits).all()
    if variant.startswith("gemma2"):
        effect = models.softcap_effect(m, TOKENS)
        assert effect["final"] > 1.0 and effect["attn"] > 0.1


def test_gemma3_config(g3):
    c = g3.config
    assert c.layer_types.count("full_attention") == 1 and c.layer_types[5] == "full_attention"
    assert c.rope_parameters["full_attention"]["factor"] == 8.0
    assert c.rope_parameters["sliding_attention"]["rope_theta"] == 10000.0


def _expected_names(model, gemma3):
    names = ["token_embd.weight", "output_norm.weight"]
    per_layer = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "post_attention_norm",
                 "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm"]
    if gemma3:
        per_layer += ["attn_q_norm", "attn_k_norm"]
    for i in range(model.config.num_hidden_layers):
        names += [f"blk.{i}.{n}.weight" for n in per_layer]
    return sorted(names)


def _hf_reference(model):
    """gguf name -> expected float32 values (HF weights, norms + 1), from the HF state dict."""
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    ref = {"token_embd.weight": sd["model.embed_tokens.weight"],
           "output_norm.weight": sd["model.norm.weight"] + 1}
    hf = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj",
          "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
          "attn_output": "self_attn.o_proj", "post_attention_norm": "post_attention_layernorm",
          "ffn_norm": "pre_feedforward_layernorm", "ffn_gate": "mlp.gate_proj",
          "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
          "post_ffw_norm": "post_feedforward_layernorm", "attn_q_norm": "self_attn.q_norm",
          "attn_k_norm": "self_attn.k_norm"}
    for i in range(model.config.num_hidden_layers):
        for g, h in hf.items():
            key = f"model.layers.{i}.{h}.weight"
            if key in sd:
                ref[f"blk.{i}.{g}.weight"] = sd[key] + (1 if "norm" in g else 0)
    return ref


def _values(t):
    """float32 values of a ReaderTensor, in numpy (HF) shape."""
    shape = tuple(int(d) for d in t.shape[::-1])
    return gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(shape)


@pytest.mark.parametrize("arch,dtype", [("gemma2", "F32"), ("gemma2", "F16"), ("gemma2", "BF16"),
                                        ("gemma3", "F32"), ("gemma3", "Q8_0"),
                                        ("gemma2", "Q4_K")])
def test_written_gguf_matches_hf(tmp_path, g2, g3, arch, dtype):
    model = g2 if arch == "gemma2" else g3
    path = models.write_gguf_from_hf(model, tmp_path / "m.gguf", dtype=dtype, chat_template=True)
    r = gguf.GGUFReader(path)
    ref = _hf_reference(model)
    assert sorted(t.name for t in r.tensors) == _expected_names(model, arch == "gemma3")
    assert "output.weight" not in ref
    for t in r.tensors:
        want = ref[t.name]
        assert tuple(int(d) for d in t.shape) == want.shape[::-1], t.name
        assert t.tensor_type.name == (dtype if want.ndim == 2 else "F32"), t.name
        got = _values(t)
        if t.tensor_type.name == "F32":
            np.testing.assert_array_equal(got, want, err_msg=t.name)
        elif dtype == "F16":
            np.testing.assert_array_equal(got, want.astype(np.float16).astype(np.float32))
        elif dtype == "BF16":
            np.testing.assert_allclose(got, want, rtol=2.0 ** -8, atol=0, err_msg=t.name)
        elif dtype == "Q4_K":
            rel = np.sqrt(((got - want) ** 2).mean() / (want ** 2).mean())
            assert 0 < rel < 0.12, t.name
        else:   # Q8_0: blocks of 32, step amax/127 (as fp16): error at most half a step
            amax = np.abs(want.reshape(-1, 32)).max(axis=1, keepdims=True)
            err = np.abs((got - want).reshape(-1, 32))
            assert (err <= amax / 127 * 0.5 + amax * 2.0 ** -10 + 1e-7).all(), t.name
    _check_metadata(r, model.config, arch, dtype)


def _check_metadata(r, c, arch, dtype):
    def val(key):
        return r.fields[key].contents()

    def vtype(key):
        return r.fields[key].types[0].name

    assert val("general.architecture") == arch
    expect_u32 = {"context_length": c.max_position_embeddings, "embedding_length": c.hidden_size,
                  "block_count": c.num_hidden_layers, "feed_forward_length": c.intermediate_size,
                  "attention.head_count": c.num_attention_heads,
                  "attention.head_count_kv": c.num_key_value_heads,
                  "attention.key_length": c.head_dim, "attention.value_length": c.head_dim,
                  "attention.sliding_window": c.sliding_window}
    for k, v in expect_u32.items():
        assert val(f"{arch}.{k}") == v and vtype(f"{arch}.{k}") == "UINT32", k
    assert val(f"{arch}.attention.layer_norm_rms_epsilon") == pytest.approx(c.rms_norm_eps)
    assert val("general.file_type") == models.FILE_TYPES[dtype]
    if arch == "gemma2":
        assert val("gemma2.attn_logit_softcapping") == c.attn_logit_softcapping
        assert val("gemma2.final_logit_softcapping") == c.final_logit_softcapping
    else:
        assert val("gemma3.rope.freq_base") == 1e6
        assert val("gemma3.rope.scaling.type") == "linear"
        assert val("gemma3.rope.scaling.factor") == 8.0
        assert "gemma3.attn_logit_softcapping" not in r.fields
    v = models.tiny_vocab()
    assert val("tokenizer.ggml.model") == "llama"
    assert val("tokenizer.ggml.tokens") == v.tokens
    assert val("tokenizer.ggml.scores") == pytest.approx(v.scores)
    assert val("tokenizer.ggml.token_type") == v.types
    assert r.fields["tokenizer.ggml.token_type"].types == [gguf.GGUFValueType.ARRAY,
                                                           gguf.GGUFValueType.INT32]
    assert val("tokenizer.ggml.bos_token_id") == 2 and val("tokenizer.ggml.eos_token_id") == 1
    assert val("tokenizer.ggml.add_bos_token") is True
    assert val("tokenizer.ggml.add_space_prefix") is False
    assert "<start_of_turn>" in val("tokenizer.chat_template")


@pytest.mark.llama
@pytest.mark.parametrize("arch", ["gemma2", "gemma3"])
def test_llama_cpp_runs_the_written_file_like_transformers(tmp_path, g2, g3, arch):
    """The conversion is right if llama.cpp, reading our file, computes HF's logits."""
    llama_cpp = pytest.importorskip("llama_cpp")
    model = g2 if arch == "gemma2" else g3
    path = models.write_gguf_from_hf(model, tmp_path / "m.gguf", dtype="F32")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False,
                          n_threads=2)
    llm.eval(TOKENS)                       # 41 tokens: past the sliding window of 16
    got = np.array(llm.scores[:len(TOKENS)])
    ref = models.hf_logits(model, TOKENS)
    assert np.abs(got - ref).max() < 0.1


# ---- random-weight models with real layouts (pygemma.synth) -----------------------------------

from pygemma import synth  # noqa: E402
from pygemma.quant_rules import tensor_types  # noqa: E402

SMALL = dict(arch="gemma2", n_layer=3, hidden=512, n_head=4, n_head_kv=2, head_dim=128,
             ffn=1024, vocab=1500, context=1024, sliding_window=64)
SMALL3 = dict(SMALL, arch="gemma3", hidden=384, ffn=768, rope_base=1e6, rope_scale=8.0)


@pytest.mark.parametrize("gtype", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K",
                                   "Q4_K", "Q5_K", "Q6_K", "F16", "BF16", "F32"])
def test_random_blocks_have_the_intended_scale(gtype):
    rng = np.random.default_rng(5)
    ncols, nrows, sigma = 512, 64, 0.03
    raw = synth.random_rows(gtype, nrows, ncols, sigma, rng)
    assert raw.dtype == np.uint8
    vals = gguf.quants.dequantize(raw.reshape(nrows, -1), gguf.GGMLQuantizationType[gtype])
    assert vals.shape == (nrows, ncols) and np.isfinite(vals).all()
    v64 = vals.astype(np.float64)
    assert abs(np.sqrt((v64 ** 2).mean()) / sigma - 1) < 0.05
    # rows of 2 super-blocks vary with their random sub-scales, but not wildly
    assert np.all(np.abs(np.sqrt((v64 ** 2).mean(axis=1)) / sigma - 1) < 0.5)
    assert abs(vals.mean()) < 0.15 * sigma     # Q4_0's codes -8..7 lean by half a step


def _read(path):
    return gguf.GGUFReader(path)


@pytest.mark.parametrize("spec,mix,pure", [(SMALL, "Q4_K_M", False), (SMALL, "Q8_0", True),
                                           (SMALL3, "Q4_K_M", False), (SMALL3, "F16", False)])
def test_synthetic_model_file(tmp_path, spec, mix, pure):
    path = synth.write_synthetic(tmp_path / "s.gguf", spec, mix, seed=3, n_threads=2,
                                 progress=False, pure=pure)
    r = _read(path)
    expect = synth.tensor_list(spec)
    types = tensor_types([(n, s, "F32") for n, s in expect], mix, spec["n_layer"],
                         spec["n_head"], spec["n_head_kv"], pure=pure)
    assert [t.name for t in r.tensors] == [n for n, _ in expect]
    for t, (name, shape), (ty, _) in zip(r.tensors, expect, types):
        assert tuple(int(d) for d in t.shape) == shape
        assert t.tensor_type.name == ty, name
        vals = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        assert np.isfinite(vals).all(), name
        if len(shape) == 2:
            rms = float(np.sqrt((vals.astype(np.float64) ** 2).mean()))
            assert abs(rms * np.sqrt(shape[0]) - 1) < 0.1, name
        else:
            assert abs(float(vals.mean()) - 1) < 0.1, name     # norms store (1 + w)
    a = spec["arch"]

    def val(k):
        return r.fields[k].contents()

    assert val("general.architecture") == a
    assert val(f"{a}.block_count") == spec["n_layer"]
    assert val(f"{a}.embedding_length") == spec["hidden"]
    assert val(f"{a}.attention.head_count_kv") == spec["n_head_kv"]
    assert val(f"{a}.attention.key_length") == spec["head_dim"]
    assert val("general.file_type") == {"Q4_K_M": 15, "Q8_0": 7, "F16": 1}[mix]
    if a == "gemma2":
        assert val("gemma2.attn_logit_softcapping") == 50.0
    else:
        assert val("gemma3.rope.scaling.factor") == 8.0
    tokens = val("tokenizer.ggml.tokens")
    ttypes = val("tokenizer.ggml.token_type")
    assert len(tokens) == spec["vocab"] == len(set(tokens))
    assert tokens[:3] == ["<pad>", "<eos>", "<bos>"]
    assert ttypes[tokens.index("<end_of_turn>")] == 3
    byte0 = tokens.index("<0x00>")
    assert tokens[byte0 + 255] == "<0xFF>" and set(ttypes[byte0:byte0 + 256]) == {6}
    # every generated piece extends a shorter piece, so merges can build it
    ids = set(tokens)
    assert all(len(p) == 1 or p[:-1] in ids for p, ty in zip(tokens, ttypes) if ty == 1)


def test_synthetic_files_do_not_depend_on_thread_count(tmp_path):
    a = synth.write_synthetic(tmp_path / "a.gguf", SMALL, "Q4_0", seed=9, n_threads=1,
                              progress=False)
    b = synth.write_synthetic(tmp_path / "b.gguf", SMALL, "Q4_0", seed=9, n_threads=3,
                              progress=False)
    c = synth.write_synthetic(tmp_path / "c.gguf", SMALL, "Q4_0", seed=10, n_threads=1,
                              progress=False)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_synth_cli_shape_override(tmp_path, capsys):
    out = tmp_path / "cli.gguf"
    assert synth.main(["--shape", "2b", "--type", "Q4_0", "--layers", "1", "--vocab", "1000",
                       "-o", str(out)]) == 0
    r = _read(out)
    assert r.fields["gemma2.block_count"].contents() == 1
    assert r.fields["gemma2.embedding_length"].contents() == 2304
    assert "%" in capsys.readouterr().err          # the progress line


@pytest.mark.llama
def test_llama_cpp_runs_a_synthetic_model(tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    path = synth.write_synthetic(tmp_path / "s.gguf", dict(SMALL, vocab=2000), "Q4_K_M",
                                 progress=False)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False,
                          n_threads=2)
    toks = llm.tokenize(b"hello world, the answer is 42")
    assert llm.detokenize(toks) == b"hello world, the answer is 42"
    llm.eval(toks)
    logits = np.array(llm.scores[:len(toks)])
    assert np.isfinite(logits).all() and 0.1 < logits.std() < 10
