"""Where the GPU kernel sources are, and a hash of their contents.

Installed: pygemma/kernels/ (setup.py copies the repository's kernels/ there).
In a source checkout: the repository's kernels/ beside the pygemma package.
$PYGEMMA_KERNELS_DIR overrides both (kernel development, tests).
"""
import glob
import hashlib
import os

from ..errors import GPUError

SOURCE_EXT = (".cu",)
HEADER_EXT = (".h", ".cuh")


def kernels_dir():
    """The directory holding the *.cu sources; GPUError if there is none."""
    env = os.environ.get("PYGEMMA_KERNELS_DIR")
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates = [env] if env else [os.path.join(package, "kernels"),
                                    os.path.join(os.path.dirname(package), "kernels")]
    for d in candidates:
        if d and glob.glob(os.path.join(d, "*.cu")):
            return os.path.abspath(d)
    raise GPUError("the GPU kernel sources (kernels/*.cu) are not part of this installation "
                   f"(looked in {', '.join(c for c in candidates if c)})")


def kernel_files(directory):
    """(sources, headers): sorted absolute paths of *.cu and *.h / *.cuh."""
    names = sorted(os.listdir(directory))
    src = [os.path.join(directory, n) for n in names if n.endswith(SOURCE_EXT)]
    hdr = [os.path.join(directory, n) for n in names if n.endswith(HEADER_EXT)]
    return src, hdr


def content_hash(paths, extra=()):
    """sha256 over (name, bytes) of each file and the extra strings (flags), in order.

    Names are taken relative to nothing but their base name, so moving the
    package keeps the hash."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        h.update(b"F" + os.path.basename(p).encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    for s in extra:
        h.update(b"S" + str(s).encode() + b"\0")
    return h.hexdigest()
