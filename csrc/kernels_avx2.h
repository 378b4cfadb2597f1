/* kernels_avx2.h -- inline helpers shared by the AVX2 tier's files only.
 * Include it after the file's `target("avx2,fma,f16c")` pragma: everything
 * here is compiled for AVX2 and may only run on the AVX2 (or a higher) tier.
 *
 * Weight blocks are unpacked in registers into unsigned bytes in element
 * order (signed bytes for Q8_0), the form vpmaddubsw multiplies with the
 * int8 activations:
 *   32-blocks: one block per ymm, f16 scale d (and minimum m for Q4_1/Q5_1);
 *   K-quants:  32 values per ymm (k_chunk), scales decoded per block (k_dec)
 *              into the pg_kscales convention of kernels.h. */
#ifndef PG_KERNELS_AVX2_H
#define PG_KERNELS_AVX2_H

#include <immintrin.h>
#include <string.h>

#include "kernels.h"

#define INLINE static inline __attribute__((always_inline))

INLINE float pg2_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE int pg2_hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* Lane o of the result = the sum of the 8 int32 lanes of v[o] (exact). */
INLINE __m256i pg2_reduce8(const __m256i v[8]) {
    __m256i a = _mm256_hadd_epi32(v[0], v[1]), b = _mm256_hadd_epi32(v[2], v[3]);
    __m256i c = _mm256_hadd_epi32(v[4], v[5]), d = _mm256_hadd_epi32(v[6], v[7]);
    __m256i e = _mm256_hadd_epi32(a, b), f = _mm256_hadd_epi32(c, d);   /* [v0..v3 | v0..v3] halves */
    return _mm256_add_epi32(_mm256_permute2x128_si256(e, f, 0x20), _mm256_permute2x128_si256(e, f, 0x31));
}

/* 32 bits at p in every lane (a 4-byte broadcast load) */
INLINE __m256i pg2_bcast32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* ---------------------------------------------------------------------- */
/* 32-blocks                                                              */
/* ---------------------------------------------------------------------- */

/* How a type's unpacked values relate to its weights: u - off (Q4_0, Q5_0),
 * d*u + m (Q4_1, Q5_1), or signed bytes as they are (Q8_0). */
enum { PG2_OFFSET, PG2_MIN, PG2_SIGNED };
INLINE int pg2_a_kind(const int T) {
    return T == PG_TYPE_Q4_1 || T == PG_TYPE_Q5_1 ? PG2_MIN : T == PG_TYPE_Q8_0 ? PG2_SIGNED : PG2_OFFSET;
}
/* log2 of the offset (Q4_0: 8, Q5_0: 16) */
INLINE int pg2_a_offset_shift(const int T) { return T == PG_TYPE_Q4_0 ? 3 : 4; }
INLINE size_t pg2_a_block_bytes(const int T) {
    switch (T) {
    case PG_TYPE_Q4_0: return sizeof(block_q4_0);
    case PG_TYPE_Q4_1: return sizeof(block_q4_1);
    case PG_TYPE_Q5_0: return sizeof(block_q5_0);
    case PG_TYPE_Q5_1: return sizeof(block_q5_1);
    default: return sizeof(block_q8_0);
    }
}

/* 16 packed nibble bytes -> 32 values in element order [lo | hi] */
INLINE __m256i pg2_nibbles(const uint8_t *qs) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

/* 0x10 in byte l where bit l of the 32-bit qh is set */
INLINE __m256i pg2_qh_bits(const uint8_t *qh4) {
    uint32_t h;
    memcpy(&h, qh4, 4);
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf);           /* byte l = qh byte l/8 */
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* One block: 32 values (u8; s8 for Q8_0), f16 scale and minimum (0 if none). */
INLINE __m256i pg2_a_unpack(const int T, const uint8_t *blk, pg_half *d, pg_half *m) {
    *m = 0;
    if (T == PG_TYPE_Q4_0) {
        const block_q4_0 *x = (const block_q4_0 *)blk;
        *d = x->d;
        return pg2_nibbles(x->qs);
    }
    if (T == PG_TYPE_Q4_1) {
        const block_q4_1 *x = (const block_q4_1 *)blk;
        *d = x->d;
        *m = x->m;
        return pg2_nibbles(x->qs);
    }
    if (T == PG_TYPE_Q5_0) {
        const block_q5_0 *x = (const block_q5_0 *)blk;
        *d = x->d;
        return _mm256_or_si256(pg2_nibbles(x->qs), pg2_qh_bits(x->qh));
    }
    if (T == PG_TYPE_Q5_1) {
        const block_q5_1 *x = (const block_q5_1 *)blk;
        *d = x->d;
        *m = x->m;
        return _mm256_or_si256(pg2_nibbles(x->qs), pg2_qh_bits(x->qh));
    }
    const block_q8_0 *x = (const block_q8_0 *)blk;
    *d = x->d;
    return _mm256_loadu_si256((const __m256i *)x->qs);
}

/* ---------------------------------------------------------------------- */
/* K-quants                                                               */
/* ---------------------------------------------------------------------- */

