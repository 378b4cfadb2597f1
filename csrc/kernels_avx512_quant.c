/* kernels_avx512_quant.c -- AVX-512 matmul kernels of the quantized types.
 *
 * Scheme (both families): for each group of RM weight rows, unpack ("repack")
 * the rows once into the thread's work buffer as unsigned 8-bit values plus
 * float scales, then sweep the chunk's activation columns with an RM x RN
 * register tile.  The unpacking is amortized over every column, so the inner
 * loop is only integer dot products and their float scaling:
 *   32-blocks (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0): two blocks per zmm;
 *     per (row, column, pair of blocks): vpdpbusd, cvt, mul, fma.
 *     Offsets (Q4_0: u-8, Q5_0: u-16, Q8_0 with VNNI: (w^0x80)-128) are folded
 *     into the accumulator's initial value, -off * (sums of 4 activations),
 *     computed once per column; Q4_1/Q5_1 minimums add m * s (s = dx*sum q).
 *   K-quants: per 64 values, vpmaddubsw then vpdpwssd with the 16-bit
 *     sub-block scales, exact int32 over the 256-block; then one fma with
 *     d*dx and one with the minimums (-dmin*mn per 16 values, times dx*bsums).
 * VNNI / BF16 instructions are emitted only through inline asm in the `vnni`
 * instantiations, so the compiler never generates them for the generic
 * AVX-512 path (this file is compiled for AVX-512 F/BW/VL/DQ only). */
#include "kernels_avx512.h"

#if defined(__x86_64__)
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi2"))), apply_to = function)
#define UNROLL _Pragma("unroll")
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi2")
#define UNROLL _Pragma("GCC unroll 16")
#endif

#define INLINE static inline __attribute__((always_inline))

/* acc += sum of 4 u8*s8 products per int32 lane (vpdpbusd) */
INLINE __m512i vnni_dpbusd(__m512i acc, __m512i u, __m512i s) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s));
    return acc;
}
/* acc += sum of 2 s16*s16 products per int32 lane (vpdpwssd) */
INLINE __m512i vnni_dpwssd(__m512i acc, __m512i a, __m512i b) {
    __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
}

INLINE float h2f(pg_half h) { return _cvtsh_ss(h); }

/* [v0 x 8 | v1 x 8] from two consecutive floats (v1 = 0 if !two) */
INLINE __m512 pair_bcast(const float *p, const int two) {
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    __m128 v = two ? _mm_castpd_ps(_mm_load_sd((const double *)p)) : _mm_load_ss(p);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v));
}

/* ====================================================================== */
/* 32-blocks                                                              */
/* ====================================================================== */

typedef pg512_arow arow;
#define arow_at pg512_arow_at
#define a_row_bytes pg512_arow_bytes

#define A_RM 4
static size_t a_work(int64_t n) { return A_RM * a_row_bytes(n); }

typedef pg512_arepack_fn a_repack_fn;

/* 2 x 16 packed nibble bytes -> [lo0 | hi0 | lo1 | hi1], i.e. 64 values in element order */
INLINE __m512i nibbles2(const uint8_t *qs0, const uint8_t *qs1, const int two) {
    __m256i a = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs0));
    __m256i b = two ? _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs1)) : _mm256_setzero_si256();
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    v = _mm512_mask_blend_epi64(0xCC, v, _mm512_srli_epi16(v, 4));
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
}

/* 5th bits: bit l of qh is value l of the block */
INLINE __m512i add_qh(__m512i v, const uint8_t *qh0, const uint8_t *qh1, const int two) {
    uint32_t h0, h1 = 0;
    memcpy(&h0, qh0, 4);
    if (two) memcpy(&h1, qh1, 4);
    __mmask64 k = _cvtu64_mask64((uint64_t)h0 | ((uint64_t)h1 << 32));
    return _mm512_mask_add_epi8(v, k, v, _mm512_set1_epi8(16));
}

