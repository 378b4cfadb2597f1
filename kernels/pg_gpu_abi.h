/* pg_gpu_abi.h -- the plain-C contract between the C core (csrc/backend.c) and a GPU
 * library (the kernels/ sources compiled on the user's machine into libpygemma_gpu.so).
 *
 * Included by both sides, so it holds no CUDA/HIP types: opaque handles, plain structs,
 * and one versioned table of function pointers.  The library exports one C symbol,
 *
 *     int pg_gpu_backend_v1(const pg_gpu_host *host, const pg_gpu_backend **out);
 *
 * which fills *out with its table (static storage, never freed).  The core checks
 * table->abi_version == PG_GPU_ABI_VERSION and table->struct_size >= sizeof(pg_gpu_backend)
 * before using anything else in it.  Any change to a struct or a signature here bumps
 * PG_GPU_ABI_VERSION (and a cached library built from older sources is then refused with a
 * message saying so, so it is rebuilt).
 *
 * Every function returns an int status (the values of pg_status: 0 = OK) and leaves a
 * message for table->last_error() (per thread) when it fails.  Nothing here exits or aborts.
 *
 * Work split: the core embeds tokens and runs layers [0, first_layer) on the CPU, then hands
 * the residual stream (n tokens x n_embd floats) to forward(), which runs layers
 * [first_layer, n_layer) on the device and either returns the residual (output head on the
 * CPU) or applies the final norm, output head and final soft-cap itself (output_on_gpu)
 * and returns logits and/or the greedy token.  The same forward() serves prompt chunks
 * (n > 1: matrix-matrix products) and decoding (n == 1: matrix-vector products, replayed
 * from a captured graph).
 */
#ifndef PG_GPU_ABI_H
#define PG_GPU_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PG_GPU_ABI_VERSION 1u
#define PG_GPU_ENTRY "pg_gpu_backend_v1"

/* Status values: the same numbers as pg_status in csrc/pygemma.h. */
enum {
    PG_GPU_OK = 0,
    PG_GPU_ERR_UNSUPPORTED = 3,   /* e.g. a tensor type the kernels lack */
    PG_GPU_ERR_NOMEM = 4,         /* device (or pinned host) memory exhausted */
    PG_GPU_ERR_ARG = 5,           /* bad argument */
    PG_GPU_ERR_GPU = 8            /* no device, driver/runtime failure, kernel failure */
};

/* Services of the host the library may use (the fake test backend dequantizes with it). */
typedef struct {
    uint32_t abi_version;                       /* PG_GPU_ABI_VERSION of the core */
    /* dst (n floats) = src (n elements of GGML type `type`); 0 on success */
    int (*dequantize)(int type, const void *src, float *dst, int64_t n);
} pg_gpu_host;

typedef struct {
    char name[256];               /* "NVIDIA H100 80GB HBM3" */
    char runtime[32];             /* "cuda 13.0" / "hip 6.1" / "fake" */
    char blas[16];                /* "cublas" | "tinyblas" (what prompt chunks use) */
    uint64_t total_bytes;         /* device memory */
    uint64_t free_bytes;
    int32_t cc_major, cc_minor;   /* compute capability (HIP: gfx major/minor) */
    int32_t n_sm;                 /* multiprocessors / compute units */
    int32_t warp_size;
} pg_gpu_device_info;

/* A weight matrix as it lies in the GGUF mapping: (rows, cols) of a GGML type, rows
 * contiguous, row stride = bytes of `cols` elements of `type`. */
typedef struct {
    int32_t type;
    const void *data;             /* host pointer (mmap) */
    int64_t rows, cols;
} pg_gpu_matrix;

typedef struct {
    const float *attn_norm;       /* (D) Gemma's (1 + weight), as the file stores it */
    pg_gpu_matrix wq;             /* (H*hd, D) */
    pg_gpu_matrix wk;             /* (Hkv*hd, D) */
    pg_gpu_matrix wv;             /* (Hkv*hd, D) */
    const float *q_norm;          /* (hd) Gemma 3 only, else NULL */
    const float *k_norm;          /* (hd) Gemma 3 only, else NULL */
    pg_gpu_matrix wo;             /* (D, H*hd) */
    const float *post_attn_norm;  /* (D) */
    const float *ffn_norm;        /* (D) */
    pg_gpu_matrix w_gate;         /* (F, D) */
    pg_gpu_matrix w_up;           /* (F, D) */
    pg_gpu_matrix w_down;         /* (D, F) */
    const float *post_ffn_norm;   /* (D) */
} pg_gpu_layer;

