"""Exceptions raised by pygemma.  Every C status code maps to one of these."""


class PygemmaError(Exception):
    """Base class of every pygemma error."""


class GGUFError(PygemmaError, ValueError):
    """A GGUF (or llamafile) file is malformed or cannot be read."""


class UnsupportedError(PygemmaError, ValueError):
    """Valid input that pygemma does not handle (tensor type, architecture)."""


class ContextFullError(PygemmaError, ValueError):
    """The prompt or conversation does not fit in the context window."""


class CancelledError(PygemmaError):
    """The operation was interrupted."""


class GPUError(PygemmaError, RuntimeError):
    """The GPU backend failed (compiler missing, out of memory, ...)."""


class GPUBuildError(GPUError):
    """Compiling the GPU kernels failed; `output` holds the tail of the compiler's messages."""

    def __init__(self, message, output=""):
        super().__init__(message)
        self.output = output


class ModelStateError(PygemmaError, RuntimeError):
    """The object was used in the wrong state (e.g. after close())."""
