"""Synthetic Gemma models for tests: a tiny SentencePiece-style vocab, small random-weight
transformers models (Gemma 2 / Gemma 3 text), and their conversion to GGUF the way
llama.cpp's convert_hf_to_gguf.py does it.

    model = gemma2_hf_model()                      # transformers Gemma2ForCausalLM, eager attention
    write_gguf_from_hf(model, path, dtype="F16")   # tensors as llama.cpp names them, norms + 1

Weights are drawn larger than a trained model's so that both soft-caps change the logits
(softcap_effect() measures by how much)."""
from dataclasses import dataclass, field

import numpy as np

# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

# SentencePiece token types as stored in tokenizer.ggml.token_type
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Gemma's chat template (instruction-tuned checkpoints)
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

_WORDS = (
    "the a to of and in is it you that he was for on are with as I his they be at one have this "
    "from or by not but what all we can there an which how if will about my who now day hello "
    "world Hello cat dog sat mat Gemma model question answer capital France Paris The What"
).split()
_SUFFIXES = ["ing", "ed", "er", "ly", "es", "tion", "ness", "ment"]
_CHARS = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
          ".,!?'\"-:;()/\n")


@dataclass
class Vocab:
    tokens: list
    scores: list
    types: list
    ids: dict = field(default_factory=dict)   # token text -> id

    def __len__(self):
        return len(self.tokens)

    def metadata(self, chat_template=False):
        """(key, value, value_type, element_type) of the GGUF tokenizer keys."""
        md = [
            ("tokenizer.ggml.model", "llama", "STRING", None),
            ("tokenizer.ggml.tokens", self.tokens, "ARRAY", "STRING"),
            ("tokenizer.ggml.scores", np.asarray(self.scores, np.float32), "ARRAY", "FLOAT32"),
            ("tokenizer.ggml.token_type", np.asarray(self.types, np.int32), "ARRAY", "INT32"),
            ("tokenizer.ggml.bos_token_id", self.ids["<bos>"], "UINT32", None),
            ("tokenizer.ggml.eos_token_id", self.ids["<eos>"], "UINT32", None),
            ("tokenizer.ggml.unknown_token_id", self.ids["<unk>"], "UINT32", None),
            ("tokenizer.ggml.padding_token_id", self.ids["<pad>"], "UINT32", None),
            ("tokenizer.ggml.add_bos_token", True, "BOOL", None),
            ("tokenizer.ggml.add_eos_token", False, "BOOL", None),
            ("tokenizer.ggml.add_space_prefix", False, "BOOL", None),
        ]
        if chat_template:
            text = chat_template if isinstance(chat_template, str) else GEMMA_CHAT_TEMPLATE
            md.append(("tokenizer.chat_template", text, "STRING", None))
        return md


def _word_pieces():
    """Pieces of the common words with every prefix, so that SentencePiece-style merging of
    adjacent pieces can build each word; shorter pieces rank (score) higher."""
    pieces = []
    for w in _WORDS:
        text = "\u2581" + w
        pieces += [text[:n] for n in range(2, len(text) + 1)]
    pieces += ["he", "in", "er", "on", "at", "an", "or", "is", "it", "the", "and", "ion"]
    for s in _SUFFIXES:
        pieces += [s[:n] for n in range(2, len(s) + 1)]
    seen, out = set(), []
    for p in sorted(pieces, key=lambda p: (len(p), pieces.index(p))):
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def tiny_vocab():
    """A small Gemma-like vocab: control tokens, the 256 byte tokens, "▁", single characters,
    common English pieces with descending scores, and two user-defined tokens."""
    tokens, scores, types = [], [], []

    def add(text, score, ttype):
        if text in ids:
            return
        ids[text] = len(tokens)
        tokens.append(text)
        scores.append(float(score))
        types.append(ttype)

    ids = {}
    add("<pad>", 0.0, CONTROL)
    add("<eos>", 0.0, CONTROL)
    add("<bos>", 0.0, CONTROL)
    add("<unk>", 0.0, UNKNOWN)
    add("<mask>", 0.0, USER_DEFINED)
    add("<start_of_turn>", 0.0, CONTROL)
    add("<end_of_turn>", 0.0, CONTROL)
    for b in range(256):
        add(f"<0x{b:02X}>", 0.0, BYTE)
    add("<h1>", 0.0, USER_DEFINED)
    add("</h1>", 0.0, USER_DEFINED)
    rank = 0
    for text in ["\u2581", "\u2581\u2581", "\n\n"] + list(_CHARS) + _word_pieces():
        rank += 1
        add(text, -float(rank), NORMAL)
    return Vocab(tokens, scores, types, ids)


