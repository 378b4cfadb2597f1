"""cffi builder for the C core (out-of-line API mode).

The cdef is taken from the public header itself (between the CDEF markers,
with preprocessor lines dropped), so the Python binding can never drift from
csrc/pygemma.h.  Every csrc/*.c file is compiled into pygemma._core.

Build switches (environment variables, never argv):
  PYGEMMA_DEBUG=1     -O0 -g instead of -O3
  PYGEMMA_SANITIZE=address,undefined   -fsanitize= with that list (1 means address,undefined),
                      -O1 -g -fno-omit-frame-pointer; undefined behaviour aborts.  Python itself
                      is not built with ASan, so its runtime must be loaded first:
                        LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 python ...
                      (with CC=clang: $(clang -print-file-name=libclang_rt.asan-x86_64.so)).
                      Build it in a copy of the tree, never over a shared pygemma/_core.abi3.so.
"""
import glob
import os
import platform
import re
import sysconfig

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "pygemma.h")


def public_cdef(header_text):
    """The declarations between '/* CDEF BEGIN */' and '/* CDEF END */', minus preprocessor lines."""
    parts = re.findall(r"/\* CDEF BEGIN \*/(.*?)/\* CDEF END \*/", header_text, re.S)
    body = "\n".join(parts)
    lines = [ln for ln in body.splitlines() if not ln.lstrip().startswith("#")]
    # PG_API is a visibility attribute for the C compiler; cffi needs plain declarations.
    return re.sub(r"\bPG_API\s+", "", "\n".join(lines))


def compile_args():
    # -ffp-contract=off: a*b+c is never fused behind our back, so every float
    # operation order written in the kernels (kernels.h, "canonical order") is
    # the one that runs, whatever the compiler or target.
    args = ["-std=gnu11", "-pthread", "-fno-math-errno", "-ffp-contract=off", "-fvisibility=hidden",
            "-Wall", "-Wno-unused-function", "-Wno-unknown-pragmas", "-Wno-format-truncation"]
    if os.environ.get("PYGEMMA_DEBUG"):
        args += ["-O0", "-g"]
    else:
        args += ["-O3", "-g0"]
        if arm64_gcc():
            # GCC's early (pre-register-allocation) scheduler hoists the NEON
            # tiles' loads and unpacking far ahead and spills dozens of vector
            # registers per block; GCC 15 turns it off by default at -O2 for
            # the same reason, but keeps it at -O3.
            args += ["-fno-schedule-insns"]
    sanitizers = sanitize_list()
    if sanitizers:
        args += ["-fsanitize=" + sanitizers, "-fno-omit-frame-pointer", "-O1", "-g"]
        if "undefined" in sanitizers.split(","):
            args += ["-fno-sanitize-recover=undefined"]
    return args


def sanitize_list():
    """The sanitizers PYGEMMA_SANITIZE asks for, as -fsanitize= takes them ("" when unset)."""
    value = os.environ.get("PYGEMMA_SANITIZE", "").strip().lower()
    if value in ("", "0", "no", "off"):
        return ""
    if value in ("1", "yes", "on"):
        return "address,undefined"
    if not re.fullmatch(r"[a-z0-9_-]+(,[a-z0-9_-]+)*", value):
        raise ValueError(f"PYGEMMA_SANITIZE={value!r}: expected a comma-separated list such as address,undefined")
    return value


def arm64_gcc():
    """Building for arm64 with GCC (clang has no such scheduler flag)."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or ""
    return platform.machine().lower() in ("aarch64", "arm64") and "clang" not in cc


def link_args():
    args = ["-pthread", "-lm", "-ldl"]
    if sanitize_list():
        args += ["-fsanitize=" + sanitize_list()]
    return args


with open(HEADER, encoding="utf-8") as f:
    _header = f.read()

ffibuilder = FFI()
ffibuilder.cdef(public_cdef(_header))
ffibuilder.set_source(
    "pygemma._core",
    '#include "pygemma.h"\n',
    sources=sorted(os.path.relpath(p) for p in glob.glob(os.path.join(HERE, "*.c"))),
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=compile_args(),
    extra_link_args=link_args(),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
