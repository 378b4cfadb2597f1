"""ROCm device libraries for targets the installed ROCm predates.

clang links each HIP kernel object with the ROCm bitcode libraries, one of
which, oclc_isa_version_<gfx>.bc, only defines the target's ISA version
number.  Older ROCm releases (Debian bookworm's 5.2) lack it for newer
targets such as gfx1100 even though their clang can compile for them.  For
those we assemble an overlay directory in the build directory: links to the
installed bitcode plus the missing one-constant files, generated from LLVM
assembly by the same clang, and pass it as --rocm-device-lib-path.
"""
import glob
import os
import re
import subprocess

from ..errors import GPUError
from .toolkit import compiler_env

OVERLAY = "devlibs"       # relative to the build directory (ninja runs there)


def device_lib_dir(root):
    """The installed ROCm bitcode directory (holding ocml.bc), or None."""
    patterns = ["amdgcn/bitcode", "lib/amdgcn/bitcode", "lib/*-linux-gnu/amdgcn/bitcode",
                "lib/llvm/lib/clang/*/lib/amdgcn/bitcode", "llvm/lib/clang/*/lib/amdgcn/bitcode"]
    for pat in patterns:
        for d in sorted(glob.glob(os.path.join(root, pat))):
            if os.path.exists(os.path.join(d, "ocml.bc")):
                return d
    return None


def isa_version(target):
    """gfx90a -> 9010, gfx1100 -> 11000: major * 1000 + minor * 100 + stepping (hex digit)."""
    digits = re.match(r"gfx([0-9a-f]+)", target).group(1)
    return int(digits[:-2]) * 1000 + int(digits[-2], 16) * 100 + int(digits[-1], 16)


def isa_file(target):
    return f"oclc_isa_version_{re.match(r'gfx([0-9a-f]+)', target).group(1)}.bc"


def missing_targets(root, archs):
    """The targets whose ISA bitcode the installed device libraries lack."""
    d = device_lib_dir(root) if root else None
    if d is None:
        return []
    return [a for a in archs if a.startswith("gfx") and not os.path.exists(os.path.join(d, isa_file(a)))]


def _clang(compiler):
    """The clang that hipcc drives (from `hipcc --version`)."""
    text = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                          env=compiler_env("hip")).stdout
    major = re.search(r"clang version (\d+)", text)
    installed = re.search(r"InstalledDir:\s*(\S+)", text)
    candidates = [f"/usr/lib/llvm-{major.group(1)}/bin/clang"] if major else []
    candidates += [os.path.join(installed.group(1), "clang")] if installed else []
    candidates += [os.path.join(os.path.dirname(compiler), "..", "llvm", "bin", "clang")]
    for c in candidates:
        if os.path.isfile(c):
            return c
    raise GPUError(f"cannot find the clang behind {compiler} to make the missing device libraries")


def make_overlay(build_dir, toolkit, archs):
    """Fill build_dir/devlibs with the installed bitcode and the missing ISA files."""
    src = device_lib_dir(toolkit.root)
    out = os.path.join(build_dir, OVERLAY)
    os.makedirs(out, exist_ok=True)
    for path in glob.glob(os.path.join(src, "*.bc")):
        link = os.path.join(out, os.path.basename(path))
        if not os.path.lexists(link):
            os.symlink(path, link)
    clang = None
    for target in missing_targets(toolkit.root, archs):
        bc = os.path.join(out, isa_file(target))
        if os.path.exists(bc):
            continue
        clang = clang or _clang(toolkit.compiler)
        ll = bc[:-3] + ".ll"
        with open(ll, "w") as f:
            f.write('target triple = "amdgcn-amd-amdhsa"\n'
                    f"@__oclc_ISA_version = linkonce_odr protected local_unnamed_addr addrspace(4) "
                    f"constant i32 {isa_version(target)}, align 4\n")
        r = subprocess.run([clang, "-target", "amdgcn-amd-amdhsa", "-nogpulib", "-c", "-emit-llvm",
                            ll, "-o", bc + ".tmp"], capture_output=True, text=True)
        if r.returncode != 0:
            raise GPUError(f"making {isa_file(target)} for {target} failed: {r.stderr.strip()[-500:]}")
        os.replace(bc + ".tmp", bc)
