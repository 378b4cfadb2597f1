"""`pygemma info FILE`: a readable report of a GGUF file's header, metadata and tensors."""
import numpy as np

from .gguf_file import ARRAY, FLOAT32, STRING, value_type_name

_MAX_INLINE_ITEMS = 8     # longer arrays are summarized as "[262144 strings]"
_MAX_VALUE_CHARS = 72


def _human(nbytes):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024


def _shorten(text):
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS - 3] + "..."


def _type_label(vtype, etype):
    if vtype == ARRAY:
        return f"[{value_type_name(etype)}]"
    return value_type_name(vtype)


def _format_value(value, vtype, etype):
    if vtype == FLOAT32:   # the shortest text that reads back as this float32
        x = np.float32(value)
        return np.format_float_positional(x, trim='0') if x == 0 or 1e-4 <= abs(x) < 1e16 else str(x)
    if vtype != ARRAY:
        return _shorten(repr(value))
    text = repr(value)
    if len(value) <= _MAX_INLINE_ITEMS and len(text) <= _MAX_VALUE_CHARS:
        return text
    what = {STRING: "strings", ARRAY: "arrays"}.get(etype, f"{value_type_name(etype)} values")
    return f"[{len(value)} {what}]"


def describe(gguf_file):
    """The report as one string: file, version, alignment, metadata table (long
    arrays abbreviated), tensor table (name, type, shape in GGUF order, offset
    in the data section, size) and totals per tensor type."""
    f = gguf_file
    metadata, types, tensors = f.metadata, f.metadata_types, f.tensors
    lines = [f"File:      {f.path}"]
    where = f", GGUF at file offset {f.image_offset} (llamafile)" if f.image_offset else ""
    lines.append(f"Format:    GGUF version {f.version}, alignment {f.alignment}, "
                 f"data section at offset {f.data_offset}{where}")

    lines.append(f"Metadata:  {len(metadata)} keys")
    kw = max((len(k) for k in metadata), default=3)
    tw = max((len(_type_label(*types[k])) for k in metadata), default=4)
    for key, value in metadata.items():
        vtype, etype = types[key]
        lines.append(f"  {key:<{kw}}  {_type_label(vtype, etype):<{tw}}  {_format_value(value, vtype, etype)}")

    total = sum(t.nbytes for t in tensors)
    lines.append(f"Tensors:   {len(tensors)}, {_human(total)} ({total} bytes); shape in GGUF order (ne0 first)")
    if tensors:
        rows = [(t.name, t.type, " x ".join(map(str, t.shape)) or "scalar", str(t.offset), str(t.nbytes))
                for t in tensors]
        head = ("name", "type", "shape", "offset", "bytes")
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
        fmt = "  {:<%d}  {:<%d}  {:<%d}  {:>%d}  {:>%d}" % tuple(widths)
        lines.append(fmt.format(*head))
        lines.extend(fmt.format(*r) for r in rows)

        lines.append("Totals by type:")
        by_type = {}
        for t in tensors:
            count, elems, nbytes = by_type.get(t.type, (0, 0, 0))
            n = 1
            for d in t.shape:
                n *= d
            by_type[t.type] = (count + 1, elems + n, nbytes + t.nbytes)
        tw = max(len(k) for k in by_type)
        for name, (count, elems, nbytes) in sorted(by_type.items(), key=lambda kv: -kv[1][2]):
            lines.append(f"  {name:<{tw}}  {count:>5} tensors  {elems:>13} elements  {_human(nbytes):>10}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    """`pygemma info FILE...`: print the metadata and tensor table of GGUF files (or llamafiles)."""
    import argparse
    import sys

    from .errors import GGUFError
    from .gguf_file import GGUFFile

    ap = argparse.ArgumentParser(prog="pygemma info", description=main.__doc__)
    ap.add_argument("files", nargs="*", help="GGUF or llamafile (default: the default model)")
    args = ap.parse_args(argv)
    files = args.files
    if not files:
        from .model import default_model_path
        path = default_model_path()
        if path is None:
            ap.error("no file given and the default model package is not installed")
        files = [str(path)]
    status = 0
    for path in files:
        try:
            with GGUFFile(path) as f:
                print(describe(f))
        except GGUFError as e:
            print(f"pygemma info: {path}: {e}", file=sys.stderr)
            status = 1
    return status
