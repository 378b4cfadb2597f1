/* kernels_avx512_quant.c -- AVX-512 matmul of the quantized types, dot form
 * (single tokens and small batches), and the row unpacking shared with the
 * panel tiles of kernels_avx512_panel.c.
 *
 * Dot-form tiles: RM weight rows x RN tokens, each output a zmm of partial
 * sums reduced at the end.  Weight blocks are unpacked in registers straight
 * from the GGUF rows (once per tile, i.e. per RN tokens) into unsigned 8-bit
 * values in element order:
 *   32-blocks (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0): two blocks per zmm;
 *     per (row, token, pair of blocks): vpdpbusd, cvt, mul, fma.
 *     Offsets (Q4_0: u-8, Q5_0: u-16, Q8_0 with VNNI: (w^0x80)-128) are folded
 *     into the accumulator's initial value, -off * (sums of 4 activations),
 *     computed once per token; Q4_1/Q5_1 minimums add m * s (s = dx*sum q).
 *   K-quants: per 64 values, vpmaddubsw then vpdpwssd with the 16-bit
 *     group scales, exact int32 over the 256-block; then one fma with d*dx
 *     and one with the minimums (-dmin*mn per 16 values, times dx*bsums).
 * VNNI instructions are emitted only through inline asm in the `vnni`
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

/* Software prefetch distance for weight rows: with several rows streamed at
 * once the hardware prefetcher alone leaves mat-vec latency-bound on DRAM.
 * Measured on 2 threads (Q4_0 / Q4_K cold mat-vec, % of read bandwidth):
 * 1 KB 52/50, 4 KB 52/61, 8 KB 75/75, 16 KB 77/75. */
#define PF_BYTES 8192

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

#define A_RM 4
static size_t a_work(int64_t n) { return A_RM * pg512_arow_bytes(n); }

/* 2 x 16 packed nibble bytes -> [lo0 | hi0 | lo1 | hi1], i.e. 64 values in
 * element order: broadcast loads and masked ops, no port-5 shuffle */
INLINE __m512i nibbles2(const uint8_t *qs0, const uint8_t *qs1, const int two) {
    __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)qs0));
    v = two ? _mm512_mask_broadcast_i32x4(v, 0xFF00, _mm_loadu_si128((const __m128i *)qs1))
            : _mm512_maskz_mov_epi32(0x00FF, v);
    v = _mm512_mask_srli_epi16(v, 0xFF00FF00u, v, 4);          /* 128-bit lanes 1, 3: high nibbles */
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

/* How a 32-block type's unsigned values relate to the weights. */
enum { A_OFFSET, A_MIN, A_SIGNED };
INLINE int a_kind(const int T, const int vnni) {
    if (T == PG_TYPE_Q4_1 || T == PG_TYPE_Q5_1) return A_MIN;
    if (T == PG_TYPE_Q8_0 && !vnni) return A_SIGNED;     /* w+128 would saturate vpmaddubsw */
    return A_OFFSET;
}
INLINE int a_offset(const int T) { return T == PG_TYPE_Q4_0 ? 8 : T == PG_TYPE_Q5_0 ? 16 : T == PG_TYPE_Q8_0 ? 128 : 0; }
INLINE size_t a_block_bytes(const int T) {
    switch (T) {
    case PG_TYPE_Q4_0: return sizeof(block_q4_0);
    case PG_TYPE_Q4_1: return sizeof(block_q4_1);
    case PG_TYPE_Q5_0: return sizeof(block_q5_0);
    case PG_TYPE_Q5_1: return sizeof(block_q5_1);
    default: return sizeof(block_q8_0);
    }
}

/* Blocks 2p and 2p+1 (only 2p if !two) of a row: 64 values (u8, or s8 for
 * A_SIGNED), fp16 scales and minimums (0 where absent). */
typedef struct {
    __m512i q;
    pg_half d0, d1, m0, m1;
} apair;

