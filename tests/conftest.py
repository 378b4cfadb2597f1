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
