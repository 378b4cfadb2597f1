"""The compiled C core and the one place where C status codes become exceptions."""
from . import errors
from ._core import ffi, lib  # noqa: F401  (built by csrc/build_ffi.py)

_STATUS_TO_ERROR = {
    lib.PG_ERR_IO: OSError,
    lib.PG_ERR_FORMAT: errors.GGUFError,
    lib.PG_ERR_UNSUPPORTED: errors.UnsupportedError,
    lib.PG_ERR_NOMEM: MemoryError,
    lib.PG_ERR_ARG: ValueError,
    lib.PG_ERR_CONTEXT: errors.ContextFullError,
    lib.PG_ERR_CANCELLED: errors.CancelledError,
    lib.PG_ERR_GPU: errors.GPUError,
    lib.PG_ERR_STATE: errors.ModelStateError,
}


def last_error():
    return ffi.string(lib.pg_last_error()).decode("utf-8", "replace")


def check(status, error=None):
    """Raise the exception for a non-zero pg_status, with the C core's message.

    `error` overrides the exception class (e.g. GGUFError for I/O failures
    while opening a model file)."""
    if status == lib.PG_OK:
        return
    cls = error or _STATUS_TO_ERROR.get(status, errors.PygemmaError)
    raise cls(last_error() or f"pygemma C core returned status {status}")
