"""Tensor (de)quantization with the C core: GGML block types <-> float32 numpy arrays.

    from pygemma import quants
    raw = quants.quantize("Q4_K", w)            # w: (rows, cols) float -> (rows, row_bytes) uint8
    w2 = quants.dequantize("Q4_K", raw)         # -> (rows, cols) float32
    w2 = quants.dequantize("Q4_K", blob, shape=(rows, cols))   # from bytes / memoryview / mmap

Types are given by name ("Q4_K"), GGML number (12) or gguf.GGMLQuantizationType.
Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.

* dequantize() equals gguf-py's gguf.quants.dequantize bit for bit.
* quantize() uses llama.cpp's algorithms (equal bytes to ggml's quantize_chunk;
  Q4_0..Q8_0, F16 and BF16 also equal gguf-py's gguf.quants.quantize).
  With `imatrix` (one importance weight per column) the weighted variants
  llama.cpp uses with an importance matrix are used (Q8_0 and F16/BF16 ignore it).
* Rows are independent; `threads` > 1 splits them across threads (the C call
  releases the GIL), as do callers that run several quantize() calls at once.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._ffi import check, ffi, lib

__all__ = ["type_id", "type_name", "block_size", "type_size", "row_bytes",
           "dequantize", "quantize", "SUPPORTED"]

SUPPORTED = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
             "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


def type_id(t):
    """GGML type number of a name ("Q4_K"), number, or gguf.GGMLQuantizationType."""
    if isinstance(t, str):
        n = lib.pg_type_from_name(t.upper().encode())
        if n < 0:
            raise ValueError(f"unknown tensor type {t!r}")
        return n
    n = int(t)  # IntEnum members (gguf.GGMLQuantizationType) included
    if lib.pg_type_name(n) == ffi.NULL:
        raise ValueError(f"unknown tensor type {n}")
    return n


def type_name(t):
    return ffi.string(lib.pg_type_name(type_id(t))).decode()


def block_size(t):
    """Elements per block (1 for F32/F16/BF16, 32 or 256 for quantized types)."""
    return int(lib.pg_type_block_size(type_id(t)))


def type_size(t):
    """Bytes per block."""
    return int(lib.pg_type_block_bytes(type_id(t)))


def row_bytes(t, n):
    """Bytes of a row of n elements; ValueError if n is not a multiple of the block size."""
    tid = type_id(t)
    nb = lib.pg_type_row_bytes(tid, int(n))
    if nb < 0:
        raise ValueError(f"{n} elements is not a multiple of the {type_name(tid)} "
                         f"block size {block_size(tid)}")
    return int(nb)


def _supported(tid):
    if not lib.pg_type_supported(tid):
        from .errors import UnsupportedError
        raise UnsupportedError(f"tensor type {type_name(tid)} is not supported")


def _as_bytes(raw):
    """A C-contiguous uint8 view of bytes / bytearray / memoryview / mmap / ndarray."""
    if isinstance(raw, np.ndarray):
        return np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
    return np.frombuffer(raw, dtype=np.uint8)


def dequantize(t, raw, shape=None):
    """float32 array of the elements stored in `raw` (blocks of type `t`).

    `shape` is the element shape (its last dimension a multiple of the block
    size).  Without it: a uint8 array of shape (..., row_bytes) gives
    (..., elements_per_row), anything else a 1-D array of all elements."""
    tid = type_id(t)
    _supported(tid)
    bs, ts = block_size(tid), type_size(tid)
    if shape is None:
        if isinstance(raw, np.ndarray) and raw.dtype == np.uint8 and raw.ndim >= 2:
            if raw.shape[-1] % ts:
                raise ValueError(f"{raw.shape[-1]} bytes per row is not a multiple of the "
                                 f"{type_name(tid)} block of {ts} bytes")
            shape = (*raw.shape[:-1], raw.shape[-1] // ts * bs)
        else:
            nbytes = _as_bytes(raw).size
            if nbytes % ts:
                raise ValueError(f"{nbytes} bytes is not a multiple of the "
                                 f"{type_name(tid)} block of {ts} bytes")
            shape = (nbytes // ts * bs,)
    shape = tuple(int(s) for s in np.atleast_1d(shape))
    n_rows = int(np.prod(shape[:-1], dtype=np.int64))
    expected = n_rows * row_bytes(tid, shape[-1])
    src = _as_bytes(raw)
    if src.size != expected:
        raise ValueError(f"{src.size} bytes given, {type_name(tid)} {shape} needs {expected}")
    out = np.empty(shape, dtype=np.float32)
    n = out.size
    if n:
        check(lib.pg_dequantize(tid, ffi.from_buffer(src), ffi.cast("float *", out.ctypes.data), n))
    return out


def quantize(t, data, imatrix=None, threads=1):
    """uint8 array (..., row_bytes) of `data` (..., cols) quantized row by row to type `t`.

    `imatrix`: optional importance weights, one per column (llama.cpp's imatrix).
    `threads`: split the rows over this many threads."""
    tid = type_id(t)
    _supported(tid)
    x = np.ascontiguousarray(data, dtype=np.float32)
    if x.ndim == 0:
        raise ValueError("cannot quantize a scalar")
    cols = x.shape[-1]
    rb = row_bytes(tid, cols)
    rows = x.size // cols if cols else 0
    out = np.empty((*x.shape[:-1], rb), dtype=np.uint8)
    if rows == 0 or cols == 0:
        return out
    imat = ffi.NULL
    if imatrix is not None:
        iw = np.ascontiguousarray(imatrix, dtype=np.float32).reshape(-1)
        if iw.size != cols:
            raise ValueError(f"imatrix has {iw.size} weights for rows of {cols} elements")
        imat = ffi.cast("float *", iw.ctypes.data)
    src, dst = x.reshape(rows, cols), out.reshape(rows, rb)

    def run(r0, r1):
        check(lib.pg_quantize(tid, ffi.cast("float *", src[r0:].ctypes.data),
                              ffi.cast("void *", dst[r0:].ctypes.data), r1 - r0, cols, imat))

    threads = max(1, min(int(threads), rows))
    if threads == 1:
        run(0, rows)
    else:
        bounds = np.linspace(0, rows, threads + 1).astype(int)
        with ThreadPoolExecutor(threads) as pool:
            for f in [pool.submit(run, a, b) for a, b in zip(bounds[:-1], bounds[1:])]:
                f.result()
    return out
