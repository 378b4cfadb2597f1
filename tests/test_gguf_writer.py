"""GGUFWriter, checked by reading its files back with gguf-py's GGUFReader (the oracle)."""
import os

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from pygemma.gguf_writer import GGUFWriter, ValueType, tensor_nbytes  # noqa: E402

VT = gguf.GGUFValueType


def read(path):
    return gguf.GGUFReader(path)


def field_value(reader, key):
    f = reader.fields[key]
    return f.contents()


SCALARS = [
    ("u8", 200, ValueType.UINT8), ("i8", -100, ValueType.INT8),
    ("u16", 60000, ValueType.UINT16), ("i16", -30000, ValueType.INT16),
    ("u32", 4_000_000_000, ValueType.UINT32), ("i32", -2_000_000_000, ValueType.INT32),
    ("f32", 1.5, ValueType.FLOAT32), ("b", True, ValueType.BOOL),
    ("s", "héllo ▁wörld", ValueType.STRING), ("u64", 2**63 + 5, ValueType.UINT64),
    ("i64", -(2**62), ValueType.INT64), ("f64", 1e-300, ValueType.FLOAT64),
]


def test_every_scalar_type_round_trips(tmp_path):
    path = tmp_path / "m.gguf"
    with GGUFWriter(path) as w:
        for key, value, vt in SCALARS:
            w.add(key, value, vt)
    r = read(path)
    for key, value, vt in SCALARS:
        f = r.fields[key]
        assert f.types == [VT(int(vt))], key
        assert f.contents() == value, key


def test_inferred_types(tmp_path):
    path = tmp_path / "m.gguf"
    with GGUFWriter(path) as w:
        w.add("str", "x")
        w.add("bool", False)
        w.add("int", 7)
        w.add("big", 2**40)
        w.add("float", 0.25)
        w.add("ints", [1, 2, 3])
        w.add("floats", [0.5, -1.0])
        w.add("strs", ["a", "bc", ""])
        w.add("np_u8", np.array([1, 2, 255], dtype=np.uint8))
        w.add("np_f32", np.float32(2.5))
        w.add("empty", [], element_type="STRING")
    r = read(path)
    expect = {"str": [VT.STRING], "bool": [VT.BOOL], "int": [VT.INT32], "big": [VT.INT64],
              "float": [VT.FLOAT32], "ints": [VT.ARRAY, VT.INT32], "floats": [VT.ARRAY, VT.FLOAT32],
              "strs": [VT.ARRAY, VT.STRING], "np_u8": [VT.ARRAY, VT.UINT8], "np_f32": [VT.FLOAT32]}
    for key, types in expect.items():
        assert r.fields[key].types == types, key
    assert r.fields["strs"].contents() == ["a", "bc", ""]
    assert r.fields["np_u8"].contents() == [1, 2, 255]
    assert r.fields["floats"].contents() == [0.5, -1.0]
    assert r.fields["big"].contents() == 2**40
    empty = r.fields["empty"].parts[3:]     # after key length, key, value type
    assert int(empty[0][0]) == VT.STRING and int(empty[1][0]) == 0


def test_explicit_array_element_types(tmp_path):
    path = tmp_path / "m.gguf"
    with GGUFWriter(path) as w:
        w.add("tt", [1, 6, 3], ValueType.ARRAY, ValueType.INT32)
        w.add("u16s", [1, 65535], "ARRAY", "UINT16")
        w.add("f64s", [0.1, 0.2], ValueType.ARRAY, ValueType.FLOAT64)
        w.add("bools", [True, False, True], ValueType.ARRAY, ValueType.BOOL)
    r = read(path)
    assert r.fields["u16s"].types == [VT.ARRAY, VT.UINT16]
    assert r.fields["u16s"].contents() == [1, 65535]
    assert r.fields["f64s"].contents() == [0.1, 0.2]
    assert r.fields["bools"].contents() == [True, False, True]


def test_nested_arrays(tmp_path):
    path = tmp_path / "m.gguf"
    nested = [[1, 2], [3], []]
    with GGUFWriter(path) as w:
        w.add("nested", nested, ValueType.ARRAY, (ValueType.ARRAY, ValueType.UINT32))
        w.add("nested_str", [["a", "b"], ["c"]])
        w.add("after", "still aligned")
    r = read(path)
    f = r.fields["nested"]
    assert f.types[:3] == [VT.ARRAY, VT.ARRAY, VT.UINT32]
    # gguf-py flattens nested arrays; rebuild them from its parts: outer (type, n), then per
    # inner array (type, n, values...); the field's first 3 parts are key length, key, type
    parts = f.parts[3:]
    assert int(parts[0][0]) == VT.ARRAY and int(parts[1][0]) == 3
    rebuilt, i = [], 2
    for _ in range(3):
        assert int(parts[i][0]) == VT.UINT32
        n = int(parts[i + 1][0])
        rebuilt.append([int(parts[i + 2 + k][0]) for k in range(n)])
        i += 2 + n
    assert rebuilt == nested
    assert r.fields["nested_str"].contents() == ["a", "b", "c"]
    assert r.fields["after"].contents() == "still aligned"


TENSOR_TYPES = ["F32", "F16", "BF16", "Q4_0", "Q8_0", "Q4_K", "Q6_K", "Q5_1"]