#define A_REPACK(name, blk_t, body)                                                     \
    static void name(const uint8_t *src, int64_t nb, uint8_t *dst) {                   \
        const blk_t *b = (const blk_t *)src;                                            \
        int64_t np = (nb + 1) / 2;                                                      \
        arow o = arow_at(dst, np);                                                      \
        for (int64_t p = 0; p < np; p++) {                                              \
            const blk_t *b0 = b + 2 * p, *b1 = b0 + 1;                                  \
            const int two = 2 * p + 1 < nb;                                             \
            __m512i v;                                                                  \
            (void)b1;                                                                   \
            body;                                                                       \
            _mm512_store_si512(o.q + 64 * p, v);                                        \
        }                                                                               \
    }

/* scales, and the constant term: minimum m, or -off * d for offset types */
#define A_D(field)                                                                      \
    o.d[2 * p] = h2f(b0->field);                                                        \
    o.d[2 * p + 1] = two ? h2f(b1->field) : 0.0f
#define A_OFF(off)                                                                      \
    o.c[2 * p] = -(off) * o.d[2 * p];                                                   \
    o.c[2 * p + 1] = -(off) * o.d[2 * p + 1]
#define A_M()                                                                           \
    o.c[2 * p] = h2f(b0->m);                                                            \
    o.c[2 * p + 1] = two ? h2f(b1->m) : 0.0f

A_REPACK(rp_q4_0, block_q4_0, v = nibbles2(b0->qs, b1->qs, two); A_D(d); A_OFF(8))
A_REPACK(rp_q4_1, block_q4_1, v = nibbles2(b0->qs, b1->qs, two); A_D(d); A_M())
A_REPACK(rp_q5_0, block_q5_0, v = add_qh(nibbles2(b0->qs, b1->qs, two), b0->qh, b1->qh, two); A_D(d); A_OFF(16))
A_REPACK(rp_q5_1, block_q5_1, v = add_qh(nibbles2(b0->qs, b1->qs, two), b0->qh, b1->qh, two); A_D(d); A_M())
/* Q8_0 for VNNI: w ^ 0x80 = w + 128 as u8 (offset 128); for the generic path: signed as is */
A_REPACK(rp_q8_0u, block_q8_0,
         __m256i lo = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)b0->qs), _mm256_set1_epi8(-128));
         __m256i hi = two ? _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)b1->qs), _mm256_set1_epi8(-128))
                          : _mm256_setzero_si256();
         v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); A_D(d); A_OFF(128))
A_REPACK(rp_q8_0s, block_q8_0,
         __m256i lo = _mm256_loadu_si256((const __m256i *)b0->qs);
         __m256i hi = two ? _mm256_loadu_si256((const __m256i *)b1->qs) : _mm256_setzero_si256();
         v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); A_D(d); A_OFF(0))

enum { A_OFFSET, A_MIN, A_SIGNED };

/* One pair of blocks (`two` = 0: only the first) for an RM x RN tile.
 *   w: RM repacked rows (stride wst); x: RN activation rows (stride ldx) */
