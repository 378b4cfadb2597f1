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
/* Benchmark hook: stream `bytes` of `buf` through the pool's threads (each
 * reads a contiguous share) and return a checksum, to measure read bandwidth. */
PG_API uint64_t pg_mem_read(pg_pool *pool, const void *buf, size_t bytes);
/* Test hook: run `iterations` tiny jobs on the pool and count the shares that
 * did not run exactly once (0 when the dispatch is correct); -1 on bad input. */
PG_API int64_t pg_pool_selftest(pg_pool *pool, int iterations);

/* CDEF END */

/* ===================================================================== */
/* GGUF files (gguf.c, zipfile.c)                                        */
/* ===================================================================== */

/* (section owned by the GGUF reader) */

/* ===================================================================== */
/* Tokenizer (tokenizer.c)                                               */
/* ===================================================================== */

/* (section owned by the tokenizer) */

/* ===================================================================== */
/* Sampler (sampler.c)                                                   */
/* ===================================================================== */

/* (section owned by the sampler) */

/* ===================================================================== */
/* Model: forward pass and KV cache (model*.c)                           */
/* ===================================================================== */

/* (section owned by the model) */

#ifdef __cplusplus
}
#endif
#endif /* PYGEMMA_H */