INLINE apair a_unpack(const int T, const int vnni, const uint8_t *row, int64_t p, const int two) {
    const uint8_t *b0 = row + 2 * p * a_block_bytes(T), *b1 = b0 + a_block_bytes(T);
    apair r;
    r.m0 = r.m1 = 0;
    if (T == PG_TYPE_Q4_0) {
        const block_q4_0 *x0 = (const block_q4_0 *)b0, *x1 = (const block_q4_0 *)b1;
        r.q = nibbles2(x0->qs, x1->qs, two);
        r.d0 = x0->d;
        r.d1 = two ? x1->d : 0;
    } else if (T == PG_TYPE_Q4_1) {
        const block_q4_1 *x0 = (const block_q4_1 *)b0, *x1 = (const block_q4_1 *)b1;
        r.q = nibbles2(x0->qs, x1->qs, two);
        r.d0 = x0->d;
        r.d1 = two ? x1->d : 0;
        r.m0 = x0->m;
        r.m1 = two ? x1->m : 0;
    } else if (T == PG_TYPE_Q5_0) {
        const block_q5_0 *x0 = (const block_q5_0 *)b0, *x1 = (const block_q5_0 *)b1;
        r.q = add_qh(nibbles2(x0->qs, x1->qs, two), x0->qh, x1->qh, two);
        r.d0 = x0->d;
        r.d1 = two ? x1->d : 0;
    } else if (T == PG_TYPE_Q5_1) {
        const block_q5_1 *x0 = (const block_q5_1 *)b0, *x1 = (const block_q5_1 *)b1;
        r.q = add_qh(nibbles2(x0->qs, x1->qs, two), x0->qh, x1->qh, two);
        r.d0 = x0->d;
        r.d1 = two ? x1->d : 0;
        r.m0 = x0->m;
        r.m1 = two ? x1->m : 0;
    } else {  /* Q8_0: w ^ 0x80 = w + 128 as u8 for VNNI (offset 128), signed as is otherwise */
        const block_q8_0 *x0 = (const block_q8_0 *)b0, *x1 = (const block_q8_0 *)b1;
        __m256i flip = _mm256_set1_epi8(vnni ? -128 : 0);
        __m256i lo = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)x0->qs), flip);
        __m256i hi = two ? _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)x1->qs), flip) : _mm256_setzero_si256();
        r.q = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        r.d0 = x0->d;
        r.d1 = two ? x1->d : 0;
    }
    return r;
}

/* [h2f(h0) x 8 | h2f(h1) x 8] */
INLINE __m512 pair_h(pg_half h0, pg_half h1) {
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)h0 | ((uint32_t)h1 << 16))));
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}

/* Repacked rows for the panel tiles (layout in kernels_avx512.h); the
 * constant term c is the minimum, or -off * d. */
#define A_REPACK(name, T, vnni)                                                          \
    static void name(const uint8_t *src, int64_t nb, uint8_t *dst) {                    \
        int64_t np = (nb + 1) / 2;                                                       \
        pg512_arow o = pg512_arow_at(dst, np);                                           \
        for (int64_t p = 0; p < np; p++) {                                               \
            apair a = a_unpack(T, vnni, src, p, 2 * p + 1 < nb);                         \
            _mm512_store_si512(o.q + 64 * p, a.q);                                       \
            __m128 f = _mm_cvtph_ps(_mm_set_epi16(0, 0, 0, 0, (short)a.m1, (short)a.m0,  \
                                                  (short)a.d1, (short)a.d0));            \
            float d[4];                                                                  \
            _mm_storeu_ps(d, f);                                                         \
            o.d[2 * p] = d[0];                                                           \
            o.d[2 * p + 1] = d[1];                                                       \
            o.c[2 * p] = a_kind(T, vnni) == A_MIN ? d[2] : -(float)a_offset(T) * d[0];   \
            o.c[2 * p + 1] = a_kind(T, vnni) == A_MIN ? d[3] : -(float)a_offset(T) * d[1]; \
        }                                                                                \
    }
A_REPACK(rp_q4_0, PG_TYPE_Q4_0, 1)
A_REPACK(rp_q4_1, PG_TYPE_Q4_1, 1)
A_REPACK(rp_q5_0, PG_TYPE_Q5_0, 1)
A_REPACK(rp_q5_1, PG_TYPE_Q5_1, 1)
A_REPACK(rp_q8_0u, PG_TYPE_Q8_0, 1)

/* One pair of blocks (`two` = 0: only the first) for an RM x RN tile.
 *   w: RM GGUF rows (stride ldw); x: RN activation rows (stride ldx) */
