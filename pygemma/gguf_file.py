"""pygemma.GGUFFile: a read-only view of a GGUF file, or of the GGUF inside a llamafile.

    with pygemma.GGUFFile("gemma-3-270m-q4_k_m.gguf") as f:
        f.metadata["general.architecture"]      # 'gemma3'
        f.tensors[0]                            # GGUFTensor(name=..., type='F32', ...)
        f.tensor("output_norm.weight")          # float32 ndarray, numpy order
        f.tensor_bytes("token_embd.weight")     # the raw bytes, zero-copy

The C core parses and validates the file (csrc/gguf.c); this module turns its
answers into Python values.  Choices:

* Every failure while opening -- malformed file, missing file, I/O error --
  raises `GGUFError` (a ValueError); I/O messages keep the OS error text.
* `metadata` is a dict in file order of plain Python values: int, float, bool,
  str, and lists (nested lists for arrays of arrays).  Numeric arrays are lists,
  not numpy arrays, so the values compare, print and serialize like gguf-py's
  `ReaderField.contents()` and can be handed back to GGUFWriter; `array(key)`
  gives a numpy copy when speed matters.  It is built on first access (~0.1 s
  for Gemma's 262144-token vocabulary).
* Strings are decoded as UTF-8 with "surrogateescape", so invalid bytes survive:
  `s.encode("utf-8", "surrogateescape")` gives the bytes of the file back.
* `metadata_types[key]` is `(value_type, element_type)`, GGUF value type numbers
  (as gguf.GGUFValueType); element_type is None for non-arrays.  `metadata_raw(key)`
  gives a value's exact encoding for copying it verbatim (nested arrays included).
* After `close()` every method raises `ModelStateError`.  Arrays returned by
  `tensor_bytes()` are views into the mapping and keep it mapped until they are
  garbage-collected, so they never dangle; `tensor()` returns a fresh array.
"""
import collections
import os

import numpy as np

from . import errors
from ._ffi import check, ffi, lib

# GGUF metadata value types (numbers as in the file and gguf.GGUFValueType).
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)

_DTYPES = {UINT8: "<u1", INT8: "<i1", UINT16: "<u2", INT16: "<i2", UINT32: "<u4", INT32: "<i4",
           FLOAT32: "<f4", BOOL: "<u1", UINT64: "<u8", INT64: "<i8", FLOAT64: "<f8"}


def value_type_name(t):
    """'UINT32' for 4, and so on."""
    name = lib.pg_gguf_type_name(t)
    return ffi.string(name).decode() if name != ffi.NULL else f"type{t}"


GGUFTensor = collections.namedtuple("GGUFTensor", "name type type_id shape offset nbytes")
GGUFTensor.__doc__ = """One tensor info.  `shape` is in GGUF order (dim 0 contiguous);
`offset` is relative to the data section; `type` is the GGML type name ("Q6_K")."""


def _decode(raw):
    return raw.decode("utf-8", "surrogateescape")


class _Mapping:
    """Owns the C handle (and the caller's buffer for from_bytes).  Alive while
    the GGUFFile is open or any tensor_bytes() view still exists."""

    def __init__(self, ptr, source=None):
        self.ptr = ptr
        self.source = source
        self._close = lib.pg_gguf_close   # still reachable during interpreter shutdown

    def release_view(self, _cdata):
        """ffi.gc destructor of a view: dropping it drops the view's reference to us."""

    def __del__(self):
        if self.ptr is not None:
            self._close(self.ptr)
            self.ptr = None