INLINE size_t pg2_k_block_bytes(const int T) {
    switch (T) {
    case PG_TYPE_Q2_K: return sizeof(block_q2_K);
    case PG_TYPE_Q3_K: return sizeof(block_q3_K);
    case PG_TYPE_Q4_K: return sizeof(block_q4_K);
    case PG_TYPE_Q5_K: return sizeof(block_q5_K);
    default: return sizeof(block_q6_K);
    }
}

/* A block's scales: sc and mn as 16 int16 (one per 16 values, pg_kscales'
 * convention), d and dmin as floats. */
typedef struct {
    __m256i sc, mn;
    float d, dmin;
} pg2_kdec;

/* Q4_K/Q5_K: 8 6-bit scales and 8 6-bit mins in 12 bytes (u0 u1 u2):
 *   scales 0..3 = u0 & 0x3f..,  scales 4..7 = (u2 & 0x0f..) | ((u0 >> 2) & 0x30..)
 *   mins   0..3 = u1 & 0x3f..,  mins   4..7 = ((u2 >> 4) & 0x0f..) | ((u1 >> 2) & 0x30..)
 * in one xmm (the 16-byte load stays inside the block), each then doubled
 * to its two 16-value groups. */
INLINE pg2_kdec pg2_dec_q4k(const uint8_t *s12, const pg_half *dd) {
    __m128i x = _mm_loadu_si128((const __m128i *)s12);
    __m128i lo = _mm_shuffle_epi32(x, _MM_SHUFFLE(2, 1, 2, 0));                  /* u0 u2 u1 u2 */
    lo = _mm_and_si128(_mm_srlv_epi32(lo, _mm_set_epi32(4, 0, 0, 0)),
                       _mm_set_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
    __m128i hi = _mm_shuffle_epi32(x, _MM_SHUFFLE(1, 1, 0, 0));                  /* u0 u0 u1 u1 */
    hi = _mm_and_si128(_mm_srli_epi32(hi, 2), _mm_set_epi32(0x30303030, 0, 0x30303030, 0));
    __m128i v = _mm_or_si128(lo, hi);                                            /* sc0..7 m0..7 */
    pg2_kdec r;
    r.sc = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(v, _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7)));
    r.mn = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(v, _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
                                                                  14, 14, 15, 15)));
    uint32_t d2;
    memcpy(&d2, dd, 4);                                                          /* d, dmin */
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)d2));
    r.d = _mm_cvtss_f32(f);
    r.dmin = _mm_cvtss_f32(_mm_movehdup_ps(f));
    return r;
}

INLINE pg2_kdec pg2_dec_q6k(const block_q6_K *b) {
    pg2_kdec r;
    r.sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    r.mn = _mm256_slli_epi16(r.sc, 5);                               /* 32 * sc */
    r.d = r.dmin = _cvtsh_ss(b->d);
    return r;
}

INLINE pg2_kdec pg2_dec_q3k(const block_q3_K *b) {
    uint32_t a0, a1, a2, w[4];
    memcpy(&a0, b->scales, 4);
    memcpy(&a1, b->scales + 4, 4);
    memcpy(&a2, b->scales + 8, 4);
    w[0] = (a0 & 0x0f0f0f0f) | ((a2 & 0x03030303) << 4);
    w[1] = (a1 & 0x0f0f0f0f) | (((a2 >> 2) & 0x03030303) << 4);
    w[2] = ((a0 >> 4) & 0x0f0f0f0f) | (((a2 >> 4) & 0x03030303) << 4);
    w[3] = ((a1 >> 4) & 0x0f0f0f0f) | (((a2 >> 6) & 0x03030303) << 4);
    pg2_kdec r;
    r.sc = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)w)), _mm256_set1_epi16(32));
    r.mn = _mm256_slli_epi16(r.sc, 2);                               /* 4 * sc */
    r.d = r.dmin = _cvtsh_ss(b->d);
    return r;
}

INLINE pg2_kdec pg2_dec_q2k(const block_q2_K *b) {
    __m128i v = _mm_loadu_si128((const __m128i *)b->scales);
    pg2_kdec r;
    r.sc = _mm256_cvtepu8_epi16(_mm_and_si128(v, _mm_set1_epi8(0x0F)));
    r.mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F)));
    r.d = _cvtsh_ss(b->d);
    r.dmin = _cvtsh_ss(b->dmin);
    return r;
}

INLINE pg2_kdec pg2_k_dec(const int T, const uint8_t *blk) {
    switch (T) {
    case PG_TYPE_Q2_K: return pg2_dec_q2k((const block_q2_K *)blk);
    case PG_TYPE_Q3_K: return pg2_dec_q3k((const block_q3_K *)blk);
    case PG_TYPE_Q4_K: return pg2_dec_q4k(((const block_q4_K *)blk)->scales, &((const block_q4_K *)blk)->d);
    case PG_TYPE_Q5_K: return pg2_dec_q4k(((const block_q5_K *)blk)->scales, &((const block_q5_K *)blk)->d);
    default: return pg2_dec_q6k((const block_q6_K *)blk);
    }
}