# ---------------------------------------------------------------------------------------------
# Random-weight transformers models
# ---------------------------------------------------------------------------------------------

def _randomize(model, seed, proj_std, embed_std, norm_std):
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = norm_std if "norm" in name else embed_std if "embed" in name else proj_std
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std)
    model.eval()
    return model


def gemma2_hf_model(seed=0, hidden=256, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=64,
                    intermediate=512, vocab_size=None, sliding_window=16, attn_softcap=50.0,
                    final_softcap=30.0, query_pre_attn_scalar=None, rope_theta=10000.0,
                    context_length=512, proj_std=0.4, embed_std=0.5, norm_std=0.3):
    """A small random Gemma2ForCausalLM (eager attention, float32).  query_pre_attn_scalar
    defaults to head_dim (2B/9B); pass hidden // n_heads for the 27B convention."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM
    cfg = Gemma2Config(
        vocab_size=vocab_size or len(tiny_vocab()), hidden_size=hidden,
        intermediate_size=intermediate, num_hidden_layers=n_layers,
        num_attention_heads=n_heads, num_key_value_heads=n_kv_heads, head_dim=head_dim,
        max_position_embeddings=context_length, sliding_window=sliding_window,
        attn_logit_softcapping=attn_softcap, final_logit_softcapping=final_softcap,
        query_pre_attn_scalar=query_pre_attn_scalar or head_dim,
        rope_parameters={"rope_type": "default", "rope_theta": float(rope_theta)},
        tie_word_embeddings=True, attn_implementation="eager", dtype=torch.float32)
    torch.manual_seed(seed)
    return _randomize(Gemma2ForCausalLM(cfg), seed, proj_std, embed_std, norm_std)


def gemma3_hf_model(seed=0, hidden=256, n_layers=7, n_heads=4, n_kv_heads=2, head_dim=64,
                    intermediate=512, vocab_size=None, sliding_window=16, sliding_window_pattern=6,
                    final_softcap=None, query_pre_attn_scalar=None, rope_theta=1e6,
                    rope_local_theta=10000.0, rope_scaling_factor=None, context_length=512,
                    proj_std=0.4, embed_std=0.5, norm_std=0.3):
    """A small random text-only Gemma3ForCausalLM (q/k norms; every 6th layer global).
    rope_scaling_factor=8 gives the global layers linear RoPE scaling, as the 4B+ models."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig
    full = {"rope_type": "default", "rope_theta": float(rope_theta)}
    if rope_scaling_factor:
        full = {"rope_type": "linear", "factor": float(rope_scaling_factor),
                "rope_theta": float(rope_theta)}
    cfg = Gemma3TextConfig(
        vocab_size=vocab_size or len(tiny_vocab()), hidden_size=hidden,
        intermediate_size=intermediate, num_hidden_layers=n_layers,
        num_attention_heads=n_heads, num_key_value_heads=n_kv_heads, head_dim=head_dim,
        max_position_embeddings=context_length, sliding_window=sliding_window,
        sliding_window_pattern=sliding_window_pattern, final_logit_softcapping=final_softcap,
        query_pre_attn_scalar=query_pre_attn_scalar or head_dim,
        rope_parameters={"full_attention": full,
                         "sliding_attention": {"rope_type": "default",
                                               "rope_theta": float(rope_local_theta)}},
        tie_word_embeddings=True, attn_implementation="eager", dtype=torch.float32)
    torch.manual_seed(seed)
    return _randomize(Gemma3ForCausalLM(cfg), seed, proj_std, embed_std, norm_std)


# Named small variants: keyword arguments of gemma2_hf_model / gemma3_hf_model.
# "27b-like" scales queries by hidden / n_heads (64) instead of head_dim (128), as Gemma 2
# 27B does; llama.cpp infers that scaling from the layer count (46), so only pygemma's own
# forward pass can run that variant correctly.
VARIANTS = {
    "gemma2": ("gemma2", {}),
    "gemma2-hd256": ("gemma2", dict(n_heads=2, n_kv_heads=1, head_dim=256)),
    "gemma2-27b-like": ("gemma2", dict(head_dim=128, query_pre_attn_scalar=64)),
    "gemma3": ("gemma3", {}),
    "gemma3-scaled": ("gemma3", dict(rope_scaling_factor=8.0)),
    "gemma3-hd256": ("gemma3", dict(n_heads=2, n_kv_heads=1, head_dim=256)),
}


