"""Helpers of the GPU tests: a model opened through the C API with a GPU library (the
Python Model class gets the library from the build step's cache; these tests name it),
and building the fake backend (tests/fake_gpu_backend.c) into a shared object."""
import os
import shutil
import subprocess

import numpy as np

from pygemma._ffi import check, ffi, last_error, lib  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = os.path.join(ROOT, "kernels")


def build_fake(out_path, *defines):
    """Compile the fake GPU library to out_path (-D flags from `defines`); None without cc."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None
    cmd = [cc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-I", KERNELS,
           *[f"-D{d}" for d in defines], os.path.join(ROOT, "tests", "fake_gpu_backend.c"),
           "-o", str(out_path), "-lm"]
    subprocess.run(cmd, check=True, capture_output=True)
    return str(out_path)


class GpuModel:
    """A pg_model + pg_context, offloading n_gpu_layers to `library` (None: CPU only)."""

    def __init__(self, path, library=None, n_gpu_layers=0, n_ctx=256, n_batch=0, precise=True,
                 n_threads=2):
        self.model = self.ctx = None
        mp = ffi.new("pg_model_params *")
        lib.pg_model_params_init(mp)
        mp.n_gpu_layers = n_gpu_layers
        self._lib_name = ffi.new("char[]", library.encode()) if library else ffi.NULL
        mp.gpu_library = self._lib_name
        out = ffi.new("pg_model **")
        check(lib.pg_model_load(os.fspath(path).encode(), mp, out))
        self.model = out[0]
        cp = ffi.new("pg_context_params *")
        lib.pg_context_params_init(cp)
        cp.n_ctx, cp.n_batch, cp.precise, cp.n_threads = n_ctx, n_batch, int(precise), n_threads
        cout = ffi.new("pg_context **")
        try:
            check(lib.pg_context_create(self.model, cp, cout))
        except Exception:
            self.close()
            raise
        self.ctx = cout[0]
        self.n_vocab = lib.pg_model_n_vocab(self.model)
        self.n_layer = lib.pg_model_n_layer(self.model)

    @property
    def gpu_info(self):
        return ffi.string(lib.pg_model_gpu_info(self.model)).decode()

    @property
    def n_gpu_layers(self):
        return lib.pg_model_n_gpu_layers(self.model)

    def logits(self, ids):
        """(len(ids), n_vocab) logits of every token, evaluated after the cached ones."""
        out = np.empty((len(ids), self.n_vocab), np.float32)
        arr = ffi.new("int32_t[]", list(ids))
        check(lib.pg_eval(self.ctx, arr, len(ids), ffi.cast("float *", out.ctypes.data)))
        return out

    def eval(self, ids):
        """Evaluate ids; the last token's logits (a copy), or None if none are kept."""
        arr = ffi.new("int32_t[]", list(ids))
        check(lib.pg_eval(self.ctx, arr, len(ids), ffi.NULL))
        return self.last_logits()

    def last_logits(self):
        p = lib.pg_context_logits(self.ctx)
        if p == ffi.NULL:
            return None
        return np.frombuffer(ffi.buffer(p, 4 * self.n_vocab), np.float32).copy()

    def eval_argmax(self, ids):
        arr = ffi.new("int32_t[]", list(ids))
        tok = ffi.new("int32_t *")
        check(lib.pg_eval_argmax(self.ctx, arr, len(ids), tok))
        return tok[0]

    def greedy(self, prompt, n):
        """n greedy tokens after prompt, through pg_eval_argmax (the device's sampler step)."""
        out = [self.eval_argmax(prompt)]
        while len(out) < n:
            out.append(self.eval_argmax([out[-1]]))
        return out

    def hidden(self, ids):
        """(n_layer, len(ids), n_embd) residual after each layer for one chunk."""
        D = lib.pg_model_n_embd(self.model)
        buf = np.zeros((self.n_layer, len(ids), D), np.float32)
        lib.pg_context_trace_hidden(self.ctx, ffi.cast("float *", buf.ctypes.data))
        try:
            self.eval(ids)
        finally:
            lib.pg_context_trace_hidden(self.ctx, ffi.NULL)
        return buf

    def rewind(self, n_past):
        check(lib.pg_context_rewind(self.ctx, n_past))

    def close(self):
        if self.ctx is not None:
            lib.pg_context_free(self.ctx)
            self.ctx = None
        if self.model is not None:
            lib.pg_model_free(self.model)
            self.model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def probe(library):
    buf = ffi.new("char[512]")
    check(lib.pg_gpu_probe(library.encode(), buf, 512))
    return ffi.string(buf).decode()
