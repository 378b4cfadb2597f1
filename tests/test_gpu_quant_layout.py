"""The GPU kernels' dequantization (kernels/quant_dot.cuh, one deq32<TYPE> per tensor type,
used by mat-vec, tinyBLAS and the cuBLAS path) compiled as plain C++ and compared bit for
bit with the C core's reference dequantizer (itself exact against gguf-py), on random
blocks of every type the CPU supports.  No GPU needed: the block layouts are the part of
the kernels most likely to be wrong and this checks them on any machine."""
import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest

from pygemma._ffi import check, ffi, lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# byte offsets of fp16 scale fields per block (kept finite so that every element is tested)
HALF_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
               "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


@pytest.fixture(scope="module")
def deq(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    out = tmp_path_factory.mktemp("deq") / "deq.so"
    subprocess.run([cxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-Wall", "-Wno-unknown-pragmas", "-Werror",
                    "-I", os.path.join(ROOT, "kernels"), os.path.join(ROOT, "tests", "gpu_deq_check.cpp"),
                    "-o", str(out)], check=True)
    so = ctypes.CDLL(str(out))
    so.deq_row.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
    so.row_bytes.argtypes = [ctypes.c_int, ctypes.c_long]
    so.row_bytes.restype = ctypes.c_long
    return so


def random_row(name, cols, rng):
    t = lib.pg_type_from_name(name.encode())
    nbytes = lib.pg_type_row_bytes(t, cols)
    raw = bytearray(rng.integers(0, 256, size=nbytes, dtype=np.uint8).tobytes())
    bb = lib.pg_type_block_bytes(t)
    for off in HALF_FIELDS.get(name, []):
        for b in range(0, nbytes, bb):   # finite halves in [-2, 2): exponent below 16
            h = int(rng.integers(0, 1 << 15)) & 0xBFFF
            raw[b + off:b + off + 2] = h.to_bytes(2, "little")
    return t, bytes(raw)


@pytest.mark.parametrize("name", TYPES)
def test_device_dequant_matches_reference(deq, name):
    rng = np.random.default_rng(list(TYPES).index(name))
    cols = 1024
    t, raw = random_row(name, cols, rng)
    assert deq.row_bytes(t, cols) == lib.pg_type_row_bytes(t, cols)
    ref = np.empty(cols, np.float32)
    check(lib.pg_dequantize(t, raw, ffi.cast("float *", ref.ctypes.data), cols))
    got = np.full(cols, 12345.0, np.float32)
    buf = ctypes.create_string_buffer(raw, len(raw))
    assert deq.deq_row(t, buf, got.ctypes.data, cols) == 0
    if name in ("F16", "BF16", "F32"):
        np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))   # NaN payloads too
    else:
        assert np.isfinite(ref).all()
        np.testing.assert_array_equal(got, ref)


def test_unknown_type_is_refused(deq):
    assert deq.deq_row(9, None, None, 32) == -1        # Q8_1: no device kernels
    assert deq.row_bytes(9, 32) == 0