@pytest.mark.parametrize("alignment", [32, 64])
def test_tensors_of_several_types(tmp_path, alignment):
    rng = np.random.default_rng(0)
    path = tmp_path / "t.gguf"
    specs = []
    for i, t in enumerate(TENSOR_TYPES):
        shape = (256, 3 + i)                          # GGUF order: 256 per row, 3+i rows
        nbytes = tensor_nbytes(shape, t)
        specs.append((f"blk.{i}.w_{t.lower()}", shape, t, rng.integers(0, 256, nbytes, np.uint8)))
    specs.append(("norm", (7,), "F32", rng.standard_normal(7).astype(np.float32)))
    with GGUFWriter(path, alignment=alignment) as w:
        w.add("general.architecture", "test")
        for name, shape, t, _ in specs:
            w.add_tensor_info(name, shape, t)
        w.write_header()
        for name, _, _, data in specs:
            if data.nbytes > 64:   # stream in chunks, too
                w.write_tensor(name, iter([data[:50], data[50:]]))
            else:
                w.write_tensor(name, data)
    r = read(path)
    assert r.alignment == alignment
    if alignment != 32:
        assert r.fields["general.alignment"].contents() == alignment
    assert len(r.tensors) == len(specs)
    for t, (name, shape, tname, data) in zip(r.tensors, specs):
        assert t.name == name
        assert t.tensor_type.name == tname
        assert tuple(int(d) for d in t.shape) == shape
        assert t.data_offset % alignment == 0
        assert t.n_bytes == data.nbytes
        assert bytes(np.asarray(t.data).tobytes()) == data.tobytes()
    assert os.path.getsize(path) % alignment == 0


def test_tensor_nbytes_geometry():
    assert tensor_nbytes((256, 2), "Q4_K") == 2 * 144
    assert tensor_nbytes((64, 3), "Q4_0") == 3 * 2 * 18
    assert tensor_nbytes((5,), "F32") == 20
    assert tensor_nbytes((6, 2), "BF16") == 24
    with pytest.raises(ValueError, match="multiple"):
        tensor_nbytes((100, 2), "Q4_K")


def test_wrong_size_is_rejected_and_leaves_no_file(tmp_path):
    path = tmp_path / "bad.gguf"
    with pytest.raises(ValueError, match="bytes"):
        with GGUFWriter(path) as w:
            w.add_tensor_info("a", (32,), "F32")
            w.write_tensor("a", np.zeros(31, np.float32))
    assert not path.exists()
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="more than"):
        with GGUFWriter(path) as w:
            w.add_tensor_info("a", (32,), "F32")
            w.write_tensor("a", np.zeros(33, np.float32))
    assert os.listdir(tmp_path) == []


def test_wrong_order_and_missing_tensors(tmp_path):
    path = tmp_path / "bad.gguf"
    w = GGUFWriter(path)
    w.add_tensor_info("a", (32,), "F32")
    w.add_tensor_info("b", (32,), "F32")
    with pytest.raises(ValueError, match="declared order"):
        w.write_tensor("b", np.zeros(32, np.float32))
    w.write_tensor("a", np.zeros(32, np.float32))
    with pytest.raises(ValueError, match="missing"):
        w.close()
    assert os.listdir(tmp_path) == []


def test_declaration_errors(tmp_path):
    w = GGUFWriter(tmp_path / "x.gguf")
    w.add("k", 1)
    with pytest.raises(ValueError, match="duplicate"):
        w.add("k", 2)
    with pytest.raises(ValueError, match="fit"):
        w.add("u8", 256, ValueType.UINT8)
    with pytest.raises(ValueError, match="fit"):
        w.add("u32", -1, ValueType.UINT32)
    with pytest.raises(TypeError):
        w.add("bad", object())
    with pytest.raises(TypeError, match="mixes"):
        w.add("mixed", [1, "a"])
    with pytest.raises(ValueError, match="unknown tensor type"):
        w.add_tensor_info("t", (32,), "Q9_9")
    with pytest.raises(ValueError, match="multiple"):
        w.add_tensor_info("t", (33, 2), "Q8_0")
    w.add_tensor_info("t", (32,), "F32")
    with pytest.raises(ValueError, match="duplicate"):
        w.add_tensor_info("t", (32,), "F32")
    w.write_header()
    with pytest.raises(RuntimeError, match="state"):
        w.add("late", 1)
    w.abort()
    assert os.listdir(tmp_path) == []


def test_exception_inside_with_discards_file(tmp_path):
    path = tmp_path / "x.gguf"
    with pytest.raises(KeyError):
        with GGUFWriter(path) as w:
            w.add("a", 1)
            w.add_tensor_info("t", (32,), "F32")
            w.write_header()
            raise KeyError("interrupted")
    assert os.listdir(tmp_path) == []


def test_overwrites_existing_file_only_on_success(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"old")
    with pytest.raises(ValueError):
        with GGUFWriter(path) as w:
            w.add_tensor_info("t", (32,), "F32")
            w.write_tensor("t", b"short")
    assert path.read_bytes() == b"old"
    with GGUFWriter(path) as w:
        w.add("a", "new")
    assert read(path).fields["a"].contents() == "new"


def test_add_raw_copies_encoded_values(tmp_path):
    src = tmp_path / "src.gguf"
    with GGUFWriter(src) as w:
        w.add("a", [[1, 2], [3]], ValueType.ARRAY, (ValueType.ARRAY, ValueType.INT16))
    # the encoding of "a" as the file holds it: after the key, up to the end of the header
    data = src.read_bytes()
    start = data.index(b"a", 24) + 1
    encoded = data[start:start + 4 + 12 + 2 * 12 + 6]      # tag, outer head, 2 inner heads, 3 x i16
    dst = tmp_path / "dst.gguf"
    with GGUFWriter(dst) as w:
        w.add_raw("a", encoded)
        w.add("after", 1)
        with pytest.raises(ValueError, match="not an encoded"):
            w.add_raw("bad", b"\x63\0\0\0")
    r = read(dst)
    assert r.fields["a"].types[:3] == [VT.ARRAY, VT.ARRAY, VT.INT16]
    assert r.fields["a"].contents() == [1, 2, 3]
    assert r.fields["after"].contents() == 1
