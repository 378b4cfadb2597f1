/* matvec.cu -- y = W x for one token (decoding), every weight type, and dequantization of
 * weight rows to F16 (for the cuBLAS path).
 *
 * Mat-vec: a block of 128 threads owns MV_ROWS rows; each warp takes rows of the block in
 * turn and its lanes stride over the row's 32-element groups (lane i: groups i, i + W, ...),
 * dequantizing a group into registers and multiplying it by the matching 32 floats of x.
 * Consecutive lanes read consecutive blocks of the row, so a warp reads the weights as one
 * contiguous stream; x (at most 4 * n_ff bytes) stays in L1/L2 for all rows.  The lane sums
 * are reduced with shuffles and lane 0 writes y[r].  Decoding is memory bound: the weights
 * are read exactly once. */
#include "gpu_internal.h"
#include "quant_dot.cuh"

#define MV_THREADS 128
#define MV_ROWS 4

template <int TYPE>
__global__ void __launch_bounds__(MV_THREADS)
matvec_kernel(const uint8_t *__restrict__ W, int64_t row_bytes, int64_t rows, int64_t cols,
              const float *__restrict__ x, float *__restrict__ y) {
    const int lane = threadIdx.x % PG_WARP, warp = threadIdx.x / PG_WARP, nw = blockDim.x / PG_WARP;
    const int64_t r_end = min(rows, ((int64_t)blockIdx.x + 1) * MV_ROWS);
    const int64_t ngroups = cols / 32;
    /* r is the same for every lane of a warp, so the shuffles below see the whole warp */
    for (int64_t r = (int64_t)blockIdx.x * MV_ROWS + warp; r < r_end; r += nw) {
        const uint8_t *row = W + r * row_bytes;
        float acc = 0.0f;
        for (int64_t g = lane; g < ngroups; g += PG_WARP) {
            float v[32];
            deq32<TYPE>(row, g, v);
            const float4 *xg = (const float4 *)(x + 32 * g);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                const float4 xx = xg[i];
                acc += v[4 * i] * xx.x + v[4 * i + 1] * xx.y + v[4 * i + 2] * xx.z + v[4 * i + 3] * xx.w;
            }
        }
        acc = pg_warp_sum(acc);
        if (lane == 0) y[r] = acc;
    }
}

int pg_launch_matvec(const pg_dev_matrix *w, const float *x, float *y, cudaStream_t st) {
    const unsigned blocks = (unsigned)((w->rows + MV_ROWS - 1) / MV_ROWS);
    switch (w->type) {
#define CASE(T) \
    case T: matvec_kernel<T><<<blocks, MV_THREADS, 0, st>>>(w->d, w->row_bytes, w->rows, w->cols, x, y); break;
        PG_FOR_EACH_TYPE(CASE)
#undef CASE
    default: return pg_gpu_fail(PG_GPU_ERR_UNSUPPORTED, "no GPU mat-vec kernel for tensor type %d", w->type);
    }
    return pg_gpu_check(cudaGetLastError(), "mat-vec launch");
}

/* dst (nrows, cols) = F16 of rows [r0, r0 + nrows): one thread per 32-element group. */
template <int TYPE>
__global__ void dequant_f16_kernel(const uint8_t *__restrict__ W, int64_t row_bytes, int64_t r0, int64_t nrows,
                                   int64_t cols, uint16_t *__restrict__ dst) {
    const int64_t ngroups = cols / 32;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;   /* group over the chunk */
    if (i >= nrows * ngroups) return;
    const int64_t r = i / ngroups, g = i % ngroups;
    float v[32];
    deq32<TYPE>(W + (r0 + r) * row_bytes, g, v);
    uint16_t *o = dst + r * cols + 32 * g;
#pragma unroll
    for (int j = 0; j < 32; j++) o[j] = pg_f2h(v[j]);
}

int pg_launch_dequant_f16(const pg_dev_matrix *w, int64_t r0, int64_t nrows, uint16_t *dst, cudaStream_t st) {
    const int64_t total = nrows * (w->cols / 32);
    const unsigned blocks = (unsigned)((total + 255) / 256);
    switch (w->type) {
#define CASE(T) \
    case T: dequant_f16_kernel<T><<<blocks, 256, 0, st>>>(w->d, w->row_bytes, r0, nrows, w->cols, dst); break;
        PG_FOR_EACH_TYPE(CASE)
#undef CASE
    default: return pg_gpu_fail(PG_GPU_ERR_UNSUPPORTED, "no GPU dequantization for tensor type %d", w->type);
    }
    return pg_gpu_check(cudaGetLastError(), "dequantize launch");
}
