"""Seeded mutation fuzzing of the GGUF and ZIP readers through GGUFFile.from_bytes.

Every mutant must either parse -- and then every query must work -- or raise
GGUFError; anything else (another exception, a crash) is a bug.  Mutations
aim at the header, metadata and tensor infos, where the parser lives."""
import random
import struct

import numpy as np
import pytest

from pygemma import GGUFError, GGUFFile, info

from gguf_samples import VT, enc_array, enc_gguf, enc_kv, enc_scalar, enc_str, enc_tensor_info, small_gguf, \
    zip_by_hand

N_MUTANTS = 3000

INTERESTING = [struct.pack("<I", v) for v in (0, 1, 2, 3, 4, 8, 9, 12, 13, 31, 32, 33, 0x7F, 0x80, 0xFF,
                                              0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)]
INTERESTING += [struct.pack("<Q", v) for v in (0, 1, 2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1)]


def nested_sample():
    """Nested arrays, string arrays, several tensor types, custom alignment."""
    inner = [struct.pack("<IQ", VT.INT16, 2) + struct.pack("<hh", 1, -1),
             struct.pack("<IQ", VT.STRING, 1) + enc_str("s")]
    kvs = [enc_kv("general.alignment", VT.UINT32, enc_scalar(VT.UINT32, 64)),
           enc_kv("n", VT.ARRAY, enc_array(VT.ARRAY, inner)),
           enc_kv("s", VT.ARRAY, enc_array(VT.STRING, [enc_str("a"), enc_str(""), enc_str("\u00e9")])),
           enc_kv("f", VT.FLOAT64, enc_scalar(VT.FLOAT64, 0.5)),
           enc_kv("b", VT.ARRAY, enc_array(VT.BOOL, [b"\1", b"\0"]))]
    infos = [enc_tensor_info("q", (32, 2), 8, 0), enc_tensor_info("k", (256,), 12, 128),
             enc_tensor_info("h", (3, 1, 1, 2), 1, 320)]
    return enc_gguf(kvs, infos, bytes(range(256)) * 2, alignment=64)


def mutate(rng, data, hot):
    """One to four random edits, mostly inside the first `hot` bytes."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(min(hot, len(data))) if rng.random() < 0.9 else rng.randrange(len(data))
        op = rng.random()
        if op < 0.3:
            data[pos] ^= 1 << rng.randrange(8)
        elif op < 0.5:
            data[pos] = rng.randrange(256)
        elif op < 0.75:
            v = rng.choice(INTERESTING)
            data[pos:pos + len(v)] = v
        elif op < 0.85:
            data[pos:pos] = rng.choice(INTERESTING)
        elif op < 0.95:
            del data[pos:pos + rng.randint(1, 16)]
        else:
            data = data[:pos]
        if not data:
            break
    return bytes(data)


def exercise(f):
    """Every query a caller could make on a file that opened."""
    md, types = f.metadata, f.metadata_types
    assert set(md) == set(types)
    for key in md:
        f.metadata_raw(key)
    total = 0
    for t in f.tensors:
        raw = f.tensor_bytes(t.name)
        assert raw.size == t.nbytes
        total += int(np.bitwise_xor.reduce(raw))
        try:
            f.tensor(t.name)
        except Exception as e:   # a supported type may lack a kernel in this build
            assert type(e).__name__ == "UnsupportedError", e
    info.describe(f)
    return total


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    small = small_gguf(tmp_path_factory.mktemp("fuzz") / "small.gguf")
    nested = nested_sample()
    lf = zip_by_hand([("a.txt", b"x"), ("m.gguf", small)], prefix=b"#!/bin/sh\n", zip64=True, page=64)
    # (data, hot region): for the llamafile, the tail holds the ZIP records.
    return [(small, GGUFFile.from_bytes(small).data_offset),
            (nested, GGUFFile.from_bytes(nested).data_offset),
            (lf, len(lf))]


def test_seeds_are_valid(seeds):
    for data, _ in seeds:
        exercise(GGUFFile.from_bytes(data))


def test_mutants_parse_or_raise_gguf_error(seeds):
    rng = random.Random(20240601)
    outcomes = {"ok": 0, "error": 0}
    for i in range(N_MUTANTS):
        data, hot = seeds[i % len(seeds)]
        if data is seeds[2][0] and rng.random() < 0.7:   # hit the ZIP records at the end
            tail = len(data) - 200
            mutant = data[:tail] + mutate(rng, data[tail:], 200)
        else:
            mutant = mutate(rng, data, hot)
        try:
            f = GGUFFile.from_bytes(mutant)
        except GGUFError:
            outcomes["error"] += 1
            continue
        exercise(f)
        outcomes["ok"] += 1
    # Both outcomes must occur, or the mutator is not testing anything.
    assert outcomes["ok"] > N_MUTANTS // 20 and outcomes["error"] > N_MUTANTS // 4, outcomes