INLINE void a_step(const int T, const int RM, const int RN, const int vnni, const int two,
                   __m512 acc[A_RM][4], int64_t p, const uint8_t *w, size_t ldw,
                   const uint8_t *x, size_t ldx, int64_t n) {
    const int kind = a_kind(T, vnni);
    const __m512i zero = _mm512_setzero_si512(), ones = _mm512_set1_epi16(1);
    const __m512i ovec = _mm512_set1_epi8((char)a_offset(T));
    __m512i wq[A_RM];
    __m512 wd[A_RM], wm[A_RM];
    __mmask64 wneg[A_RM];
    UNROLL for (int i = 0; i < RM; i++) {
        /* ~1 KB ahead: the hardware prefetcher alone leaves mat-vec latency-bound */
        _mm_prefetch((const char *)w + i * ldw + 2 * p * a_block_bytes(T) + PF_BYTES, _MM_HINT_T0);
        apair a = a_unpack(T, vnni, w + i * ldw, p, two);
        wq[i] = a.q;
        wd[i] = pair_h(a.d0, a.d1);
        if (kind == A_MIN) wm[i] = _mm512_maskz_mov_ps(0x0101, pair_h(a.m0, a.m1));
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

INLINE void a_tile(const int T, const int RM, const int RN, const int vnni, int64_t n,
                   const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx, float *y, int64_t ldy) {
    int64_t nb = n / 32, np = (nb + 1) / 2;
    __m512 acc[A_RM][4];
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t p = 0; p < nb / 2; p++) a_step(T, RM, RN, vnni, 1, acc, p, w, ldw, x, ldx, n);
    if (nb & 1) a_step(T, RM, RN, vnni, 0, acc, np - 1, w, ldw, x, ldx, n);
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++)
        y[j * ldy + i] = _mm512_reduce_add_ps(acc[i][j]);
}

/* Tiles over a chunk: RM x RN inside, RM x 1 / 1 x RN / 1 x 1 on the edges
 * (the same float operations per output in every variant). */
#define TILE_SWEEP(tile, RM, RN, ...)                                                                 \
    do {                                                                                              \
        const uint8_t *w_ = w, *x_ = x;                                                               \
        int r = 0;                                                                                    \
        for (; r + RM <= nr; r += RM) {                                                               \
            int c = 0;                                                                                \
            for (; c + RN <= nc; c += RN)                                                             \
                tile(__VA_ARGS__, RM, RN, vnni, n, w_ + r * ldw, ldw, x_ + c * ldx, ldx, y + c * ldy + r, ldy); \
            for (; c < nc; c++)                                                                       \
                tile(__VA_ARGS__, RM, 1, vnni, n, w_ + r * ldw, ldw, x_ + c * ldx, ldx, y + c * ldy + r, ldy); \
        }                                                                                             \
        for (; r < nr; r++) {                                                                         \
            int c = 0;                                                                                \
            for (; c + RN <= nc; c += RN)                                                             \
                tile(__VA_ARGS__, 1, RN, vnni, n, w_ + r * ldw, ldw, x_ + c * ldx, ldx, y + c * ldy + r, ldy); \
            for (; c < nc; c++)                                                                       \
                tile(__VA_ARGS__, 1, 1, vnni, n, w_ + r * ldw, ldw, x_ + c * ldx, ldx, y + c * ldy + r, ldy); \
        }                                                                                             \
    } while (0)

#define A_RN(T, vnni) (a_kind(T, vnni) == A_OFFSET ? 4 : 3)

#define GEMM_ARGS int64_t n, float *y, int64_t ldy, const void *w, size_t ldw, int nr, \
                  const void *x, size_t ldx, int nc, void *work

#define A_GEMM(t, T)                                                                 \
    static void gemm_##t(GEMM_ARGS) {                                                \
        const int vnni = 0;                                                          \
        (void)work;                                                                  \
        TILE_SWEEP(a_tile, A_RM, A_RN(T, 0), T);                                     \
    }                                                                                \
    static void gemm_##t##_vnni(GEMM_ARGS) {                                         \
        const int vnni = 1;                                                          \
        (void)work;                                                                  \
        TILE_SWEEP(a_tile, A_RM, A_RN(T, 1), T);                                     \
    }
A_GEMM(q4_0, PG_TYPE_Q4_0)
A_GEMM(q4_1, PG_TYPE_Q4_1)
A_GEMM(q5_0, PG_TYPE_Q5_0)
A_GEMM(q5_1, PG_TYPE_Q5_1)
A_GEMM(q8_0, PG_TYPE_Q8_0)

