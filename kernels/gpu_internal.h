/* gpu_internal.h -- what the kernels/ translation units share: device-side model and
 * sequence structs, the kernel launchers (each .cu file owns its kernels and exposes only
 * a launcher), and error reporting.  Launchers enqueue on a stream and never synchronize,
 * so the decode step can be captured into a graph; they return 0 or a PG_GPU_ERR_*. */
#ifndef PG_GPU_INTERNAL_H
#define PG_GPU_INTERNAL_H

#include "gpu_compat.h"
#include "pg_gpu_abi.h"

#define PG_GPU_MAX_LAYERS 256
#define PG_GPU_MAX_HD 256          /* head_dim the attention kernels support (Gemma: 128, 256) */
#define PG_GPU_MATVEC_MAX_TOK 8    /* chunks of up to this many tokens use mat-vec per token */
#define PG_GPU_LOGIT_ROWS 64       /* output-head rows computed per pass (bounds the logits buffer) */

/* ---- errors (backend.cu) ---- */
int pg_gpu_fail(int status, const char *fmt, ...);
/* PG_GPU_OK, or the failure of `e` (out of memory -> PG_GPU_ERR_NOMEM) reported as "what: ..." */
int pg_gpu_check(cudaError_t e, const char *what);
#define PG_GPU_TRY(expr) do { int _s = (expr); if (_s) return _s; } while (0)
#define PG_CUDA_TRY(call, what) PG_GPU_TRY(pg_gpu_check((call), (what)))

typedef struct pg_blas pg_blas;   /* cuBLAS handle and scratch (gemm_cublas.cu) */

/* A weight matrix in device memory, in its GGUF type. */
typedef struct {
    int type;
    const uint8_t *d;              /* (rows, row_bytes) */
    int64_t rows, cols, row_bytes;
} pg_dev_matrix;

typedef struct {
    const float *attn_norm, *q_norm, *k_norm, *post_attn_norm, *ffn_norm, *post_ffn_norm;   /* device */
    pg_dev_matrix wq, wk, wv, wo, gate, up, down;
} pg_dev_layer;

struct pg_gpu_model {
    pg_gpu_model_desc d;           /* host copy; d.layers/output pointers are not kept */
    uint8_t sliding[PG_GPU_MAX_LAYERS];
    pg_dev_layer L[PG_GPU_MAX_LAYERS];
    pg_dev_matrix output;          /* when d.output_on_gpu */
    const float *output_norm;      /* (D) device */
    void *allocs[16 * PG_GPU_MAX_LAYERS + 8];
    int n_allocs;
    uint64_t bytes;
};

/* One sequence: KV cache of the offloaded layers, activation buffers for n_batch tokens,
 * pinned staging for host transfers, and the captured decode graphs. */
#define PG_GPU_N_GRAPHS 8          /* one per output combination: argmax | logits | x_out */
struct pg_gpu_seq {
    pg_gpu_model *m;
    int32_t n_ctx, n_batch, precise;
    int32_t cache_len[PG_GPU_MAX_LAYERS];
    void *kc[PG_GPU_MAX_LAYERS], *vc[PG_GPU_MAX_LAYERS];   /* (Hkv, cache_len, hd) F16 (F32 if precise) */
    const float *inv_local, *inv_global;                    /* (hd/2) */
    int64_t *d_pos;                /* (1) position of the chunk's first token */
    int32_t *d_tok;                /* (1) greedy token */
    float *x, *xn, *o;             /* (B, D) residual, normed input, sub-layer output */
    float *q, *att;                /* (B, H*hd) */
    float *k, *v;                  /* (B, Hkv*hd) */
    float *gate, *up;              /* (B, F) */
    float *logits;                 /* (PG_GPU_LOGIT_ROWS, V) when the head is on the device */
    float *partials;               /* attention split partials, (max(B, splits), H, hd + 2) */
    int splits;                    /* key splits of the decode attention */
    cudaStream_t stream;
    pg_blas *blas;                 /* NULL: tinyBLAS only */
    int64_t *h_pos;                /* pinned host staging: (1) */
    int32_t *h_tok;                /* (1) */
    float *h_x, *h_xout;           /* (B, D) */
    float *h_logits;               /* (PG_GPU_LOGIT_ROWS, V) */
    cudaGraphExec_t graph[PG_GPU_N_GRAPHS];
    int graphs_broken;             /* capture failed once: run decode steps uncaptured */
    void *allocs[2 * PG_GPU_MAX_LAYERS + 32];
    int n_allocs;
    uint64_t bytes;
};

