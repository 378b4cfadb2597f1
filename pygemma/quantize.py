"""Quantize a GGUF file to a llama.cpp mix:  pygemma quantize IN.gguf OUT.gguf Q4_K_M

Every tensor gets the type llama.cpp's llama_tensor_get_type would give it (see
quant_rules.py); metadata is copied byte for byte, except general.file_type (the mix's
LLAMA_FTYPE number) and general.quantization_version (2).  Tensors are streamed in chunks
of rows, dequantized and quantized on a thread pool (the C calls release the GIL), so memory
stays small whatever the model size.  The output appears under its name only when complete.
"""
import argparse
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import quants
from .gguf_writer import GGUFWriter, ValueType
from .progress import ProgressLine
from .quant_rules import FLOAT_TYPES, FTYPES, mix_name, tensor_types

CHUNK_ELEMENTS = 1 << 22            # rows per work item: about 16 MB of float32
_DROPPED_KEYS = ("split.no", "split.count", "split.tensors.count")


def _hparams(md):
    """(n_layer, n_head, n_head_kv) from the metadata (per-layer arrays: their maximum)."""
    arch = md.get("general.architecture", "")

    def get(key, default=None):
        v = md.get(f"{arch}.{key}", default)
        return max(v) if isinstance(v, list) else v

    n_head = get("attention.head_count", 1) or 1
    return int(get("block_count", 0)), int(n_head), int(get("attention.head_count_kv", n_head))


def load_imatrix(imatrix):
    """dict tensor name -> importance weights (one per column) from a dict, a GGUF imatrix
    file (llama-imatrix's <name>.in_sum2 / <name>.counts) or a legacy .dat file."""
    if imatrix is None or isinstance(imatrix, dict):
        return imatrix
    path = os.fspath(imatrix)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        from .gguf_file import GGUFFile
        out = {}
        with GGUFFile(path) as g:
            names = {t.name for t in g.tensors}
            for name in names:
                if name.endswith(".in_sum2") and name[:-8] + ".counts" in names:
                    base = name[:-8]
                    sums = g.tensor(name).reshape(-1)
                    counts = g.tensor(base + ".counts").reshape(-1)
                    out[base] = sums / np.maximum(counts.max(), 1.0)
        return out
    return _load_imatrix_dat(path)


def _load_imatrix_dat(path):
    data = open(path, "rb").read()
    pos, out = 4, {}
    for _ in range(int(np.frombuffer(data, "<i4", 1, 0)[0])):
        n = int(np.frombuffer(data, "<i4", 1, pos)[0])
        name = data[pos + 4:pos + 4 + n].decode()
        pos += 4 + n
        ncall, nval = (int(x) for x in np.frombuffer(data, "<i4", 2, pos))
        vals = np.frombuffer(data, "<f4", nval, pos + 8).astype(np.float32)
        pos += 8 + 4 * nval
        out[name] = vals / max(ncall, 1)
    return out


class _Progress:
    """Per-tensor and total progress on stderr (pygemma/progress.py), or a
    callback(done, total, index, count, name)."""

    def __init__(self, total, count, progress):
        self.total, self.count, self.done = total, count, 0
        self.callback = progress if callable(progress) else None
        self.line = ProgressLine() if progress and not self.callback else None
        self.t0 = time.monotonic()

    def update(self, nbytes, index, name, tensor_done, tensor_total, desc):
        self.done += nbytes
        if self.callback:
            self.callback(self.done, self.total, index, self.count, name)
            return
        if self.line is None:
            return
        rate = self.done / max(time.monotonic() - self.t0, 1e-9) / 1e6
        self.line.update(self.done / max(self.total, 1),
                         f"[{index + 1:4d}/{self.count}] {name:<32.32} {desc:<14} "
                         f"{100 * tensor_done / max(tensor_total, 1):3.0f}% | total "
                         f"{100 * self.done / max(self.total, 1):5.1f}% {rate:7.1f} MB/s")

    def finish(self):
        if self.line is not None:
            self.line.finish()


def quantize_file(src, dst, ftype, n_threads=None, progress=True, imatrix=None, pure=False):
    """Write `dst`: the GGUF model `src` quantized to mix `ftype` ("Q4_K_M", "Q8_0", "F16",
    ... or its LLAMA_FTYPE number).  pure=True gives every quantizable tensor the mix's base
    type (llama-quantize --pure).  imatrix: importance weights (see load_imatrix).
    progress: True (stderr), False, or callback(done_bytes, total_bytes, index, count, name).
    Returns a summary dict (sizes, bits per weight, per-tensor types, seconds)."""
    from .gguf_file import GGUFFile
    t0 = time.monotonic()
    mix = mix_name(ftype)
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise ValueError("the output file must differ from the input file")
    imatrix = load_imatrix(imatrix)
    n_threads = max(1, int(n_threads or os.cpu_count() or 1))
    with GGUFFile(src) as g, ThreadPoolExecutor(n_threads) as pool:
        md = g.metadata
        n_layer, n_head, n_head_kv = _hparams(md)
        infos = g.tensors
        plan = tensor_types([(t.name, t.shape, t.type) for t in infos], mix, n_layer, n_head,
                            n_head_kv, pure=pure, has_imatrix=bool(imatrix))
        requant = sorted({t.type for t, (new, _) in zip(infos, plan)
                          if new != t.type and t.type not in FLOAT_TYPES})
        if requant:
            warnings.warn(f"requantizing tensors of type {', '.join(requant)}: they are "
                          "dequantized first, which loses more quality than quantizing from "
                          "F32/F16/BF16 (llama.cpp requires --allow-requantize)", stacklevel=2)
        bar = _Progress(sum(t.nbytes for t in infos), len(infos), progress)
        sizes = []
        with GGUFWriter(dst, alignment=g.alignment) as w:
            _copy_metadata(g, w, FTYPES[mix][0])
            for t, (new, _) in zip(infos, plan):
                w.add_tensor_info(t.name, t.shape, new)
            w.write_header()
            for i, (t, (new, _)) in enumerate(zip(infos, plan)):
                imat = _imatrix_for(imatrix, t, new)
                chunks = _convert(pool, n_threads, g, t, new, imat)
                w.write_tensor(t.name, _counted(chunks, bar, i, t, new, sizes))
        bar.finish()
    n_el = sum(int(np.prod(t.shape)) for t in infos)
    src_bytes, dst_bytes = sum(t.nbytes for t in infos), sum(sizes)
    return {"mix": mix, "ftype": FTYPES[mix][0], "n_elements": n_el,
            "src_bytes": src_bytes, "dst_bytes": dst_bytes,
            "src_bpw": 8 * src_bytes / max(n_el, 1), "dst_bpw": 8 * dst_bytes / max(n_el, 1),
            "types": {t.name: new for t, (new, _) in zip(infos, plan)},
            "fallbacks": [t.name for t, (_, fb) in zip(infos, plan) if fb],
            "requantized": requant, "seconds": time.monotonic() - t0}


