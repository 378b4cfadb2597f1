"""CPU kernel tiers: what this CPU supports and which one runs."""
import contextlib

from ._ffi import check, ffi, lib

TIERS = ("scalar", "avx2", "avx512", "neon")


def tier_name(tier=None):
    return ffi.string(lib.pg_cpu_tier_name(lib.pg_cpu_tier_get() if tier is None else tier)).decode()


def supported_tiers():
    """Names of every tier that can run on this CPU, lowest first."""
    return [name for i, name in enumerate(TIERS) if lib.pg_cpu_tier_supported(i)]


def features():
    return ffi.string(lib.pg_cpu_features()).decode()


def set_tier(name):
    check(lib.pg_cpu_tier_set(TIERS.index(name)))


@contextlib.contextmanager
def forced_tier(name):
    """Run the block with the kernels of tier `name` (for tests and benchmarks)."""
    old = lib.pg_cpu_tier_get()
    set_tier(name)
    try:
        yield
    finally:
        check(lib.pg_cpu_tier_set(old))


def physical_cores():
    return lib.pg_cpu_physical_cores()


def kernels_name():
    """Name of the kernel set running now, e.g. "avx512-vnni-bf16", "avx2", "scalar"."""
    return ffi.string(lib.pg_kernels_name()).decode()