def hf_model(variant="gemma2", **overrides):
    """The model of a VARIANTS entry (overrides: more keyword arguments)."""
    arch, kwargs = VARIANTS[variant]
    build = gemma2_hf_model if arch == "gemma2" else gemma3_hf_model
    return build(**{**kwargs, **overrides})


def hf_logits(model, token_ids):
    """Logits (n_tokens, vocab) float32 numpy of one sequence."""
    import torch
    with torch.no_grad():
        out = model(torch.tensor([list(token_ids)], dtype=torch.long), use_cache=False)
    return out.logits[0].float().numpy()


def softcap_effect(model, token_ids):
    """How much each soft-cap changes the logits of `token_ids`: {"final": ..., "attn": ...},
    each the largest absolute logit difference with that cap removed (0.0 if not set)."""
    base = hf_logits(model, token_ids)
    effect = {"final": 0.0, "attn": 0.0}
    cfg = model.config
    if cfg.final_logit_softcapping is not None:
        saved, cfg.final_logit_softcapping = cfg.final_logit_softcapping, None
        try:
            effect["final"] = float(np.abs(hf_logits(model, token_ids) - base).max())
        finally:
            cfg.final_logit_softcapping = saved
    attns = [layer.self_attn for layer in model.model.layers]
    if attns and attns[0].attn_logit_softcapping is not None:
        saved = [a.attn_logit_softcapping for a in attns]
        for a in attns:
            a.attn_logit_softcapping = None
        try:
            effect["attn"] = float(np.abs(hf_logits(model, token_ids) - base).max())
        finally:
            for a, s in zip(attns, saved):
                a.attn_logit_softcapping = s
    return effect


# ---------------------------------------------------------------------------------------------
# Conversion to GGUF (what convert_hf_to_gguf.py does for Gemma 2 / Gemma 3)
# ---------------------------------------------------------------------------------------------

