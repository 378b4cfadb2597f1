"""Malformed GGUF files: each raises GGUFError with a message naming what is wrong."""
import struct

import pytest

from pygemma import GGUFError, GGUFFile

from gguf_samples import VT, enc_array, enc_gguf, enc_kv, enc_scalar, enc_str, enc_tensor_info, \
    f32_tensor_file, small_gguf, zip_by_hand

GOOD_KV = enc_kv("general.architecture", VT.STRING, enc_str("test"))


def error_of(data):
    with pytest.raises(GGUFError) as e:
        GGUFFile.from_bytes(data)
    return str(e.value)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    data = small_gguf(tmp_path_factory.mktemp("bad") / "small.gguf")
    return data, GGUFFile.from_bytes(data).data_offset


def test_truncated_anywhere_in_the_header(small):
    data, data_offset = small
    for cut in range(data_offset):
        msg = error_of(data[:cut])
        if cut < 4:
            assert "not a GGUF file" in msg, cut
        else:
            assert any(s in msg for s in ("truncated", "cannot fit", "past the end")), (cut, msg)
            assert "offset" in msg or "bytes left" in msg, (cut, msg)


def test_truncated_in_the_data(small):
    data, data_offset = small
    last = GGUFFile.from_bytes(data).tensors[-1]
    end = data_offset + last.offset + last.nbytes
    assert end < len(data)   # gguf-py pads the last tensor too
    for cut in list(range(data_offset, end, 7)) + [end - 1]:
        msg = error_of(data[:cut])
        assert "past the end of the file" in msg
        if cut > data_offset + last.offset:
            assert repr(last.name) in msg
    for cut in range(end, len(data)):   # only padding is missing: still a complete file
        assert GGUFFile.from_bytes(data[:cut]).tensors[-1] == last


def test_truncated_file_on_disk(small, tmp_path):
    data, _ = small
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[:400])
    with pytest.raises(GGUFError, match=r"cut\.gguf.*truncated"):
        GGUFFile(path)


@pytest.mark.parametrize("head,needle", [
    (b"GGUX", "bad magic 'GGUX'"),
    (b"\x7fELF", "not a GGUF file"),
    (b"gguf", "not a GGUF file"),
])
def test_wrong_magic(head, needle):
    data = head + enc_gguf([GOOD_KV])[4:]
    assert needle in error_of(data) or "not a GGUF file" in error_of(data)


@pytest.mark.parametrize("version,needle", [
    (1, "version 1 is not supported"),
    (0, "unsupported GGUF version 0"),
    (4, "unsupported GGUF version 4"),
    (0x03000000, "big-endian"),
    (0x02000000, "big-endian"),
    (0xFFFFFFFF, "unsupported GGUF version 4294967295"),
])
def test_bad_version(version, needle):
    assert needle in error_of(enc_gguf([GOOD_KV], version=version))


@pytest.mark.parametrize("field,value,needle", [
    ("n_kv", 2**63, "metadata count 9223372036854775808"),
    ("n_kv", 2**64 - 1, "metadata count"),
    ("n_kv", 5, "cannot fit"),
    ("n_kv", 2, "truncated"),
    ("n_tensors", 2**63, "tensor count 9223372036854775808"),
    ("n_tensors", 2**64 - 1, "tensor count"),
    ("n_tensors", 1, "truncated"),
])
def test_absurd_counts(field, value, needle):
    msg = error_of(enc_gguf([GOOD_KV], alignment=1, **{field: value}))
    assert needle in msg


@pytest.mark.parametrize("length", [2**63, 2**64 - 1, 2**40, 1000])
def test_absurd_key_length(length):
    data = enc_gguf([struct.pack("<Q", length) + b"abc" + struct.pack("<I", VT.UINT8) + b"\0"])
    msg = error_of(data)
    assert "key" in msg and f"length {length}" in msg


def test_key_over_64k():
    msg = error_of(enc_gguf([enc_kv("k" * 70000, VT.UINT8, b"\1")]))
    assert "more than the limit 65536" in msg


@pytest.mark.parametrize("length", [2**63, 2**30 + 1, 500])
def test_absurd_string_length(length):
    data = enc_gguf([enc_kv("my.key", VT.STRING, struct.pack("<Q", length) + b"x" * 8)])
    msg = error_of(data)
    assert "'my.key'" in msg and f"length {length}" in msg


