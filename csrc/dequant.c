/* dequant.c -- exact scalar dequantization of every supported type.
 *
 * The reference for the other kernels: results equal gguf-py's
 * gguf.quants.dequantize (and ggml's dequantize_row_*) bit for bit in
 * float32, so each product is formed in the same order:
 *   Q4_0/Q5_0/Q8_0   d * q
 *   Q4_1/Q5_1        d * q + m
 *   Q2_K             (d * sc) * q - (dmin * m)
 *   Q3_K/Q6_K        (d * sc) * q
 *   Q4_K/Q5_K        (d * sc) * q - (dmin * m)
 * with every fp16 widened exactly and no fused multiply-add (each operation
 * rounds to float32 as numpy's does).
 * All row functions: src (n / block blocks) -> dst (n floats). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")   /* d*q + m must round twice */
#endif

#include "quants.h"
#include "types.h"

/* ---- float types ---- */

static void dequant_f32(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

/* Subnormals, infinities and NaN payloads are kept (as numpy does). */
static void dequant_f16(const void *src, float *dst, int64_t n) {
    const pg_half *h = (const pg_half *)src;
    for (int64_t i = 0; i < n; i++) dst[i] = pg_half_to_f32(h[i]);
}

static void dequant_bf16(const void *src, float *dst, int64_t n) {
    const pg_bf16 *h = (const pg_bf16 *)src;
    for (int64_t i = 0; i < n; i++) dst[i] = pg_bf16_to_f32(h[i]);
}

/* ---- 32-element blocks: qs byte j holds element j (low nibble) and j+16 ---- */

static void dequant_q4_0(const void *src, float *dst, int64_t n) {
    const block_q4_0 *x = (const block_q4_0 *)src;
    for (int64_t i = 0; i < n / QK4_0; i++, dst += QK4_0) {
        const float d = pg_half_to_f32(x[i].d);
        for (int j = 0; j < 16; ++j) {
            dst[j] = d * (float)((x[i].qs[j] & 0x0F) - 8);
            dst[j + 16] = d * (float)((x[i].qs[j] >> 4) - 8);
        }
    }
}

static void dequant_q4_1(const void *src, float *dst, int64_t n) {
    const block_q4_1 *x = (const block_q4_1 *)src;
    for (int64_t i = 0; i < n / QK4_1; i++, dst += QK4_1) {
        const float d = pg_half_to_f32(x[i].d);
        const float m = pg_half_to_f32(x[i].m);
        for (int j = 0; j < 16; ++j) {
            dst[j] = d * (float)(x[i].qs[j] & 0x0F) + m;
            dst[j + 16] = d * (float)(x[i].qs[j] >> 4) + m;
        }
    }
}

/* The fifth bit of element j is bit j of the little-endian 32-bit qh. */
static inline uint32_t load_qh(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

static void dequant_q5_0(const void *src, float *dst, int64_t n) {
    const block_q5_0 *x = (const block_q5_0 *)src;
    for (int64_t i = 0; i < n / QK5_0; i++, dst += QK5_0) {
        const float d = pg_half_to_f32(x[i].d);
        const uint32_t qh = load_qh(x[i].qh);
        for (int j = 0; j < 16; ++j) {
            int q0 = (x[i].qs[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
            int q1 = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = d * (float)(q0 - 16);
            dst[j + 16] = d * (float)(q1 - 16);
        }
    }
}

static void dequant_q5_1(const void *src, float *dst, int64_t n) {
    const block_q5_1 *x = (const block_q5_1 *)src;
    for (int64_t i = 0; i < n / QK5_1; i++, dst += QK5_1) {
        const float d = pg_half_to_f32(x[i].d);
        const float m = pg_half_to_f32(x[i].m);
        const uint32_t qh = load_qh(x[i].qh);
        for (int j = 0; j < 16; ++j) {
            int q0 = (x[i].qs[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
            int q1 = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = d * (float)q0 + m;
            dst[j + 16] = d * (float)q1 + m;
        }
    }
}

static void dequant_q8_0(const void *src, float *dst, int64_t n) {
    const block_q8_0 *x = (const block_q8_0 *)src;
    for (int64_t i = 0; i < n / QK8_0; i++, dst += QK8_0) {
        const float d = pg_half_to_f32(x[i].d);
        for (int j = 0; j < QK8_0; ++j) dst[j] = d * (float)x[i].qs[j];
    }
}

/* ---- K-quants (256-element super-blocks) ---- */

/* Q2_K: per 128 values, qs byte l (of 32) holds elements l, l+32, l+64, l+96
 * in bit pairs 0-1 .. 6-7; scales[k] = scale (low nibble) | min (high) of
 * the k-th 16 values. */
static void dequant_q2_K(const void *src, float *dst, int64_t n) {
    const block_q2_K *x = (const block_q2_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = pg_half_to_f32(x[i].d);
        const float dmin = pg_half_to_f32(x[i].dmin);
        for (int k = 0; k < QK_K / 16; ++k) {
            const uint8_t sc = x[i].scales[k];
            const float dl = d * (float)(sc & 0xF);
            const float ml = dmin * (float)(sc >> 4);
            const uint8_t *q = x[i].qs + 32 * (k / 8) + 16 * (k % 2);
            const int shift = 2 * ((k % 8) / 2);
            for (int l = 0; l < 16; ++l) *dst++ = dl * (float)((q[l] >> shift) & 3) - ml;
        }
    }
}

/* Q3_K scales: 16 6-bit values (stored + 32): low nibbles in bytes 0-7
 * (scale k in byte k%8, high nibble for k >= 8), top 2 bits in byte 8 + k%4
 * at bit 2*(k/4). */
static inline int q3_scale(const uint8_t s[12], int k) {
    int lo = (s[k % 8] >> (4 * (k / 8))) & 0xF;
    int hi = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* Q3_K: low 2 bits as in Q2_K; element e has its third bit in hmask[e % 32]
 * bit e / 32, and a clear bit means "subtract 4". */
static void dequant_q3_K(const void *src, float *dst, int64_t n) {
    const block_q3_K *x = (const block_q3_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = pg_half_to_f32(x[i].d);
        for (int k = 0; k < QK_K / 16; ++k) {
            const float dl = d * (float)q3_scale(x[i].scales, k);
            const uint8_t *q = x[i].qs + 32 * (k / 8) + 16 * (k % 2);
            const int shift = 2 * ((k % 8) / 2);
            for (int l = 0; l < 16; ++l) {
                const int e = 16 * k + l;
                const int low = (q[l] >> shift) & 3;
                const int sub = (x[i].hmask[e % 32] >> (e / 32)) & 1 ? 0 : 4;
                *dst++ = dl * (float)(low - sub);
            }
        }
    }
}

/* Q4_K/Q5_K: 6-bit scale and min of sub-block j (of 8) from the 12-byte
 * packing (see quantize_k.c). */
static inline void k4_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K: per 64 values, qs byte l (of 32) holds element l (low nibble) and l+32. */
static void dequant_q4_K(const void *src, float *dst, int64_t n) {
    const block_q4_K *x = (const block_q4_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = pg_half_to_f32(x[i].d);
        const float dmin = pg_half_to_f32(x[i].dmin);
        for (int j = 0; j < QK_K / 32; ++j) {
            int sc, m;
            k4_scale_min(x[i].scales, j, &sc, &m);
            const float dl = d * (float)sc;
            const float ml = dmin * (float)m;
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < 32; ++l) *dst++ = dl * (float)((q[l] >> shift) & 0xF) - ml;
        }
    }
}

/* Q5_K: as Q4_K plus the fifth bit of sub-block j in bit j of qh[l]. */
static void dequant_q5_K(const void *src, float *dst, int64_t n) {
    const block_q5_K *x = (const block_q5_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = pg_half_to_f32(x[i].d);
        const float dmin = pg_half_to_f32(x[i].dmin);
        for (int j = 0; j < QK_K / 32; ++j) {
            int sc, m;
            k4_scale_min(x[i].scales, j, &sc, &m);
            const float dl = d * (float)sc;
            const float ml = dmin * (float)m;
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < 32; ++l) {
                const int v = ((q[l] >> shift) & 0xF) | ((x[i].qh[l] >> j) & 1) << 4;
                *dst++ = dl * (float)v - ml;
            }
        }
    }
}

/* Q6_K: per 128 values (ql 64 bytes, qh 32 bytes), element l + 32*g (g < 4)
 * has its low nibble in ql[l + 32*(g%2)] (high nibble for g >= 2) and its top
 * 2 bits in qh[l] bits 2g..2g+1; int8 scale per 16 values. */
static void dequant_q6_K(const void *src, float *dst, int64_t n) {
    const block_q6_K *x = (const block_q6_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = pg_half_to_f32(x[i].d);
        for (int half = 0; half < 2; ++half) {
            const uint8_t *ql = x[i].ql + 64 * half;
            const uint8_t *qh = x[i].qh + 32 * half;
            for (int g = 0; g < 4; ++g) {
                for (int l = 0; l < 32; ++l) {
                    const int k = 8 * half + 2 * g + l / 16;   /* scale index */
                    const int lo = (ql[l + 32 * (g % 2)] >> (4 * (g / 2))) & 0xF;
                    const int hi = (qh[l] >> (2 * g)) & 3;
                    const float dl = d * (float)x[i].scales[k];
                    *dst++ = dl * (float)((lo | hi << 4) - 32);
                }
            }
        }
    }
}

pg_dequant_row_fn pg_dequant_fn(int type) {
    switch (type) {
    case PG_TYPE_F32: return dequant_f32;
    case PG_TYPE_F16: return dequant_f16;
    case PG_TYPE_BF16: return dequant_bf16;
    case PG_TYPE_Q4_0: return dequant_q4_0;
    case PG_TYPE_Q4_1: return dequant_q4_1;
    case PG_TYPE_Q5_0: return dequant_q5_0;
    case PG_TYPE_Q5_1: return dequant_q5_1;
    case PG_TYPE_Q8_0: return dequant_q8_0;
    case PG_TYPE_Q2_K: return dequant_q2_K;
    case PG_TYPE_Q3_K: return dequant_q3_K;
    case PG_TYPE_Q4_K: return dequant_q4_K;
    case PG_TYPE_Q5_K: return dequant_q5_K;
    case PG_TYPE_Q6_K: return dequant_q6_K;
    default: return NULL;
    }
}
