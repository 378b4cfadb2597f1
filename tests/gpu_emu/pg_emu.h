/* pg_emu.h -- just enough of CUDA to run kernels/ on the CPU (tests only).
 *
 * Built with -DPG_GPU_EMU=1 -I tests/gpu_emu, the kernels/ sources become plain C++: every
 * GPU thread of a block is a fiber (its own stack, switched by pg_emu.cpp's scheduler), so
 * __syncthreads() and the warp shuffles really wait for the other threads -- a shuffle that
 * not every lane of a warp reaches, or a barrier some threads skip, is reported as a
 * deadlock instead of passing silently.  Blocks run one after another, so __shared__
 * arrays are function statics.  The runtime calls (memory, copies, streams) work on host
 * memory; a stream capture records the launches and copies and a graph launch replays them.
 * PG_WARP may be set to 64 (-DPG_WARP=64) to run the wavefront-64 code paths. */
#ifndef PG_EMU_H
#define PG_EMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(n)
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct float4 { float x, y, z, w; };
struct uint2 { unsigned x, y; };
struct uint4 { unsigned x, y, z, w; };

/* the running fiber's thread index; block index and sizes of the launch */
struct pg_emu_thread { dim3 tid; };
extern pg_emu_thread *pg_emu_cur;
extern dim3 pg_emu_block_idx, pg_emu_block_dim, pg_emu_grid_dim;
#define threadIdx (pg_emu_cur->tid)
#define blockIdx pg_emu_block_idx
#define blockDim pg_emu_block_dim
#define gridDim pg_emu_grid_dim

void pg_emu_syncthreads();
float pg_emu_shfl_xor(float v, int mask);
float pg_emu_shfl(float v, int src);
#define __syncthreads() pg_emu_syncthreads()
void pg_emu_launch(dim3 grid, dim3 block, std::function<void()> body);

template <class T> static inline T min(T a, T b) { return b < a ? b : a; }
template <class T> static inline T max(T a, T b) { return a < b ? b : a; }

/* ---- half precision as bits ---- */
struct __half { uint16_t bits; };
static inline float __uint_as_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t __float_as_uint(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline __half __ushort_as_half(uint16_t b) { __half h = {b}; return h; }
static inline uint16_t __half_as_ushort(__half h) { return h.bits; }
static inline float __half2float(__half h) {
    const uint32_t sign = (uint32_t)(h.bits & 0x8000) << 16, e = (h.bits >> 10) & 0x1f, m = h.bits & 0x3ff;
    if (e == 0x1f) return __uint_as_float(sign | 0x7f800000u | m << 13);
    if (e) return __uint_as_float(sign | (e + 112) << 23 | m << 13);
    return (sign ? -1.0f : 1.0f) * (float)m * (1.0f / 16777216.0f);
}
static inline __half __float2half_rn(float f) {   /* round to nearest even, as the hardware */
    const uint32_t u = __float_as_uint(f), sign = (u >> 16) & 0x8000;
    const uint32_t a = u & 0x7fffffffu;
    __half h;
    if (a > 0x7f800000u) { h.bits = (uint16_t)(sign | 0x7e00); return h; }           /* NaN */
    if (a >= 0x477ff000u) { h.bits = (uint16_t)(sign | 0x7c00); return h; }          /* overflow: inf */
    if (a < 0x38800000u) {                                                            /* subnormal / zero */
        const float s = __uint_as_float(a) * 16777216.0f;                              /* exact scaling */
        h.bits = (uint16_t)(sign | (uint32_t)nearbyintf(s));
        return h;
    }
    const uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
    h.bits = (uint16_t)(sign | ((r - 0x38000000u) >> 13));
    return h;
}

/* ---- the runtime API, on host memory ---- */
typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorMemoryAllocation = 2, cudaErrorNotSupported = 801, cudaErrorLaunchFailure = 719 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
typedef struct pg_emu_stream *cudaStream_t;
typedef struct pg_emu_graph *cudaGraph_t;
typedef struct pg_emu_graph *cudaGraphExec_t;
enum { cudaStreamNonBlocking = 1 };
enum { cudaStreamCaptureModeThreadLocal = 1 };
struct cudaDeviceProp {
    char name[256];
    int major, minor, multiProcessorCount, warpSize;
};
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t n);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, int kind);
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, int kind, cudaStream_t st);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, int flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, int mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);

#endif
