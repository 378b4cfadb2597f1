/*
 * pygemma.h -- the one public header of the pygemma C core.
 *
 * Everything the Python binding (and any other front end) may call is here:
 * opaque handles, status codes, and plain C types only.  No function in the
 * core exits or aborts the process: every failure returns a pg_status and
 * leaves a human-readable message in pg_last_error() (per thread).
 *
 * The text between the CDEF markers is fed verbatim to cffi's cdef(), so it
 * must stay plain declarations (preprocessor lines are dropped).
 *
 * Layout of the header (one section per component, each owned by one .c file):
 *   status & library info ....... status.c, cpu.c
 *   tensor types ................ types.c, dequant.c, quantize.c
 *   thread pool & linear algebra  threadpool.c, matmul.c, kernels_*.c
 *   GGUF files .................. gguf.c, zipfile.c
 *   tokenizer, sampler, model ... tokenizer.c, sampler.c, model*.c
 */
#ifndef PYGEMMA_H
#define PYGEMMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PG_API __attribute__((visibility("default")))
#else
#define PG_API
#endif

/* CDEF BEGIN */

/* ===================================================================== */
/* Status codes and library information                                  */
/* ===================================================================== */

typedef enum {
    PG_OK = 0,
    PG_ERR_IO = 1,           /* open/read/mmap failed */
    PG_ERR_FORMAT = 2,       /* malformed GGUF / ZIP / model file */
    PG_ERR_UNSUPPORTED = 3,  /* valid input we do not handle (tensor type, architecture) */
    PG_ERR_NOMEM = 4,        /* allocation failed */
    PG_ERR_ARG = 5,          /* bad argument from the caller */
    PG_ERR_CONTEXT = 6,      /* context window full / prompt too long */
    PG_ERR_CANCELLED = 7,    /* interrupted by the caller */
    PG_ERR_GPU = 8,          /* GPU backend failure */
    PG_ERR_STATE = 9         /* object used in the wrong state (closed, ...) */
} pg_status;

/* Message describing the last failure on the calling thread ("" if none). */
PG_API const char *pg_last_error(void);
PG_API const char *pg_version(void);

/* CPU kernel tiers.  The best tier the CPU (and OS) supports is chosen when
 * the library loads; PYGEMMA_CPU=scalar|avx2|avx512|neon forces a lower one. */
typedef enum {
    PG_CPU_SCALAR = 0,
    PG_CPU_AVX2 = 1,     /* AVX2 + FMA + F16C */
    PG_CPU_AVX512 = 2,   /* AVX-512 F/BW/VL/DQ, with VNNI/BF16 paths when present */
    PG_CPU_NEON = 3      /* arm64 NEON (+ dotprod when present) */
} pg_cpu_tier;

PG_API int pg_cpu_tier_get(void);
PG_API int pg_cpu_tier_best(void);                 /* best tier this CPU supports */
PG_API int pg_cpu_tier_supported(int tier);        /* 1 if `tier` can run here */
PG_API pg_status pg_cpu_tier_set(int tier);        /* PG_ERR_ARG if unsupported */
PG_API const char *pg_cpu_tier_name(int tier);
PG_API const char *pg_cpu_features(void);          /* e.g. "avx2 fma f16c avx512f avx512vnni" */
PG_API int pg_cpu_physical_cores(void);

/* ===================================================================== */
/* Tensor types (numbered as in GGML / GGUF)                             */
/* ===================================================================== */

typedef enum {
    PG_TYPE_F32 = 0,
    PG_TYPE_F16 = 1,
    PG_TYPE_Q4_0 = 2,
    PG_TYPE_Q4_1 = 3,
    PG_TYPE_Q5_0 = 6,
    PG_TYPE_Q5_1 = 7,
    PG_TYPE_Q8_0 = 8,
    PG_TYPE_Q8_1 = 9,
    PG_TYPE_Q2_K = 10,
    PG_TYPE_Q3_K = 11,
    PG_TYPE_Q4_K = 12,
    PG_TYPE_Q5_K = 13,
    PG_TYPE_Q6_K = 14,
    PG_TYPE_Q8_K = 15,
    PG_TYPE_BF16 = 30,
    PG_TYPE_COUNT = 48       /* size of per-type tables; not a type */
} pg_type;

/* Name ("Q4_K") of a GGML type number, also for types we cannot compute
 * with; NULL for numbers no GGML version has used. */
PG_API const char *pg_type_name(int type);
/* 1 if pygemma can dequantize and multiply tensors of this type. */
PG_API int pg_type_supported(int type);
PG_API int pg_type_from_name(const char *name);    /* -1 if unknown */
PG_API int64_t pg_type_block_size(int type);       /* elements per block; 0 if unknown */
PG_API int64_t pg_type_block_bytes(int type);      /* bytes per block; 0 if unknown */
/* Bytes of a row of n elements; -1 if n is not a multiple of the block size. */
PG_API int64_t pg_type_row_bytes(int type, int64_t n);