INLINE void a_step(const int RM, const int RN, const int kind, const int vnni, const int two,
                   __m512 acc[A_RM][4], int64_t p, int64_t np, const uint8_t *w, size_t wst,
                   const uint8_t *x, size_t ldx, int64_t n, __m512i ovec) {
    const __m512i zero = _mm512_setzero_si512(), ones = _mm512_set1_epi16(1);
    __m512i wq[A_RM];
    __m512 wd[A_RM], wm[A_RM];
    __mmask64 wneg[A_RM];
    UNROLL for (int i = 0; i < RM; i++) {
        arow r = arow_at(w + i * wst, np);
        wq[i] = _mm512_load_si512(r.q + 64 * p);
        wd[i] = pair_bcast(r.d + 2 * p, 1);
        if (kind == A_MIN)
            wm[i] = _mm512_maskz_mov_ps(0x0101, pair_bcast(r.c + 2 * p, 1));
        if (kind == A_SIGNED) {
            wneg[i] = _mm512_movepi8_mask(wq[i]);
            wq[i] = _mm512_abs_epi8(wq[i]);
        }
    }
    UNROLL for (int j = 0; j < RN; j++) {
        const uint8_t *xr = x + j * ldx;
        const float *xd_p = (const float *)(xr + n) + 2 * p;
        __m512i xq = two ? _mm512_loadu_si512(xr + 64 * p) : _mm512_maskz_loadu_epi8(0xFFFFFFFFull, xr + 64 * p);
        __m512 xd = pair_bcast(xd_p, two);
        __m512i xc = zero;
        __m512 xs = _mm512_setzero_ps();
        if (kind == A_OFFSET)
            xc = vnni ? _mm512_sub_epi32(zero, vnni_dpbusd(zero, ovec, xq)) : _mm512_maddubs_epi16(ovec, xq);
        if (kind == A_MIN) xs = pair_bcast(xd_p + n / 32, two);
        UNROLL for (int i = 0; i < RM; i++) {
            __m512i t;
            if (kind == A_OFFSET)
                t = vnni ? vnni_dpbusd(xc, wq[i], xq)
                         : _mm512_madd_epi16(_mm512_sub_epi16(_mm512_maddubs_epi16(wq[i], xq), xc), ones);
            else if (kind == A_MIN)
                t = vnni ? vnni_dpbusd(zero, wq[i], xq) : _mm512_madd_epi16(_mm512_maddubs_epi16(wq[i], xq), ones);
            else
                t = _mm512_madd_epi16(_mm512_maddubs_epi16(wq[i], _mm512_mask_sub_epi8(xq, wneg[i], zero, xq)), ones);
            acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(wd[i], xd), acc[i][j]);
            if (kind == A_MIN) acc[i][j] = _mm512_fmadd_ps(wm[i], xs, acc[i][j]);
        }
    }
}

INLINE void a_tile(const int RM, const int RN, const int kind, const int vnni, int64_t n,
                   const uint8_t *w, size_t wst, const uint8_t *x, size_t ldx, float *y, int64_t ldy,
                   __m512i ovec) {
    int64_t nb = n / 32, np = (nb + 1) / 2;
    __m512 acc[A_RM][4];
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t p = 0; p < nb / 2; p++) a_step(RM, RN, kind, vnni, 1, acc, p, np, w, wst, x, ldx, n, ovec);
    if (nb & 1) a_step(RM, RN, kind, vnni, 0, acc, np - 1, np, w, wst, x, ldx, n, ovec);
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++)
        y[j * ldy + i] = _mm512_reduce_add_ps(acc[i][j]);
}

