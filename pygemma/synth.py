"""Random-weight GGUF models with the real Gemma shapes, for speed work.

    python -m pygemma.synth --shape 9b --type Q4_K_M -o gemma2-9b-synth.gguf

Tensors are written directly in their target type: random quantized blocks whose fp16 scale
fields are set so that every weight matrix has a standard deviation of about
1/sqrt(row length), which keeps activations finite through all layers.  Nothing is ever
quantized from floats, so a 9B file takes about as long as the disk needs to write it.
Generation is split into chunks of rows over threads (numpy releases the GIL), each chunk
seeded from (seed, tensor, chunk), so a file is reproducible whatever the thread count.
"""
import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .gguf_writer import GGUFWriter, tensor_nbytes
from .progress import ProgressLine
from .quant_rules import FTYPES, mix_name, tensor_types

# name -> architecture hyper-parameters (those of the released checkpoints)
SHAPES = {
    "2b": dict(arch="gemma2", n_layer=26, hidden=2304, n_head=8, n_head_kv=4, head_dim=256,
               ffn=9216, vocab=256000, context=8192, sliding_window=4096),
    "9b": dict(arch="gemma2", n_layer=42, hidden=3584, n_head=16, n_head_kv=8, head_dim=256,
               ffn=14336, vocab=256000, context=8192, sliding_window=4096),
    "27b": dict(arch="gemma2", n_layer=46, hidden=4608, n_head=32, n_head_kv=16, head_dim=128,
                ffn=36864, vocab=256000, context=8192, sliding_window=4096),
    "gemma3-1b": dict(arch="gemma3", n_layer=26, hidden=1152, n_head=4, n_head_kv=1,
                      head_dim=256, ffn=6912, vocab=262144, context=32768, sliding_window=512,
                      rope_base=1e6),
    "gemma3-4b": dict(arch="gemma3", n_layer=34, hidden=2560, n_head=8, n_head_kv=4,
                      head_dim=256, ffn=10240, vocab=262144, context=131072,
                      sliding_window=1024, rope_base=1e6, rope_scale=8.0),
}

# Per type: byte offsets of the fp16 scale fields in a block, and the RMS of a dequantized
# random block per unit of `d` (derived from the uniform distribution of the random quant
# bits and sub-scales).  The min field is set to m_coef * d so that blocks centre on zero
# (Q4_1/Q5_1 add the min; the K-quants subtract dmin times a sub-block min).
#   type: (d offset, min offset or None, m_coef, rms per unit d)
_BLOCK_FIELDS = {
    "Q4_0": (0, None, 0.0, 4.637),
    "Q4_1": (0, 2, -7.5, 4.610),
    "Q5_0": (0, None, 0.0, 9.247),
    "Q5_1": (0, 2, -15.5, 9.233),
    "Q8_0": (0, None, 0.0, 73.90),
    "Q2_K": (80, 82, 1.5, 13.87),
    "Q3_K": (108, None, 0.0, 43.34),
    "Q4_K": (0, 2, 7.5, 258.3),
    "Q5_K": (0, 2, 15.5, 526.9),
    "Q6_K": (208, None, 0.0, 1365.7),
}

CHUNK_BYTES = 8 << 20


def tensor_list(shape):
    """[(name, GGUF-order shape)] of a Gemma 2 / Gemma 3 model, in llama.cpp's file order."""
    h, q, kv, f = shape["hidden"], shape["n_head"] * shape["head_dim"], \
        shape["n_head_kv"] * shape["head_dim"], shape["ffn"]
    out = [("token_embd.weight", (h, shape["vocab"]))]
    for i in range(shape["n_layer"]):
        p = f"blk.{i}."
        out += [(p + "attn_norm.weight", (h,)), (p + "attn_q.weight", (h, q)),
                (p + "attn_k.weight", (h, kv)), (p + "attn_v.weight", (h, kv))]
        if shape["arch"] == "gemma3":
            out += [(p + "attn_q_norm.weight", (shape["head_dim"],)),
                    (p + "attn_k_norm.weight", (shape["head_dim"],))]
        out += [(p + "attn_output.weight", (q, h)), (p + "post_attention_norm.weight", (h,)),
                (p + "ffn_norm.weight", (h,)), (p + "ffn_gate.weight", (h, f)),
                (p + "ffn_up.weight", (h, f)), (p + "ffn_down.weight", (f, h)),
                (p + "post_ffw_norm.weight", (h,))]
    out.append(("output_norm.weight", (h,)))
    return out


