/* kernels_neon_unpack.h -- the NEON tier's building blocks, shared by the
 * plain (kernels_neon.c) and SDOT (kernels_neon_dp.c) instantiations of the
 * quantized matmuls: f16 scales, the lanes of a tile, and the weight unpacking
 * of every quantized type into bytes for the integer dot products.
 * Included by each of the two translation units, so every inline function
 * here is compiled for that unit's target (the SDOT unit's includes dotprod)
 * and always inlines into its tiles. */
#ifndef PG_KERNELS_NEON_UNPACK_H
#define PG_KERNELS_NEON_UNPACK_H

#include <arm_neon.h>
#include <string.h>

#include "kernels.h"

#define INLINE static inline __attribute__((always_inline))
#if defined(__clang__)
#define UNROLL _Pragma("unroll")
#else
#define UNROLL _Pragma("GCC unroll 16")
#endif

/* Software prefetch distance along each weight row (several rows stream at
 * once; the hardware prefetchers of small cores follow only a few). */
#define PF_BYTES 1024

INLINE float h2f(pg_half h) {
    float16x4_t v = vreinterpret_f16_u16(vdup_n_u16(h));
    return vgetq_lane_f32(vcvt_f32_f16(v), 0);
}

/* ---------------------------------------------------------------------- */
/* Lanes of a tile: output o = i + R*j is lane o % 4 of vector o / 4       */
/* ---------------------------------------------------------------------- */

/* Lane l = f[l % R] (R = 1, 2, 4; the same for every vector of the tile). */
INLINE float32x4_t lanes_by_row(const int R, const float *f) {
    if (R == 4) return vld1q_f32(f);
    if (R == 2) return vcombine_f32(vld1_f32(f), vld1_f32(f));
    return vdupq_n_f32(f[0]);
}

/* Lane l of vector v = t[(4v + l) / R]: a per-token value over its R lanes. */
INLINE float32x4_t lanes_by_token(const int R, const float *t, int v) {
    if (R == 4) return vdupq_n_f32(t[v]);
    if (R == 2) return vcombine_f32(vdup_n_f32(t[2 * v]), vdup_n_f32(t[2 * v + 1]));
    return vld1q_f32(t + 4 * v);
}

/* [sum p[0], sum p[1], sum p[2], sum p[3]] */
INLINE int32x4_t reduce4(const int32x4_t *p) {
    return vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3]));
}

/* y[j * ldy + i] = output i + R*j, for the nr x nc outputs that exist */
INLINE void store_lanes(const int R, const int C, const float32x4_t *acc, float *y, int64_t ldy, int nr, int nc) {
    float out[8];   /* (R * C) */
    UNROLL for (int v = 0; v < R * C / 4; v++) vst1q_f32(out + 4 * v, acc[v]);
    for (int j = 0; j < C && j < nc; j++)
        for (int i = 0; i < R && i < nr; i++) y[j * ldy + i] = out[i + R * j];
}

/* ---------------------------------------------------------------------- */
/* 32-blocks                                                              */
/* ---------------------------------------------------------------------- */

INLINE size_t a_block_bytes(const int T) {
    switch (T) {
    case PG_TYPE_Q4_0: return sizeof(block_q4_0);
    case PG_TYPE_Q4_1: return sizeof(block_q4_1);
    case PG_TYPE_Q5_0: return sizeof(block_q5_0);
    case PG_TYPE_Q5_1: return sizeof(block_q5_1);
    default: return sizeof(block_q8_0);
    }
}

/* 5th bits: 0x10 in byte l (of 16) where bit l of `bits` is set */
INLINE uint8x16_t bits16(uint32_t bits) {
    const uint8x16_t sel = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint8x16_t v = vcombine_u8(vdup_n_u8((uint8_t)bits), vdup_n_u8((uint8_t)(bits >> 8)));
    return vandq_u8(vtstq_u8(v, sel), vdupq_n_u8(0x10));
}

/* The signed weights of one block (w0: values 0..15, w1: 16..31; |w| <= 31
 * except Q8_0), its scale d and (Q4_1, Q5_1) minimum m. */
INLINE void a_unpack(const int T, const uint8_t *blk, int8x16_t *w0, int8x16_t *w1, float *d, float *m) {
    if (T == PG_TYPE_Q8_0) {
        const block_q8_0 *x = (const block_q8_0 *)blk;
        *w0 = vld1q_s8(x->qs);
        *w1 = vld1q_s8(x->qs + 16);
        *d = h2f(x->d);
        return;
    }
    const uint8_t *qs;
    uint32_t qh = 0;
    int off = 0;
    if (T == PG_TYPE_Q4_0) {
        const block_q4_0 *x = (const block_q4_0 *)blk;
        qs = x->qs, *d = h2f(x->d), off = 8;
    } else if (T == PG_TYPE_Q4_1) {
        const block_q4_1 *x = (const block_q4_1 *)blk;
        qs = x->qs, *d = h2f(x->d), *m = h2f(x->m);
    } else if (T == PG_TYPE_Q5_0) {
        const block_q5_0 *x = (const block_q5_0 *)blk;
        qs = x->qs, *d = h2f(x->d), off = 16;
        memcpy(&qh, x->qh, 4);
    } else {
        const block_q5_1 *x = (const block_q5_1 *)blk;
        qs = x->qs, *d = h2f(x->d), *m = h2f(x->m);
        memcpy(&qh, x->qh, 4);
    }
    uint8x16_t q = vld1q_u8(qs);
    uint8x16_t lo = vandq_u8(q, vdupq_n_u8(0x0F)), hi = vshrq_n_u8(q, 4);
    if (T == PG_TYPE_Q5_0 || T == PG_TYPE_Q5_1) {
        lo = vorrq_u8(lo, bits16(qh));
        hi = vorrq_u8(hi, bits16(qh >> 16));
    }
    *w0 = vsubq_s8(vreinterpretq_s8_u8(lo), vdupq_n_s8((int8_t)off));
    *w1 = vsubq_s8(vreinterpretq_s8_u8(hi), vdupq_n_s8((int8_t)off));
}