/* Driver shared by the 32-block types: repack A_RM rows, sweep the columns. */
#define A_GEMM(name, kind, vnni, RN)                                                                  \
    static void name(a_repack_fn rp, int off, int64_t n, float *y, int64_t ldy, const void *w,        \
                     size_t ldw, int nr, const void *xv, size_t ldx, int nc, void *work) {            \
        const uint8_t *x = xv;                                                                        \
        size_t wst = a_row_bytes(n);                                                                  \
        __m512i ovec = _mm512_set1_epi8((char)off);                                                   \
        for (int r = 0; r < nr; r += A_RM) {                                                          \
            int rm = PG_MIN(A_RM, nr - r);                                                            \
            for (int i = 0; i < rm; i++)                                                              \
                rp((const uint8_t *)w + (size_t)(r + i) * ldw, n / 32, (uint8_t *)work + i * wst);    \
            if (rm == A_RM) {                                                                         \
                int c = 0;                                                                            \
                for (; c + RN <= nc; c += RN)                                                         \
                    a_tile(A_RM, RN, kind, vnni, n, work, wst, x + c * ldx, ldx, y + c * ldy + r, ldy, ovec); \
                for (; c < nc; c++)                                                                   \
                    a_tile(A_RM, 1, kind, vnni, n, work, wst, x + c * ldx, ldx, y + c * ldy + r, ldy, ovec); \
            } else {                                                                                  \
                for (int i = 0; i < rm; i++) {                                                        \
                    const uint8_t *wi = (const uint8_t *)work + i * wst;                              \
                    int c = 0;                                                                        \
                    for (; c + RN <= nc; c += RN)                                                     \
                        a_tile(1, RN, kind, vnni, n, wi, wst, x + c * ldx, ldx, y + c * ldy + r + i, ldy, ovec); \
                    for (; c < nc; c++)                                                               \
                        a_tile(1, 1, kind, vnni, n, wi, wst, x + c * ldx, ldx, y + c * ldy + r + i, ldy, ovec); \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
    }

#define A_RN_OFF 4
#define A_RN_MIN 3
#define A_RN_SGN 3
A_GEMM(a_gemm_off, A_OFFSET, 0, A_RN_OFF)
A_GEMM(a_gemm_off_vnni, A_OFFSET, 1, A_RN_OFF)
A_GEMM(a_gemm_min, A_MIN, 0, A_RN_MIN)
A_GEMM(a_gemm_min_vnni, A_MIN, 1, A_RN_MIN)
A_GEMM(a_gemm_sgn, A_SIGNED, 0, A_RN_SGN)

#define GEMM_ARGS int64_t n, float *y, int64_t ldy, const void *w, size_t ldw, int nr, \
                  const void *x, size_t ldx, int nc, void *work
#define GEMM_PASS n, y, ldy, w, ldw, nr, x, ldx, nc, work
static void gemm_q4_0(GEMM_ARGS) { a_gemm_off(rp_q4_0, 8, GEMM_PASS); }
static void gemm_q4_0_vnni(GEMM_ARGS) { a_gemm_off_vnni(rp_q4_0, 8, GEMM_PASS); }
static void gemm_q5_0(GEMM_ARGS) { a_gemm_off(rp_q5_0, 16, GEMM_PASS); }
static void gemm_q5_0_vnni(GEMM_ARGS) { a_gemm_off_vnni(rp_q5_0, 16, GEMM_PASS); }
static void gemm_q8_0(GEMM_ARGS) { a_gemm_sgn(rp_q8_0s, 0, GEMM_PASS); }
static void gemm_q8_0_vnni(GEMM_ARGS) { a_gemm_off_vnni(rp_q8_0u, 128, GEMM_PASS); }
static void gemm_q4_1(GEMM_ARGS) { a_gemm_min(rp_q4_1, 0, GEMM_PASS); }
static void gemm_q4_1_vnni(GEMM_ARGS) { a_gemm_min_vnni(rp_q4_1, 0, GEMM_PASS); }
static void gemm_q5_1(GEMM_ARGS) { a_gemm_min(rp_q5_1, 0, GEMM_PASS); }
static void gemm_q5_1_vnni(GEMM_ARGS) { a_gemm_min_vnni(rp_q5_1, 0, GEMM_PASS); }

/* ====================================================================== */
/* K-quants                                                               */
/* ====================================================================== */

typedef pg512_kblk kblk;

#define K_RM 3
#define K_RN 3
/* rows of work buffer: K_RM for the dot-form tiles, 4 for the panel tiles */
#define K_WORK_ROWS 4
static size_t k_work(int64_t n) { return K_WORK_ROWS * (size_t)(n / 256) * sizeof(kblk); }

typedef pg512_krepack_fn k_repack_fn;

/* Decoded scales of a block: 16-bit scale and minimum multiplier of each
 * group of 16 values (the convention of pg_kscales in kernels.h). */
typedef struct {
    __m256i sc, mn;
    float d, dmin;
} kdec;

static const int16_t k_dup_idx[2][16] __attribute__((aligned(32))) = {
    {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7},
    {8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15},
};

/* Q4_K/Q5_K: 8 6-bit scales and 8 6-bit mins packed in 12 bytes */
INLINE kdec dec_q4k(const uint8_t *s12, pg_half d, pg_half dmin) {
    uint32_t u0, u1, u2, w[4];
    memcpy(&u0, s12, 4);
    memcpy(&u1, s12 + 4, 4);
    memcpy(&u2, s12 + 8, 4);
    w[0] = u0 & 0x3f3f3f3f;                                          /* scales 0..3 */
    w[1] = (u2 & 0x0f0f0f0f) | ((u0 >> 2) & 0x30303030);             /* scales 4..7 */
    w[2] = u1 & 0x3f3f3f3f;                                          /* mins 0..3 */
    w[3] = ((u2 >> 4) & 0x0f0f0f0f) | ((u1 >> 2) & 0x30303030);      /* mins 4..7 */
    __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)w));
    kdec r;
    r.sc = _mm256_permutexvar_epi16(_mm256_load_si256((const __m256i *)k_dup_idx[0]), v);
    r.mn = _mm256_permutexvar_epi16(_mm256_load_si256((const __m256i *)k_dup_idx[1]), v);
    r.d = h2f(d);
    r.dmin = h2f(dmin);
    return r;
}

