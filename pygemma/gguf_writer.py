"""Streaming writer of GGUF v3 files (little-endian).

Usage (declare everything, then stream the tensor data in declared order):

    with GGUFWriter("out.gguf") as w:
        w.add("general.architecture", "gemma2")
        w.add("gemma2.block_count", 26, ValueType.UINT32)
        w.add_tensor_info("token_embd.weight", (2304, 256000), "Q6_K")   # GGUF order: ne0 first
        w.write_header()
        w.write_tensor("token_embd.weight", data)      # bytes, numpy array or an iterable of chunks

Only the header and one tensor (or one chunk of it) are held in memory at a
time.  The file is written under a temporary name in the same directory and
renamed when close() succeeds, so an interrupted write never leaves a file
that looks complete.
"""
import enum
import os
import struct

import numpy as np

from ._ffi import ffi, lib

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32


class ValueType(enum.IntEnum):
    """GGUF metadata value types (numbered as in the file format)."""
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


# struct format of every fixed-size scalar type
_SCALAR_FMT = {
    ValueType.UINT8: "B", ValueType.INT8: "b", ValueType.UINT16: "H", ValueType.INT16: "h",
    ValueType.UINT32: "I", ValueType.INT32: "i", ValueType.FLOAT32: "f", ValueType.BOOL: "?",
    ValueType.UINT64: "Q", ValueType.INT64: "q", ValueType.FLOAT64: "d",
}
_NUMPY_TO_VT = {
    np.dtype(np.uint8): ValueType.UINT8, np.dtype(np.int8): ValueType.INT8,
    np.dtype(np.uint16): ValueType.UINT16, np.dtype(np.int16): ValueType.INT16,
    np.dtype(np.uint32): ValueType.UINT32, np.dtype(np.int32): ValueType.INT32,
    np.dtype(np.float32): ValueType.FLOAT32, np.dtype(np.bool_): ValueType.BOOL,
    np.dtype(np.uint64): ValueType.UINT64, np.dtype(np.int64): ValueType.INT64,
    np.dtype(np.float64): ValueType.FLOAT64,
}


def value_type(vt):
    """A ValueType from a ValueType, its number or its name ("UINT32")."""
    if isinstance(vt, str):
        try:
            return ValueType[vt.upper()]
        except KeyError:
            raise ValueError(f"unknown GGUF value type {vt!r}") from None
    return ValueType(vt)


def ggml_type(t):
    """The GGML type number of a type number or name ("Q4_K")."""
    if isinstance(t, str):
        n = lib.pg_type_from_name(t.upper().encode())
        if n < 0:
            raise ValueError(f"unknown tensor type {t!r}")
        return n
    t = int(t)
    if lib.pg_type_name(t) == ffi.NULL:
        raise ValueError(f"unknown tensor type number {t}")
    return t


def type_name(t):
    return ffi.string(lib.pg_type_name(ggml_type(t))).decode()


def tensor_nbytes(shape, gtype):
    """Bytes of a tensor of GGUF-order `shape` (ne0 = row length) and type `gtype`."""
    gtype = ggml_type(gtype)
    block, block_bytes = lib.pg_type_block_size(gtype), lib.pg_type_block_bytes(gtype)
    if block <= 0:
        raise ValueError(f"tensor type {type_name(gtype)} has no known block geometry")
    if not shape or any(int(d) < 0 for d in shape):
        raise ValueError(f"bad tensor shape {tuple(shape)}")
    if int(shape[0]) % block != 0:
        raise ValueError(f"row length {shape[0]} is not a multiple of the {type_name(gtype)} "
                         f"block size {block}")
    n = 1
    for d in shape:
        n *= int(d)
    return n // block * block_bytes


def _infer_type(value):
    if isinstance(value, (bool, np.bool_)):
        return ValueType.BOOL
    if isinstance(value, np.generic):
        return _NUMPY_TO_VT[value.dtype]
    if isinstance(value, int):
        if -2**31 <= value < 2**31:
            return ValueType.INT32          # as gguf-py does
        return ValueType.INT64 if -2**63 <= value < 2**63 else ValueType.UINT64
    if isinstance(value, float):
        return ValueType.FLOAT32
    if isinstance(value, (str, bytes, bytearray)):
        return ValueType.STRING
    if isinstance(value, (list, tuple, np.ndarray)):
        return ValueType.ARRAY
    raise TypeError(f"cannot infer a GGUF value type for {type(value).__name__}")