/* dst (n floats) = dequantized src (n elements of `type`, n % block == 0). */
PG_API pg_status pg_dequantize(int type, const void *src, float *dst, int64_t n);

/* dst = src (nrows x ncols, row-major floats) quantized to `type`, row by row,
 * with the same algorithms as llama.cpp's reference quantizers.  `imatrix`
 * (ncols importance weights) may be NULL.  Rows are independent, so callers
 * may split work by rows across threads. */
PG_API pg_status pg_quantize(int type, const float *src, void *dst,
                             int64_t nrows, int64_t ncols, const float *imatrix);

/* ===================================================================== */
/* Thread pool and linear algebra                                        */
/* ===================================================================== */

typedef struct pg_pool pg_pool;

/* A persistent pool of n_threads workers (the caller counts as one).
 * n_threads <= 0 means one per physical core. */
PG_API pg_status pg_pool_create(int n_threads, pg_pool **out);
PG_API void pg_pool_free(pg_pool *pool);
PG_API int pg_pool_size(const pg_pool *pool);

/* y = x @ W^T
 *   W: (rows, cols) of `wtype`, rows contiguous, row stride pg_type_row_bytes(wtype, cols)
 *   x: (ntok, cols) float32, row-major
 *   y: (ntok, rows) float32, row-major
 * ntok == 1 takes the matrix-vector path; larger ntok the tiled matrix-matrix path.
 * Activations are quantized to 8 bits for integer dot products where the
 * weight type allows it (as llama.cpp does). */
PG_API pg_status pg_matmul(pg_pool *pool, int wtype, const void *w, int64_t rows, int64_t cols,
                           const float *x, int64_t ntok, float *y);

/* Several products of the same x in one dispatch (the forward pass's Q/K/V and
 * gate/up): y_i = x @ W_i^T, each exactly as pg_matmul computes it.
 *   w: (rows, cols) of `type`; y: (ntok, rows) float32 */
typedef struct {
    int type;
    const void *w;
    int64_t rows;
    float *y;
} pg_mm_out;
#define PG_MM_GROUP_MAX 4
PG_API pg_status pg_matmul_group(pg_pool *pool, const pg_mm_out *mats, int n_mats, int64_t cols, const float *x,
                                 int64_t ntok);

/* CDEF END */

/* CDEF BEGIN */

/* ---- Linear algebra: vector helpers and test hooks (kernels_*.c, matmul.c) ----
 * The vector helpers dispatch on the active CPU tier like pg_matmul; the
 * forward pass uses them through csrc/kernels.h (documented there).  F16 is
 * IEEE binary16 bits. */
PG_API float pg_dot_f32(int n, const float *x, const float *y);
PG_API float pg_sum_sq_f32(int n, const float *x);
PG_API float pg_dot_f32_f16(int n, const float *x, const uint16_t *y);
PG_API void pg_axpy_f32(int n, float a, const float *x, float *y);
PG_API void pg_axpy_f16(int n, float a, const uint16_t *x, float *y);
PG_API void pg_f32_to_f16_row(int n, const float *x, uint16_t *y);
PG_API void pg_f16_to_f32_row(int n, const uint16_t *x, float *y);

/* Name of the kernel set in use, e.g. "avx512-vnni-bf16", "avx2", "scalar". */
PG_API const char *pg_kernels_name(void);
/* Test hook: 1 runs the active tier without its optional instructions
 * (AVX-512 VNNI and BF16, NEON dotprod); 0 restores the best kernels. */
PG_API void pg_kernels_set_generic(int on);
/* Benchmark hook: stream `bytes` of `buf` (64-byte aligned; 0 returned
 * otherwise) through the pool's threads, each reading a contiguous share with
 * the active tier's widest loads, and return a checksum: read bandwidth. */
PG_API uint64_t pg_mem_read(pg_pool *pool, const void *buf, size_t bytes);
/* Test hook: run `iterations` tiny jobs on the pool and count the shares that
 * did not run exactly once (0 when the dispatch is correct); -1 on bad input. */
PG_API int64_t pg_pool_selftest(pg_pool *pool, int iterations);

/* CDEF END */

/* ===================================================================== */
/* GGUF files (gguf.c, zipfile.c)                                        */
/* ===================================================================== */

/* CDEF BEGIN */

