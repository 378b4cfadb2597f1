"""Which GPU architectures to compile for, and whether a GPU is present at all.

NVIDIA: the compute capability that `nvidia-smi` reports (sm_XY, what
`-arch=native` would pick, but named so it can be part of the cache key),
`-arch=native` when a GPU is listed but the driver is too old to report it,
or the explicit --gpu-arch list (sm_80,sm_90: builds on a machine without a
GPU).  AMD: the gfx targets `rocminfo` / `amdgpu-arch` report, else
`--offload-arch=native`, or the explicit list.
"""
import glob
import os
import re
import shutil
import subprocess

from ..errors import GPUError

NATIVE = "native"


def _run(argv, timeout=30):
    """stdout of a probe command, or None if it is missing or fails."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


# ---- NVIDIA -----------------------------------------------------------------------
def parse_cuda_arch(text):
    """'sm_80' | '80' | '8.0' | 'compute_90a' -> 'sm_80' / 'sm_90a'; ValueError otherwise."""
    t = text.strip().lower()
    m = re.fullmatch(r"(?:sm_|compute_)?(\d+)\.?(\d+)?([af]?)", t)
    if not m:
        raise ValueError(f"bad CUDA architecture {text!r} (expected e.g. sm_80, 8.0 or 90)")
    major, minor, suffix = m.group(1), m.group(2), m.group(3)
    digits = major + minor if minor is not None else major
    if len(digits) < 2:
        raise ValueError(f"bad CUDA architecture {text!r} (expected e.g. sm_80, 8.0 or 90)")
    return f"sm_{digits}{suffix}"


def nvidia_gpus():
    """Names of the NVIDIA GPUs the driver lists ([] without a driver or GPU)."""
    out = _run(["nvidia-smi", "-L"])
    if out:
        return [line.split(":", 1)[1].split("(UUID")[0].strip() for line in out.splitlines() if line.startswith("GPU ")]
    return [os.path.basename(p) for p in glob.glob("/proc/driver/nvidia/gpus/*")]


def nvidia_compute_caps():
    """Distinct sm_XY of the GPUs present, from `nvidia-smi --query-gpu=compute_cap`."""
    out = _run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"])
    caps = []
    for line in (out or "").splitlines():
        try:
            caps.append(parse_cuda_arch(line))
        except ValueError:
            continue
    return sorted(set(caps))


# ---- AMD --------------------------------------------------------------------------
def parse_hip_arch(text):
    t = text.strip().lower()
    if not re.fullmatch(r"gfx[0-9a-f]+(?::[a-z+\-:]+)?", t):
        raise ValueError(f"bad AMD GPU target {text!r} (expected e.g. gfx90a or gfx1100)")
    return t


def amd_gfx_targets():
    """Distinct gfx targets of the AMD GPUs present (the CPU agent's gfx000 left out)."""
    found = []
    for argv in (["rocminfo"], ["amdgpu-arch"], ["offload-arch"]):
        out = _run(argv)
        if out:
            found = re.findall(r"\b(gfx[0-9a-f]+)\b", out)
            found = [g for g in found if g != "gfx000"]
            if found:
                break
    return sorted(set(found))


def amd_gpu_present():
    return bool(amd_gfx_targets()) or (os.path.exists("/dev/kfd") and bool(glob.glob("/dev/dri/renderD*")))


def opencl_vendors():
    """GPU vendors pyopencl sees, if pyopencl is installed (optional discovery)."""
    try:
        import pyopencl as cl
    except ImportError:
        return set()
    vendors = set()
    try:
        for platform in cl.get_platforms():
            for dev in platform.get_devices(device_type=cl.device_type.GPU):
                v = dev.vendor.lower()
                vendors.add("cuda" if "nvidia" in v else "hip" if ("amd" in v or "advanced micro" in v) else v)
    except Exception:       # no ICD, broken driver: discovery is best effort
        return set()
    return vendors


def device_present(backend):
    """Whether a GPU of this backend is visible on the machine."""
    if backend == "cuda":
        return bool(nvidia_gpus()) or "cuda" in opencl_vendors()
    return amd_gpu_present() or "hip" in opencl_vendors()


# ---- choice -----------------------------------------------------------------------
def resolve_archs(backend, explicit=None):
    """The sorted tuple of targets to build for ('native' alone when only that is known).

    explicit: a list or comma-separated string (--gpu-arch)."""
    parse = parse_cuda_arch if backend == "cuda" else parse_hip_arch
    if explicit:
        items = explicit.split(",") if isinstance(explicit, str) else list(explicit)
        items = [i for i in (s.strip() for s in items) if i]
        if items == [NATIVE]:
            return (NATIVE,)
        try:
            return tuple(sorted({parse(i) for i in items}))
        except ValueError as e:
            raise GPUError(str(e)) from None
    if backend == "cuda":
        caps = nvidia_compute_caps()
        if caps:
            return tuple(caps)
        if nvidia_gpus():
            return (NATIVE,)
        raise GPUError("no NVIDIA GPU found (nvidia-smi lists none); to build without one, "
                       "name the targets: --gpu-arch sm_80,sm_90")
    targets = amd_gfx_targets()
    if targets:
        return tuple(targets)
    if amd_gpu_present():
        return (NATIVE,)
    raise GPUError("no AMD GPU found (rocminfo / amdgpu-arch list none); to build without one, "
                   "name the targets: --gpu-arch gfx90a,gfx1100")


def arch_flags(backend, archs):
    """Compiler flags selecting the targets.

    CUDA: one -gencode per sm_XY for its machine code, plus PTX of the newest
    so a newer GPU can JIT it.  HIP: one --offload-arch each."""
    if backend == "cuda":
        if tuple(archs) == (NATIVE,):
            return ["-arch=native"]
        flags = []
        for a in archs:
            cc = a[3:]
            flags += ["-gencode", f"arch=compute_{cc},code=sm_{cc}"]
        newest = max(archs, key=lambda a: int(re.match(r"\d+", a[3:]).group()))[3:]
        flags += ["-gencode", f"arch=compute_{newest},code=compute_{newest}"]
        return flags
    if tuple(archs) == (NATIVE,):
        return ["--offload-arch=native"]
    return [f"--offload-arch={a}" for a in archs]


def arch_label(archs):
    """The <arch> part of a cache directory name: sm_80+sm_90, gfx1100+gfx90a, native."""
    return "+".join(archs)