def _imatrix_for(imatrix, t, new):
    """The tensor's importance weights, checked against its row length."""
    imat = imatrix.get(t.name) if imatrix and new != t.type else None
    if imat is None:
        return None
    imat = np.asarray(imat, np.float32).reshape(-1)
    if imat.size != t.shape[0]:
        if t.name == "token_embd.weight":      # llama.cpp ignores a mismatch here only
            return None
        raise ValueError(f"imatrix for {t.name!r} has {imat.size} weights, its rows "
                         f"{t.shape[0]} elements")
    if not np.isfinite(imat).all():
        raise ValueError(f"imatrix for {t.name!r} has non-finite values")
    return imat


def _copy_metadata(g, w, file_type):
    """Every key verbatim, in file order; file type and quantization version set as
    llama.cpp does (in place when present, else appended)."""
    new = {"general.quantization_version": 2, "general.file_type": file_type}
    for key in g.metadata_types:
        if key in _DROPPED_KEYS:
            continue
        if key in new:
            w.add(key, new.pop(key), ValueType.UINT32)
        else:
            w.add_raw(key, g.metadata_raw(key))
    for key, value in new.items():
        w.add(key, value, ValueType.UINT32)


def _convert(pool, n_threads, g, t, new, imat):
    """(bytes in type `new`, source bytes consumed) for successive chunks of rows of the
    tensor, computed on the pool a few chunks ahead, yielded in order."""
    raw = g.tensor_bytes(t.name)
    if new == t.type:
        yield raw, t.nbytes
        return
    ncols = int(t.shape[0])
    src_row = quants.row_bytes(t.type, ncols)
    nrows = t.nbytes // src_row
    rows_per = max(1, CHUNK_ELEMENTS // ncols)
    starts = list(range(0, nrows, rows_per))

    def work(r0):
        r1 = min(r0 + rows_per, nrows)
        x = quants.dequantize(t.type, raw[r0 * src_row:r1 * src_row], shape=(r1 - r0, ncols))
        return quants.quantize(new, x, imatrix=imat), (r1 - r0) * src_row

    ahead = 2 * n_threads
    futures = [pool.submit(work, r0) for r0 in starts[:ahead]]
    for k in range(len(starts)):
        if k + ahead < len(starts):
            futures.append(pool.submit(work, starts[k + ahead]))
        yield futures[k].result()
        futures[k] = None


def _counted(chunks, bar, index, t, new, sizes):
    """The output chunks, reporting progress (in source bytes) and recording the size."""
    done = out_bytes = 0
    for chunk, consumed in chunks:
        done += consumed
        out_bytes += chunk.nbytes
        bar.update(consumed, index, t.name, done, t.nbytes, f"{t.type}->{new}")
        yield chunk
    sizes.append(out_bytes)


def format_summary(s):
    mib = 1024 * 1024
    lines = [f"model size = {s['src_bytes'] / mib:10.2f} MiB ({s['src_bpw']:.2f} BPW)",
             f"quant size = {s['dst_bytes'] / mib:10.2f} MiB ({s['dst_bpw']:.2f} BPW), "
             f"{s['mix']}, {s['seconds']:.1f} s"]
    if s["fallbacks"]:
        lines.append(f"{len(s['fallbacks'])} tensor(s) needed a fallback type (row length "
                     "not a multiple of the block size)")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="pygemma quantize",
                                description="Quantize a GGUF model to a llama.cpp mix.")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("type", help="one of " + ", ".join(FTYPES) + " (Q4_K = Q4_K_M, ...)")
    p.add_argument("--threads", type=int, help="worker threads (default: all CPUs)")
    p.add_argument("--pure", action="store_true", help="no mix rules: every matrix in TYPE")
    p.add_argument("--imatrix", help="importance matrix file (llama-imatrix .gguf or .dat)")
    p.add_argument("--log-disable", action="store_true", help="no progress or summary")
    a = p.parse_args(argv)
    quiet = a.log_disable
    try:
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore")
            s = quantize_file(a.input, a.output, a.type, a.threads, progress=not quiet,
                              imatrix=a.imatrix, pure=a.pure)
    except (OSError, ValueError) as e:
        print(f"pygemma quantize: error: {e}", file=sys.stderr)
        return 1
    if not quiet:
        print(format_summary(s), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
