/* activations.cuh -- GELU as Gemma uses it, for the GeGLU kernels (elementwise.cu) and the
 * fused gate/up mat-vec (matvec.cu).  precise: transformers' gelu_pytorch_tanh in float32;
 * otherwise llama.cpp's F16 table: GELU of the F16-rounded input, rounded to F16, exact
 * outside (-10, 10). */
#ifndef PG_ACTIVATIONS_CUH
#define PG_ACTIVATIONS_CUH

#include "gpu_compat.h"

__device__ __forceinline__ float gelu_tanh(float x) {
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(c * x * (1.0f + 0.044715f * x * x)));
}

__device__ __forceinline__ float gelu_f16_table(float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return pg_h2f(pg_f2h(gelu_tanh(pg_h2f(pg_f2h(x)))));
}

__device__ __forceinline__ float gelu(float x, int precise) { return precise ? gelu_tanh(x) : gelu_f16_table(x); }

#endif