def model_metadata(shape, mix, name):
    """(key, value, type) of the architecture keys, as convert_hf_to_gguf.py writes them."""
    a = shape["arch"]
    md = [("general.architecture", a, "STRING"), ("general.type", "model", "STRING"),
          ("general.name", name, "STRING"),
          (f"{a}.context_length", shape["context"], "UINT32"),
          (f"{a}.embedding_length", shape["hidden"], "UINT32"),
          (f"{a}.block_count", shape["n_layer"], "UINT32"),
          (f"{a}.feed_forward_length", shape["ffn"], "UINT32"),
          (f"{a}.attention.head_count", shape["n_head"], "UINT32"),
          (f"{a}.attention.head_count_kv", shape["n_head_kv"], "UINT32"),
          (f"{a}.attention.layer_norm_rms_epsilon", 1e-6, "FLOAT32"),
          (f"{a}.attention.key_length", shape["head_dim"], "UINT32"),
          (f"{a}.attention.value_length", shape["head_dim"], "UINT32"),
          (f"{a}.attention.sliding_window", shape["sliding_window"], "UINT32"),
          ("general.file_type", FTYPES[mix][0], "UINT32"),
          ("general.quantization_version", 2, "UINT32")]
    if a == "gemma2":
        md += [(f"{a}.attn_logit_softcapping", 50.0, "FLOAT32"),
               (f"{a}.final_logit_softcapping", 30.0, "FLOAT32")]
    else:
        md.append((f"{a}.rope.freq_base", shape.get("rope_base", 1e6), "FLOAT32"))
        if shape.get("rope_scale"):
            md += [(f"{a}.rope.scaling.type", "linear", "STRING"),
                   (f"{a}.rope.scaling.factor", shape["rope_scale"], "FLOAT32")]
    return md


# ---- vocabulary ------------------------------------------------------------------------------

_CONTROL = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
_ALPHABET = "etaoinshrdlcumwfgypbvkjxqzETAOINSHRDLCUMWFGYPBVKJXQZ0123456789.,'-"


def synthetic_vocab(n_vocab, seed=0):
    """(tokens, scores, token types) of a Gemma-like vocab of n_vocab tokens: control tokens,
    <unusedN>, <start_of_turn>/<end_of_turn>, the 256 byte tokens, then generated pieces.
    Each piece extends an earlier one by a character, so SentencePiece merges reach every
    piece; earlier (shorter) pieces score higher."""
    tokens = list(_CONTROL) + [f"<unused{i}>" for i in range(101)] + \
        ["<start_of_turn>", "<end_of_turn>"]
    types = [3, 3, 3, 2, 4] + [5] * 101 + [3, 3]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256
    n_special = len(tokens)
    if n_vocab < n_special + 100:
        raise ValueError(f"a synthetic vocab needs at least {n_special + 100} tokens")
    pieces = ["\u2581", "\n", "\u2581\u2581"] + list(_ALPHABET) + ["\u2581" + c for c in _ALPHABET]
    seen = set(pieces)
    rng = np.random.default_rng(seed)
    want = n_vocab - n_special
    while len(pieces) < want:
        n = want - len(pieces)
        parents = (len(pieces) * rng.random(2 * n) ** 2).astype(np.int64)
        chars = rng.integers(0, 26, 2 * n)       # mostly lowercase letters
        for p, c in zip(parents.tolist(), chars.tolist()):
            piece = pieces[p] + _ALPHABET[c]
            if piece not in seen:
                seen.add(piece)
                pieces.append(piece)
                if len(pieces) == want:
                    break
    pieces = pieces[:want]
    scores = [0.0] * n_special + [-float(i) for i in range(len(pieces))]
    return tokens + pieces, scores, types + [1] * len(pieces)