/* A parsed GGUF file (v2 or v3, little-endian), or the .gguf stored in a
 * llamafile (an executable that is also a ZIP archive).  The file is mapped
 * read-only and nothing is copied but names and strings; the handle is
 * immutable once opened, so any number of threads may query it.
 *
 * Opening validates everything later queries rely on: bounds of every read,
 * counts and lengths against the bytes left, value and tensor type numbers,
 * dims (1 <= ne, at most 4, element count < 2^63), rows a multiple of the
 * type's block, tensor data aligned, inside the file and not overlapping,
 * unique keys and tensor names, `general.alignment` a UINT32 power of two.
 * Failures: PG_ERR_IO (open/stat/mmap) or PG_ERR_FORMAT, the message naming
 * the key, tensor or ZIP member and the offset.
 *
 * Indices: kv i in [0, n_kv), tensor t in [0, n_tensors); out-of-range
 * indices give NULL / -1 / 0, never a crash.  Strings are NUL-terminated but
 * may contain NULs, hence the lengths.  Numeric data is raw little-endian and
 * may be unaligned (read with memcpy). */
typedef struct pg_gguf pg_gguf;

typedef enum {
    PG_GGUF_UINT8 = 0, PG_GGUF_INT8 = 1, PG_GGUF_UINT16 = 2, PG_GGUF_INT16 = 3, PG_GGUF_UINT32 = 4,
    PG_GGUF_INT32 = 5, PG_GGUF_FLOAT32 = 6, PG_GGUF_BOOL = 7, PG_GGUF_STRING = 8, PG_GGUF_ARRAY = 9,
    PG_GGUF_UINT64 = 10, PG_GGUF_INT64 = 11, PG_GGUF_FLOAT64 = 12
} pg_gguf_type;

PG_API pg_status pg_gguf_open(const char *path, pg_gguf **out);                 /* .gguf or llamafile; mmap */
PG_API pg_status pg_gguf_open_memory(const void *data, size_t size, pg_gguf **out); /* caller keeps data alive */
PG_API void pg_gguf_close(pg_gguf *g);                                          /* NULL ok */

PG_API uint32_t pg_gguf_version(const pg_gguf *g);
PG_API uint64_t pg_gguf_alignment(const pg_gguf *g);
PG_API uint64_t pg_gguf_data_offset(const pg_gguf *g);   /* data section start, from the GGUF start */
PG_API uint64_t pg_gguf_image_offset(const pg_gguf *g);  /* GGUF start in the file (llamafile member; else 0) */
PG_API uint64_t pg_gguf_image_size(const pg_gguf *g);    /* bytes of the GGUF */
PG_API const char *pg_gguf_type_name(int gguf_type);     /* "UINT32"; NULL if unknown */
PG_API int pg_gguf_type_size(int gguf_type);             /* bytes of a scalar; 0 for STRING/ARRAY/unknown */

/* Metadata by index. */
PG_API int64_t pg_gguf_n_kv(const pg_gguf *g);
PG_API const char *pg_gguf_kv_key(const pg_gguf *g, int64_t i);                 /* NUL-terminated */
PG_API uint64_t pg_gguf_kv_key_len(const pg_gguf *g, int64_t i);
PG_API int64_t pg_gguf_find_key(const pg_gguf *g, const char *key);             /* -1 if absent */
PG_API int pg_gguf_kv_type(const pg_gguf *g, int64_t i);                        /* pg_gguf_type */
/* Any integer type or bool; error (naming the key) if not integer / out of int64 range. */
PG_API pg_status pg_gguf_kv_get_int(const pg_gguf *g, int64_t i, int64_t *out);
PG_API pg_status pg_gguf_kv_get_float(const pg_gguf *g, int64_t i, double *out);  /* float32/64 or any integer */
PG_API pg_status pg_gguf_kv_get_str(const pg_gguf *g, int64_t i, const char **s, uint64_t *len); /* len excludes NUL */
PG_API int pg_gguf_kv_arr_type(const pg_gguf *g, int64_t i);                    /* element type; -1 if not an array */
PG_API int64_t pg_gguf_kv_arr_len(const pg_gguf *g, int64_t i);                 /* -1 if not an array */
PG_API const void *pg_gguf_kv_arr_data(const pg_gguf *g, int64_t i);            /* numeric arrays: raw elements; else NULL */
PG_API pg_status pg_gguf_kv_arr_str(const pg_gguf *g, int64_t i, int64_t j, const char **s, uint64_t *len);
/* The value exactly as encoded in the file (u32 type tag + payload), to copy it verbatim. */
PG_API pg_status pg_gguf_kv_raw(const pg_gguf *g, int64_t i, const void **data, uint64_t *nbytes);

/* Value handles (>= 0): every key's value, and every element of an array of
 * arrays, for walking nested arrays.  The val_* getters mirror the kv_* ones
 * (their errors do not name the key). */
