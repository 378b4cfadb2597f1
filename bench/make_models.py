"""Generate the synthetic Gemma GGUFs used for speed work, and time their generation.

    python bench/make_models.py --out /tmp/pygemma-models --shapes 2b,9b --types Q4_0,Q8_0,Q4_K_M

Files are named gemma2-<shape>-<type>.synth.gguf; an existing file is kept unless --force.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pygemma.synth import SHAPES, write_synthetic  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="/tmp/pygemma-models")
    p.add_argument("--shapes", default="2b", help=f"comma-separated: {', '.join(SHAPES)}")
    p.add_argument("--types", default="Q4_0", help="comma-separated llama.cpp mixes")
    p.add_argument("--layers", type=int, help="override the number of layers")
    p.add_argument("--threads", type=int)
    p.add_argument("--force", action="store_true", help="regenerate existing files")
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    rows = []
    for shape in a.shapes.split(","):
        for mix in a.types.split(","):
            arch = SHAPES[shape]["arch"]
            tag = shape if shape.startswith(arch) else f"{arch}-{shape}"
            path = os.path.join(a.out, f"{tag}-{mix.lower()}.synth.gguf")
            if os.path.exists(path) and not a.force:
                rows.append((path, os.path.getsize(path), None))
                continue
            t0 = time.monotonic()
            write_synthetic(path, shape, mix, n_threads=a.threads, n_layers=a.layers)
            rows.append((path, os.path.getsize(path), time.monotonic() - t0))
    print(f"{'file':<56} {'GB':>7} {'seconds':>8} {'MB/s':>7}")
    for path, size, dt in rows:
        timing = f"{dt:8.1f} {size / dt / 1e6:7.0f}" if dt else f"{'(kept)':>8} {'':>7}"
        print(f"{path:<56} {size / 1e9:7.2f} {timing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
