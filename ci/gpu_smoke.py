"""A short run of every GPU code path on a tiny synthetic model, for compute-sanitizer:
prompt chunks through the vendor BLAS and tinyBLAS, all-logits heads, decode steps through
the captured graph and uncaptured, partial offload.  Exits non-zero on any error.

    python ci/gpu_smoke.py LIBRARY WORKDIR"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from gpu_util import GpuModel  # noqa: E402
from pygemma._ffi import check, lib  # noqa: E402


def main(library, workdir):
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "smoke.gguf")
    subprocess.run([sys.executable, "-m", "pygemma.synth", "--shape", "gemma3-1b", "--layers", "3",
                    "--vocab", "4096", "--type", "Q4_K_M", "-o", path, "--quiet"], check=True, cwd=ROOT)
    ids = [2] + [(37 * i) % 4000 + 10 for i in range(60)]
    for opt, val in (("tinyblas", 0), ("tinyblas", 1), ("graphs", 0), ("graphs", 1)):
        check(lib.pg_gpu_set_option(library.encode(), opt.encode(), val))
        for ngl, precise in ((999, 0), (2, 1)):
            with GpuModel(path, library, n_gpu_layers=ngl, n_ctx=256, n_batch=32, precise=precise) as g:
                g.logits(ids[:40])                     # 32 + 8 tokens: both product paths
                for t in ids[40:48]:
                    g.eval([t])
                g.eval_argmax(ids[48:50])
        print(f"{opt}={val}: ok", flush=True)
    check(lib.pg_gpu_set_option(library.encode(), b"tinyblas", 0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