PG_API int64_t pg_gguf_kv_value(const pg_gguf *g, int64_t i);                   /* -1 if i is out of range */
PG_API int pg_gguf_val_type(const pg_gguf *g, int64_t v);                       /* -1 if v is invalid */
PG_API int pg_gguf_val_arr_type(const pg_gguf *g, int64_t v);
PG_API int64_t pg_gguf_val_arr_len(const pg_gguf *g, int64_t v);
PG_API int64_t pg_gguf_val_arr_elem(const pg_gguf *g, int64_t v, int64_t j);    /* arrays of arrays; else -1 */
PG_API const void *pg_gguf_val_data(const pg_gguf *g, int64_t v);               /* numeric scalar or array: raw bytes */
PG_API pg_status pg_gguf_val_get_int(const pg_gguf *g, int64_t v, int64_t *out);
PG_API pg_status pg_gguf_val_get_float(const pg_gguf *g, int64_t v, double *out);
PG_API pg_status pg_gguf_val_get_str(const pg_gguf *g, int64_t v, const char **s, uint64_t *len);
PG_API pg_status pg_gguf_val_arr_str(const pg_gguf *g, int64_t v, int64_t j, const char **s, uint64_t *len);
/* All strings of a string array back to back, each followed by its NUL (nbytes includes them). */
PG_API pg_status pg_gguf_val_arr_str_block(const pg_gguf *g, int64_t v, const char **block, uint64_t *nbytes);

/* Tensors by index. */
PG_API int64_t pg_gguf_n_tensors(const pg_gguf *g);
PG_API int64_t pg_gguf_find_tensor(const pg_gguf *g, const char *name);         /* -1 if absent */
PG_API const char *pg_gguf_tensor_name(const pg_gguf *g, int64_t t);
PG_API uint64_t pg_gguf_tensor_name_len(const pg_gguf *g, int64_t t);
PG_API int pg_gguf_tensor_type(const pg_gguf *g, int64_t t);                    /* GGML type number */
PG_API int pg_gguf_tensor_ndim(const pg_gguf *g, int64_t t);                    /* 0..4 */
PG_API int64_t pg_gguf_tensor_dim(const pg_gguf *g, int64_t t, int d);          /* ne[d], GGUF order; 1 for d >= ndim */
PG_API int64_t pg_gguf_tensor_nelements(const pg_gguf *g, int64_t t);
PG_API uint64_t pg_gguf_tensor_offset(const pg_gguf *g, int64_t t);             /* relative to the data section */
PG_API uint64_t pg_gguf_tensor_nbytes(const pg_gguf *g, int64_t t);
/* Pointer into the mapping (alignment: the file's, plus the member offset in a llamafile). */
PG_API const void *pg_gguf_tensor_data(const pg_gguf *g, int64_t t);

/* CDEF END */

/* ===================================================================== */
/* Tokenizer (tokenizer.c)                                               */
/* ===================================================================== */

/* CDEF BEGIN */

/* A SentencePiece-style ("llama" / SPM) tokenizer that reproduces llama.cpp's
 * llm_tokenizer_spm exactly: user-defined tokens (and, with parse_special,
 * control tokens) are cut out of the raw text first, longest first; the rest
 * is merged by token score with a <0xXX> byte fallback.  Immutable once
 * created, so one tokenizer may serve many threads at once. */
typedef struct pg_tokenizer pg_tokenizer;

/* GGUF tokenizer.ggml.token_type values. */
typedef enum {
    PG_TOKEN_UNDEFINED = 0,
    PG_TOKEN_NORMAL = 1,
    PG_TOKEN_UNKNOWN = 2,
    PG_TOKEN_CONTROL = 3,
    PG_TOKEN_USER_DEFINED = 4,
    PG_TOKEN_UNUSED = 5,
    PG_TOKEN_BYTE = 6
} pg_token_type;

/* Everything the tokenizer needs, as found in a GGUF file's metadata.  The
 * arrays are copied by pg_tokenizer_create and may be freed afterwards. */
typedef struct {
    int64_t n_vocab;
    const char *const *tokens;   /* (n_vocab) token texts; may hold any bytes */
    const uint64_t *token_lens;  /* (n_vocab) byte lengths; NULL: NUL-terminated */
    const float *scores;         /* (n_vocab) merge scores; NULL: all 0 */
    const int32_t *types;        /* (n_vocab) pg_token_type; NULL: all normal */
    int32_t bos_id;              /* -1 when absent */
    int32_t eos_id;
    int32_t unk_id;
    int32_t pad_id;
    int32_t add_bos;             /* tokenizer.ggml.add_bos_token */
    int32_t add_eos;             /* tokenizer.ggml.add_eos_token */
    int32_t add_space_prefix;    /* tokenizer.ggml.add_space_prefix */
} pg_tokenizer_config;

/* Fill `cfg` with llama.cpp's defaults for a "llama" vocabulary whose GGUF
 * lacks the optional keys: bos 1, eos 2, unk 0, pad -1, add_bos 1, add_eos 0,
 * add_space_prefix 1; arrays NULL, n_vocab 0.  Override what the file has. */
PG_API void pg_tokenizer_config_init(pg_tokenizer_config *cfg);

/* PG_ERR_ARG for a missing array, an id outside [-1, n_vocab), add_bos/add_eos
 * without the id, or a token text that appears twice (naming both ids). */
