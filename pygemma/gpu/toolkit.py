"""Find a GPU compiler (nvcc or hipcc), its version, and the vendor BLAS beside it.

Nothing here compiles; it only looks at the machine.  The search order is the
documented one: PATH, then $CUDA_PATH/bin ($HIP_PATH/bin), then the vendors'
default install directory.
"""
import dataclasses
import glob
import os
import re
import shutil
import subprocess
import sys

from ..errors import GPUError

# backend -> (compiler, environment variables naming a toolkit root, default bin dirs)
COMPILERS = {
    "cuda": ("nvcc", ("CUDA_PATH", "CUDA_HOME"), ["/usr/local/cuda/bin"]),
    "hip": ("hipcc", ("HIP_PATH", "ROCM_PATH"), ["/opt/rocm/bin"]),
}
VENDOR = {"cuda": "NVIDIA (CUDA)", "hip": "AMD (ROCm/HIP)"}
# Environment every run of the compiler gets: hipcc guesses its platform and picks NVIDIA's
# (it drives nvcc) whenever nvcc is on PATH; we always build for AMD with it.
COMPILER_ENV = {"cuda": {}, "hip": {"HIP_PLATFORM": "amd"}}


def compiler_env(backend):
    """os.environ plus what the backend's compiler must see (see COMPILER_ENV)."""
    return dict(os.environ, **COMPILER_ENV[backend])


@dataclasses.dataclass(frozen=True)
class Toolkit:
    backend: str               # "cuda" | "hip"
    compiler: str              # absolute path of nvcc / hipcc
    version: str               # e.g. "13.0.88" (nvcc), "5.7.31921" (hipcc)
    root: str                  # toolkit root holding include/ and lib/ ("" if not found)
    blas_include: str = ""     # directory of cublas_v2.h / hipblas.h; "" = no vendor BLAS
    blas_link: tuple = ()      # linker arguments for the vendor BLAS
    lib_dirs: tuple = ()       # directories the library needs at run time (rpath)

    @property
    def has_blas(self):
        return bool(self.blas_include and self.blas_link)


def find_compiler(backend, fallback_dirs=None):
    """Absolute path of the backend's compiler, or None."""
    name, env_vars, defaults = COMPILERS[backend]
    found = shutil.which(name)
    if found:
        return os.path.abspath(found)
    dirs = [os.path.join(os.environ[v], "bin") for v in env_vars if os.environ.get(v)]
    dirs += defaults if fallback_dirs is None else fallback_dirs
    for d in dirs:
        path = os.path.join(d, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.abspath(path)
    return None


def compiler_version(backend, compiler):
    """The toolkit version the compiler reports (`nvcc --version`, `hipcc --version`)."""
    try:
        r = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60,
                           env=compiler_env(backend))
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GPUError(f"{compiler} --version failed: {e}") from None
    text = r.stdout + r.stderr
    if r.returncode != 0:
        raise GPUError(f"{compiler} --version failed (exit {r.returncode}): {text.strip()[-500:]}")
    pattern = r"release \d+\.\d+, V(\d+(?:\.\d+)+)" if backend == "cuda" else r"HIP version:\s*(\d+(?:\.\d+)+)"
    m = re.search(pattern, text) or re.search(r"(\d+\.\d+(?:\.\d+)*)", text)
    return m.group(1) if m else "unknown"


def _toolkit_root(backend, compiler):
    """The directory with the runtime headers: beside the compiler, or named by the environment."""
    header = "cuda_runtime.h" if backend == "cuda" else os.path.join("hip", "hip_runtime.h")
    _, env_vars, defaults = COMPILERS[backend]
    candidates = [os.path.dirname(os.path.dirname(os.path.realpath(compiler))),
                  os.path.dirname(os.path.dirname(compiler))]
    candidates += [os.environ[v] for v in env_vars if os.environ.get(v)]
    candidates += [os.path.dirname(d) for d in defaults]
    for root in candidates:
        if glob.glob(os.path.join(root, "include", header)) or \
           glob.glob(os.path.join(root, "targets", "*", "include", header)):
            return root
    return ""