def _infer_element_type(items):
    """Element type of a list: the widest one its items need."""
    if isinstance(items, np.ndarray):
        if items.dtype.kind in "US":
            return ValueType.STRING
        return _NUMPY_TO_VT[items.dtype]
    if len(items) == 0:
        return ValueType.INT32
    types = {_infer_type(v) for v in items}
    if len(types) == 1:
        return types.pop()
    if types <= {ValueType.INT32, ValueType.INT64}:
        return ValueType.INT64
    if types <= {ValueType.INT32, ValueType.FLOAT32}:
        return ValueType.FLOAT32
    raise TypeError(f"array mixes element types {sorted(t.name for t in types)}")


def _pack_string(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _pack_value(vt, value, element_type=None):
    """Bytes of `value` as GGUF type `vt` (without the leading type tag)."""
    if vt == ValueType.STRING:
        return _pack_string(value)
    if vt == ValueType.ARRAY:
        if isinstance(value, (str, bytes, bytearray)) or not hasattr(value, "__len__"):
            raise TypeError(f"an ARRAY value must be a list, got {type(value).__name__}")
        # element_type: a type, or a chain (ARRAY, ARRAY, ..., leaf) for nested arrays
        chain = list(element_type) if isinstance(element_type, (list, tuple)) else [element_type]
        et = value_type(chain[0]) if chain[0] is not None else _infer_element_type(value)
        inner = chain[1:] or None
        head = struct.pack("<IQ", et, len(value))
        if et == ValueType.STRING:
            return head + b"".join(_pack_string(s) for s in value)
        if et == ValueType.ARRAY:
            # each inner array carries its own element type and count
            return head + b"".join(_pack_value(et, v, inner) for v in value)
        dtype = np.dtype(_SCALAR_FMT[et]).newbyteorder("<")
        arr = np.asarray(value)
        _check_range(et, arr)
        return head + arr.astype(dtype, copy=False).tobytes()
    if vt in _SCALAR_FMT:
        _check_range(vt, np.asarray(value))
        return struct.pack("<" + _SCALAR_FMT[vt], value)
    raise ValueError(f"unknown GGUF value type {vt}")


def _check_range(vt, arr):
    if arr.size == 0 or vt in (ValueType.FLOAT32, ValueType.FLOAT64, ValueType.BOOL):
        return
    if arr.dtype.kind not in "iub":
        raise TypeError(f"{vt.name} values must be integers, got {arr.dtype}")
    info = np.iinfo(np.dtype(_SCALAR_FMT[vt]))
    lo, hi = int(arr.min()), int(arr.max())
    if lo < info.min or hi > info.max:
        raise ValueError(f"value {lo if lo < info.min else hi} does not fit in {vt.name}")


class GGUFWriter:
    """Writes one GGUF v3 file; see the module docstring for the call order."""

    def __init__(self, path, alignment=DEFAULT_ALIGNMENT):
        if alignment <= 0 or alignment % 8 != 0:
            raise ValueError(f"alignment must be a positive multiple of 8, got {alignment}")
        self.path = os.fspath(path)
        self.alignment = int(alignment)
        self._kv = {}               # key -> packed (type tag + value) bytes, in insertion order
        self._tensors = []          # [name, shape, type, offset, nbytes]
        self._names = {}
        self._data_size = 0         # bytes of the data section so far (aligned offsets)
        self._tmp = f"{self.path}.tmp{os.getpid()}"
        self._file = None
        self._next = 0              # index of the next tensor to write
        self._state = "declare"     # declare -> data -> closed

    # ---- declaration -------------------------------------------------------
    def add(self, key, value, value_type_=None, element_type=None):
        """Metadata `key` = `value`.

        The type is inferred unless given: str -> STRING, bool -> BOOL, int -> INT32 (INT64
        when it does not fit), float -> FLOAT32, list/tuple/numpy array -> ARRAY.  value_type_
        may be a ValueType, its number or its name; element_type is the arrays' element type,
        or for nested arrays a chain such as (ARRAY, UINT32)."""
        self._require("declare", "add metadata")
        if not isinstance(key, str) or not key:
            raise ValueError("metadata keys must be non-empty strings")
        if key in self._kv:
            raise ValueError(f"duplicate metadata key {key!r}")
        vt = value_type(value_type_) if value_type_ is not None else _infer_type(value)
        self._kv[key] = struct.pack("<I", vt) + _pack_value(vt, value, element_type)

    def add_raw(self, key, raw):
        """Metadata `key` with a value already encoded as GGUF stores it (u32 type tag, then
        the payload), e.g. GGUFFile.metadata_raw(key): copies any value verbatim."""
        self._require("declare", "add metadata")
        raw = bytes(raw)
        if len(raw) < 4 or struct.unpack_from("<I", raw)[0] not in ValueType._value2member_map_:
            raise ValueError(f"metadata {key!r}: not an encoded GGUF value")
        if key in self._kv:
            raise ValueError(f"duplicate metadata key {key!r}")
        self._kv[key] = raw

    def __contains__(self, key):
        return key in self._kv

    def add_tensor_info(self, name, shape, gtype):
        """Declare tensor `name` of GGUF-order `shape` (ne0 = row length) and GGML type `gtype`."""
        self._require("declare", "declare tensors")
        if name in self._names:
            raise ValueError(f"duplicate tensor name {name!r}")
        if len(name.encode()) >= 64:
            raise ValueError(f"tensor name {name!r} is longer than GGUF's 63 bytes")
        shape = tuple(int(d) for d in shape)
        if not 1 <= len(shape) <= 4:
            raise ValueError(f"tensor {name!r}: GGUF tensors have 1 to 4 dimensions, got {shape}")
        gtype = ggml_type(gtype)
        nbytes = tensor_nbytes(shape, gtype)
        offset = self._data_size
        self._names[name] = len(self._tensors)
        self._tensors.append((name, shape, gtype, offset, nbytes))
        self._data_size = _pad(offset + nbytes, self.alignment)

    @property
    def tensor_infos(self):
        """(name, shape, type, offset, nbytes) of every declared tensor, in file order."""
        return list(self._tensors)

    # ---- writing -----------------------------------------------------------
    def write_header(self):
        """Write magic, metadata and tensor infos; the data section follows."""
        self._require("declare", "write the header")
        if self.alignment != DEFAULT_ALIGNMENT and "general.alignment" not in self._kv:
            self.add("general.alignment", self.alignment, ValueType.UINT32)
        parts = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(self._tensors), len(self._kv))]
        for key, packed in self._kv.items():
            parts += [_pack_string(key), packed]
        for name, shape, gtype, offset, _ in self._tensors:
            parts += [_pack_string(name), struct.pack(f"<I{len(shape)}QIQ", len(shape), *shape,
                                                      gtype, offset)]
        header = b"".join(parts)
        header += b"\0" * (_pad(len(header), self.alignment) - len(header))
        self._file = open(self._tmp, "wb")
        self._file.write(header)
        self._state = "data"

    def write_tensor(self, name, data):
        """Write the data of the next declared tensor: bytes-like, a numpy array (its raw
        bytes) or an iterable of such chunks.  The total must equal the declared size."""
        if self._state == "declare":
            self.write_header()
        self._require("data", "write tensors")
        if self._next >= len(self._tensors):
            raise ValueError(f"tensor {name!r}: all declared tensors are already written")
        tname, shape, gtype, offset, nbytes = self._tensors[self._next]
        if name != tname:
            raise ValueError(f"tensors must be written in declared order: expected {tname!r}, "
                             f"got {name!r}")
        chunks = [data] if _is_buffer(data) else data
        written = 0
        for chunk in chunks:
            buf = _as_bytes(chunk)
            if written + len(buf) > nbytes:
                raise ValueError(f"tensor {name!r}: more than the {nbytes} bytes of a "
                                 f"{type_name(gtype)} tensor of shape {shape}")
            self._file.write(buf)
            written += len(buf)
        if written != nbytes:
            raise ValueError(f"tensor {name!r}: got {written} bytes, a {type_name(gtype)} "
                             f"tensor of shape {shape} has {nbytes}")
        self._file.write(b"\0" * (_pad(nbytes, self.alignment) - nbytes))
        self._next += 1

    def close(self):
        """Finish the file (all declared tensors must have been written) and give it its name."""
        if self._state == "closed":
            return
        if self._state == "declare":
            self.write_header()
        if self._next != len(self._tensors):
            missing = self._tensors[self._next][0]
            self.abort()
            raise ValueError(f"closed before tensor {missing!r} was written "
                             f"({len(self._tensors) - self._next} missing); no file written")
        self._file.close()
        os.replace(self._tmp, self.path)
        self._state = "closed"

    def abort(self):
        """Discard the partial file."""
        if self._file is not None:
            self._file.close()
        if os.path.exists(self._tmp):
            os.remove(self._tmp)
        self._state = "closed"

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def _require(self, state, what):
        if self._state != state:
            raise RuntimeError(f"cannot {what}: the writer is in state {self._state!r}")


def _pad(n, alignment):
    return (n + alignment - 1) // alignment * alignment


def _is_buffer(x):
    return isinstance(x, (bytes, bytearray, memoryview, np.ndarray))


def _as_bytes(x):
    if isinstance(x, np.ndarray):
        return memoryview(np.ascontiguousarray(x)).cast("B")
    if isinstance(x, (bytes, bytearray)):
        return x
    if isinstance(x, memoryview):
        return x.cast("B") if x.contiguous else x.tobytes()
    raise TypeError(f"tensor data must be bytes-like or a numpy array, got {type(x).__name__}")