typedef struct {
    int32_t n_vocab, n_embd, n_layer, n_ff, n_head, n_head_kv, head_dim;
    float norm_eps;
    float attn_softcap;           /* 0: none */
    float final_softcap;          /* 0: none */
    float query_scale;            /* 1/sqrt(query_pre_attn_scalar) */
    int32_t sliding_window;
    float rope_scale_global;      /* position multiplier on global layers */
    const uint8_t *is_sliding;    /* (n_layer) */

    int32_t first_layer;          /* layers [first_layer, n_layer) go to the device */
    int32_t output_on_gpu;        /* 1: output_norm + output head too */
    const pg_gpu_layer *layers;   /* (n_layer) host views; only [first_layer, n_layer) are read */
    const float *output_norm;     /* (D), read when output_on_gpu */
    pg_gpu_matrix output;         /* (n_vocab, D), read when output_on_gpu */
} pg_gpu_model_desc;

typedef struct {
    int32_t n_ctx;                /* positions the sequence may reach */
    int32_t n_batch;              /* most tokens per forward() */
    int32_t precise;              /* 1: F32 KV cache and transformers' float numerics */
    const int32_t *cache_len;     /* (n_layer) KV slots per layer: n_ctx, or the sliding ring */
    const float *inv_freq_local;  /* (hd/2) RoPE inverse frequencies, sliding layers */
    const float *inv_freq_global; /* (hd/2) global layers (same formulas as the CPU) */
} pg_gpu_seq_desc;

typedef struct {
    int32_t n;                    /* tokens, 1 <= n <= n_batch */
    int64_t pos;                  /* position of the first token; pos + n <= n_ctx */
    const float *x;               /* (n, D) residual entering first_layer */
    float *x_out;                 /* (n, D) residual after the last layer, or NULL */
    int32_t logits_rows;          /* output_on_gpu: 0, 1 (last token) or n (every token) */
    float *logits;                /* (logits_rows, n_vocab) soft-capped logits, or NULL */
    int32_t *argmax;              /* (1) greedy token of the last row (lowest id on ties), or NULL */
    float *trace;                 /* (n_layer - first_layer, n, D) residual after each layer, or NULL */
} pg_gpu_batch;

typedef struct pg_gpu_model pg_gpu_model;   /* device weights of the offloaded part */
typedef struct pg_gpu_seq pg_gpu_seq;       /* one sequence: KV cache, buffers, graphs */

/* Options for set_option (process-wide). */
#define PG_GPU_OPT_TINYBLAS "tinyblas"    /* 1: prompt chunks use tinyBLAS even with cuBLAS */
#define PG_GPU_OPT_GRAPHS "graphs"        /* 0: no graph capture for decoding */

typedef struct {
    uint32_t abi_version;         /* PG_GPU_ABI_VERSION */
    uint32_t struct_size;         /* sizeof(pg_gpu_backend) of the library */
    const char *name;             /* "cuda" | "hip" | "fake" */

    const char *(*last_error)(void);                             /* "" if none; per thread */
    int (*device_info)(int32_t device, pg_gpu_device_info *out);  /* no device: PG_GPU_ERR_GPU */
    int (*set_option)(const char *name, int64_t value);

    /* Uploads the offloaded layers' weights in their GGUF types (and the output head). */
    int (*model_create)(const pg_gpu_model_desc *desc, pg_gpu_model **out);
    int (*model_free)(pg_gpu_model *m);                          /* NULL ok */
    uint64_t (*model_bytes)(const pg_gpu_model *m);              /* device bytes of the weights */

    int (*seq_create)(pg_gpu_model *m, const pg_gpu_seq_desc *desc, pg_gpu_seq **out);
    int (*seq_free)(pg_gpu_seq *s);                              /* NULL ok */
    uint64_t (*seq_bytes)(const pg_gpu_seq *s);                  /* device bytes: KV cache + buffers */

    int (*forward)(pg_gpu_seq *s, const pg_gpu_batch *b);
} pg_gpu_backend;

typedef int (*pg_gpu_entry_fn)(const pg_gpu_host *host, const pg_gpu_backend **out);

#ifdef __cplusplus
}
#endif
#endif /* PG_GPU_ABI_H */