/* ---------------------------------------------------------------------- */
/* K-quants                                                               */
/* ---------------------------------------------------------------------- */

INLINE size_t k_block_bytes(const int T) {
    switch (T) {
    case PG_TYPE_Q2_K: return sizeof(block_q2_K);
    case PG_TYPE_Q3_K: return sizeof(block_q3_K);
    case PG_TYPE_Q4_K: return sizeof(block_q4_K);
    case PG_TYPE_Q5_K: return sizeof(block_q5_K);
    default: return sizeof(block_q6_K);
    }
}

INLINE void k_scales(const int T, const uint8_t *blk, pg_kscales *k) {
    if (T == PG_TYPE_Q2_K) pg_kscales_q2k((const block_q2_K *)blk, k);
    else if (T == PG_TYPE_Q3_K) pg_kscales_q3k((const block_q3_K *)blk, k);
    else if (T == PG_TYPE_Q6_K) pg_kscales_q6k((const block_q6_K *)blk, k);
    else {   /* Q5_K starts with the same d, dmin, scales as Q4_K */
        const block_q4_K *b = (const block_q4_K *)blk;
        pg_kscales_q4k(b->scales, b->d, b->dmin, k);
    }
}

/* The unsigned values (< 64) of group 8h + g (elements 128h + 16g .. +15,
 * g < 8) of a block, as bytes; the layouts of kernels_ref.c's unpack_q*k.
 * With g a constant (unrolled loops) the nibble and shift choices fold. */
INLINE int8x16_t k_group(const int T, const uint8_t *blk, int h, const int g) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m3 = vdupq_n_u8(3), m1 = vdupq_n_u8(1);
    const int half = g & 1, j = g >> 1;   /* 16 values at 32j + 16 half of the 128 */
    uint8x16_t v;
    if (T == PG_TYPE_Q2_K || T == PG_TYPE_Q3_K) {
        /* element 128h + 32j + l: (qs[32h + l] >> 2j) & 3, Q3_K: | (hmask[l] >> (4h + j) & 1) << 2 */
        const uint8_t *qs = T == PG_TYPE_Q2_K ? ((const block_q2_K *)blk)->qs : ((const block_q3_K *)blk)->qs;
        v = vandq_u8(vshlq_u8(vld1q_u8(qs + 32 * h + 16 * half), vdupq_n_s8((int8_t)(-2 * j))), m3);
        if (T == PG_TYPE_Q3_K) {
            uint8x16_t hm = vld1q_u8(((const block_q3_K *)blk)->hmask + 16 * half);
            uint8x16_t hb = vandq_u8(vshlq_u8(hm, vdupq_n_s8((int8_t)(-(4 * h + j)))), m1);
            v = vorrq_u8(v, vshlq_n_u8(hb, 2));
        }
    } else if (T == PG_TYPE_Q4_K || T == PG_TYPE_Q5_K) {
        /* sub-block s = 4h + j (32 values): nibble j & 1 of qs[32 (s/2) + l], Q5_K: | (qh[l] >> s & 1) << 4 */
        const int s = 4 * h + j;
        const uint8_t *qs = T == PG_TYPE_Q4_K ? ((const block_q4_K *)blk)->qs : ((const block_q5_K *)blk)->qs;
        uint8x16_t q = vld1q_u8(qs + 32 * (s >> 1) + 16 * half);
        v = j & 1 ? vshrq_n_u8(q, 4) : vandq_u8(q, m4);
        if (T == PG_TYPE_Q5_K) {
            uint8x16_t hb = vld1q_u8(((const block_q5_K *)blk)->qh + 16 * half);
            hb = vandq_u8(vshlq_u8(hb, vdupq_n_s8((int8_t)-s)), m1);
            v = vorrq_u8(v, vshlq_n_u8(hb, 4));
        }
    } else {
        /* Q6_K, element 128h + 32j + l: nibble j >> 1 of ql[64h + 32 (j & 1) + l]
         * | ((qh[32h + l] >> 2j) & 3) << 4 */
        const block_q6_K *b = (const block_q6_K *)blk;
        uint8x16_t l = vld1q_u8(b->ql + 64 * h + 32 * (j & 1) + 16 * half);
        v = j >> 1 ? vshrq_n_u8(l, 4) : vandq_u8(l, m4);
        uint8x16_t qh = vld1q_u8(b->qh + 32 * h + 16 * half);
        qh = vandq_u8(vshlq_u8(qh, vdupq_n_s8((int8_t)(-2 * j))), m3);
        v = vorrq_u8(v, vshlq_n_u8(qh, 4));
    }
    return vreinterpretq_s8_u8(v);
}

#endif
