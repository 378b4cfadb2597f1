"""The per-machine cache of built GPU libraries.

    $XDG_CACHE_HOME/pygemma/<version>/                    (default ~/.cache)
        <backend>-<arch>-<toolkit>-<hash>/libpygemma_gpu.so  published builds (+ build.json)
        work/<backend>-<arch>-<toolkit>-<flags hash>/        ninja's incremental build dirs
        locks/<work key>.lock                                one builder at a time per work dir

A build directory only becomes visible by one rename(2) of a complete
temporary directory, so a reader sees either nothing or a whole library;
a killed build leaves at most a temporary directory or a work dir marked
as interrupted, both cleaned by the next builder.
"""
import fcntl
import json
import os
import shutil
import time

from .plan import LIBRARY

TMP_MARK = ".tmp-"
OLD_MARK = ".old-"


def cache_root(version=None):
    if version is None:
        from .. import __version__ as version
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pygemma", version)


class BuildLock:
    """An exclusive flock on locks/<name>.lock; `on_wait(pid)` is called once if another
    process holds it.  The lock's fd (self.fd) may be handed to child processes."""

    def __init__(self, root, name, on_wait=None):
        os.makedirs(os.path.join(root, "locks"), exist_ok=True)
        self.path = os.path.join(root, "locks", name + ".lock")
        self.on_wait, self.fd = on_wait, None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if self.on_wait:
                try:
                    holder = os.pread(self.fd, 32, 0).decode().strip()
                except OSError:
                    holder = ""
                self.on_wait(holder)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)           # closing the last fd releases the flock
        self.fd = None


def library_path(root, key):
    return os.path.join(root, key, LIBRARY)


def is_published(root, key):
    d = os.path.join(root, key)
    return os.path.isfile(os.path.join(d, LIBRARY)) and os.path.isfile(os.path.join(d, "build.json"))


def clean_stale(root, key):
    """Remove temporary and replaced directories left by killed publishers of `key`
    (call with the key's lock held)."""
    for name in os.listdir(root):
        if name.startswith("." + key + TMP_MARK) or name.startswith("." + key + OLD_MARK):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def publish(root, key, built_library, info):
    """Copy the built library into a temporary directory beside its final place, then rename
    it there (replacing an older build of the same key).  Returns the library path."""
    final = os.path.join(root, key)
    tmp = os.path.join(root, f".{key}{TMP_MARK}{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    shutil.copy2(built_library, os.path.join(tmp, LIBRARY))
    with open(os.path.join(tmp, "build.json"), "w") as f:
        json.dump(dict(info, built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())), f, indent=1)
        f.write("\n")
    for name in (LIBRARY, "build.json"):
        fd = os.open(os.path.join(tmp, name), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if os.path.exists(final):
        # rename(2) cannot replace a non-empty directory: move the old one aside first.
        # A process that dlopen()ed the old library keeps its mapping.
        old = os.path.join(root, f".{key}{OLD_MARK}{os.getpid()}")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    return os.path.join(final, LIBRARY)


def read_info(root, key):
    try:
        with open(os.path.join(root, key, "build.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