/* ====================================================================== */
/* K-quants                                                               */
/* ====================================================================== */

#define K_RM 3
#define K_RN 3
/* work rows for the panel tiles (pg512_kpb blocks) */
static size_t k_work(int64_t n) { return 4 * (size_t)(n / 256) * sizeof(pg512_kpb); }

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

/* Q4_K/Q5_K: 8 6-bit scales and 8 6-bit mins packed in 12 bytes (u0 u1 u2):
 *   scales 0..3 = u0 & 0x3f..,  scales 4..7 = (u2 & 0x0f..) | ((u0 >> 2) & 0x30..)
 *   mins   0..3 = u1 & 0x3f..,  mins   4..7 = ((u2 >> 4) & 0x0f..) | ((u1 >> 2) & 0x30..)
 * computed in one xmm (the 16-byte load stays inside the block). */
INLINE kdec dec_q4k(const uint8_t *s12, const pg_half *dd) {
    __m128i x = _mm_loadu_si128((const __m128i *)s12);
    __m128i lo = _mm_shuffle_epi32(x, _MM_SHUFFLE(2, 1, 2, 0));                  /* u0 u2 u1 u2 */
    lo = _mm_and_si128(_mm_srlv_epi32(lo, _mm_set_epi32(4, 0, 0, 0)),
                       _mm_set_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
    __m128i hi = _mm_shuffle_epi32(x, _MM_SHUFFLE(1, 1, 0, 0));                  /* u0 u0 u1 u1 */
    hi = _mm_and_si128(_mm_srli_epi32(hi, 2), _mm_set_epi32(0x30303030, 0, 0x30303030, 0));
    __m256i v = _mm256_cvtepu8_epi16(_mm_or_si128(lo, hi));                      /* sc0..7 m0..7 */
    kdec r;
    r.sc = _mm256_permutexvar_epi16(_mm256_load_si256((const __m256i *)k_dup_idx[0]), v);
    r.mn = _mm256_permutexvar_epi16(_mm256_load_si256((const __m256i *)k_dup_idx[1]), v);
    uint32_t d2;
    memcpy(&d2, dd, 4);                                                          /* d, dmin */
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)d2));
    r.d = _mm_cvtss_f32(f);
    r.dmin = _mm_cvtss_f32(_mm_movehdup_ps(f));
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

/* 32 bytes -> [b & 15 | b >> 4]: 64 values (broadcast load, masked shift) */
INLINE __m512i nib_split(const uint8_t *qs) {
    __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qs));
    v = _mm512_mask_srli_epi16(v, 0xFFFF0000u, v, 4);
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

INLINE size_t k_block_bytes(const int T) {
    switch (T) {
    case PG_TYPE_Q2_K: return sizeof(block_q2_K);
    case PG_TYPE_Q3_K: return sizeof(block_q3_K);
    case PG_TYPE_Q4_K: return sizeof(block_q4_K);
    case PG_TYPE_Q5_K: return sizeof(block_q5_K);
    default: return sizeof(block_q6_K);
    }
}

INLINE kdec k_dec(const int T, const uint8_t *blk) {
    switch (T) {
    case PG_TYPE_Q2_K: return dec_q2k((const block_q2_K *)blk);
    case PG_TYPE_Q3_K: return dec_q3k((const block_q3_K *)blk);
    case PG_TYPE_Q4_K: {
        const block_q4_K *b = (const block_q4_K *)blk;
        return dec_q4k(b->scales, &b->d);
    }
    case PG_TYPE_Q5_K: {
        const block_q5_K *b = (const block_q5_K *)blk;
        return dec_q4k(b->scales, &b->d);
    }
    default: return dec_q6k((const block_q6_K *)blk);
    }
}