INLINE kdec dec_q6k(const block_q6_K *b) {
    kdec r;
    r.sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    r.mn = _mm256_slli_epi16(r.sc, 5);                               /* 32 * sc */
    r.d = r.dmin = h2f(b->d);
    return r;
}

INLINE kdec dec_q3k(const block_q3_K *b) {
    uint32_t a0, a1, a2, w[4];
    memcpy(&a0, b->scales, 4);
    memcpy(&a1, b->scales + 4, 4);
    memcpy(&a2, b->scales + 8, 4);
    w[0] = (a0 & 0x0f0f0f0f) | ((a2 & 0x03030303) << 4);
    w[1] = (a1 & 0x0f0f0f0f) | (((a2 >> 2) & 0x03030303) << 4);
    w[2] = ((a0 >> 4) & 0x0f0f0f0f) | (((a2 >> 4) & 0x03030303) << 4);
    w[3] = ((a1 >> 4) & 0x0f0f0f0f) | (((a2 >> 6) & 0x03030303) << 4);
    kdec r;
    r.sc = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)w)), _mm256_set1_epi16(32));
    r.mn = _mm256_slli_epi16(r.sc, 2);                               /* 4 * sc */
    r.d = r.dmin = h2f(b->d);
    return r;
}

INLINE kdec dec_q2k(const block_q2_K *b) {
    __m128i v = _mm_loadu_si128((const __m128i *)b->scales);
    kdec r;
    r.sc = _mm256_cvtepu8_epi16(_mm_and_si128(v, _mm_set1_epi8(0x0F)));
    r.mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F)));
    r.d = h2f(b->d);
    r.dmin = h2f(b->dmin);
    return r;
}

/* 32 bytes -> [b & 15 | b >> 4]: 64 values */
INLINE __m512i nib_split(const uint8_t *qs) {
    __m256i q = _mm256_loadu_si256((const __m256i *)qs);
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
}

/* Q2_K/Q3_K: the 2-bit values of 64 elements 128h + 32j .. +63 (j = 0 or 2):
 * bits 2j.. of qs[32h + l] for the first 32, 2j+2.. for the next 32 */
INLINE __m512i two_bits(const uint8_t *qs32, int j) {
    __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qs32));
    __m512i sh = _mm512_set_epi64(2 * j + 2, 2 * j + 2, 2 * j + 2, 2 * j + 2, 2 * j, 2 * j, 2 * j, 2 * j);
    return _mm512_and_si512(_mm512_srlv_epi64(q, sh), _mm512_set1_epi8(3));
}

/* 1 at bit `bit` of the 32 bytes for the first 32 values, bit+1 for the next 32 */
INLINE __mmask64 hi_bits(const uint8_t *h32, int bit) {
    __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)h32));
    __m512i m = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8((char)(1 << bit))),
                                   _mm256_set1_epi8((char)(1 << (bit + 1))), 1);
    return _mm512_test_epi8_mask(h, m);
}

/* Unpack one block: 4 x 64 unsigned values in element order, and its scales. */
INLINE kdec unpack_q2k(const block_q2_K *b, __m512i q[4]) {
    for (int c = 0; c < 4; c++) q[c] = two_bits(b->qs + 32 * (c / 2), 2 * (c % 2));
    return dec_q2k(b);
}

