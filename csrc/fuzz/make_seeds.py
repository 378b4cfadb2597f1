"""Write the fuzzers' seed corpora (csrc/fuzz/corpus/<harness>/), small valid inputs that
reach deep into each parser.  Run from the repository root:

    python csrc/fuzz/make_seeds.py

GGUF files come from the project's own writer (pygemma/gguf_writer.py): a tiny Gemma 3 and
a tiny Gemma 2 model (1 layer, 8-wide, 24-token vocabulary) that load all the way through
the model loader, and metadata-heavy files (every value type, nested and string arrays,
quantized tensors, custom alignment, GGUF v2).  Llamafiles are made by tests/gguf_samples.py's
two ZIP builders (llamafile's layout by hand, and Python's zipfile).  The detokenizer's ids
come from the default model's tokenizer when it is installed.  Output is deterministic.
"""
import os
import struct
import sys
import tempfile
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from pygemma.gguf_writer import GGUFWriter, ValueType  # noqa: E402

OUT = os.path.join(ROOT, "csrc", "fuzz", "corpus")

# A vocabulary with every token type: control, unknown, user-defined, unused, byte, normal.
TINY_VOCAB = (["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<unused0>",
               "\n\n", "<0x41>", "<0x0A>", "<0xFF>", "\u2581", "a", "b", "\u2581a", "ab", "\u2581ab",
               "\u00e9", "\n", "\u2581\u2581", "<mask>", "ba", "aa", "\u2581b"])
TINY_TYPES = [3, 3, 3, 2, 3, 3, 5, 4, 6, 6, 6] + [1] * 9 + [4, 1, 1, 1]