/* Values 64c .. 64c+63 of a block, unsigned, in element order. */
INLINE __m512i k_chunk(const int T, const uint8_t *blk, const int c) {
    if (T == PG_TYPE_Q2_K) {
        const block_q2_K *b = (const block_q2_K *)blk;
        return two_bits(b->qs + 32 * (c / 2), 2 * (c % 2));
    }
    if (T == PG_TYPE_Q3_K) {
        const block_q3_K *b = (const block_q3_K *)blk;
        int h = c / 2, j = 2 * (c % 2);
        __m512i v = two_bits(b->qs + 32 * h, j);
        return _mm512_mask_add_epi8(v, hi_bits(b->hmask, 4 * h + j), v, _mm512_set1_epi8(4));
    }
    if (T == PG_TYPE_Q4_K) return nib_split(((const block_q4_K *)blk)->qs + 32 * c);
    if (T == PG_TYPE_Q5_K) {
        const block_q5_K *b = (const block_q5_K *)blk;
        __m512i v = nib_split(b->qs + 32 * c);
        return _mm512_mask_add_epi8(v, hi_bits(b->qh, 2 * c), v, _mm512_set1_epi8(16));
    }
    /* Q6_K: values 128h + 0..63 are the low nibbles of ql[64h..+63] with qh
     * bits 0-1 / 2-3; values 128h + 64..127 the high nibbles, bits 4-5 / 6-7 */
    const block_q6_K *b = (const block_q6_K *)blk;
    const int h = c / 2, odd = c % 2;
    __m512i l = _mm512_loadu_si512(b->ql + 64 * h);
    if (odd) l = _mm512_srli_epi16(l, 4);
    __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
    qh = odd ? _mm512_srlv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0))
             : _mm512_sllv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4));
    return _mm512_or_si512(_mm512_and_si512(l, _mm512_set1_epi8(0x0F)), _mm512_and_si512(qh, _mm512_set1_epi8(0x30)));
}

/* Repacked blocks for the panel tiles. */
#define K_REPACK(name, T)                                                             \
    static void name(const uint8_t *src, int64_t nb, void *dst) {                      \
        for (int64_t i = 0; i < nb; i++) {                                              \
            const uint8_t *blk = src + i * k_block_bytes(T);                            \
            pg512_kpb *o = (pg512_kpb *)dst + i;                                        \
            UNROLL for (int c = 0; c < 4; c++) _mm512_store_si512(o->q + 64 * c, k_chunk(T, blk, c)); \
            kdec k = k_dec(T, blk);                                                     \
            _mm512_store_si512(o->sc, _mm512_cvtepi16_epi32(k.sc));                     \
            _mm256_store_si256((__m256i *)o->mn, k.mn);                                 \
            o->d = k.d;                                                                 \
            o->dmin = k.dmin;                                                           \
        }                                                                               \
    }
K_REPACK(rkp_q2k, PG_TYPE_Q2_K)
K_REPACK(rkp_q3k, PG_TYPE_Q3_K)
K_REPACK(rkp_q4k, PG_TYPE_Q4_K)
K_REPACK(rkp_q5k, PG_TYPE_Q5_K)
K_REPACK(rkp_q6k, PG_TYPE_Q6_K)

/* For the 64 values c of a block: 16-bit lane l (values 2l, 2l+1) takes the
 * scale of group 4c + l/8. */
static const int16_t k_scale_idx[4][32] __attribute__((aligned(64))) = {
#define R(c) {4*c, 4*c, 4*c, 4*c, 4*c, 4*c, 4*c, 4*c, 4*c+1, 4*c+1, 4*c+1, 4*c+1, 4*c+1, 4*c+1, 4*c+1, 4*c+1, \
              4*c+2, 4*c+2, 4*c+2, 4*c+2, 4*c+2, 4*c+2, 4*c+2, 4*c+2, 4*c+3, 4*c+3, 4*c+3, 4*c+3, 4*c+3, 4*c+3, 4*c+3, 4*c+3}
    R(0), R(1), R(2), R(3)
#undef R
};

