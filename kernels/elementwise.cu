/* elementwise.cu -- RMSNorm, GeGLU, soft-cap and float -> F16/BF16 conversion.
 * Numerics follow csrc/model.c: `precise` is transformers' float32 formulas; otherwise
 * llama.cpp's (GELU through F16-rounded input and output, as its F16 table; soft-cap as
 * tanh(x * (1/cap)) * cap). */
#include "activations.cuh"
#include "gpu_internal.h"

#define EW_THREADS 256

/* One block per row: o = x * (1/sqrt(mean(x^2) + eps)) * w, or o += that. */
__global__ void __launch_bounds__(EW_THREADS)
rmsnorm_kernel(float *__restrict__ o, const float *__restrict__ x, const float *__restrict__ w, int D, float eps,
               int add) {
    __shared__ float red[PG_MAX_WARPS];
    const float *xr = x + (int64_t)blockIdx.x * D;
    float *orow = o + (int64_t)blockIdx.x * D;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < D; i += blockDim.x) ss += xr[i] * xr[i];
    ss = pg_block_sum(ss, red);
    /* both CPU variants compute (x * scale) * w; they differ only in how they sum squares
     * (float vs double), below the float rounding of the block sum here */
    const float scale = 1.0f / sqrtf(ss / (float)D + eps);
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        const float y = (xr[i] * scale) * w[i];
        orow[i] = add ? orow[i] + y : y;
    }
}

int pg_launch_rmsnorm(float *o, const float *x, const float *w, int n, int D, float eps, int add, int precise,
                      cudaStream_t st) {
    if (n <= 0) return PG_GPU_OK;
    (void)precise;
    PG_LAUNCH(rmsnorm_kernel, n, EW_THREADS, 0, st, o, x, w, D, eps, add);
    return pg_gpu_check(cudaGetLastError(), "rmsnorm launch");
}

__global__ void geglu_kernel(float *__restrict__ g, const float *__restrict__ u, int64_t count, int precise) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        g[i] = gelu(g[i], precise) * u[i];
}

static unsigned grid_for(int64_t count) {
    int64_t b = (count + EW_THREADS - 1) / EW_THREADS;
    return (unsigned)(b < 65535 ? (b > 0 ? b : 1) : 65535);   /* grid-stride loops cover the rest */
}

int pg_launch_geglu(float *gate, const float *up, int64_t count, int precise, cudaStream_t st) {
    PG_LAUNCH(geglu_kernel, grid_for(count), EW_THREADS, 0, st, gate, up, count, precise);
    return pg_gpu_check(cudaGetLastError(), "geglu launch");
}

__global__ void softcap_kernel(float *__restrict__ x, int64_t count, float cap, int precise) {
    const float inv = 1.0f / cap;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = precise ? cap * tanhf(x[i] / cap) : tanhf(x[i] * inv) * cap;
}

int pg_launch_softcap(float *x, int64_t count, float cap, int precise, cudaStream_t st) {
    PG_LAUNCH(softcap_kernel, grid_for(count), EW_THREADS, 0, st, x, count, cap, precise);
    return pg_gpu_check(cudaGetLastError(), "softcap launch");
}

__global__ void to_f16_kernel(uint16_t *__restrict__ dst, const float *__restrict__ src, int64_t count, int bf16) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = bf16 ? pg_f2bf(src[i]) : pg_f2h(src[i]);
}

int pg_launch_to_f16(uint16_t *dst, const float *src, int64_t count, int bf16, cudaStream_t st) {
    PG_LAUNCH(to_f16_kernel, grid_for(count), EW_THREADS, 0, st, dst, src, count, bf16);
    return pg_gpu_check(cudaGetLastError(), "convert launch");
}