class GGUFFile:
    """A parsed GGUF file; see the module docstring."""

    def __init__(self, path):
        self.path = os.fspath(path)
        out = ffi.new("pg_gguf **")
        check(lib.pg_gguf_open(os.fsencode(self.path), out), errors.GGUFError)
        self._init(_Mapping(out[0]))

    @classmethod
    def from_bytes(cls, data):
        """Parse a GGUF (or llamafile) held in memory: bytes, bytearray, memoryview...
        The buffer is kept alive (and must not be modified) while the result is in use."""
        self = cls.__new__(cls)
        self.path = "<memory>"
        src = ffi.from_buffer(data)
        out = ffi.new("pg_gguf **")
        check(lib.pg_gguf_open_memory(src, len(src), out), errors.GGUFError)
        self._init(_Mapping(out[0], src))
        return self

    def _init(self, mapping):
        self._m = mapping
        self._metadata = None
        g = mapping.ptr
        self.version = lib.pg_gguf_version(g)
        self.alignment = lib.pg_gguf_alignment(g)
        self.data_offset = lib.pg_gguf_data_offset(g)     # data section, from the GGUF start
        self.image_offset = lib.pg_gguf_image_offset(g)   # GGUF start in the file (llamafile)
        self._keys = [_decode(ffi.unpack(lib.pg_gguf_kv_key(g, i), lib.pg_gguf_kv_key_len(g, i)))
                      for i in range(lib.pg_gguf_n_kv(g))]
        self._key_index = {k: i for i, k in enumerate(self._keys)}
        self._tensors = [self._tensor_info(g, t) for t in range(lib.pg_gguf_n_tensors(g))]
        self._tensor_index = {t.name: i for i, t in enumerate(self._tensors)}

    @staticmethod
    def _tensor_info(g, t):
        type_id = lib.pg_gguf_tensor_type(g, t)
        return GGUFTensor(
            name=_decode(ffi.unpack(lib.pg_gguf_tensor_name(g, t), lib.pg_gguf_tensor_name_len(g, t))),
            type=ffi.string(lib.pg_type_name(type_id)).decode(),
            type_id=type_id,
            shape=tuple(lib.pg_gguf_tensor_dim(g, t, d) for d in range(lib.pg_gguf_tensor_ndim(g, t))),
            offset=lib.pg_gguf_tensor_offset(g, t),
            nbytes=lib.pg_gguf_tensor_nbytes(g, t))

    # ---- lifetime ----------------------------------------------------------

    def close(self):
        """Release the file.  Idempotent.  The mapping itself goes once no
        tensor_bytes() view refers to it any more."""
        self._m = None
        self._metadata = None

    @property
    def closed(self):
        return self._m is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        if self.closed:
            return f"<GGUFFile {self.path!r} closed>"
        return (f"<GGUFFile {self.path!r} v{self.version}, {len(self._keys)} keys, "
                f"{len(self._tensors)} tensors>")

    def _live(self):
        """The mapping; callers keep it in a local so that a close() from another
        thread cannot unmap what a C call is reading."""
        m = self._m
        if m is None:
            raise errors.ModelStateError(f"GGUFFile {self.path!r} is closed")
        return m

    # ---- metadata ----------------------------------------------------------

    @property
    def metadata(self):
        """dict key -> Python value, in file order (built on first access)."""
        m = self._live()
        g = m.ptr
        if self._metadata is None:
            self._metadata = {k: self._value(g, lib.pg_gguf_kv_value(g, i)) for i, k in enumerate(self._keys)}
        return self._metadata

    @property
    def metadata_types(self):
        """dict key -> (value type, element type or None), GGUF type numbers."""
        m = self._live()
        g = m.ptr
        out = {}
        for i, k in enumerate(self._keys):
            et = lib.pg_gguf_kv_arr_type(g, i)
            out[k] = (lib.pg_gguf_kv_type(g, i), et if et >= 0 else None)
        return out

    def metadata_raw(self, key):
        """The value of `key` exactly as encoded in the file: u32 type tag + payload."""
        m = self._live()
        g = m.ptr
        i = self._kv(key)
        data, n = ffi.new("void **"), ffi.new("uint64_t *")
        check(lib.pg_gguf_kv_raw(g, i, data, n))
        return ffi.buffer(data[0], n[0])[:]

    def array(self, key):
        """A numeric array value as a fresh numpy array of its own dtype (bool for BOOL)."""
        m = self._live()
        g = m.ptr
        v = lib.pg_gguf_kv_value(g, self._kv(key))
        et = lib.pg_gguf_val_arr_type(g, v)
        if et not in _DTYPES:
            raise TypeError(f"metadata {key!r} is not a numeric array")
        return self._numbers(g, v, et, lib.pg_gguf_val_arr_len(g, v)).copy()

    def _kv(self, key):
        try:
            return self._key_index[key]
        except KeyError:
            raise KeyError(f"no metadata key {key!r} in {self.path!r}") from None

    @staticmethod
    def _numbers(g, v, vtype, n):
        dtype = np.dtype(_DTYPES[vtype])
        arr = np.frombuffer(ffi.buffer(lib.pg_gguf_val_data(g, v), n * dtype.itemsize), dtype)
        return arr != 0 if vtype == BOOL else arr

    def _value(self, g, v):
        t = lib.pg_gguf_val_type(g, v)
        if t == STRING:
            s, n = ffi.new("char **"), ffi.new("uint64_t *")
            check(lib.pg_gguf_val_get_str(g, v, s, n))
            return _decode(ffi.unpack(s[0], n[0]))
        if t != ARRAY:
            return self._numbers(g, v, t, 1).tolist()[0]
        et, n = lib.pg_gguf_val_arr_type(g, v), lib.pg_gguf_val_arr_len(g, v)
        if et == ARRAY:
            return [self._value(g, lib.pg_gguf_val_arr_elem(g, v, j)) for j in range(n)]
        if et != STRING:
            return self._numbers(g, v, et, n).tolist()
        block, nbytes = ffi.new("char **"), ffi.new("uint64_t *")
        check(lib.pg_gguf_val_arr_str_block(g, v, block, nbytes))
        raw = ffi.buffer(block[0], nbytes[0])[:]
        if raw.count(b"\0") == n:
            # No string holds a NUL, so one decode and one split give them all.
            # (NUL never occurs inside a multi-byte UTF-8 sequence, and
            # surrogateescape treats each bad byte alone, so this equals
            # decoding each string.)
            parts = _decode(raw).split("\0")
            parts.pop()
            return parts
        s, ln = ffi.new("char **"), ffi.new("uint64_t *")
        out = []
        for j in range(n):
            check(lib.pg_gguf_val_arr_str(g, v, j, s, ln))
            out.append(_decode(ffi.unpack(s[0], ln[0])))
        return out

    # ---- tensors -----------------------------------------------------------

    @property
    def tensors(self):
        """List of GGUFTensor, in file order."""
        self._live()
        return list(self._tensors)

    def _tensor(self, name):
        try:
            return self._tensor_index[name]
        except KeyError:
            raise KeyError(f"no tensor {name!r} in {self.path!r}") from None

    def tensor_bytes(self, name):
        """The raw data of a tensor as a read-only uint8 array, a view into the
        mapping (no copy); it keeps the mapping alive after close()."""
        m = self._live()
        g = m.ptr
        t = self._tensor(name)
        n = self._tensors[t].nbytes
        p = ffi.gc(ffi.cast("uint8_t *", lib.pg_gguf_tensor_data(g, t)), m.release_view)
        return np.frombuffer(memoryview(ffi.buffer(p, n)).toreadonly(), np.uint8)

    def tensor(self, name):
        """The tensor dequantized to float32, in numpy order (the GGUF shape reversed)."""
        m = self._live()
        g = m.ptr
        t = self._tensor(name)
        info = self._tensors[t]
        if not lib.pg_type_supported(info.type_id):
            raise errors.UnsupportedError(
                f"tensor {info.name!r} has type {info.type}, which pygemma cannot dequantize")
        out = np.empty(lib.pg_gguf_tensor_nelements(g, t), np.float32)
        status = lib.pg_dequantize(info.type_id, lib.pg_gguf_tensor_data(g, t),
                                   ffi.cast("float *", out.ctypes.data), out.size)
        try:
            check(status)
        except Exception as e:
            raise type(e)(f"tensor {info.name!r} ({info.type}): {e}") from None
        return out.reshape(info.shape[::-1])


def open_memory(data):
    """GGUFFile.from_bytes(data)."""
    return GGUFFile.from_bytes(data)