@pytest.mark.parametrize("elem,length", [(VT.UINT8, 2**63), (VT.UINT64, 2**64 - 1), (VT.STRING, 2**62),
                                         (VT.ARRAY, 10**6), (VT.INT32, 100)])
def test_absurd_array_length(elem, length):
    data = enc_gguf([enc_kv("my.arr", VT.ARRAY, enc_array(elem, [b"\0" * 16], count=length))])
    msg = error_of(data)
    assert "'my.arr'" in msg and f"array of {length}" in msg and "cannot fit" in msg


def test_string_in_array_too_long():
    data = enc_gguf([enc_kv("my.arr", VT.ARRAY, enc_array(VT.STRING, [enc_str("ok"), struct.pack("<Q", 2**62)]))])
    msg = error_of(data)
    assert "'my.arr'" in msg and "element 1 of 2" in msg


@pytest.mark.parametrize("vtype", [13, 100, 2**32 - 1])
def test_unknown_value_type(vtype):
    msg = error_of(enc_gguf([GOOD_KV, enc_kv("odd.key", vtype, b"\0" * 16)]))
    assert "'odd.key'" in msg and f"unknown value type {vtype}" in msg


def test_unknown_array_element_type():
    msg = error_of(enc_gguf([enc_kv("odd.arr", VT.ARRAY, struct.pack("<IQ", 13, 1) + b"\0" * 16)]))
    assert "'odd.arr'" in msg and "unknown array element type 13" in msg


def test_arrays_nested_too_deep():
    payload = struct.pack("<IQ", VT.INT32, 0)
    for _ in range(20):
        payload = struct.pack("<IQ", VT.ARRAY, 1) + payload
    msg = error_of(enc_gguf([enc_kv("deep", VT.ARRAY, payload)]))
    assert "'deep'" in msg and "nested more than 16" in msg


def test_nested_arrays_within_limit_are_fine():
    payload = struct.pack("<IQ", VT.INT32, 1) + struct.pack("<i", 42)
    for _ in range(14):
        payload = struct.pack("<IQ", VT.ARRAY, 1) + payload
    value = GGUFFile.from_bytes(enc_gguf([enc_kv("deep", VT.ARRAY, payload)])).metadata["deep"]
    for _ in range(14):
        (value,) = value
    assert value == [42]


def tensor_file(name="w", dims=(32,), ttype=0, offset=0, data_bytes=4096, extra=()):
    return enc_gguf([GOOD_KV], [enc_tensor_info(name, dims, ttype, offset), *extra], b"\0" * data_bytes)


@pytest.mark.parametrize("ttype", [4, 5, 31, 36, 47, 48, 1000, 2**31, 2**32 - 1])
def test_unknown_tensor_type(ttype):
    msg = error_of(tensor_file("blk.0.w", ttype=ttype))
    assert "'blk.0.w'" in msg and f"unknown type number {ttype}" in msg


@pytest.mark.parametrize("ndim", [5, 8, 2**32 - 1])
def test_too_many_dims(ndim):
    info = enc_str("w4") + struct.pack("<I", ndim) + struct.pack("<4Q", 1, 1, 1, 1) + struct.pack("<IQ", 0, 0)
    msg = error_of(enc_gguf([GOOD_KV], [info], b"\0" * 64))
    assert "'w4'" in msg and f"has {ndim} dimensions, more than 4" in msg


@pytest.mark.parametrize("dims,needle", [
    ((0,), "dimension 0 is 0"),
    ((32, 0), "dimension 1 is 0"),
    ((32, 2, 3, 0), "dimension 3 is 0"),
    ((2**63,), "dimension 0 is"),
    ((2**64 - 1,), "dimension 0 is 18446744073709551615"),
    ((2**32, 2**32), "number of elements overflows"),
    ((2**31, 2**31, 2), "number of elements overflows"),
    ((2**62, 2), "number of elements overflows"),
    ((2**62,), "size in bytes overflows"),   # F32: 2^64 bytes
    ((2**40,), "past the end of the file"),
])
def test_bad_shapes(dims, needle):
    msg = error_of(tensor_file("shape.t", dims=dims))
    assert "'shape.t'" in msg and needle in msg


def test_zero_dims_is_a_scalar():
    f = GGUFFile.from_bytes(tensor_file("s", dims=()))
    assert f.tensors[0].shape == () and f.tensors[0].nbytes == 4


