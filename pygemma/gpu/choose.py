"""--gpu auto|nvidia|amd|disable: which backend's library to use, or None for the CPU."""
import warnings

from ..errors import GPUError
from . import builder, targets

BACKEND_OF = {"nvidia": "cuda", "amd": "hip"}
CHOICES = ("auto", "nvidia", "amd", "disable")


def probe(path):
    """The C core's description of the library's device 0 (pg_gpu_probe), or None when this
    build of the core has no probe; GPUError when the library or device is unusable."""
    from .._ffi import check, ffi, lib
    if not hasattr(lib, "pg_gpu_probe"):
        return None
    info = ffi.new("char[]", 512)
    check(lib.pg_gpu_probe(path.encode(), info, len(info)), GPUError)
    return ffi.string(info).decode("utf-8", "replace")


def _usable(backend, options, check_device):
    path = builder.build_library(backend, options)
    if check_device:
        probe(path)
    return path


def gpu_library(gpu="auto", options=None, check_device=False):
    """Path of the GPU library to load, or None to run on the CPU.

    An explicit "nvidia"/"amd" that cannot be used raises GPUError (or
    GPUBuildError); "auto" tries NVIDIA then AMD where a GPU of that kind is
    present and, if neither works, warns once and returns None.  check_device:
    also load the library and open its device (pg_gpu_probe) before choosing it."""
    if gpu not in CHOICES:
        raise ValueError(f"gpu must be one of {', '.join(CHOICES)}, got {gpu!r}")
    if gpu == "disable":
        return None
    options = options or builder.BuildOptions()
    if gpu != "auto":
        return _usable(BACKEND_OF[gpu], options, check_device)
    reasons = []
    for name, backend in BACKEND_OF.items():
        if not targets.device_present(backend):
            continue
        try:
            return _usable(backend, options, check_device)
        except GPUError as e:
            reasons.append(f"{name}: {str(e).splitlines()[0]}")
    why = "; ".join(reasons) if reasons else "no NVIDIA or AMD GPU found"
    warnings.warn(f"no usable GPU ({why}); running on the CPU", RuntimeWarning, stacklevel=3)
    return None


def c_core_has_gpu():
    """Whether this build's C core takes a GPU library (pg_model_params.gpu_library)."""
    from .._ffi import ffi
    return "gpu_library" in dict(ffi.typeof("pg_model_params").fields)


def apply_to_params(params, n_gpu_layers, gpu="auto", options=None):
    """Fill a pg_model_params' n_gpu_layers and gpu_library for Model().

    Returns the cdata holding the library path, to keep alive until pg_model_load returns."""
    from .._ffi import ffi
    params.n_gpu_layers = 0
    if not n_gpu_layers or gpu == "disable":
        return None
    if not c_core_has_gpu():
        warnings.warn("GPU offload is not available in this build of pygemma; running on the CPU",
                      RuntimeWarning, stacklevel=3)
        return None
    path = gpu_library(gpu, options, check_device=True)
    if path is None:
        return None
    keep = ffi.new("char[]", path.encode())
    params.gpu_library = keep
    params.n_gpu_layers = int(n_gpu_layers)
    return keep
