/* cublas_v2.h -- the part of cuBLAS kernels/gemm_cublas.cu uses, for the CPU emulation
 * (tests/gpu_emu; compiled with -DPG_GPU_CUBLAS=1 this header stands in for the real one).
 * cublasGemmEx is a plain column-major GEMM that honours op, leading dimensions and element
 * types as cuBLAS documents them, so a wrong transpose or ld in the library shows up. */
#ifndef PG_EMU_CUBLAS_V2_H
#define PG_EMU_CUBLAS_V2_H

#include <stdlib.h>

typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_ALLOC_FAILED = 3, CUBLAS_STATUS_INVALID_VALUE = 7,
               CUBLAS_STATUS_NOT_SUPPORTED = 15 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef struct pg_emu_cublas { cudaStream_t stream; } *cublasHandle_t;

static inline cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = (cublasHandle_t)calloc(1, sizeof **h);
    return *h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
static inline cublasStatus_t cublasDestroy(cublasHandle_t h) { free(h); return CUBLAS_STATUS_SUCCESS; }
static inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) { h->stream = s; return CUBLAS_STATUS_SUCCESS; }

static inline float pg_emu_elem(const void *p, cudaDataType t, size_t i) {
    switch (t) {
    case CUDA_R_32F: return ((const float *)p)[i];
    case CUDA_R_16F: return __half2float(__ushort_as_half(((const uint16_t *)p)[i]));
    default: return __uint_as_float((uint32_t)((const uint16_t *)p)[i] << 16);
    }
}

/* C (m x n, ldc) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C, column-major; C float. */
static inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType at, int lda,
                                          const void *B, cudaDataType bt, int ldb, const void *beta, void *C,
                                          cudaDataType ct, int ldc, cublasComputeType_t comp, cublasGemmAlgo_t algo) {
    (void)h; (void)algo;
    if (ct != CUDA_R_32F || comp != CUBLAS_COMPUTE_32F || at != bt) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m < 0 || n < 0 || k < 0 || lda < (ta == CUBLAS_OP_N ? m : k) || ldb < (tb == CUBLAS_OP_N ? k : n) || ldc < m)
        return CUBLAS_STATUS_INVALID_VALUE;
    const float a = *(const float *)alpha, b = *(const float *)beta;
    float *c = (float *)C;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float acc = 0.0f;
            for (int l = 0; l < k; l++) {
                const size_t ia = ta == CUBLAS_OP_N ? (size_t)i + (size_t)l * lda : (size_t)l + (size_t)i * lda;
                const size_t ib = tb == CUBLAS_OP_N ? (size_t)l + (size_t)j * ldb : (size_t)j + (size_t)l * ldb;
                acc += pg_emu_elem(A, at, ia) * pg_emu_elem(B, bt, ib);
            }
            float *cij = c + (size_t)i + (size_t)j * ldc;
            *cij = a * acc + (b != 0.0f ? b * *cij : 0.0f);
        }
    return CUBLAS_STATUS_SUCCESS;
}

#endif