PG_API pg_status pg_tokenizer_create(const pg_tokenizer_config *cfg, pg_tokenizer **out);
PG_API void pg_tokenizer_free(pg_tokenizer *t);

/* text (len bytes, any bytes; invalid UTF-8 falls back to byte tokens) ->
 * out (cap ids).  add_special: prepend BOS / append EOS as the vocabulary's
 * add_bos / add_eos say.  parse_special: also match control tokens such as
 * "<start_of_turn>" in the text (user-defined tokens are always matched).
 * Sizes: *n_out = number of ids.  out == NULL asks for the count only (PG_OK);
 * a too small cap gives PG_ERR_ARG with *n_out = the count needed. */
PG_API pg_status pg_tokenize(const pg_tokenizer *t, const char *text, size_t len,
                             int add_special, int parse_special,
                             int32_t *out, int64_t cap, int64_t *n_out);

/* The bytes token `id` stands for, as llama.cpp's llama_token_to_piece with
 * lstrip 0: "\xe2\x96\x81" becomes " ", <0xXX> becomes the byte, control and
 * unknown tokens are "" unless `special`, user-defined tokens are their text.
 * Same size protocol as pg_tokenize (buf == NULL asks; not NUL-terminated). */
PG_API pg_status pg_token_to_piece(const pg_tokenizer *t, int32_t id, int special,
                                   char *buf, size_t cap, size_t *n_out);

/* The concatenated pieces of ids (n of them), as llama.cpp's llama_detokenize
 * with remove_special = false, unparse_special = special (when the vocabulary
 * adds a space prefix, one leading space of the first piece is dropped).
 * Same size protocol as pg_tokenize; PG_ERR_ARG names an invalid id. */
PG_API pg_status pg_detokenize(const pg_tokenizer *t, const int32_t *ids, int64_t n, int special,
                               char *buf, size_t cap, size_t *n_out);

PG_API int64_t pg_tokenizer_n_vocab(const pg_tokenizer *t);
PG_API int32_t pg_tokenizer_bos(const pg_tokenizer *t);   /* -1 if none */
PG_API int32_t pg_tokenizer_eos(const pg_tokenizer *t);
PG_API int32_t pg_tokenizer_unk(const pg_tokenizer *t);
PG_API int32_t pg_tokenizer_pad(const pg_tokenizer *t);
/* End-of-turn token found by text as llama.cpp does ("<end_of_turn>",
 * "<|eot_id|>", "<|im_end|>", ...); -1 if none. */
PG_API int32_t pg_tokenizer_eot(const pg_tokenizer *t);
PG_API int pg_tokenizer_add_bos(const pg_tokenizer *t);
PG_API int pg_tokenizer_add_eos(const pg_tokenizer *t);
PG_API int pg_tokenizer_add_space_prefix(const pg_tokenizer *t);
/* 1 if generation should stop at `id`: eos, eot, or another token llama.cpp
 * lists as end-of-generation by its text. */
PG_API int pg_tokenizer_is_eog(const pg_tokenizer *t, int32_t id);
/* Id of the token whose text is exactly piece[0..len); -1 if none. */
PG_API int32_t pg_tokenizer_find(const pg_tokenizer *t, const char *piece, size_t len);
/* GGUF token type of `id` (pg_token_type); -1 if id is out of range. */
PG_API int pg_tokenizer_token_type(const pg_tokenizer *t, int32_t id);
PG_API float pg_tokenizer_token_score(const pg_tokenizer *t, int32_t id);  /* 0 if out of range */
/* The stored text of `id` (not unescaped; NUL-terminated, *len = its bytes);
 * NULL if id is out of range. */
PG_API const char *pg_tokenizer_token_text(const pg_tokenizer *t, int32_t id, size_t *len);

/* CDEF END */

/* ===================================================================== */
/* Sampler (sampler.c)                                                   */
/* ===================================================================== */

/* CDEF BEGIN */

/* The sampler turns one row of logits into a token, as llama.cpp's common sampler chain does:
 *
 *   penalties -> top-k -> top-p -> min-p -> temperature -> draw from the softmax
 *
 *   penalties  for each token t seen c > 0 times among the last penalty_last_n accepted tokens:
 *              l = l > 0 ? l / repeat_penalty : l * repeat_penalty;
 *              l -= c * frequency_penalty + presence_penalty     (OpenAI's definitions)
 *   top-k      keep the top_k largest logits (top_k <= 0: the whole vocabulary)
 *   top-p      softmax over the kept tokens; keep the shortest best-first prefix whose
 *              probability reaches top_p, at least one token (top_p >= 1: off)
 *   min-p      keep tokens with p >= min_p * p_max, i.e. l >= l_max + log(min_p) (min_p <= 0: off)
 *   temperature  p ~ exp((l - l_max) / temperature) over what is left, then one seeded draw.
 *
 * temperature <= 0 is greedy: the argmax of the penalized logits (ties go to the lowest id);
 * top_k == 1 gives the same token at any temperature.  Ties anywhere are broken by lower id.
 * NaN logits count as -inf and +inf as FLT_MAX; when every logit is NaN or -inf, sampling
 * fails with PG_ERR_ARG rather than invent a token.
 *
 * Penalty window: pg_sampler_sample() does NOT record the token it returns.  Call
 * pg_sampler_accept() for every token appended to the context -- the prompt's tokens and
 * each generated one -- so the window is "the last N tokens of the context", as llama.cpp's
 * llama-cli and llama-server do (they accept every prompt token before the first draw).
 *
 * Random numbers: xoshiro256** seeded through splitmix64, one uniform per draw (greedy draws
 * too), so a seed gives the same stream on every platform; a token can still differ between
 * CPUs only where the last-bit rounding of a probability (the SSE2/NEON and AVX2 exp kernels
 * round differently) decides a draw.  seed == PG_SAMPLER_SEED_RANDOM picks a seed from the OS. */

