"""The model's tokenizer: text <-> token ids, exactly as llama.cpp does it.

Built from a GGUF file's metadata (the ``tokenizer.ggml.*`` keys); the work is
done by the C core (csrc/tokenizer*.c), which releases the GIL.
"""
import contextlib

import numpy as np

from . import errors
from ._ffi import check, ffi, lib

# GGUF tokenizer.ggml.token_type values
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def _as_bytes(token):
    if isinstance(token, bytes):
        return token
    if isinstance(token, str):
        return token.encode("utf-8", "surrogatepass")
    if isinstance(token, (bytearray, memoryview)):
        return bytes(token)
    if isinstance(token, np.ndarray):
        return token.tobytes()
    raise TypeError(f"token text must be str or bytes, not {type(token).__name__}")


def _scalar(metadata, key, default):
    value = metadata.get(key, default)
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    if isinstance(value, (list, tuple)):
        value = value[0]
    return value


class Tokenizer:
    """A SentencePiece-style ("llama") tokenizer, bit-exact with llama.cpp."""

    def __init__(self, handle):
        """Wrap a ``pg_tokenizer *`` (use :meth:`from_gguf_metadata`)."""
        self._t = ffi.gc(handle, lib.pg_tokenizer_free)
        self._owner = None
        self.n_vocab = int(lib.pg_tokenizer_n_vocab(self._t))

    @classmethod
    def from_model(cls, model):
        """The tokenizer a loaded pygemma.Model owns (built in C from its GGUF).  It keeps the
        model alive, and raises ModelStateError once the model is closed."""
        tok = cls.__new__(cls)
        tok._owner = model          # the handle is borrowed from the model's C object
        with model._guard.use():
            tok._t = lib.pg_model_tokenizer(model._model)
            tok.n_vocab = int(lib.pg_tokenizer_n_vocab(tok._t))
        return tok

    def _held(self):
        """The handle stays valid within this: the owning model cannot be freed meanwhile."""
        return self._owner._guard.use() if self._owner is not None else contextlib.nullcontext()

    @classmethod
    def from_gguf_metadata(cls, metadata):
        """Build from a GGUF metadata dict: ``tokenizer.ggml.tokens`` (str or
        bytes each), ``.scores``, ``.token_type``, the ``*_token_id`` keys and
        the ``add_*`` flags.  Missing optional keys take llama.cpp's defaults
        for "llama" vocabularies."""
        model = metadata.get("tokenizer.ggml.model", "llama")
        if isinstance(model, bytes):
            model = model.decode("utf-8", "replace")
        if model != "llama":
            raise errors.UnsupportedError(f"tokenizer model '{model}' is not supported (only 'llama' / SPM)")
        if "tokenizer.ggml.tokens" not in metadata:
            raise errors.GGUFError("the GGUF metadata has no tokenizer.ggml.tokens")
        tokens = [_as_bytes(t) for t in metadata["tokenizer.ggml.tokens"]]
        n = len(tokens)
        if n == 0:
            raise errors.GGUFError("tokenizer.ggml.tokens is empty")

        cfg = ffi.new("pg_tokenizer_config *")
        lib.pg_tokenizer_config_init(cfg)
        keep = []  # buffers that must outlive pg_tokenizer_create

        blob = b"\0".join(tokens) + b"\0"
        lens = np.fromiter((len(t) for t in tokens), dtype=np.uint64, count=n)
        starts = np.zeros(n, dtype=np.uint64)
        np.cumsum(lens[:-1] + np.uint64(1), out=starts[1:])
        blob_buf = ffi.from_buffer(blob)
        ptrs = starts + np.uint64(int(ffi.cast("uintptr_t", blob_buf)))
        keep += [blob, blob_buf, ptrs, lens]
        cfg.n_vocab = n
        cfg.tokens = ffi.cast("char **", ffi.from_buffer(ptrs))
        cfg.token_lens = ffi.cast("uint64_t *", ffi.from_buffer(lens))

        for key, field, dtype, ctype in (("tokenizer.ggml.scores", "scores", np.float32, "float *"),
                                         ("tokenizer.ggml.token_type", "types", np.int32, "int32_t *")):
            if key in metadata:
                arr = np.ascontiguousarray(np.asarray(metadata[key]), dtype=dtype).reshape(-1)
                if arr.size < n:
                    raise errors.GGUFError(f"{key} has {arr.size} entries for {n} tokens")
                keep.append(arr)
                setattr(cfg, field, ffi.cast(ctype, ffi.from_buffer(arr)))

        for key, field in (("bos_token_id", "bos_id"), ("eos_token_id", "eos_id"),
                           ("unknown_token_id", "unk_id"), ("padding_token_id", "pad_id")):
            value = int(_scalar(metadata, "tokenizer.ggml." + key, getattr(cfg, field)))
            # llama.cpp ignores an id outside the vocabulary and keeps its default
            if 0 <= value < n:
                setattr(cfg, field, value)
            elif not 0 <= getattr(cfg, field) < n:
                setattr(cfg, field, -1)
        for key, field in (("add_bos_token", "add_bos"), ("add_eos_token", "add_eos"),
                           ("add_space_prefix", "add_space_prefix")):
            setattr(cfg, field, bool(_scalar(metadata, "tokenizer.ggml." + key, getattr(cfg, field))))

        out = ffi.new("pg_tokenizer **")
        check(lib.pg_tokenizer_create(cfg, out))
        del keep
        return cls(out[0])

    # -- properties -------------------------------------------------------

    @property
    def bos_id(self):
        with self._held():
            return int(lib.pg_tokenizer_bos(self._t))

    @property
    def eos_id(self):
        with self._held():
            return int(lib.pg_tokenizer_eos(self._t))

    @property
    def eot_id(self):
        """The end-of-turn token ("<end_of_turn>" for Gemma); None if none."""
        with self._held():
            i = int(lib.pg_tokenizer_eot(self._t))
        return None if i < 0 else i

    @property
    def add_bos(self):
        with self._held():
            return bool(lib.pg_tokenizer_add_bos(self._t))

    def is_eog(self, token_id):
        """True if generation ends at this token (eos, end of turn, ...)."""
        with self._held():
            return bool(lib.pg_tokenizer_is_eog(self._t, int(token_id)))

    def token_id(self, text):
        """Id of the token whose text is exactly `text` (str or bytes), or None."""
        b = _as_bytes(text)
        with self._held():
            i = int(lib.pg_tokenizer_find(self._t, b, len(b)))
        return None if i < 0 else i

    def token_type(self, token_id):
        """GGUF token type of an id (NORMAL, CONTROL, USER_DEFINED, BYTE, ...)."""
        self._check_id(token_id)
        with self._held():
            return int(lib.pg_tokenizer_token_type(self._t, int(token_id)))

    def _check_id(self, token_id):
        if not 0 <= int(token_id) < self.n_vocab:
            raise ValueError(f"invalid token id {token_id} (vocabulary has {self.n_vocab} tokens)")

    # -- text -> ids ------------------------------------------------------

    def encode(self, text, add_bos=True, special=False):
        """Token ids of `text` (str or bytes).

        add_bos: add the vocabulary's special tokens (BOS in front when the
        model asks for it, EOS at the end when it asks for that), like
        llama.cpp's add_special.  special: also recognise control tokens such
        as "<start_of_turn>" written in the text."""
        data = text if isinstance(text, bytes) else _as_bytes(text)
        cap = len(data) + 8
        for _ in range(2):
            out = ffi.new("int32_t[]", cap)
            n = ffi.new("int64_t *")
            with self._held():
                status = lib.pg_tokenize(self._t, data, len(data), bool(add_bos), bool(special), out, cap, n)
            if status == lib.PG_ERR_ARG and n[0] > cap:
                cap = n[0]
                continue
            check(status)
            return ffi.unpack(out, n[0])
        raise AssertionError("unreachable: the second call had room for every id")

    # -- ids -> text ------------------------------------------------------

    def piece_bytes(self, token_id, special=False):
        """The bytes one token stands for (llama.cpp's token_to_piece)."""
        self._check_id(token_id)
        n = ffi.new("size_t *")
        with self._held():
            check(lib.pg_token_to_piece(self._t, int(token_id), bool(special), ffi.NULL, 0, n))
            buf = ffi.new("char[]", max(n[0], 1))
            check(lib.pg_token_to_piece(self._t, int(token_id), bool(special), buf, n[0], n))
        return ffi.unpack(buf, n[0])

    def detokenize(self, ids, special=False):
        """The bytes of a token sequence (llama.cpp's llama_detokenize); may
        end inside a UTF-8 character."""
        arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).reshape(-1)
        bad = np.flatnonzero((arr < 0) | (arr >= self.n_vocab))
        if bad.size:
            raise ValueError(f"invalid token id {int(arr[bad[0]])} at position {int(bad[0])} "
                             f"(vocabulary has {self.n_vocab} tokens)")
        ids32 = np.ascontiguousarray(arr, dtype=np.int32)
        p = ffi.cast("int32_t *", ffi.from_buffer(ids32))
        n = ffi.new("size_t *")
        with self._held():
            check(lib.pg_detokenize(self._t, p, ids32.size, bool(special), ffi.NULL, 0, n))
            buf = ffi.new("char[]", max(n[0], 1))
            check(lib.pg_detokenize(self._t, p, ids32.size, bool(special), buf, n[0], n))
        return ffi.unpack(buf, n[0])

    def decode(self, ids, special=False):
        """Text of a token sequence; control tokens appear only with `special`;
        incomplete UTF-8 becomes U+FFFD."""
        return self.detokenize(ids, special).decode("utf-8", "replace")