INLINE kdec unpack_q3k(const block_q3_K *b, __m512i q[4]) {
    for (int c = 0; c < 4; c++) {
        int h = c / 2, j = 2 * (c % 2);
        __m512i v = two_bits(b->qs + 32 * h, j);
        q[c] = _mm512_mask_add_epi8(v, hi_bits(b->hmask, 4 * h + j), v, _mm512_set1_epi8(4));
    }
    return dec_q3k(b);
}

INLINE kdec unpack_q4k(const block_q4_K *b, __m512i q[4]) {
    for (int c = 0; c < 4; c++) q[c] = nib_split(b->qs + 32 * c);
    return dec_q4k(b->scales, b->d, b->dmin);
}

INLINE kdec unpack_q5k(const block_q5_K *b, __m512i q[4]) {
    for (int c = 0; c < 4; c++) {
        __m512i v = nib_split(b->qs + 32 * c);
        q[c] = _mm512_mask_add_epi8(v, hi_bits(b->qh, 2 * c), v, _mm512_set1_epi8(16));
    }
    return dec_q4k(b->scales, b->d, b->dmin);
}

INLINE kdec unpack_q6k(const block_q6_K *b, __m512i q[4]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    for (int h = 0; h < 2; h++) {
        /* elements 128h + 0..63: low nibbles of ql[64h..+63], qh bits 0-1 / 2-3;
         * elements 128h + 64..127: high nibbles, qh bits 4-5 / 6-7 */
        __m512i l = _mm512_loadu_si512(b->ql + 64 * h);
        __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
        __m512i h0 = _mm512_sllv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4));
        __m512i h1 = _mm512_srlv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0));
        q[2 * h] = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(h0, m30));
        q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), _mm512_and_si512(h1, m30));
    }
    return dec_q6k(b);
}

INLINE void store_kblk(kblk *o, const __m512i q[4], kdec k) {
    for (int c = 0; c < 4; c++) _mm512_store_si512(o->q + 64 * c, q[c]);
    __m512 mn = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(k.mn));
    _mm512_store_ps(o->wmin, _mm512_mul_ps(mn, _mm512_set1_ps(-k.dmin)));
    _mm256_store_si256((__m256i *)o->sc, k.sc);
    o->d = k.d;
}

INLINE void store_kpb(pg512_kpb *o, const __m512i q[4], kdec k) {
    for (int c = 0; c < 4; c++) _mm512_store_si512(o->q + 64 * c, q[c]);
    _mm512_store_si512(o->sc, _mm512_cvtepi16_epi32(k.sc));
    _mm256_store_si256((__m256i *)o->mn, k.mn);
    o->d = k.d;
    o->dmin = k.dmin;
}

#define K_REPACK(t, blk_t)                                                            \
    static void rk_##t(const uint8_t *src, int64_t nb, void *dst) {                    \
        const blk_t *b = (const blk_t *)src;                                            \
        for (int64_t i = 0; i < nb; i++) {                                              \
            __m512i q[4];                                                               \
            kdec k = unpack_##t(&b[i], q);                                              \
            store_kblk((kblk *)dst + i, q, k);                                          \
        }                                                                               \
    }                                                                                   \
    static void rkp_##t(const uint8_t *src, int64_t nb, void *dst) {                   \
        const blk_t *b = (const blk_t *)src;                                            \
        for (int64_t i = 0; i < nb; i++) {                                              \
            __m512i q[4];                                                               \
            kdec k = unpack_##t(&b[i], q);                                              \
            store_kpb((pg512_kpb *)dst + i, q, k);                                      \
        }                                                                               \
    }
K_REPACK(q2k, block_q2_K)
K_REPACK(q3k, block_q3_K)
K_REPACK(q4k, block_q4_K)
K_REPACK(q5k, block_q5_K)
K_REPACK(q6k, block_q6_K)

/* For the 64 values c of a block: 16-bit lane l (values 2l, 2l+1) takes the
 * scale of group 4c + l/8. */