@pytest.mark.parametrize("ttype,ne0,name", [(8, 33, "Q8_0"), (12, 128, "Q4_K"), (2, 16, "Q4_0"), (20, 31, "IQ4_NL")])
def test_row_not_multiple_of_block(ttype, ne0, name):
    msg = error_of(tensor_file("q.t", dims=(ne0, 2), ttype=ttype))
    assert "'q.t'" in msg and f"row length {ne0} is not a multiple of the {name} block size" in msg


@pytest.mark.parametrize("offset", [4, 1, 31, 48])
def test_misaligned_tensor(offset):
    msg = error_of(tensor_file("mis", offset=offset))
    assert "'mis'" in msg and f"data offset {offset} is not a multiple of the alignment 32" in msg


def test_misaligned_with_custom_alignment():
    data = f32_tensor_file([("a", (16,), 0, 16), ("b", (16,), 64, 16)], alignment=128)
    msg = error_of(data)
    assert "'b'" in msg and "alignment 128" in msg


@pytest.mark.parametrize("offset", [4096, 4064, 2**40, 2**64 - 32])
def test_tensor_outside_file(offset):
    msg = error_of(tensor_file("far", offset=offset))
    assert "'far'" in msg and "past the end of the file" in msg


@pytest.mark.parametrize("specs,pair", [
    ([("a", (32,), 0, 32), ("b", (32,), 96, 32)], ("a", "b")),     # a: [0,128) b: [96,...)
    ([("a", (8,), 64, 8), ("b", (64,), 0, 64)], ("b", "a")),       # listed out of order
    ([("a", (8,), 0, 8), ("b", (8,), 0, 8)], ("a", "b")),          # same offset
    ([("x", (8,), 0, 8), ("a", (8,), 64, 8), ("b", (100,), 32, 100)], ("b", "a")),
])
def test_overlapping_tensors(specs, pair):
    msg = error_of(f32_tensor_file(specs))
    assert "overlap" in msg and f"'{pair[0]}'" in msg and f"'{pair[1]}'" in msg


def test_gaps_between_tensors_are_fine():
    f = GGUFFile.from_bytes(f32_tensor_file([("a", (8,), 0, 8), ("b", (8,), 128, 8)]))
    assert [t.offset for t in f.tensors] == [0, 128]


def test_duplicate_keys():
    kv = enc_kv("dup.key", VT.UINT32, enc_scalar(VT.UINT32, 1))
    msg = error_of(enc_gguf([kv, GOOD_KV, kv]))
    assert "duplicate key 'dup.key'" in msg


def test_duplicate_tensor_names():
    infos = [enc_tensor_info("same", (8,), 0, 0), enc_tensor_info("same", (8,), 0, 32)]
    msg = error_of(enc_gguf([GOOD_KV], infos, b"\0" * 64))
    assert "duplicate tensor name 'same'" in msg


@pytest.mark.parametrize("vtype,payload,needle", [
    (VT.UINT32, enc_scalar(VT.UINT32, 0), "general.alignment 0 is not a power of two"),
    (VT.UINT32, enc_scalar(VT.UINT32, 3), "general.alignment 3 is not a power of two"),
    (VT.UINT32, enc_scalar(VT.UINT32, 96), "general.alignment 96 is not a power of two"),
    (VT.FLOAT32, enc_scalar(VT.FLOAT32, 32.0), "must be a UINT32, found FLOAT32"),
    (VT.STRING, enc_str("32"), "must be a UINT32, found STRING"),
    (VT.INT32, enc_scalar(VT.INT32, 32), "must be a UINT32, found INT32"),
    (VT.UINT64, enc_scalar(VT.UINT64, 32), "must be a UINT32, found UINT64"),
    (VT.ARRAY, enc_array(VT.UINT32, [enc_scalar(VT.UINT32, 32)]), "must be a UINT32, found ARRAY"),
])
def test_bad_alignment(vtype, payload, needle):
    assert needle in error_of(enc_gguf([enc_kv("general.alignment", vtype, payload)]))


def test_bad_gguf_inside_llamafile(small):
    data, _ = small
    bad = data[:400]
    archive = zip_by_hand([("m.gguf", bad)])
    msg = error_of(archive)
    assert "GGUF member at file offset" in msg and "truncated" in msg


def test_not_gguf_not_zip():
    assert "not a GGUF file" in error_of(b"hello world, this is text" * 10)
    assert "only 2 bytes" in error_of(b"GG")
    assert "not a GGUF file" in error_of(b"")
