/* gpu_compat.h -- the one place where CUDA and HIP differ.  Every kernel is written once
 * against the names below; a HIP build (hipcc -DPG_GPU_HIP=1) maps them to HIP.
 *
 * Kernels are launched through PG_LAUNCH(kernel, grid, block, shared bytes, stream, args...).
 *
 * Warp width: PG_WARP is the width the device code is compiled for -- 32 on NVIDIA and on
 * RDNA (gfx10/gfx11, wave32), 64 on CDNA/GCN (gfx9: gfx90a, gfx942).  hipcc compiles device
 * code once per --offload-arch, so each target gets its own PG_WARP.  Host code must not
 * depend on it: launch sizes are fixed thread counts (multiples of 64) and kernels derive
 * their warp count from blockDim.x / PG_WARP.
 *
 * No fast-math: RoPE angles reach thousands of radians and need sinf/cosf's full range
 * reduction; the build must not pass --use_fast_math / -ffast-math. */
#ifndef PG_GPU_COMPAT_H
#define PG_GPU_COMPAT_H

#include <stdint.h>

#if PG_GPU_HOST_TEST
/* Plain C++ on the CPU, for tests of the scalar device helpers (quant_dot.cuh's layouts
 * against csrc/dequant.c): no kernels, warps or runtime. */
#include <string.h>
#define __device__
#define __forceinline__ inline
#define __restrict__
struct float4 { float x, y, z, w; };
struct uint4 { unsigned x, y, z, w; };
struct uint2 { unsigned x, y; };
static inline float __uint_as_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline float pg_h2f(uint16_t h) {   /* exact binary16 -> binary32 */
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f) return __uint_as_float(sign | 0x7f800000u | m << 13);
    if (e) return __uint_as_float(sign | (e + 112) << 23 | m << 13);
    return (sign ? -1.0f : 1.0f) * (float)m * (1.0f / 16777216.0f);   /* zero and subnormals */
}
static inline float pg_bf2f(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }
#define PG_GPU_COMPAT_DONE 1

#elif PG_GPU_EMU
/* tests/gpu_emu: the kernels and the runtime calls run on the CPU, one fiber per GPU thread
 * (barriers and warp shuffles switch fibers), so CPU tests can execute the real kernels. */
#include "pg_emu.h"
#define PG_RUNTIME_NAME "emu"
#ifndef PG_WARP
#define PG_WARP 32
#endif
#define PG_SHFL_XOR(v, m) pg_emu_shfl_xor((v), (m))
#define PG_SHFL(v, src) pg_emu_shfl((v), (src))
/* the arguments are evaluated and copied at the launch, as a real launch (or capture) does */
#define PG_LAUNCH(k, g, b, smem, st, ...) pg_emu_launch(dim3(g), dim3(b), std::bind(k, __VA_ARGS__))

#elif PG_GPU_HIP
#include <hip/hip_runtime.h>
#include <hip/hip_fp16.h>

#define cudaError_t hipError_t
#define cudaSuccess hipSuccess
#define cudaErrorMemoryAllocation hipErrorOutOfMemory
#define cudaGetErrorString hipGetErrorString
#define cudaGetLastError hipGetLastError
#define cudaGetDeviceCount hipGetDeviceCount
#define cudaSetDevice hipSetDevice
#define cudaDeviceProp hipDeviceProp_t
#define cudaGetDeviceProperties hipGetDeviceProperties
#define cudaRuntimeGetVersion hipRuntimeGetVersion
#define cudaMemGetInfo hipMemGetInfo
#define cudaMalloc hipMalloc
#define cudaFree hipFree
#define cudaMallocHost(p, n) hipHostMalloc((p), (n), 0)
#define cudaFreeHost hipHostFree
#define cudaMemcpy hipMemcpy
#define cudaMemcpyAsync hipMemcpyAsync
#define cudaMemsetAsync hipMemsetAsync
#define cudaMemcpyHostToDevice hipMemcpyHostToDevice
#define cudaMemcpyDeviceToHost hipMemcpyDeviceToHost
#define cudaMemcpyDeviceToDevice hipMemcpyDeviceToDevice
#define cudaStream_t hipStream_t
#define cudaStreamCreateWithFlags hipStreamCreateWithFlags
#define cudaStreamNonBlocking hipStreamNonBlocking
#define cudaStreamDestroy hipStreamDestroy
#define cudaStreamSynchronize hipStreamSynchronize
#define cudaGraph_t hipGraph_t
#define cudaGraphExec_t hipGraphExec_t
#define cudaStreamBeginCapture hipStreamBeginCapture
#define cudaStreamEndCapture hipStreamEndCapture
#define cudaStreamCaptureModeThreadLocal hipStreamCaptureModeThreadLocal
#define cudaGraphInstantiateWithFlags hipGraphInstantiateWithFlags
#define cudaGraphLaunch hipGraphLaunch
#define cudaGraphDestroy hipGraphDestroy
#define cudaGraphExecDestroy hipGraphExecDestroy
#define PG_RUNTIME_NAME "hip"

