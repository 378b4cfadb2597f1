/* sampler.cu -- the greedy sampler step on the device: only the chosen token (4 bytes)
 * goes back to the host instead of n_vocab logits. */
#include "gpu_internal.h"

#define AM_THREADS 1024

/* Is (v, i) a better pick than (bv, bi)?  Larger value wins, the lower index on ties; NaN
 * never wins (as the CPU sampler's greedy path, which counts NaN as -inf). */
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
    if (v != v) return false;
    if (bi < 0) return true;
    return v > bv || (v == bv && i < bi);
}

/* One block: each thread scans a strided share, then a shared-memory tree. */
__global__ void __launch_bounds__(AM_THREADS) argmax_kernel(const float *__restrict__ x, int n, int32_t *out) {
    __shared__ float sv[AM_THREADS];
    __shared__ int si[AM_THREADS];
    float bv = 0.0f;
    int bi = -1;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (better(x[i], i, bv, bi)) { bv = x[i]; bi = i; }
    sv[threadIdx.x] = bv;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (int s = (int)blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) {
            const int j = threadIdx.x + s;
            if (si[j] >= 0 && better(sv[j], si[j], sv[threadIdx.x], si[threadIdx.x])) {
                sv[threadIdx.x] = sv[j];
                si[threadIdx.x] = si[j];
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = si[0];
}

int pg_launch_argmax(const float *x, int n, int32_t *out, cudaStream_t st) {
    PG_LAUNCH(argmax_kernel, 1, AM_THREADS, 0, st, x, n, out);
    return pg_gpu_check(cudaGetLastError(), "argmax launch");
}
