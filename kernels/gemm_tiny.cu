/* gemm_tiny.cu -- tinyBLAS: Y (n, rows) = X (n, cols) @ W^T for prompt chunks when no
 * vendor BLAS is linked (or when forced, to compare with it), for every weight type.
 *
 * A block of 256 threads computes a 64-token x 64-row tile of Y.  Per step of 32 columns it
 * stages X's 64 x 32 floats and W's 64 rows x 32 values -- dequantized on the fly, one
 * 32-element group per row by threads 0..63 -- in shared memory (k-major, padded), then each
 * thread accumulates a 4 x 4 sub-tile in float32.  Out-of-range tokens and rows are zero in
 * shared memory and never written.  cols is a multiple of 32 (every type's block is). */
#include "gpu_internal.h"
#include "quant_dot.cuh"

#define TB_M 64     /* tokens per tile */
#define TB_N 64     /* weight rows per tile */
#define TB_K 32     /* columns per step (one group) */
#define TB_THREADS 256

template <int TYPE>
__global__ void __launch_bounds__(TB_THREADS)
gemm_tiny_kernel(const uint8_t *__restrict__ W, int64_t row_bytes, int64_t rows, int64_t cols,
                 const float *__restrict__ X, int n, float *__restrict__ Y) {
    __shared__ float Xs[TB_K][TB_M + 1];   /* Xs[k][t] */
    __shared__ float Ws[TB_K][TB_N + 1];   /* Ws[k][r] */
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int64_t t0 = (int64_t)blockIdx.y * TB_M, r0 = (int64_t)blockIdx.x * TB_N;
    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < cols; k0 += TB_K) {
#pragma unroll
        for (int i = 0; i < TB_M * TB_K / TB_THREADS; i++) {
            const int idx = tid + TB_THREADS * i, t = idx / TB_K, k = idx % TB_K;
            Xs[k][t] = t0 + t < n ? X[(t0 + t) * cols + k0 + k] : 0.0f;
        }
        if (tid < TB_N) {
            float v[32];
            if (r0 + tid < rows) {
                deq32<TYPE>(W + (r0 + tid) * row_bytes, k0 / 32, v);
            } else {
#pragma unroll
                for (int k = 0; k < 32; k++) v[k] = 0.0f;
            }
#pragma unroll
            for (int k = 0; k < 32; k++) Ws[k][tid] = v[k];
        }
        __syncthreads();
#pragma unroll 8
        for (int k = 0; k < TB_K; k++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) { a[i] = Xs[k][ty * 4 + i]; b[i] = Ws[k][tx * 4 + i]; }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();   /* before the next step overwrites the tiles */
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int64_t t = t0 + ty * 4 + i;
        if (t >= n) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t r = r0 + tx * 4 + j;
            if (r < rows) Y[t * rows + r] = acc[i][j];
        }
    }
}

int pg_launch_gemm_tiny(const pg_dev_matrix *w, const float *X, int n, float *Y, cudaStream_t st) {
    const dim3 grid((unsigned)((w->rows + TB_N - 1) / TB_N), (unsigned)((n + TB_M - 1) / TB_M));
    switch (w->type) {
#define CASE(T) \
    case T: PG_LAUNCH(gemm_tiny_kernel<T>, grid, TB_THREADS, 0, st, w->d, w->row_bytes, w->rows, w->cols, X, n, Y); break;
        PG_FOR_EACH_TYPE(CASE)
#undef CASE
    default: return pg_gpu_fail(PG_GPU_ERR_UNSUPPORTED, "no tinyBLAS kernel for tensor type %d", w->type);
    }
    return pg_gpu_check(cudaGetLastError(), "tinyBLAS launch");
}