#define PG_SAMPLER_SEED_RANDOM UINT64_MAX

typedef struct pg_sampler pg_sampler;

typedef struct {
    float temperature;         /* <= 0: greedy; must not be NaN/inf */
    int32_t top_k;             /* <= 0: whole vocabulary */
    float top_p;               /* in [0, 1]; 1: off */
    float min_p;               /* in [0, 1]; 0: off */
    float repeat_penalty;      /* > 0; 1: off */
    float frequency_penalty;   /* finite; 0: off */
    float presence_penalty;    /* finite; 0: off */
    int32_t penalty_last_n;    /* window size; 0: penalties off; -1: every token since reset */
    uint64_t seed;             /* PG_SAMPLER_SEED_RANDOM: pick one */
} pg_sampler_params;

/* llama.cpp's defaults (common_params_sampling): temperature 0.8, top_k 40, top_p 0.95,
 * min_p 0.05, repeat_penalty 1.0, penalties 0, penalty_last_n 64, random seed. */
PG_API void pg_sampler_params_default(pg_sampler_params *p);

/* PG_ERR_ARG naming the parameter for NaN/inf temperature, top_p or min_p outside [0, 1],
 * repeat_penalty <= 0, penalty_last_n < -1, n_vocab <= 0. */
PG_API pg_status pg_sampler_create(const pg_sampler_params *p, int32_t n_vocab, pg_sampler **out);
PG_API void pg_sampler_free(pg_sampler *s);
/* Add a token of the context to the penalty window (0 <= token < n_vocab). */
PG_API pg_status pg_sampler_accept(pg_sampler *s, int32_t token);
/* *token_out = one draw from logits (n_vocab floats), which are not modified. */
PG_API pg_status pg_sampler_sample(pg_sampler *s, const float *logits, int32_t *token_out);
/* The tokens the next draw would choose from and their probabilities (summing to 1), in the
 * order the draw walks them; draws nothing.  Writes min(cap, n) entries, *n_out = n. */
PG_API pg_status pg_sampler_candidates(pg_sampler *s, const float *logits, int32_t cap,
                                       int32_t *ids_out, float *probs_out, int32_t *n_out);
/* Empty the penalty window and restart the random stream (a fixed seed repeats its draws;
 * a random seed is drawn afresh, as llama.cpp does). */
PG_API void pg_sampler_reset(pg_sampler *s);
/* The seed in use (the one picked, for PG_SAMPLER_SEED_RANDOM). */
PG_API uint64_t pg_sampler_seed(const pg_sampler *s);

/* Log-probabilities of the model's raw distribution, log_softmax(logits) (what the OpenAI API
 * reports), independent of any sampler settings.  logits: (n_vocab) floats.
 * ids_out, logprobs_out: (k) -- the k most likely tokens, best first (ties: lower id). */
PG_API pg_status pg_sampler_top_logprobs(const float *logits, int32_t n_vocab, int32_t k,
                                         int32_t *ids_out, float *logprobs_out);
PG_API pg_status pg_sampler_token_logprob(const float *logits, int32_t n_vocab, int32_t token,
                                          float *logprob_out);

/* ---- Text stream: stop strings and UTF-8 boundaries for streamed output (textstream.c) ----
 *
 * The generation loop feeds the bytes of each detokenized piece; feed() returns the bytes that
 * are safe to show now:
 *   - always whole, valid UTF-8: an incomplete character is held until it completes; invalid
 *     bytes become U+FFFD, one per maximal invalid subpart (as Python's errors="replace");
 *   - any tail that could still become a stop string is held back;
 *   - when a stop string completes, the text before it is returned, *stopped = 1, and the stop
 *     string and everything after it are dropped (as the OpenAI API does).
 * The stop is the first point in the byte stream where some stop string is complete (the
 * longer one if two complete on the same byte), so the result does not depend on how the
 * bytes were split into pieces.  flush() ends the stream and returns what was held back
 * (a trailing incomplete character as U+FFFD). */

