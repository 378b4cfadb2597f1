"""Which GGML type each tensor gets in a llama.cpp quantization mix ("Q4_K_M", ...).

The rules are those of llama.cpp's llama_tensor_get_type (src/llama-quant.cpp) for dense
(non-MoE) models and the mixes below; they depend only on tensor names, shapes and the
attention geometry, so they serve both the quantizer and the synthetic-model generator.
"""
import re

from .gguf_writer import ggml_type, type_name

# mix name -> (llama.cpp LLAMA_FTYPE number, default tensor type)
FTYPES = {
    "F32": (0, "F32"), "F16": (1, "F16"), "BF16": (32, "BF16"),
    "Q4_0": (2, "Q4_0"), "Q4_1": (3, "Q4_1"), "Q5_0": (8, "Q5_0"), "Q5_1": (9, "Q5_1"),
    "Q8_0": (7, "Q8_0"), "Q2_K": (10, "Q2_K"),
    "Q3_K_S": (11, "Q3_K"), "Q3_K_M": (12, "Q3_K"), "Q3_K_L": (13, "Q3_K"),
    "Q4_K_S": (14, "Q4_K"), "Q4_K_M": (15, "Q4_K"),
    "Q5_K_S": (16, "Q5_K"), "Q5_K_M": (17, "Q5_K"), "Q6_K": (18, "Q6_K"),
}
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}   # as llama-quantize accepts
FLOAT_TYPES = ("F32", "F16", "BF16")

# when a row length is not a multiple of the block size (newer llama.cpp's table)
_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}

# names of tensors llama.cpp never quantizes, although 2-D and named "...weight"
_KEEP = ("_norm.weight", "ffn_gate_inp.weight", "altup", "laurel", "per_layer_model_proj",
         "position_embd.weight", "token_types.weight", "ssm_conv1d", "attn_rel_b.weight")


def mix_name(ftype):
    """Canonical mix name ("Q4_K_M") of a name, an alias ("q4_k") or an LLAMA_FTYPE number."""
    if isinstance(ftype, int):
        for name, (num, _) in FTYPES.items():
            if num == ftype:
                return name
        raise ValueError(f"unsupported llama.cpp file type {ftype}")
    name = ALIASES.get(ftype.upper(), ftype.upper())
    if name not in FTYPES:
        raise ValueError(f"unknown quantization type {ftype!r}; choose one of "
                         f"{', '.join(FTYPES)}")
    return name


def allows_quantization(name, shape):
    """llama.cpp quantizes only 2-D+ tensors named '...weight' that are not norms etc."""
    return (len(shape) >= 2 and name.endswith("weight")
            and not any(k in name for k in _KEEP))


def _category(name):
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for key, cat in (("attn_qkv.weight", "attn_v"), ("attn_kv_b.weight", "attn_v"),
                     ("attn_v.weight", "attn_v"), ("attn_k.weight", "attn_k"),
                     ("attn_q.weight", "attn_q"), ("attn_output.weight", "attn_output"),
                     ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"), ("ffn_down", "ffn_down")):
        if key in name:
            return cat
    return "other"


def _layer_sort_key(name):
    """llama.cpp visits tensors sorted by layer number, then name (non-layer tensors first)."""
    m = re.match(r"blk\.(\d+)\.", name)
    return (int(m.group(1)) if m else -1, name)


def _use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _is_quantized(t):
    return t not in FLOAT_TYPES


def tensor_types(tensors, mix, n_layer, n_head, n_head_kv, pure=False, has_imatrix=False):
    """Target type name of every tensor for `mix`.

    tensors: [(name, shape in GGUF order (ne0 = row length), source type name)].
    Returns [(type name, fell_back)] in the same order; fell_back marks tensors whose row
    length forced another type than the rules chose."""
    mix = mix_name(mix)
    default = FTYPES[mix][1]
    n_gqa = n_head // n_head_kv if n_head_kv else 1
    names = [t[0] for t in tensors]
    tied = "output.weight" not in names
    n_attn_v = sum(_category(n) == "attn_v" for n in names)
    counters = {"attn_v": 0, "ffn_down": 0}
    result = {}
    for idx in sorted(range(len(tensors)), key=lambda i: _layer_sort_key(names[i])):
        name, shape, src = tensors[idx]
        src = type_name(src)
        if not allows_quantization(name, shape):
            result[idx] = (src, False)
            continue
        if not _is_quantized(default):
            result[idx] = (default, False)
            continue
        new = default
        if not pure:
            new = _mix_rule(name, shape, mix, default, tied, n_gqa, n_attn_v, n_layer,
                            counters, has_imatrix)
        result[idx] = _fallback(new, int(shape[0]))
    return [result[i] for i in range(len(tensors))]


def _mix_rule(name, shape, mix, default, tied, n_gqa, n_attn_v, n_layer, counters, has_imatrix):
    cat = _category(name)
    new = default
    if cat == "output" or (tied and cat == "token_embd"):
        if int(shape[0]) % _block(default) != 0:
            new = "Q8_0"
        elif default != "Q8_0":
            new = "Q6_K"
    elif cat == "attn_v":
        i = counters["attn_v"]
        if mix == "Q2_K":
            new = "Q4_K" if n_gqa >= 4 else "Q3_K"
        elif mix == "Q3_K_M":
            new = "Q5_K" if i < 2 else "Q4_K"
        elif mix == "Q3_K_L":
            new = "Q5_K"
        elif mix in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n_attn_v):
            new = "Q6_K"
        elif mix == "Q4_K_S" and i < 4:
            new = "Q5_K"
        counters["attn_v"] += 1
    elif cat == "ffn_down":
        i, n = counters["ffn_down"], n_layer
        if mix == "Q2_K":
            new = "Q3_K"
        elif mix == "Q3_K_M":
            new = "Q5_K" if i < n // 16 else "Q4_K"
        elif mix == "Q3_K_L":
            new = "Q5_K"
        elif mix == "Q4_K_M":
            if _use_more_bits(i, n):
                new = "Q6_K"
        elif mix == "Q5_K_M" and _use_more_bits(i, n):
            new = "Q6_K"
        elif mix == "Q4_K_S" and i < n // 8:
            new = "Q5_K"
        elif mix in ("Q4_0", "Q5_0") and has_imatrix and i < n // 8:
            new = "Q4_1" if mix == "Q4_0" else "Q5_1"
        counters["ffn_down"] += 1
    elif cat == "attn_output":
        new = {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(mix, new)
    return new


def _block(t):
    from ._ffi import lib
    return int(lib.pg_type_block_size(ggml_type(t)))


def _fallback(t, ncols):
    """(type, fell_back): a type whose block size divides the row length."""
    if ncols % _block(t) == 0:
        return t, False
    alt = _FALLBACK.get(t, "F16")
    if ncols % _block(alt) != 0:
        alt = "F16"
    return alt, True