_LAYER_NAMES = [   # HF suffix under model.layers.N. -> GGUF name under blk.N.
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.q_norm.weight", "attn_q_norm.weight"),
    ("self_attn.k_norm.weight", "attn_k_norm.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("post_attention_layernorm.weight", "post_attention_norm.weight"),
    ("pre_feedforward_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
    ("post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
]


def gguf_tensors_from_hf(model):
    """[(gguf_name, float32 numpy array in HF (row-major) shape)], norms already + 1."""
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    out = [("token_embd.weight", sd["model.embed_tokens.weight"])]
    for i in range(model.config.num_hidden_layers):
        for hf, gg in _LAYER_NAMES:
            key = f"model.layers.{i}.{hf}"
            if key in sd:
                out.append((f"blk.{i}.{gg}", sd[key]))
    out.append(("output_norm.weight", sd["model.norm.weight"]))
    # Gemma's RMSNorm multiplies by (1 + w); GGUF stores the factor itself
    return [(n, a + 1.0 if n.endswith("norm.weight") else a) for n, a in out]


def _arch_of(model, arch):
    if arch:
        return arch
    mt = model.config.model_type
    if mt == "gemma2":
        return "gemma2"
    if mt in ("gemma3_text", "gemma3"):
        return "gemma3"
    raise ValueError(f"not a Gemma 2/3 model: {mt}")


def hf_metadata(config, arch, file_type, name=None):
    """(key, value, value_type) of the architecture keys convert_hf_to_gguf.py writes."""
    c = config
    md = [
        ("general.architecture", arch, "STRING"),
        ("general.type", "model", "STRING"),
        ("general.name", name or f"tiny-{arch}", "STRING"),
        (f"{arch}.context_length", c.max_position_embeddings, "UINT32"),
        (f"{arch}.embedding_length", c.hidden_size, "UINT32"),
        (f"{arch}.block_count", c.num_hidden_layers, "UINT32"),
        (f"{arch}.feed_forward_length", c.intermediate_size, "UINT32"),
        (f"{arch}.attention.head_count", c.num_attention_heads, "UINT32"),
        (f"{arch}.attention.head_count_kv", c.num_key_value_heads, "UINT32"),
        (f"{arch}.attention.layer_norm_rms_epsilon", c.rms_norm_eps, "FLOAT32"),
        (f"{arch}.attention.key_length", c.head_dim, "UINT32"),
        (f"{arch}.attention.value_length", c.head_dim, "UINT32"),
        ("general.file_type", file_type, "UINT32"),
    ]
    if arch == "gemma2":
        md += [(f"{arch}.attn_logit_softcapping", c.attn_logit_softcapping, "FLOAT32"),
               (f"{arch}.final_logit_softcapping", c.final_logit_softcapping, "FLOAT32"),
               (f"{arch}.attention.sliding_window", c.sliding_window, "UINT32")]
        theta = c.rope_parameters.get("rope_theta", 10000.0)
        if theta != 10000.0:   # llama.cpp's default for gemma2
            md.append((f"{arch}.rope.freq_base", theta, "FLOAT32"))
    else:
        full = c.rope_parameters["full_attention"]
        md.append((f"{arch}.rope.freq_base", full["rope_theta"], "FLOAT32"))
        if c.final_logit_softcapping:
            md.append((f"{arch}.final_logit_softcapping", c.final_logit_softcapping, "FLOAT32"))
        md.append((f"{arch}.attention.sliding_window", c.sliding_window, "UINT32"))
        if full.get("rope_type", "default") == "linear":
            md += [(f"{arch}.rope.scaling.type", "linear", "STRING"),
                   (f"{arch}.rope.scaling.factor", full["factor"], "FLOAT32")]
    md.append(("general.quantization_version", 2, "UINT32"))
    return md


def encode_tensor(arr, type_name):
    """Raw bytes of a float32 numpy array (HF shape; rows = last axis) in GGML type
    `type_name`, quantized by the C core (llama.cpp's algorithms)."""
    from pygemma import quants
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return quants.quantize(type_name.upper(), arr.reshape(-1, arr.shape[-1])).tobytes()


FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
              "Q2_K": 10, "Q3_K": 11, "Q4_K": 14, "Q5_K": 16, "Q6_K": 18, "BF16": 32}


def write_gguf_from_hf(model, path, dtype="F32", arch=None, vocab=None, chat_template=False,
                       name=None, extra_metadata=()):
    """Write `model` (a Gemma2/Gemma3 ForCausalLM) as a GGUF file like convert_hf_to_gguf.py.

    dtype: the type of every 2-D weight ("F32", "F16", "BF16" or a GGML quant type name), or a
    function (gguf_name, hf_shape) -> type name; 1-D tensors (the norms) stay F32.  The vocab
    (default tiny_vocab()) must have config.vocab_size tokens.  extra_metadata: more
    (key, value, value_type, element_type) to write.  Returns the path."""
    from pygemma.gguf_writer import GGUFWriter
    arch = _arch_of(model, arch)
    vocab = vocab or tiny_vocab()
    if len(vocab) != model.config.vocab_size:
        raise ValueError(f"vocab has {len(vocab)} tokens, the model {model.config.vocab_size}")
    type_of = dtype if callable(dtype) else (lambda n, shape: dtype)
    tensors = gguf_tensors_from_hf(model)
    types = [type_of(n, a.shape).upper() if a.ndim >= 2 else "F32" for n, a in tensors]
    matrix_types = [t for (n, a), t in zip(tensors, types) if a.ndim >= 2]
    main = max(set(matrix_types), key=matrix_types.count)
    with GGUFWriter(path) as w:
        for key, value, vt in hf_metadata(model.config, arch, FILE_TYPES.get(main, 0), name):
            w.add(key, value, vt)
        for key, value, vt, et in [*vocab.metadata(chat_template), *extra_metadata]:
            w.add(key, value, vt, et)
        for (n, a), t in zip(tensors, types):
            w.add_tensor_info(n, a.shape[::-1], t)
        w.write_header()
        for (n, a), t in zip(tensors, types):
            w.write_tensor(n, encode_tensor(a, t))
    return path


def random_token_ids(n, vocab, seed):
    """BOS then n - 1 random ordinary token ids (4 and up: past the special ones)."""
    rng = np.random.default_rng(seed)
    return [2] + rng.integers(4, vocab, size=n - 1).tolist()