def _site_dirs(pattern):
    """Matches of `pattern` under every sys.path entry (pip's nvidia-* wheels live there)."""
    out = []
    for entry in sys.path:
        if entry and os.path.isdir(entry):
            out += sorted(glob.glob(os.path.join(entry, pattern)))
    return out


def _find_lib(dirs, name, major=None):
    """Linker argument(s) for lib<name>: -L/-l when the unversioned .so exists, else the file."""
    for d in dirs:
        if os.path.exists(os.path.join(d, f"lib{name}.so")):
            return d, (f"-L{d}", f"-l{name}")
        versioned = sorted(glob.glob(os.path.join(d, f"lib{name}.so.[0-9]*")), key=len)
        if major is not None:
            versioned = [v for v in versioned if os.path.basename(v).split(".so.")[1].split(".")[0] == major]
        if versioned:       # pip's nvidia-* wheels ship only lib<name>.so.<major>
            return d, (f"-L{d}", f"-l:{os.path.basename(versioned[0])}")
    return None, ()


def _cuda_blas(root, version):
    """(include dir, link args, lib dirs) of cuBLAS + cuBLASLt matching the toolkit's major version."""
    major = version.split(".")[0]
    inc_dirs = [os.path.join(root, "include")] + glob.glob(os.path.join(root, "targets", "*", "include"))
    lib_dirs = [os.path.join(root, d) for d in ("lib64", "lib")] + glob.glob(os.path.join(root, "targets", "*", "lib"))
    inc_dirs += _site_dirs(f"nvidia/cu{major}/include") + _site_dirs("nvidia/cublas/include")
    lib_dirs += _site_dirs(f"nvidia/cu{major}/lib") + _site_dirs("nvidia/cublas/lib")
    inc = next((d for d in inc_dirs if os.path.exists(os.path.join(d, "cublas_v2.h"))), "")
    if not inc:
        return "", (), ()
    d1, blas = _find_lib(lib_dirs, "cublas", major)
    d2, blas_lt = _find_lib(lib_dirs, "cublasLt", major)
    if not (blas and blas_lt):
        return "", (), ()
    return inc, blas + blas_lt, tuple(dict.fromkeys([d1, d2]))


def _hip_blas(root):
    inc_dirs = [os.path.join(root, "include"), os.path.join(root, "include", "hipblas")]
    lib_dirs = [os.path.join(root, "lib"), os.path.join(root, "lib64")] + \
        glob.glob(os.path.join(root, "lib", "*-linux-gnu"))
    inc = next((d for d in inc_dirs if os.path.exists(os.path.join(d, "hipblas.h"))), "")
    if not inc:
        return "", (), ()
    d, link = _find_lib(lib_dirs, "hipblas")
    return (inc, link, (d,)) if link else ("", (), ())


def _runtime_lib_dirs(backend, root):
    """Where libcudart / libamdhip64 live, for the library's rpath."""
    name = "libcudart.so*" if backend == "cuda" else "libamdhip64.so*"
    dirs = [os.path.join(root, d) for d in ("lib64", "lib")] + glob.glob(os.path.join(root, "targets", "*", "lib"))
    return tuple(os.path.realpath(d) for d in dirs if glob.glob(os.path.join(d, name)))


def find_toolkit(backend, fallback_dirs=None):
    """The Toolkit for "cuda" or "hip"; GPUError naming where we looked if there is none."""
    compiler = find_compiler(backend, fallback_dirs)
    if compiler is None:
        name, env_vars, defaults = COMPILERS[backend]
        where = ", ".join(["PATH"] + [f"${v}/bin" for v in env_vars] + list(defaults))
        raise GPUError(f"{VENDOR[backend]} compiler `{name}` not found (looked in {where}); "
                       f"install the {'CUDA toolkit' if backend == 'cuda' else 'ROCm HIP SDK'}")
    version = compiler_version(backend, compiler)
    root = _toolkit_root(backend, compiler)
    inc, link, blas_dirs = ("", (), ())
    if root:
        inc, link, blas_dirs = _cuda_blas(root, version) if backend == "cuda" else _hip_blas(root)
    lib_dirs = _runtime_lib_dirs(backend, root) if root else ()
    return Toolkit(backend, compiler, version, root, inc, tuple(link),
                   tuple(dict.fromkeys(lib_dirs + tuple(blas_dirs))))
