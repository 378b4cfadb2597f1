/* kernels_avx512_matvec.c -- the AVX-512 instantiations of the quantized
 * matrix-vector products (kernels_matvec_x86.h): 256-bit vectors with the
 * EVEX encodings (32 registers), plus vpdpbusd/vpdpwssd where the CPU has VNNI. */
#include "kernels.h"

#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi2"))), apply_to = function)
#define UNROLL _Pragma("unroll")
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi2")
#define UNROLL _Pragma("GCC unroll 16")
#endif

#include "kernels_avx2.h"

/* Software prefetch distance along a row stream, and its cache level. */
#define PF_BYTES 1024
#define PREFETCH(p) _mm_prefetch((const char *)(p) + PF_BYTES, _MM_HINT_T0)

#include "kernels_matvec_x86.h"


#define MATVEC(name, kernel, T)                                                                        \
    void name(int64_t n, float *y, const void *w, size_t ldw, int nr, const void *x, void *work) {   \
        kernel(T, 0, n, y, w, ldw, nr, x, work);                                                    \
    }                                                                                               \
    void name##_vnni(int64_t n, float *y, const void *w, size_t ldw, int nr, const void *x, void *work) { \
        kernel(T, 1, n, y, w, ldw, nr, x, work);                                                    \
    }
MATVEC(pg512_matvec_q4_0, a_matvec, PG_TYPE_Q4_0)
MATVEC(pg512_matvec_q4_1, a_matvec, PG_TYPE_Q4_1)
MATVEC(pg512_matvec_q5_0, a_matvec, PG_TYPE_Q5_0)
MATVEC(pg512_matvec_q5_1, a_matvec, PG_TYPE_Q5_1)
MATVEC(pg512_matvec_q8_0, a_matvec, PG_TYPE_Q8_0)
MATVEC(pg512_matvec_q2k, k_matvec, PG_TYPE_Q2_K)
MATVEC(pg512_matvec_q3k, k_matvec, PG_TYPE_Q3_K)
MATVEC(pg512_matvec_q4k, k_matvec, PG_TYPE_Q4_K)
MATVEC(pg512_matvec_q5k, k_matvec, PG_TYPE_Q5_K)
MATVEC(pg512_matvec_q6k, k_matvec, PG_TYPE_Q6_K)

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif /* x86-64 */
