"""Run ninja in a build directory: progress from its [k/n] status lines, errors with the
compiler's output."""
import collections
import os
import re
import shutil
import subprocess

from ..errors import GPUBuildError, GPUError
from ..progress import ProgressLine

STATUS = re.compile(r"^\[(\d+)/(\d+)\] ")
TAIL_LINES = 60


def ninja_binary():
    """The ninja executable: the `ninja` PyPI package's, else one on PATH."""
    try:
        import ninja
        path = os.path.join(ninja.BIN_DIR, "ninja")
        if os.path.isfile(path):
            return path
    except ImportError:
        pass
    found = shutil.which("ninja")
    if found:
        return found
    raise GPUError("ninja is needed to build the GPU library: pip install ninja (or pygemma[gpu])")


class Progress:
    """`compiling GPU library (cuda sm_80+sm_90, cublas):  40% [2/5]` on `out` (one line redrawn
    on a terminal, plain lines in a log; pygemma/progress.py)."""

    def __init__(self, label, out=None):
        self.label, self.line = label, ProgressLine(out)

    def __call__(self, done, total):
        pct = 100 * done // total if total else 100
        self.line.update(done / total if total else 1.0,
                         f"compiling GPU library ({self.label}): {pct:3d}% [{done}/{total}]")

    def end(self):
        self.line.finish()


def run_ninja(build_dir, jobs=None, progress=None, keep_fds=()):
    """Build the default target of build_dir/build.ninja.

    progress(done, total) is called for each status line.  keep_fds are left
    open in ninja (and so in the compilers): the build lock stays held while
    any of them runs, even if this process is killed.  Raises GPUBuildError
    with the tail of the compiler output when the build fails."""
    argv = [ninja_binary(), "-C", build_dir, "-j", str(jobs or os.cpu_count() or 2)]
    env = dict(os.environ, NINJA_STATUS="[%f/%t] ")
    tail = collections.deque(maxlen=TAIL_LINES)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            pass_fds=tuple(keep_fds), text=True, errors="replace")
    try:
        for line in proc.stdout:
            m = STATUS.match(line)
            if m:
                if progress:
                    progress(int(m.group(1)), int(m.group(2)))
            elif line.strip() and not line.startswith("ninja: Entering directory"):
                tail.append(line.rstrip("\n"))
        rc = proc.wait()
    except BaseException:          # Ctrl-C: ninja got the SIGINT too; let it stop its compilers
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    if rc != 0:
        text = "\n".join(tail) or f"ninja exited with status {rc}"
        raise GPUBuildError(f"building the GPU library failed (ninja exit {rc}); "
                            f"compiler output:\n{text}", output=text)