def gguf_bytes(build, alignment=32):
    """The bytes of the GGUF that build(writer) declares and writes."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.gguf")
        with GGUFWriter(path, alignment=alignment) as w:
            build(w)
        with open(path, "rb") as f:
            return f.read()


def tiny_model(arch="gemma3", dtype="F32"):
    D, F, H, HKV, HD, L, V = 8, 16, 2, 1, 4, 1, len(TINY_VOCAB)
    rng = np.random.default_rng(0)
    np_type = {"F32": np.float32, "F16": np.float16}[dtype]

    def build(w):
        w.add("general.architecture", arch)
        for key, v in [("embedding_length", D), ("block_count", L), ("feed_forward_length", F),
                       ("attention.head_count", H), ("attention.head_count_kv", HKV),
                       ("attention.key_length", HD), ("attention.value_length", HD),
                       ("context_length", 64), ("attention.sliding_window", 16)]:
            w.add(f"{arch}.{key}", v, ValueType.UINT32)
        w.add(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6, ValueType.FLOAT32)
        w.add(f"{arch}.rope.freq_base", 10000.0, ValueType.FLOAT32)
        w.add("tokenizer.ggml.model", "llama")
        w.add("tokenizer.ggml.tokens", TINY_VOCAB, ValueType.ARRAY, ValueType.STRING)
        w.add("tokenizer.ggml.scores", np.arange(0, -len(TINY_VOCAB), -1, dtype=np.float32),
              ValueType.ARRAY, ValueType.FLOAT32)
        w.add("tokenizer.ggml.token_type", np.asarray(TINY_TYPES, np.int32), ValueType.ARRAY, ValueType.INT32)
        for key, v in [("bos_token_id", 2), ("eos_token_id", 1), ("unknown_token_id", 3),
                       ("padding_token_id", 0)]:
            w.add(f"tokenizer.ggml.{key}", v, ValueType.UINT32)
        w.add("tokenizer.ggml.add_bos_token", True)
        w.add("tokenizer.ggml.add_space_prefix", arch == "gemma2")
        tensors = [("token_embd.weight", (D, V), dtype), ("output_norm.weight", (D,), "F32")]
        for name, shape, t in [("attn_norm", (D,), "F32"), ("attn_q", (D, H * HD), dtype),
                               ("attn_k", (D, HKV * HD), dtype), ("attn_v", (D, HKV * HD), dtype),
                               ("attn_q_norm", (HD,), "F32"), ("attn_k_norm", (HD,), "F32"),
                               ("attn_output", (H * HD, D), dtype), ("post_attention_norm", (D,), "F32"),
                               ("ffn_norm", (D,), "F32"), ("ffn_gate", (D, F), dtype), ("ffn_up", (D, F), dtype),
                               ("ffn_down", (F, D), dtype), ("post_ffw_norm", (D,), "F32")]:
            if arch == "gemma2" and name in ("attn_q_norm", "attn_k_norm"):
                continue
            tensors.append((f"blk.0.{name}.weight", shape, t))
        for name, shape, t in tensors:
            w.add_tensor_info(name, shape, t)
        for name, shape, t in tensors:
            arr = rng.standard_normal(tuple(reversed(shape))).astype({"F32": np.float32}.get(t, np_type))
            w.write_tensor(name, arr)
    return gguf_bytes(build)


def metadata_file():
    """Every value type, nested arrays, string arrays, quantized tensors, alignment 64."""
    def build(w):
        for i, vt in enumerate(["UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
                                "UINT64", "INT64", "FLOAT64"]):
            w.add(f"t.{vt.lower()}", i + 1, vt)
        w.add("t.bool", True)
        w.add("t.str", "h\u00e9llo\0x")
        w.add("t.strs", ["a", "", "\u2581b"], ValueType.ARRAY, ValueType.STRING)
        w.add("t.nested", [[1, 2], [], [3]], ValueType.ARRAY, (ValueType.ARRAY, ValueType.INT16))
        w.add("t.nested_strs", [["x"], ["y", "z"]], ValueType.ARRAY, (ValueType.ARRAY, ValueType.STRING))
        w.add("t.f64s", [0.5, -1.0], ValueType.ARRAY, ValueType.FLOAT64)
        w.add("t.bools", [True, False], ValueType.ARRAY, ValueType.BOOL)
        for name, shape, t in [("q8", (32, 2), "Q8_0"), ("q4k", (256,), "Q4_K"), ("h", (3, 1, 1, 2), "F16"),
                               ("bf", (4,), "BF16"), ("q6k", (256, 1), "Q6_K")]:
            w.add_tensor_info(name, shape, t)
        for name, _, _, _, nbytes in w.tensor_infos:
            w.write_tensor(name, bytes(range(256)) * (nbytes // 256) + bytes(nbytes % 256))
    return gguf_bytes(build, alignment=64)


def empty_file():
    return gguf_bytes(lambda w: None)


def as_v2(data):
    return data[:4] + struct.pack("<I", 2) + data[8:]


def write(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gguf_seeds():
    files = {"tiny_gemma3": tiny_model("gemma3"), "tiny_gemma2_f16": tiny_model("gemma2", "F16"),
             "metadata": metadata_file(), "empty": empty_file()}
    files["tiny_gemma3_v2"] = as_v2(files["tiny_gemma3"])
    for name, data in files.items():
        write("gguf", name + ".gguf", data)
    return files


def zip_seeds(ggufs):
    from gguf_samples import zip_by_hand, zip_with_python
    prefix = b"MZqFpD='\n\n#!/bin/sh\nexec \"$0\" \"$@\"\n\x7fELF\x02\x01\x01"
    member = ggufs["tiny_gemma3"]
    small = ggufs["empty"]
    write("zip", "llamafile.zip", zip_by_hand([("share/readme", b"x" * 16), ("gemma.gguf", member)],
                                              prefix=prefix, page=64))
    write("zip", "llamafile64.zip", zip_by_hand([("m.gguf", small)], prefix=prefix, zip64=True, page=64))
    write("zip", "relative.zip", zip_by_hand([("m.gguf", small)], prefix=prefix, page=64, absolute=False))
    write("zip", "python.zip", zip_with_python([("a.ggufx", b"not this"), ("Model.GGUF", small)], prefix=prefix))
    write("zip", "python64.zip", zip_with_python([("m.gguf", small)], prefix=b"", force_zip64=True))
    write("zip", "deflated.zip", zip_with_python([("m.gguf", small)], prefix=b"",
                                                 compression=zipfile.ZIP_DEFLATED))


TEXTS = {
    "english.txt": "Hello, world! The quick brown fox jumps over the lazy dog.",
    "chat.txt": "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n",
    "specials.txt": "<pad><eos><bos><unk><mask><unused0><unused99><start_of_image><end_of_image>[@BOS@]",
    "byte_tokens.txt": "<0x41><0xFF><0x0A> <0x> <0xZZ>",
    "spaces.txt": "  two  spaces\tand\ttabs\n\n\nnewlines    four\r\n\u2581literal\u2581\u2581",
    "unicode.txt": "caf\u00e9 na\u00efve \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4 \u0645\u0631\u062d\u0628\u0627 "
                   "\U0001f600\U0001f44d\U0001f3fd e\u0301 \u200d\ufeff",
    "code.txt": "def f(x):\n    return x ** 2  # <table><tr><td>\n",
    "html.txt": "<html><body><table><tr><td>a</td></tr></table><br/></body></html>",
}
BINARY_TEXTS = {
    "invalid_utf8.bin": b"\xff\xfe\xc3(\xa0\xa1\xe2\x28\xa1\xf0\x90\x28\xbc\xed\xa0\x80\xc0\xaf \xff <bos>",
    "truncated.bin": "\u65e5\u672c".encode()[:-1] + b" " + "\U0001f600".encode()[:3],
    "nul.bin": b"a\0b\0\0<start\0_of_turn>",
    "empty.bin": b"",
}


def text_seeds():
    for name, text in TEXTS.items():
        write("tokenize", name, text.encode())
    for name, data in BINARY_TEXTS.items():
        write("tokenize", name, data)


def ids_bytes(ids):
    return struct.pack(f"<{len(ids)}i", *ids)


def detokenize_seeds():
    n_vocab = 262144
    write("detokenize", "out_of_range.bin", ids_bytes([-1, n_vocab, 2**31 - 1, -2**31, n_vocab - 1, 0]))
    write("detokenize", "specials.bin", ids_bytes(list(range(0, 16)) + list(range(105, 110))))
    write("detokenize", "bytes.bin", ids_bytes(list(range(236, 236 + 12))))
    try:
        import pygemma
        path = pygemma.model.default_model_path()
    except Exception:       # noqa: BLE001 -- the tokenizer seeds are optional
        path = None
    if path is None:
        print("default model not installed: detokenizer seeds from real text skipped")
        return
    from pygemma.gguf_file import GGUFFile
    from pygemma.tokenizer import Tokenizer
    with GGUFFile(str(path)) as g:
        tok = Tokenizer.from_gguf_metadata(g.metadata)
    for name in ("chat.txt", "unicode.txt", "spaces.txt"):
        ids = tok.encode(TEXTS[name], add_bos=True, special=True)
        write("detokenize", name.replace(".txt", ".ids"), ids_bytes(ids))
    write("detokenize", "invalid_utf8.ids", ids_bytes(tok.encode(BINARY_TEXTS["invalid_utf8.bin"],
                                                                 add_bos=False, special=False)))


# fuzz_request.py: the first byte picks the endpoint (chat, completions, tokenize, detokenize),
# the rest is the body.
REQUESTS = {
    "chat.json": (0, {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                                                 {"role": "assistant", "content": "Hello."},
                                                 {"role": "user", "content": "again"}],
                      "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "seed": 7,
                      "max_tokens": 4, "stop": ["\n", "END"], "presence_penalty": 0.5,
                      "frequency_penalty": 0.5, "repeat_penalty": 1.1, "logprobs": True,
                      "top_logprobs": 3, "stream": True, "stream_options": {"include_usage": True},
                      "response_format": {"type": "json_object"}}),
    "chat_edges.json": (0, {"messages": [{"role": "user", "content": "x"}], "temperature": 1e39,
                            "repeat_penalty": 1e-46, "seed": 2 ** 64, "max_tokens": 1.0, "n": 1}),
    "completion.json": (1, {"prompt": "Once upon a time", "max_tokens": 4, "logprobs": 2, "echo": False,
                            "best_of": 1, "penalty_last_n": -1, "mirostat": 0}),
    "completion_ids.json": (1, {"prompt": [[2, 9259, 1902]], "max_tokens": 2, "temperature": 0}),
    "tokenize.json": (2, {"content": "<start_of_turn>user\nhi", "add_special": True, "with_pieces": True}),
    "detokenize.json": (3, {"tokens": [2, 105, 2364, 107, -1, 262144]}),
}


def request_seeds():
    import json
    for name, (endpoint, body) in REQUESTS.items():
        write("request", name, bytes([endpoint]) + json.dumps(body).encode())


def main():
    request_seeds()
    ggufs = gguf_seeds()
    zip_seeds(ggufs)
    text_seeds()
    detokenize_seeds()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"seed corpora in {os.path.relpath(OUT, ROOT)}: {total} bytes")


if __name__ == "__main__":
    main()
