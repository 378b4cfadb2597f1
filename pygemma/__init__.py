"""pygemma: run Gemma 2 and Gemma 3 GGUF models on a C core.

The public names load on first use (PEP 562): `import pygemma` is quick, and the command line
(`python -m pygemma`, the `pygemma` script) reaches its own Ctrl-C handling before numpy and
the C core are imported.
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "CancelledError": "errors", "ContextFullError": "errors", "GGUFError": "errors",
    "GPUBuildError": "errors", "GPUError": "errors", "ModelStateError": "errors",
    "PygemmaError": "errors", "UnsupportedError": "errors",
    "GGUFFile": "gguf_file",
    "GenerationStats": "model", "Model": "model",
    "SamplingParams": "sampling",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:                  # a submodule not imported yet (pygemma.model, ...)
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'pygemma' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value             # later lookups skip this function
    return value


def __dir__():
    return __all__
