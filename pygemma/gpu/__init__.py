"""The GPU build step: find nvcc/hipcc, compile kernels/ into libpygemma_gpu.so with ninja,
and keep it in a per-machine cache (see cache.py for the layout).

    gpu_library("auto" | "nvidia" | "amd" | "disable", BuildOptions(...)) -> path or None
    build_library("cuda" | "hip", BuildOptions(...)) -> path
"""
from .builder import BuildOptions, build_library  # noqa: F401
from .choose import CHOICES, apply_to_params, c_core_has_gpu, gpu_library  # noqa: F401