typedef struct pg_textstream pg_textstream;

enum { PG_TEXTSTREAM_MAX_STOPS = 32, PG_TEXTSTREAM_MAX_STOP_BYTES = 1024 };

/* stops: n_stops byte strings (stop_lens bytes each, 1..PG_TEXTSTREAM_MAX_STOP_BYTES);
 * n_stops in 0..PG_TEXTSTREAM_MAX_STOPS.  The strings are copied. */
PG_API pg_status pg_textstream_create(const char *const *stops, const size_t *stop_lens,
                                      int32_t n_stops, pg_textstream **out);
PG_API void pg_textstream_free(pg_textstream *ts);
/* *out points to *n_out bytes owned by ts, valid until the next call on ts.
 * After a stop, feeds return nothing and *stopped = 1.  PG_ERR_STATE after flush(). */
PG_API pg_status pg_textstream_feed(pg_textstream *ts, const char *bytes, size_t n,
                                    const char **out, size_t *n_out, int *stopped);
PG_API pg_status pg_textstream_flush(pg_textstream *ts, const char **out, size_t *n_out);
/* Index of the stop string that ended the stream, -1 if none. */
PG_API int32_t pg_textstream_stop_index(const pg_textstream *ts);
/* Bytes fed but not yet returned. */
PG_API size_t pg_textstream_held(const pg_textstream *ts);
/* Start a new stream with the same stop strings. */
PG_API void pg_textstream_reset(pg_textstream *ts);

/* CDEF END */

/* ===================================================================== */
/* Model: forward pass and KV cache (model*.c)                           */
/* ===================================================================== */

/* CDEF BEGIN */
typedef struct pg_model pg_model;       /* config + weights (views into the mmap) + tokenizer */
typedef struct pg_context pg_context;   /* one sequence: KV cache, activations, thread pool */

/* Load progress: called with a fraction in [0, 1] (1 last); returning nonzero cancels the
 * load (PG_ERR_CANCELLED), as llama.cpp's progress_callback returning false. */
typedef int (*pg_progress_fn)(float fraction, void *user);

typedef struct {
    float query_pre_attn_scalar;   /* > 0 overrides the value inferred from the metadata */
    int32_t n_gpu_layers;          /* layers to offload (GPU backend); 0 = CPU only */
    const char *gpu_library;       /* GPU library (libpygemma_gpu.so) to offload with; NULL = CPU only */
    /* With a progress callback the weights are read in (page by page, reporting as it
     * goes) during the load; without one they are paged in lazily by the first evals. */
    pg_progress_fn progress;
    void *progress_user;
} pg_model_params;

typedef struct {
    int32_t n_ctx;                 /* 0: min(8192, the model's context length) */
    int32_t n_threads;             /* <= 0: one per physical core */
    int32_t n_batch;               /* tokens per forward chunk; 0: 512 */
    /* 0 (default): llama.cpp's numerics -- F16 KV cache, F16 attention
     * operands, GELU from an F16 table, RoPE angles by repeated products --
     * so outputs match llama.cpp's.  1: float32 wherever the model allows
     * (F32 KV cache, exact GELU), i.e. what transformers computes. */
    int32_t precise;
} pg_context_params;

PG_API void pg_model_params_init(pg_model_params *p);
PG_API void pg_context_params_init(pg_context_params *p);

/* Open a .gguf or .llamafile and validate it as a Gemma 2/3 model. */
PG_API pg_status pg_model_load(const char *path, const pg_model_params *p, pg_model **out);
PG_API void pg_model_free(pg_model *m);
PG_API const pg_gguf *pg_model_gguf(const pg_model *m);
PG_API const pg_tokenizer *pg_model_tokenizer(const pg_model *m);   /* owned by the model */
/* The tokenizer described by a GGUF file's tokenizer.ggml.* metadata. */
PG_API pg_status pg_tokenizer_from_gguf(const pg_gguf *g, pg_tokenizer **out);
PG_API const char *pg_model_arch(const pg_model *m);      /* "gemma2" | "gemma3" */
PG_API int32_t pg_model_n_vocab(const pg_model *m);
PG_API int32_t pg_model_n_ctx_train(const pg_model *m);
PG_API int32_t pg_model_n_embd(const pg_model *m);
PG_API int32_t pg_model_n_layer(const pg_model *m);
PG_API int64_t pg_model_n_params(const pg_model *m);
PG_API uint64_t pg_model_weight_bytes(const pg_model *m);

PG_API pg_status pg_context_create(pg_model *m, const pg_context_params *p, pg_context **out);
PG_API void pg_context_free(pg_context *c);
PG_API int32_t pg_context_n_ctx(const pg_context *c);
PG_API int64_t pg_context_n_past(const pg_context *c);
PG_API uint64_t pg_context_kv_bytes(const pg_context *c);
/* Forget every token after the first n_past.  Fails with PG_ERR_STATE when a
 * sliding-window ring no longer holds the keys position n_past needs (the
 * caller then re-evaluates from an earlier point). */
