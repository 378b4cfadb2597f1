/* gemm_cublas.cu -- prompt-chunk products through cuBLAS (built with PG_GPU_CUBLAS=1).
 *
 * Y (n, rows) = X (n, cols) @ W^T.  In cuBLAS's column-major terms W (row-major rows x cols)
 * is A^T with A = (cols x rows, lda = cols), X is B (cols x n, ldb = cols), Y is C (rows x n,
 * ldc = rows), and C = A^T B is gemm(OP_T, OP_N, m = rows, n, k = cols).
 * Inputs by weight type, always accumulating in float32 (CUBLAS_COMPUTE_32F):
 *   F32          W and X as they are (float32 inputs: no TF32 unless asked for)
 *   BF16         W as it is, X rounded to BF16
 *   F16, quants  W as it is (F16) or dequantized to F16 in chunks of rows, X rounded to F16
 * (F16 activations: as llama.cpp's cuBLAS path; Gemma's normed activations stay far from
 * the F16 range limit, the residual stream itself never goes through here). */
#include "gpu_internal.h"

#if PG_GPU_CUBLAS
#include <cublas_v2.h>

#define W_CHUNK_ELEMS (32ll << 20)   /* dequantized weight scratch: 64 MiB of F16 */

struct pg_blas {
    cublasHandle_t h;
    uint16_t *xh;          /* (max_x_elems) X as F16/BF16 */
    uint16_t *wh;          /* (W_CHUNK_ELEMS) dequantized weight rows */
    uint64_t bytes;
};

static int blas_check(cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return PG_GPU_OK;
    return pg_gpu_fail(s == CUBLAS_STATUS_ALLOC_FAILED ? PG_GPU_ERR_NOMEM : PG_GPU_ERR_GPU, "%s: cuBLAS status %d",
                       what, (int)s);
}

int pg_blas_available(void) { return 1; }

int pg_blas_create(pg_blas **out, cudaStream_t st, int64_t max_x_elems) {
    *out = NULL;
    pg_blas *b = (pg_blas *)calloc(1, sizeof *b);
    if (!b) return pg_gpu_fail(PG_GPU_ERR_NOMEM, "host out of memory");
    int rc = blas_check(cublasCreate(&b->h), "cublasCreate");
    if (!rc) rc = blas_check(cublasSetStream(b->h, st), "cublasSetStream");
    if (!rc) rc = pg_gpu_check(cudaMalloc((void **)&b->xh, 2 * (size_t)max_x_elems), "cuBLAS activation scratch");
    if (!rc) rc = pg_gpu_check(cudaMalloc((void **)&b->wh, 2 * (size_t)W_CHUNK_ELEMS), "cuBLAS weight scratch");
    if (rc) { pg_blas_free(b); return rc; }
    b->bytes = 2 * (uint64_t)max_x_elems + 2 * (uint64_t)W_CHUNK_ELEMS;
    *out = b;
    return PG_GPU_OK;
}

void pg_blas_free(pg_blas *b) {
    if (!b) return;
    if (b->h) cublasDestroy(b->h);
    (void)cudaFree(b->xh);
    (void)cudaFree(b->wh);
    free(b);
}

uint64_t pg_blas_bytes(const pg_blas *b) { return b ? b->bytes : 0; }

static int gemm(pg_blas *b, const void *A, cudaDataType at, const void *B, cudaDataType bt, int64_t rows, int n,
                int64_t cols, float *C, int64_t ldc) {
    const float one = 1.0f, zero = 0.0f;
    return blas_check(cublasGemmEx(b->h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, n, (int)cols, &one, A, at, (int)cols, B,
                                   bt, (int)cols, &zero, C, CUDA_R_32F, (int)ldc, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT),
                      "cublasGemmEx");
}

int pg_blas_gemm(pg_blas *b, const pg_dev_matrix *w, const float *X, int n, float *Y, cudaStream_t st) {
    const int64_t rows = w->rows, cols = w->cols;
    if (w->type == 0 /* F32 */) return gemm(b, w->d, CUDA_R_32F, X, CUDA_R_32F, rows, n, cols, Y, rows);
    const int bf16 = w->type == 30;
    PG_GPU_TRY(pg_launch_to_f16(b->xh, X, (int64_t)n * cols, bf16, st));
    if (bf16) return gemm(b, w->d, CUDA_R_16BF, b->xh, CUDA_R_16BF, rows, n, cols, Y, rows);
    if (w->type == 1 /* F16 */) return gemm(b, w->d, CUDA_R_16F, b->xh, CUDA_R_16F, rows, n, cols, Y, rows);
    const int64_t chunk = W_CHUNK_ELEMS / cols > 0 ? W_CHUNK_ELEMS / cols : 1;
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        const int64_t nr = rows - r0 < chunk ? rows - r0 : chunk;
        PG_GPU_TRY(pg_launch_dequant_f16(w, r0, nr, b->wh, st));
        /* the chunk's outputs are rows r0.. of every token's output: C offset r0, ldc = rows */
        PG_GPU_TRY(gemm(b, b->wh, CUDA_R_16F, b->xh, CUDA_R_16F, nr, n, cols, Y + r0, rows));
    }
    return PG_GPU_OK;
}

#else /* tinyBLAS only */

struct pg_blas { int unused; };
int pg_blas_available(void) { return 0; }
int pg_blas_create(pg_blas **out, cudaStream_t st, int64_t max_x_elems) {
    (void)st; (void)max_x_elems;
    *out = NULL;
    return PG_GPU_OK;
}
void pg_blas_free(pg_blas *b) { (void)b; }
uint64_t pg_blas_bytes(const pg_blas *b) { (void)b; return 0; }
int pg_blas_gemm(pg_blas *b, const pg_dev_matrix *w, const float *X, int n, float *Y, cudaStream_t st) {
    (void)b; (void)w; (void)X; (void)n; (void)Y; (void)st;
    return pg_gpu_fail(PG_GPU_ERR_UNSUPPORTED, "built without cuBLAS (tinyBLAS)");
}

#endif
