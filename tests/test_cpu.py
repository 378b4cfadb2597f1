"""The CPU probe and the type table."""
import pytest

from pygemma import cpu
from pygemma._ffi import ffi, lib


def test_scalar_tier_always_supported():
    assert "scalar" in cpu.supported_tiers()
    assert cpu.tier_name() in cpu.supported_tiers()


def test_forced_tier_restores_previous():
    before = cpu.tier_name()
    with cpu.forced_tier("scalar"):
        assert cpu.tier_name() == "scalar"
    assert cpu.tier_name() == before


def test_unsupported_tier_is_an_error():
    for name in cpu.TIERS:
        if name not in cpu.supported_tiers():
            with pytest.raises(ValueError, match="not supported"):
                cpu.set_tier(name)


@pytest.mark.parametrize("name,block,nbytes", [
    ("F32", 1, 4), ("F16", 1, 2), ("BF16", 1, 2), ("Q4_0", 32, 18), ("Q4_1", 32, 20),
    ("Q5_0", 32, 22), ("Q5_1", 32, 24), ("Q8_0", 32, 34), ("Q2_K", 256, 84),
    ("Q3_K", 256, 110), ("Q4_K", 256, 144), ("Q5_K", 256, 176), ("Q6_K", 256, 210),
])
def test_type_geometry_matches_gguf_py(name, block, nbytes):
    gguf = pytest.importorskip("gguf")
    t = lib.pg_type_from_name(name.encode())
    assert t == gguf.GGMLQuantizationType[name].value
    assert ffi.string(lib.pg_type_name(t)).decode() == name
    assert (lib.pg_type_block_size(t), lib.pg_type_block_bytes(t)) == (block, nbytes)
    assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]] == (block, nbytes)
    assert lib.pg_type_supported(t)