def vocab_metadata(tokens, scores, types):
    return [("tokenizer.ggml.model", "llama", "STRING", None),
            ("tokenizer.ggml.tokens", tokens, "ARRAY", "STRING"),
            ("tokenizer.ggml.scores", np.asarray(scores, np.float32), "ARRAY", "FLOAT32"),
            ("tokenizer.ggml.token_type", np.asarray(types, np.int32), "ARRAY", "INT32"),
            ("tokenizer.ggml.bos_token_id", 2, "UINT32", None),
            ("tokenizer.ggml.eos_token_id", 1, "UINT32", None),
            ("tokenizer.ggml.unknown_token_id", 3, "UINT32", None),
            ("tokenizer.ggml.padding_token_id", 0, "UINT32", None),
            ("tokenizer.ggml.add_bos_token", True, "BOOL", None),
            ("tokenizer.ggml.add_eos_token", False, "BOOL", None),
            ("tokenizer.ggml.add_space_prefix", False, "BOOL", None)]


# ---- random tensor data ----------------------------------------------------------------------

def random_rows(gtype, nrows, ncols, sigma, rng):
    """Raw bytes (uint8 array) of nrows random rows of ncols weights of type `gtype` whose
    dequantized values have RMS about `sigma`, with finite fp16 scales."""
    sigma = float(sigma)     # a Python float keeps float32 arithmetic float32
    if gtype == "F32":
        return (rng.standard_normal((nrows, ncols), np.float32) * sigma).view(np.uint8).ravel()
    if gtype in ("F16", "BF16"):
        x = rng.standard_normal((nrows, ncols), np.float32) * sigma
        if gtype == "F16":
            return x.astype(np.float16).view(np.uint8).ravel()
        return (x.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).ravel()
    d_off, m_off, m_coef, unit_rms = _BLOCK_FIELDS[gtype]
    nbytes = tensor_nbytes((ncols, nrows), gtype)
    blocks = np.frombuffer(rng.bytes(nbytes), np.uint8).copy()
    nblk = nbytes // _block_bytes(gtype)
    blocks = blocks.reshape(nblk, -1)
    d = (sigma / unit_rms) * (0.75 + 0.5 * rng.random(nblk, np.float32))
    blocks[:, d_off:d_off + 2] = d.astype(np.float16).view(np.uint8).reshape(nblk, 2)
    if m_off is not None:
        m = (m_coef * d).astype(np.float16)
        blocks[:, m_off:m_off + 2] = m.view(np.uint8).reshape(nblk, 2)
    return blocks.ravel()


def _block_bytes(gtype):
    from ._ffi import lib
    from .gguf_writer import ggml_type
    return int(lib.pg_type_block_bytes(ggml_type(gtype)))