/* Values 32c .. 32c+31 of a block, unsigned, in element order. */
INLINE __m256i pg2_k_chunk(const int T, const uint8_t *blk, const int c) {
    const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1), m4 = _mm256_set1_epi8(0x0F);
    if (T == PG_TYPE_Q2_K || T == PG_TYPE_Q3_K) {
        /* value 128h + 32j + l = (qs[32h + l] >> 2j) & 3, Q3_K: | hmask bit (4h+j) << 2 */
        const int h = c / 4, j = c % 4;
        const uint8_t *qs = T == PG_TYPE_Q2_K ? ((const block_q2_K *)blk)->qs : ((const block_q3_K *)blk)->qs;
        __m256i v = _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(qs + 32 * h)), 2 * j), m3);
        if (T == PG_TYPE_Q3_K) {
            __m256i hm = _mm256_loadu_si256((const __m256i *)((const block_q3_K *)blk)->hmask);
            v = _mm256_or_si256(v, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), m1), 2));
        }
        return v;
    }
    if (T == PG_TYPE_Q4_K || T == PG_TYPE_Q5_K) {
        /* sub-block c: nibbles (c odd: high) of qs[32 (c/2) ..], Q5_K: | bit c of qh[l] << 4 */
        const uint8_t *qs = T == PG_TYPE_Q4_K ? ((const block_q4_K *)blk)->qs : ((const block_q5_K *)blk)->qs;
        __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * (c / 2)));
        __m256i v = _mm256_and_si256(c % 2 ? _mm256_srli_epi16(q, 4) : q, m4);
        if (T == PG_TYPE_Q5_K) {
            __m256i hb = _mm256_loadu_si256((const __m256i *)((const block_q5_K *)blk)->qh);
            v = _mm256_or_si256(v, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, c), m1), 4));
        }
        return v;
    }
    /* Q6_K: value 128h + 32qd + l: nibble (qd >> 1) of ql[64h + 32 (qd & 1) + l], | ((qh[32h + l] >> 2qd) & 3) << 4 */
    const block_q6_K *b = (const block_q6_K *)blk;
    const int h = c / 4, qd = c % 4;
    __m256i l = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32 * (qd & 1)));
    __m256i v = _mm256_and_si256(qd >> 1 ? _mm256_srli_epi16(l, 4) : l, m4);
    __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
    return _mm256_or_si256(v, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * qd), m3), 4));
}

/* Q4_K/Q5_K scale one group of 32 values each: the 32-bit word c of the
 * doubled 16-bit scales is (sc_c | sc_c << 16), so a broadcast load of it is
 * the scale vector of chunk c (no shuffles). */
INLINE int pg2_k_scale32(const int T) { return T == PG_TYPE_Q4_K || T == PG_TYPE_Q5_K; }

/* 16-bit lanes 0..7 take scale 2c, lanes 8..15 scale 2c+1 (c = 0..7) */
INLINE __m256i pg2_k_scale_vec(__m256i sc, const int c) {
    __m256i half = c < 4 ? _mm256_permute2x128_si256(sc, sc, 0x00) : _mm256_permute2x128_si256(sc, sc, 0x11);
    const int w0 = (2 * c) % 8, w1 = w0 + 1;
    const __m256i pat = _mm256_setr_epi8(2 * w0, 2 * w0 + 1, 2 * w0, 2 * w0 + 1, 2 * w0, 2 * w0 + 1, 2 * w0, 2 * w0 + 1,
                                         2 * w0, 2 * w0 + 1, 2 * w0, 2 * w0 + 1, 2 * w0, 2 * w0 + 1, 2 * w0, 2 * w0 + 1,
                                         2 * w1, 2 * w1 + 1, 2 * w1, 2 * w1 + 1, 2 * w1, 2 * w1 + 1, 2 * w1, 2 * w1 + 1,
                                         2 * w1, 2 * w1 + 1, 2 * w1, 2 * w1 + 1, 2 * w1, 2 * w1 + 1, 2 * w1, 2 * w1 + 1);
    return _mm256_shuffle_epi8(half, pat);
}

/* kernels_avx2_matvec.c: one-token products in the canonical order; work is
 * the calling thread's scratch of at least pg_avx2_matvec_work_a/k(n) bytes. */
typedef void pg2_matvec_fn(int64_t n, float *y, const void *w, size_t ldw, int nr, const void *x, void *work);
size_t pg_avx2_matvec_work_a(int64_t n);
size_t pg_avx2_matvec_work_k(int64_t n);
pg2_matvec_fn pg_avx2_matvec_q4_0, pg_avx2_matvec_q4_1, pg_avx2_matvec_q5_0, pg_avx2_matvec_q5_1, pg_avx2_matvec_q8_0;
pg2_matvec_fn pg_avx2_matvec_q2k, pg_avx2_matvec_q3k, pg_avx2_matvec_q4k, pg_avx2_matvec_q5k, pg_avx2_matvec_q6k;

#endif
