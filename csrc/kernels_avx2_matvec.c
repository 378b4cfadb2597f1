/* kernels_avx2_matvec.c -- the AVX2 instantiation of the quantized
 * matrix-vector products (kernels_matvec_x86.h). */
#include "kernels.h"

#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#define UNROLL _Pragma("unroll")
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define UNROLL _Pragma("GCC unroll 16")
#endif

#include "kernels_avx2.h"

/* Software prefetch into L2 (T2: the blocks being computed keep L1, and L2 has more miss
 * buffers), a distance ahead of the stream of rows (kernels_matvec_x86.h): one pair of
 * rows, within [4 KB, 8 KB].  Best of 4 on 2 threads, from DRAM, GB/s for Q4_0 and Q6_K
 * 9216x2304 and Q8_0 262144x640: this 25/25/26; 8 KB T1 28/26/18; 2 KB T2 19/17/31;
 * 1 KB T0 per block ~15/10/25. */
#ifndef MV_PF_MIN
#define MV_PF_MIN 4096
#endif
#ifndef MV_PF_HINT
#define MV_PF_HINT _MM_HINT_T2
#endif
#define PF_AHEAD(ldw) PG_MIN(PG_MAX(2 * (ldw), (size_t)MV_PF_MIN), (size_t)8192)
#define PREFETCH(p) _mm_prefetch((const char *)(p), MV_PF_HINT)

#include "kernels_matvec_x86.h"

size_t pg_avx2_matvec_work_a(int64_t n) { return mv_work_a(n); }
size_t pg_avx2_matvec_work_k(int64_t n) { return mv_work_k(n); }

#define MATVEC(name, kernel, T) \
    void name(int64_t n, float *y, const void *w, size_t ldw, int nr, const void *x, void *work) { \
        kernel(T, 0, n, y, w, ldw, nr, x, work);                                                  \
    }
MATVEC(pg_avx2_matvec_q4_0, a_matvec, PG_TYPE_Q4_0)
MATVEC(pg_avx2_matvec_q4_1, a_matvec, PG_TYPE_Q4_1)
MATVEC(pg_avx2_matvec_q5_0, a_matvec, PG_TYPE_Q5_0)
MATVEC(pg_avx2_matvec_q5_1, a_matvec, PG_TYPE_Q5_1)
MATVEC(pg_avx2_matvec_q8_0, a_matvec, PG_TYPE_Q8_0)
MATVEC(pg_avx2_matvec_q2k, k_matvec, PG_TYPE_Q2_K)
MATVEC(pg_avx2_matvec_q3k, k_matvec, PG_TYPE_Q3_K)
MATVEC(pg_avx2_matvec_q4k, k_matvec, PG_TYPE_Q4_K)
MATVEC(pg_avx2_matvec_q5k, k_matvec, PG_TYPE_Q5_K)
MATVEC(pg_avx2_matvec_q6k, k_matvec, PG_TYPE_Q6_K)

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif /* x86-64 */