static const int16_t k_scale_idx[4][32] __attribute__((aligned(64))) = {
#define R(c) {4*c, 4*c, 4*c, 4*c, 4*c, 4*c, 4*c, 4*c, 4*c+1, 4*c+1, 4*c+1, 4*c+1, 4*c+1, 4*c+1, 4*c+1, 4*c+1, \
              4*c+2, 4*c+2, 4*c+2, 4*c+2, 4*c+2, 4*c+2, 4*c+2, 4*c+2, 4*c+3, 4*c+3, 4*c+3, 4*c+3, 4*c+3, 4*c+3, 4*c+3, 4*c+3}
    R(0), R(1), R(2), R(3)
#undef R
};

/* RM x RN tile over all blocks.  w: RM repacked rows of nb kblk (row stride nb) */
INLINE void k_tile(const int RM, const int RN, const int vnni, int64_t n, const kblk *w,
                   const uint8_t *x, size_t ldx, float *y, int64_t ldy) {
    int64_t nb = n / 256;
    __m512 acc[K_RM][K_RN];
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512i is[K_RM][K_RN];
        UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++) is[i][j] = _mm512_setzero_si512();
        UNROLL for (int c = 0; c < 4; c++) {
            const __m512i idx = _mm512_load_si512(k_scale_idx[c]);
            __m512i wq[K_RM], sv[K_RM];
            UNROLL for (int i = 0; i < RM; i++) {
                const kblk *blk = w + i * nb + b;
                wq[i] = _mm512_load_si512(blk->q + 64 * c);
                sv[i] = _mm512_permutexvar_epi16(idx, _mm512_load_si512(blk->sc));
            }
            UNROLL for (int j = 0; j < RN; j++) {
                __m512i xq = _mm512_loadu_si512(x + j * ldx + 256 * b + 64 * c);
                UNROLL for (int i = 0; i < RM; i++) {
                    __m512i p = _mm512_maddubs_epi16(wq[i], xq);
                    is[i][j] = vnni ? vnni_dpwssd(is[i][j], p, sv[i])
                                    : _mm512_add_epi32(is[i][j], _mm512_madd_epi16(p, sv[i]));
                }
            }
        }
        UNROLL for (int j = 0; j < RN; j++) {
            const uint8_t *xr = x + j * ldx;
            __m512 xd = _mm512_set1_ps(pg_act_q8_d(xr, n)[b]);
            __m512 xm = _mm512_loadu_ps(pg_act_q8_dbs(xr, n) + 16 * b);
            UNROLL for (int i = 0; i < RM; i++) {
                const kblk *blk = w + i * nb + b;
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[i][j]),
                                            _mm512_mul_ps(_mm512_set1_ps(blk->d), xd), acc[i][j]);
                acc[i][j] = _mm512_fmadd_ps(_mm512_load_ps(blk->wmin), xm, acc[i][j]);
            }
        }
    }
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++)
        y[j * ldy + i] = _mm512_reduce_add_ps(acc[i][j]);
}

