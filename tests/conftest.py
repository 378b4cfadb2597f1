"""Fixtures shared by the test modules."""
import pytest

import pygemma


@pytest.fixture(scope="session")
def model_path():
    """Path of the default model (Gemma 3 270M Q4_K_M from PyPI); skips when not installed."""
    path = pygemma.model.default_model_path()
    if path is None:
        pytest.skip("default model package not installed")
    return str(path)


def _tier_params():
    """The CPU tiers a tier-parametrized test runs on: the one this CPU would pick, AVX2 when the
    CPU has something better (the tier most users' machines run), and scalar."""
    from pygemma import cpu
    tiers = cpu.supported_tiers()
    out = [pytest.param(tiers[-1], id=f"cpu-{tiers[-1]}")]
    if "avx2" in tiers and tiers[-1] != "avx2":
        out.append(pytest.param("avx2", id="cpu-avx2"))
    if tiers[-1] != "scalar":
        out.append(pytest.param("scalar", id="cpu-scalar"))
    return out


@pytest.fixture(params=_tier_params())
def cpu_tier(request, monkeypatch):
    """Run the test on one CPU tier: the kernels in this process, and PYGEMMA_CPU for the
    processes it starts.  Modules opt in with `pytestmark = pytest.mark.usefixtures("cpu_tier")`,
    so a tier-specific failure fails on any machine CI runs on."""
    from pygemma import cpu
    monkeypatch.setenv("PYGEMMA_CPU", request.param)
    with cpu.forced_tier(request.param):
        yield request.param