/* ---- launchers ---- */
/* y (rows) = W (rows, cols) @ x (cols); x 16-byte aligned. */
int pg_launch_matvec(const pg_dev_matrix *w, const float *x, float *y, cudaStream_t st);
/* Y (nt, rows) = X (nt, cols) @ W^T for 1 <= nt <= PG_GPU_MATVEC_MAX_TOK, the weights read once. */
int pg_launch_matvec_tokens(const pg_dev_matrix *w, const float *X, int nt, float *Y, cudaStream_t st);
/* y[k] = w[k] @ x for 3 matrices sharing x, in one launch when their type and width agree. */
int pg_launch_matvec3(const pg_dev_matrix *const w[3], const float *x, float *const y[3], cudaStream_t st);
/* y (rows) = gelu(gate @ x) * (up @ x); gate and up of one type and shape (else an error). */
int pg_launch_matvec_geglu(const pg_dev_matrix *gate, const pg_dev_matrix *up, const float *x, float *y, int precise,
                           cudaStream_t st);
/* Y (n, rows) = X (n, cols) @ W^T by tinyBLAS (dequantizing W tiles in shared memory). */
int pg_launch_gemm_tiny(const pg_dev_matrix *w, const float *X, int n, float *Y, cudaStream_t st);
/* dst (nrows, cols) F16 bits = rows [r0, r0 + nrows) of W dequantized. */
int pg_launch_dequant_f16(const pg_dev_matrix *w, int64_t r0, int64_t nrows, uint16_t *dst, cudaStream_t st);

/* cuBLAS (gemm_cublas.cu; stubs returning UNSUPPORTED when PG_GPU_CUBLAS is off) */
int pg_blas_create(pg_blas **out, cudaStream_t st, int64_t max_x_elems);
void pg_blas_free(pg_blas *b);
uint64_t pg_blas_bytes(const pg_blas *b);
int pg_blas_gemm(pg_blas *b, const pg_dev_matrix *w, const float *X, int n, float *Y, cudaStream_t st);
int pg_blas_available(void);

/* elementwise.cu */
/* o[t] = x[t] / rms(x[t]) * w (add: o[t] += ...) for n rows of width D. */
int pg_launch_rmsnorm(float *o, const float *x, const float *w, int n, int D, float eps, int add, int precise,
                      cudaStream_t st);
/* gate (count) = gelu(gate) * up */
int pg_launch_geglu(float *gate, const float *up, int64_t count, int precise, cudaStream_t st);
/* x (count) = cap * tanh(x / cap) */
int pg_launch_softcap(float *x, int64_t count, float cap, int precise, cudaStream_t st);
/* dst (count) F16 or BF16 bits = src */
int pg_launch_to_f16(uint16_t *dst, const float *src, int64_t count, int bf16, cudaStream_t st);

/* attention.cu -- positions come from *pos (device), so a captured graph replays */
typedef struct {
    int n, H, Hkv, hd, cl;         /* tokens, heads, KV heads, head dim, cache slots */
    int sliding, window;
    float eps, scale, softcap, pos_scale;
    int precise, kv_f32;
    const int64_t *pos;            /* (1) device: position of the first token */
    const float *inv_freq;         /* (hd/2) device */
    const float *q_norm, *k_norm;  /* (hd) device, or NULL */
} pg_attn_args;
/* Gemma 3 q/k norms and RoPE on q (n, H, hd) and k (n, Hkv, hd) in place, then k and v
 * (n, Hkv, hd) into the cache slots (Hkv, cl, hd) at pos % cl. */
int pg_launch_qk_prepare(const pg_attn_args *a, float *q, float *k, const float *v, void *kc, void *vc,
                         cudaStream_t st);
/* out (n, H, hd) = attention over the cache, keys split in `splits` parts per query head
 * (partials: (n, H, splits, hd + 2) floats). */
int pg_launch_attention(const pg_attn_args *a, const float *q, const void *kc, const void *vc, float *out,
                        float *partials, int splits, cudaStream_t st);

/* sampler.cu: *out = argmax of x (n) (lowest index on ties, NaN never chosen; -1 if all NaN) */
int pg_launch_argmax(const float *x, int n, int32_t *out, cudaStream_t st);

/* forward.cu */
int pg_gpu_forward(pg_gpu_seq *s, const pg_gpu_batch *b);
extern int pg_gpu_opt_tinyblas, pg_gpu_opt_graphs;

#endif /* PG_GPU_INTERNAL_H */
