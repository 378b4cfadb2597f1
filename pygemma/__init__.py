"""pygemma: run Gemma 2 and Gemma 3 GGUF models on a C core."""
from .errors import (  # noqa: F401
    CancelledError,
    ContextFullError,
    GGUFError,
    GPUBuildError,
    GPUError,
    ModelStateError,
    PygemmaError,
    UnsupportedError,
)

from .gguf_file import GGUFFile  # noqa: F401,E402

__version__ = "0.1.0"
from .model import GenerationStats, Model  # noqa: E402,F401
from .sampling import SamplingParams  # noqa: E402,F401