/* RM x RN tile over all blocks.  w: RM GGUF rows (stride ldw) */
INLINE void k_tile(const int T, const int RM, const int RN, const int vnni, int64_t n, const uint8_t *w,
                   size_t ldw, const uint8_t *x, size_t ldx, float *y, int64_t ldy) {
    int64_t nb = n / 256;
    __m512 acc[K_RM][K_RN];
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk[K_RM];
        kdec kd[K_RM];
        UNROLL for (int i = 0; i < RM; i++) {
            blk[i] = w + i * ldw + b * k_block_bytes(T);
            /* ~1 KB ahead, every line of the block: see PF_BYTES */
            UNROLL for (int l = 0; l < (int)k_block_bytes(T); l += 64)
                _mm_prefetch((const char *)blk[i] + PF_BYTES + l, _MM_HINT_T0);
            kd[i] = k_dec(T, blk[i]);
        }
        __m512i is[K_RM][K_RN];
        UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++) is[i][j] = _mm512_setzero_si512();
        UNROLL for (int c = 0; c < 4; c++) {
            const __m512i idx = _mm512_load_si512(k_scale_idx[c]);
            __m512i wq[K_RM], sv[K_RM];
            UNROLL for (int i = 0; i < RM; i++) {
                wq[i] = k_chunk(T, blk[i], c);
                sv[i] = _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(kd[i].sc));
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
        __m512 wmin[K_RM];
        UNROLL for (int i = 0; i < RM; i++)
            wmin[i] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(kd[i].mn)), _mm512_set1_ps(-kd[i].dmin));
        UNROLL for (int j = 0; j < RN; j++) {
            const uint8_t *xr = x + j * ldx;
            __m512 xd = _mm512_set1_ps(pg_act_q8_d(xr, n)[b]);
            __m512 xm = _mm512_loadu_ps(pg_act_q8_dbs(xr, n) + 16 * b);
            UNROLL for (int i = 0; i < RM; i++) {
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[i][j]),
                                            _mm512_mul_ps(_mm512_set1_ps(kd[i].d), xd), acc[i][j]);
                acc[i][j] = _mm512_fmadd_ps(wmin[i], xm, acc[i][j]);
            }
        }
    }
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++)
        y[j * ldy + i] = _mm512_reduce_add_ps(acc[i][j]);
}

#define K_GEMM(t, T)                                                                 \
    static void gemm_##t(GEMM_ARGS) {                                                \
        const int vnni = 0;                                                          \
        (void)work;                                                                  \
        TILE_SWEEP(k_tile, K_RM, K_RN, T);                                           \
    }                                                                                \
    static void gemm_##t##_vnni(GEMM_ARGS) {                                         \
        const int vnni = 1;                                                          \
        (void)work;                                                                  \
        TILE_SWEEP(k_tile, K_RM, K_RN, T);                                           \
    }
K_GEMM(q2k, PG_TYPE_Q2_K)
K_GEMM(q3k, PG_TYPE_Q3_K)
K_GEMM(q4k, PG_TYPE_Q4_K)
K_GEMM(q5k, PG_TYPE_Q5_K)
K_GEMM(q6k, PG_TYPE_Q6_K)

pg512_arepack_fn pg512_arepack_of(int type, int vnni) {
    switch (type) {
    case PG_TYPE_Q4_0: return rp_q4_0;
    case PG_TYPE_Q4_1: return rp_q4_1;
    case PG_TYPE_Q5_0: return rp_q5_0;
    case PG_TYPE_Q5_1: return rp_q5_1;
    case PG_TYPE_Q8_0: return vnni ? rp_q8_0u : NULL;   /* no signed panel form */
    default: return NULL;
    }
}

pg512_krepack_fn pg512_krepack_of(int type) {
    switch (type) {
    case PG_TYPE_Q2_K: return rkp_q2k;
    case PG_TYPE_Q3_K: return rkp_q3k;
    case PG_TYPE_Q4_K: return rkp_q4k;
    case PG_TYPE_Q5_K: return rkp_q5k;
    case PG_TYPE_Q6_K: return rkp_q6k;
    default: return NULL;
    }
}

void pg_avx512_fill_quant(pg_kernels *k, int vnni) {
#define SET(type, f, mr_, nr_, work_) \
    k->gemm[type] = (pg_gemm_kernel){.fn = vnni ? f##_vnni : f, .mr = mr_, .nr = nr_, .work = work_}
    SET(PG_TYPE_Q4_0, gemm_q4_0, A_RM, A_RN(PG_TYPE_Q4_0, vnni), a_work);
    SET(PG_TYPE_Q5_0, gemm_q5_0, A_RM, A_RN(PG_TYPE_Q5_0, vnni), a_work);
    SET(PG_TYPE_Q4_1, gemm_q4_1, A_RM, A_RN(PG_TYPE_Q4_1, vnni), a_work);
    SET(PG_TYPE_Q5_1, gemm_q5_1, A_RM, A_RN(PG_TYPE_Q5_1, vnni), a_work);
    SET(PG_TYPE_Q8_0, gemm_q8_0, A_RM, A_RN(PG_TYPE_Q8_0, vnni), a_work);
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
