"""GGUF and llamafile samples for the reader tests.

Valid files come from gguf-py's GGUFWriter (the oracle for what a GGUF is);
malformed ones are encoded by hand with `enc_*`, whose output for valid input
is checked against gguf-py's GGUFReader in test_gguf_reader.py."""
import io
import struct
import zipfile

import gguf
import numpy as np

VT = gguf.GGUFValueType
QT = gguf.GGMLQuantizationType

_SCALAR_FMT = {VT.UINT8: "B", VT.INT8: "b", VT.UINT16: "H", VT.INT16: "h", VT.UINT32: "I",
               VT.INT32: "i", VT.FLOAT32: "f", VT.BOOL: "?", VT.UINT64: "Q", VT.INT64: "q",
               VT.FLOAT64: "d"}


# ---- gguf-py ---------------------------------------------------------------

def write_gguf(path, kvs=(), tensors=(), alignment=None, arch="test"):
    """kvs: (key, value, vtype, sub_type); tensors: (name, ndarray, raw_dtype or None)."""
    w = gguf.GGUFWriter(str(path), arch)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, value, vtype, sub_type in kvs:
        w.add_key_value(key, value, vtype, sub_type)
    for name, array, raw_dtype in tensors:
        w.add_tensor(name, array, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(path, "rb") as f:
        return f.read()


def raw_tensor(qtype, rows, row_elems, seed=0):
    """Random bytes shaped (rows, row bytes) of a quantized type, for add_tensor(raw_dtype=...)."""
    block, nbytes = gguf.GGML_QUANT_SIZES[qtype]
    assert row_elems % block == 0
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(rows, row_elems // block * nbytes), dtype=np.uint8)


def small_gguf(path):
    """A small valid file: every scalar type, a string array, three tensors."""
    kvs = [
        ("t.u8", 200, VT.UINT8, None), ("t.i8", -100, VT.INT8, None),
        ("t.u16", 60000, VT.UINT16, None), ("t.i16", -30000, VT.INT16, None),
        ("t.u32", 4000000000, VT.UINT32, None), ("t.i32", -2000000000, VT.INT32, None),
        ("t.f32", 1.5, VT.FLOAT32, None), ("t.bool", True, VT.BOOL, None),
        ("t.str", "héllo", VT.STRING, None), ("t.u64", 2**64 - 1, VT.UINT64, None),
        ("t.i64", -2**63, VT.INT64, None), ("t.f64", -2.25, VT.FLOAT64, None),
        ("t.strs", ["a", "", "ccc"], VT.ARRAY, VT.STRING),
        ("t.ints", [1, -2, 3], VT.ARRAY, VT.INT32),
    ]
    tensors = [
        ("a.weight", np.arange(12, dtype=np.float32).reshape(3, 4), None),
        ("b.weight", raw_tensor(QT.Q8_0, 2, 64), QT.Q8_0),
        ("c.bias", np.ones(5, dtype=np.float32), None),
    ]
    return write_gguf(path, kvs, tensors)


# ---- hand encoding -----------------------------------------------------------

def enc_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def enc_scalar(vtype, value):
    return struct.pack("<" + _SCALAR_FMT[vtype], value)


def enc_array(elem_type, payloads, count=None):
    """payloads: encoded elements (no type tags)."""
    n = len(payloads) if count is None else count
    return struct.pack("<IQ", elem_type, n) + b"".join(payloads)


def enc_kv(key, vtype, payload):
    return enc_str(key) + struct.pack("<I", vtype) + payload


def enc_tensor_info(name, dims, ttype, offset):
    return (enc_str(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
            + struct.pack("<IQ", ttype, offset))


def enc_gguf(kvs=(), tinfos=(), data=b"", version=3, alignment=32, n_kv=None, n_tensors=None):
    """kvs and tinfos: already encoded.  Pads the header to `alignment`."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tinfos) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)
    head += b"".join(kvs) + b"".join(tinfos)
    head += b"\0" * (-len(head) % alignment)
    return head + data


def f32_tensor_file(specs, alignment=32, extra_kvs=()):
    """specs: (name, dims, offset, n_floats of data); data section big enough for all."""
    tinfos = [enc_tensor_info(n, d, 0, off) for n, d, off, _ in specs]
    end = max((off + 4 * cnt for _, _, off, cnt in specs), default=0)
    kvs = list(extra_kvs)
    if alignment != 32:
        kvs.append(enc_kv("general.alignment", VT.UINT32, enc_scalar(VT.UINT32, alignment)))
    return enc_gguf(kvs, tinfos, b"\x11" * end, alignment=alignment)


# ---- ZIP / llamafile ----------------------------------------------------------

PREFIX = (b"MZqFpD='\n\n#!/bin/sh\nexec \"$0\" \"$@\"\n"   # APE-style shell header
          + b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 3)


def zip_with_python(members, prefix=PREFIX, compression=zipfile.ZIP_STORED, force_zip64=False):
    """A prefix then a ZIP appended by Python's zipfile (offsets relative to the archive).
    members: (name, bytes)."""
    buf = io.BytesIO()
    buf.write(prefix)
    with zipfile.ZipFile(buf, "a", compression=compression) as z:
        for name, data in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            with z.open(info, "w", force_zip64=force_zip64) as f:
                f.write(data)
    return buf.getvalue()


def zip_by_hand(members, prefix=PREFIX, zip64=False, page=4096, absolute=True):
    """A llamafile-style archive: offsets from the start of the file (absolute=True),
    each member's data aligned to `page` with extra-field padding, and with zip64 a
    ZIP64 extra field in every central entry plus ZIP64 end records."""
    import zlib
    out = bytearray(prefix)
    base = 0 if absolute else len(prefix)
    central = []
    for name, data in members:
        nb = name.encode()
        crc = zlib.crc32(data)
        lho = len(out)
        pad = -(lho + 30 + len(nb) + 4) % page   # one padding extra field (id 0xcafe)
        extra = struct.pack("<HH", 0xCAFE, pad) + b"\0" * pad
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, len(data), len(data),
                           len(nb), len(extra)) + nb + extra
        assert len(out) % page == 0
        out += data
        if zip64:
            z64 = struct.pack("<HHQQQ", 1, 24, len(data), len(data), lho - base)
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0, crc,
                                       0xFFFFFFFF, 0xFFFFFFFF, len(nb), len(z64), 0, 0, 0, 0,
                                       0xFFFFFFFF) + nb + z64)
        else:
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, crc,
                                       len(data), len(data), len(nb), 0, 0, 0, 0, 0, lho - base) + nb)
    cd_off = len(out)
    out += b"".join(central)
    cd_size = len(out) - cd_off
    n = len(members)
    if zip64:
        rec = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_off - base)
        out += struct.pack("<IIQI", 0x07064B50, 0, rec - base, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_off - base, 0)
    return bytes(out)