def _tensor_chunks(pool, n_threads, gtype, shape, sigma, seed, index):
    """Yield the tensor's bytes in chunks generated on `pool`, in order, a few ahead."""
    ncols = int(shape[0])
    nrows = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    row_bytes = tensor_nbytes((ncols, 1), gtype)
    rows_per = max(1, CHUNK_BYTES // row_bytes)
    starts = list(range(0, nrows, rows_per))

    def make(k):
        rng = np.random.default_rng([seed, index, k])
        return random_rows(gtype, min(rows_per, nrows - starts[k]), ncols, sigma, rng)

    ahead = 2 * n_threads
    futures = [pool.submit(make, k) for k in range(min(ahead, len(starts)))]
    for k in range(len(starts)):
        if k + ahead < len(starts):
            futures.append(pool.submit(make, k + ahead))
        yield futures[k].result()
        futures[k] = None


class _Progress:
    def __init__(self, total, enabled):
        self.total, self.done = total, 0
        self.line = ProgressLine() if enabled else None
        self.t0 = time.monotonic()

    def add(self, n, what):
        self.done += n
        if self.line is not None:
            rate = self.done / max(time.monotonic() - self.t0, 1e-9) / 1e6
            self.line.update(self.done / self.total, f"{100 * self.done / self.total:5.1f}%  {self.done / 1e9:6.2f} / "
                                                     f"{self.total / 1e9:.2f} GB  {rate:7.1f} MB/s  {what:<32.32}")

    def counted(self, chunks, what):
        for c in chunks:
            self.add(len(c), what)
            yield c

    def finish(self):
        if self.line is not None:
            self.line.finish()


def write_synthetic(path, shape="2b", mix="Q4_0", seed=0, n_threads=None, progress=True,
                    n_layers=None, vocab_size=None, pure=False, name=None):
    """Write a random-weight Gemma GGUF.  shape: a SHAPES key or a dict like its values;
    mix: a llama.cpp mix ("Q4_K_M", "Q8_0", "F16", ...), or with pure=True the one type of
    every matrix.  n_layers / vocab_size override the shape's.  Returns the path."""
    spec = dict(SHAPES[shape] if isinstance(shape, str) else shape)
    if n_layers:
        spec["n_layer"] = int(n_layers)
    if vocab_size:
        spec["vocab"] = int(vocab_size)
    mix = mix_name(mix)
    tensors = tensor_list(spec)
    types = tensor_types([(n, s, "F32") for n, s in tensors], mix, spec["n_layer"],
                         spec["n_head"], spec["n_head_kv"], pure=pure)
    vocab = synthetic_vocab(spec["vocab"], seed)
    label = name or f"synthetic-{spec['arch']}-{shape if isinstance(shape, str) else 'custom'}"
    n_threads = n_threads or os.cpu_count() or 1
    total = sum(tensor_nbytes(s, t) for (_, s), (t, _) in zip(tensors, types))
    bar = _Progress(total, progress)
    with GGUFWriter(path) as w, ThreadPoolExecutor(n_threads) as pool:
        for key, value, vt in model_metadata(spec, mix, label):
            w.add(key, value, vt)
        for key, value, vt, et in vocab_metadata(*vocab):
            w.add(key, value, vt, et)
        for (tname, s), (t, _) in zip(tensors, types):
            w.add_tensor_info(tname, s, t)
        w.write_header()
        for index, ((tname, s), (t, _)) in enumerate(zip(tensors, types)):
            if len(s) == 1:    # norm weights: Gemma stores (1 + w), near 1
                rng = np.random.default_rng([seed, index])
                w.write_tensor(tname, (1.0 + 0.1 * rng.standard_normal(s[0])).astype(np.float32))
                bar.add(4 * s[0], tname)
                continue
            sigma = 1.0 / np.sqrt(s[0])
            chunks = _tensor_chunks(pool, n_threads, t, s, sigma, seed, index)
            w.write_tensor(tname, bar.counted(chunks, tname))
    bar.finish()
    return path


def main(argv=None):
    p = argparse.ArgumentParser(prog="pygemma synth", description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="2b", choices=sorted(SHAPES))
    p.add_argument("--type", default="Q4_0", help="mix: " + ", ".join(FTYPES))
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--pure", action="store_true", help="every matrix in --type, no mix rules")
    p.add_argument("--layers", type=int, help="override the number of layers")
    p.add_argument("--vocab", type=int, help="override the vocabulary size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    t0 = time.monotonic()
    write_synthetic(a.output, a.shape, a.type, a.seed, a.threads, not a.quiet, a.layers,
                    a.vocab, a.pure)
    if not a.quiet:
        size = os.path.getsize(a.output)
        dt = time.monotonic() - t0
        print(f"wrote {a.output}: {size / 1e9:.2f} GB in {dt:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