PG_API pg_status pg_context_rewind(pg_context *c, int64_t n_past);
/* Drop the cached positions [p0, p1) and move the later ones down by p1 - p0 (their keys
 * re-rotated to the new positions; they keep what they computed while attending to the
 * dropped span, as llama.cpp's context shift).  n_past shrinks by p1 - p0.  PG_ERR_STATE
 * when a sliding-window ring no longer holds a position the next token would need (the
 * caller then re-evaluates instead). */
PG_API pg_status pg_context_shift(pg_context *c, int64_t p0, int64_t p1);
/* Evaluate n tokens after the cached ones.  all_logits: (n, n_vocab) output
 * for every token, or NULL.  The last token's logits are always kept and
 * readable through pg_context_logits() until the next eval. */
PG_API pg_status pg_eval(pg_context *c, const int32_t *tokens, int64_t n, float *all_logits);
PG_API const float *pg_context_logits(const pg_context *c);   /* (n_vocab) or NULL before any eval */
/* Debugging and hidden-state access: while set, every pg_eval of a single
 * chunk copies the residual stream after each layer into hidden
 * (n_layer, n_tokens, n_embd); NULL turns it off. */
PG_API void pg_context_trace_hidden(pg_context *c, float *hidden);
/* One next token for each of n_seq distinct contexts of the same model, in one pass over
 * the weights (the server's parallel slots decode together).  tokens: (n_seq), token i
 * appended to ctxs[i], whose logits are then readable through pg_context_logits().  The
 * first context's buffers and threads do the work: n_seq <= its n_batch, and no context may
 * have a larger n_ctx or other numerics (precise) than it.  On failure no n_past changes. */
PG_API pg_status pg_eval_batch(pg_context *const *ctxs, const int32_t *tokens, int32_t n_seq);
/* Ask a running pg_eval (on another thread) to stop soon with PG_ERR_CANCELLED. */
PG_API void pg_context_cancel(pg_context *c);
/* CDEF END */

/* ===================================================================== */
/* GPU offload (backend.c, model_gpu.c; kernels/ for the library)        */
/* ===================================================================== */

/* CDEF BEGIN */

/* A GPU library is built from kernels/ on the user's machine (pygemma --recompile) and
 * loaded with dlopen by path.  pg_model_load() with params.gpu_library set and
 * n_gpu_layers = N > 0 uploads the LAST min(N, n_layer) layers' weights (in their GGUF
 * types) to the device, and the output norm and head too when N > n_layer (as llama.cpp's
 * -ngl: 999 means everything); each context then keeps those layers' KV cache on the
 * device.  The CPU embeds the tokens and runs the first layers, then hands the residual
 * stream over.  Device out-of-memory is PG_ERR_NOMEM with a message suggesting a smaller
 * -ngl; any other device failure PG_ERR_GPU.  With gpu_library NULL, n_gpu_layers is
 * ignored (the model runs on the CPU). */

/* Load `library` and describe device 0 into info (cap bytes, NUL-terminated), e.g.
 * "NVIDIA H100 80GB HBM3 (79.2 GiB, 78.6 GiB free), compute 9.0, 132 SMs, cuda 13.0, cublas".
 * PG_ERR_GPU when the library cannot be loaded, is not a pygemma GPU library, was built for
 * another ABI version, or finds no device/driver (the message says which). */
PG_API pg_status pg_gpu_probe(const char *library, char *info, size_t cap);
/* "NVIDIA H100 80GB HBM3 (79.2 GiB), 26/26 layers + output on GPU"; "" when CPU only. */
PG_API const char *pg_model_gpu_info(const pg_model *m);
/* Layers on the device (0 when CPU only). */
PG_API int32_t pg_model_n_gpu_layers(const pg_model *m);
/* Device bytes of the offloaded weights, and of a context's device KV cache and buffers. */
PG_API uint64_t pg_model_gpu_bytes(const pg_model *m);
PG_API uint64_t pg_context_gpu_bytes(const pg_context *c);
/* Like pg_eval, then *token_out = the greedy token (argmax of the last token's logits,
 * lowest id on ties, NaN counted as -inf).  When the output head is on the device only the
 * token comes back, and pg_context_logits() is NULL until the next pg_eval. */
PG_API pg_status pg_eval_argmax(pg_context *c, const int32_t *tokens, int64_t n, int32_t *token_out);
/* Test hook: set a process-wide option of a loaded GPU library ("tinyblas" 1: prompt chunks
 * use tinyBLAS even where cuBLAS is linked; "graphs" 0: no decode graph capture). */
PG_API pg_status pg_gpu_set_option(const char *library, const char *name, int64_t value);

/* CDEF END */

#ifdef __cplusplus
}
#endif
#endif /* PYGEMMA_H */