#define K_GEMM(name, vnni)                                                                            \
    static void name(k_repack_fn rp, int64_t n, float *y, int64_t ldy, const void *w, size_t ldw,     \
                     int nr, const void *xv, size_t ldx, int nc, void *work) {                        \
        const uint8_t *x = xv;                                                                        \
        int64_t nb = n / 256;                                                                         \
        kblk *kw = work;                                                                              \
        for (int r = 0; r < nr; r += K_RM) {                                                          \
            int rm = PG_MIN(K_RM, nr - r);                                                            \
            for (int i = 0; i < rm; i++) rp((const uint8_t *)w + (size_t)(r + i) * ldw, nb, kw + i * nb); \
            if (rm == K_RM) {                                                                         \
                int c = 0;                                                                            \
                for (; c + K_RN <= nc; c += K_RN)                                                     \
                    k_tile(K_RM, K_RN, vnni, n, kw, x + c * ldx, ldx, y + c * ldy + r, ldy);          \
                for (; c < nc; c++) k_tile(K_RM, 1, vnni, n, kw, x + c * ldx, ldx, y + c * ldy + r, ldy); \
            } else {                                                                                  \
                for (int i = 0; i < rm; i++) {                                                        \
                    int c = 0;                                                                        \
                    for (; c + K_RN <= nc; c += K_RN)                                                 \
                        k_tile(1, K_RN, vnni, n, kw + i * nb, x + c * ldx, ldx, y + c * ldy + r + i, ldy); \
                    for (; c < nc; c++)                                                               \
                        k_tile(1, 1, vnni, n, kw + i * nb, x + c * ldx, ldx, y + c * ldy + r + i, ldy); \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
    }

K_GEMM(k_gemm, 0)
K_GEMM(k_gemm_vnni, 1)

#define K_TYPE(t, rp)                                                             \
    static void gemm_##t(GEMM_ARGS) { k_gemm(rp, GEMM_PASS); }                    \
    static void gemm_##t##_vnni(GEMM_ARGS) { k_gemm_vnni(rp, GEMM_PASS); }
K_TYPE(q2k, rk_q2k)
K_TYPE(q3k, rk_q3k)
K_TYPE(q4k, rk_q4k)
K_TYPE(q5k, rk_q5k)
K_TYPE(q6k, rk_q6k)

pg512_arepack_fn pg512_arepack_of(int type, int vnni) {
    switch (type) {
    case PG_TYPE_Q4_0: return rp_q4_0;
    case PG_TYPE_Q4_1: return rp_q4_1;
    case PG_TYPE_Q5_0: return rp_q5_0;
    case PG_TYPE_Q5_1: return rp_q5_1;
    case PG_TYPE_Q8_0: return vnni ? rp_q8_0u : rp_q8_0s;
    default: return NULL;
    }
}

pg512_krepack_fn pg512_krepack_of(int type, int panel) {
    switch (type) {
    case PG_TYPE_Q2_K: return panel ? rkp_q2k : rk_q2k;
    case PG_TYPE_Q3_K: return panel ? rkp_q3k : rk_q3k;
    case PG_TYPE_Q4_K: return panel ? rkp_q4k : rk_q4k;
    case PG_TYPE_Q5_K: return panel ? rkp_q5k : rk_q5k;
    case PG_TYPE_Q6_K: return panel ? rkp_q6k : rk_q6k;
    default: return NULL;
    }
}

void pg_avx512_fill_quant(pg_kernels *k, int vnni) {
#define SET(type, f, mr_, nr_, work_) \
    k->gemm[type] = (pg_gemm_kernel){.fn = vnni ? f##_vnni : f, .mr = mr_, .nr = nr_, .work = work_}
    SET(PG_TYPE_Q4_0, gemm_q4_0, A_RM, A_RN_OFF, a_work);
    SET(PG_TYPE_Q5_0, gemm_q5_0, A_RM, A_RN_OFF, a_work);
    SET(PG_TYPE_Q4_1, gemm_q4_1, A_RM, A_RN_MIN, a_work);
    SET(PG_TYPE_Q5_1, gemm_q5_1, A_RM, A_RN_MIN, a_work);
    SET(PG_TYPE_Q8_0, gemm_q8_0, A_RM, vnni ? A_RN_OFF : A_RN_SGN, a_work);
    SET(PG_TYPE_Q2_K, gemm_q2k, K_RM, K_RN, k_work);
    SET(PG_TYPE_Q3_K, gemm_q3k, K_RM, K_RN, k_work);
    SET(PG_TYPE_Q4_K, gemm_q4k, K_RM, K_RN, k_work);
    SET(PG_TYPE_Q5_K, gemm_q5k, K_RM, K_RN, k_work);
    SET(PG_TYPE_Q6_K, gemm_q6k, K_RM, K_RN, k_work);
#undef SET
    pg512_fill_panel(k, vnni);
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else /* not x86-64 */
void pg_avx512_fill_quant(pg_kernels *k, int vnni) { (void)k; (void)vnni; }
#endif