#if defined(__HIP_DEVICE_COMPILE__) && defined(__AMDGCN_WAVEFRONT_SIZE)
#define PG_WARP __AMDGCN_WAVEFRONT_SIZE
#elif defined(__GFX9__)
#define PG_WARP 64
#else
#define PG_WARP 64   /* host pass: only sizes device code, never a launch */
#endif
/* HIP's shuffles take no mask; every lane of the wavefront takes part. */
#define PG_SHFL_XOR(v, m) __shfl_xor((v), (m))
#define PG_SHFL(v, src) __shfl((v), (src))
#define PG_LAUNCH(k, g, b, smem, st, ...) k<<<(g), (b), (smem), (st)>>>(__VA_ARGS__)

#else /* CUDA */
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#define PG_RUNTIME_NAME "cuda"
#define PG_WARP 32
#define PG_SHFL_XOR(v, m) __shfl_xor_sync(0xffffffffu, (v), (m))
#define PG_SHFL(v, src) __shfl_sync(0xffffffffu, (v), (src))
#define PG_LAUNCH(k, g, b, smem, st, ...) k<<<(g), (b), (smem), (st)>>>(__VA_ARGS__)
#endif

#ifndef PG_GPU_COMPAT_DONE
/* ---- scalar conversions (IEEE binary16 / bfloat16 bits <-> float) ---- */

__device__ __forceinline__ float pg_h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ uint16_t pg_f2h(float f) { return __half_as_ushort(__float2half_rn(f)); }
__device__ __forceinline__ float pg_bf2f(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }

/* bfloat16 bits of f, rounded to nearest even (NaN kept quiet). */
__device__ __forceinline__ uint16_t pg_f2bf(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* ---- warp reductions over all PG_WARP lanes (every lane gets the result) ---- */

__device__ __forceinline__ float pg_warp_sum(float v) {
#pragma unroll
    for (int m = PG_WARP / 2; m > 0; m >>= 1) v += PG_SHFL_XOR(v, m);
    return v;
}

__device__ __forceinline__ float pg_warp_max(float v) {
#pragma unroll
    for (int m = PG_WARP / 2; m > 0; m >>= 1) v = fmaxf(v, PG_SHFL_XOR(v, m));
    return v;
}

#define PG_MAX_WARPS (1024 / 32)   /* shared-memory arrays sized for the most warps a block has */

/* Sum over the whole block (blockDim.x a multiple of PG_WARP, <= 1024); every thread gets
 * the result.  `red` is PG_MAX_WARPS floats of shared memory; the call starts and ends with
 * a barrier, so it may be called repeatedly with the same buffer. */
__device__ __forceinline__ float pg_block_sum(float v, float *red) {
    const int lane = threadIdx.x % PG_WARP, warp = threadIdx.x / PG_WARP, nw = blockDim.x / PG_WARP;
    v = pg_warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float s = 0.0f;
    for (int w = 0; w < nw; w++) s += red[w];   /* same order in every thread: same result */
    return s;
}

#endif /* !PG_GPU_COMPAT_DONE */
#endif /* PG_GPU_COMPAT_H */
