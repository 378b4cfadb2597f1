/* kernels_neon.c -- arm64 NEON tier (dot form), with the SDOT instruction
 * where the CPU has the dotprod extension.
 *
 * Weights are unpacked per block into signed bytes (the offset types minus
 * their offset, K-quants as their unsigned values < 64), multiplied with the
 * int8 activations (SDOT, or SMULL + SADALP without it), and scaled with the
 * same formulas as the scalar reference: per 32-block d*dx*isum (+ m*s), per
 * K block dx*(d*I - dmin*M) with I = sum sc*dot and M = sum mn*bsums exact.
 * Each weight block is unpacked once for up to N_RN tokens.  The activation
 * conversion stays the scalar reference (bit-identical by construction).
 * The SDOT instantiation comes from kernels_neon_q.h under a dotprod target. */
#include "kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#define INLINE static inline __attribute__((always_inline))
#define N_RN 4

INLINE float h2f(pg_half h) {
    float16x4_t v = vreinterpret_f16_u16(vdup_n_u16(h));
    return vgetq_lane_f32(vcvt_f32_f16(v), 0);
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

/* Block values as signed bytes (w0: values 0..15, w1: 16..31), scale, minimum. */
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

/* All 256 values of a block (unsigned, < 64) as 16 vectors of 16, and its scales. */
INLINE void k_unpack(const int T, const uint8_t *blk, uint8x16_t u[16], pg_kscales *k) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m3 = vdupq_n_u8(3), m1 = vdupq_n_u8(1);
    if (T == PG_TYPE_Q2_K || T == PG_TYPE_Q3_K) {
        /* value 128h + 32j + l = (qs[32h + l] >> 2j) & 3, Q3_K: | hmask bit (4h+j) << 2 */
        const uint8_t *qs = T == PG_TYPE_Q2_K ? ((const block_q2_K *)blk)->qs : ((const block_q3_K *)blk)->qs;
        for (int h = 0; h < 2; h++)
            for (int half = 0; half < 2; half++) {
                uint8x16_t q = vld1q_u8(qs + 32 * h + 16 * half);
                uint8x16_t hm = T == PG_TYPE_Q3_K ? vld1q_u8(((const block_q3_K *)blk)->hmask + 16 * half) : m1;
                for (int j = 0; j < 4; j++) {
                    int8x16_t sh = vdupq_n_s8((int8_t)(-2 * j));
                    uint8x16_t v = vandq_u8(vshlq_u8(q, sh), m3);
                    if (T == PG_TYPE_Q3_K) {
                        uint8x16_t hb = vandq_u8(vshlq_u8(hm, vdupq_n_s8((int8_t)(-(4 * h + j)))), m1);
                        v = vorrq_u8(v, vshlq_n_u8(hb, 2));
                    }
                    u[8 * h + 2 * j + half] = v;
                }
            }
        if (T == PG_TYPE_Q2_K) pg_kscales_q2k((const block_q2_K *)blk, k);
        else pg_kscales_q3k((const block_q3_K *)blk, k);
        return;
    }
    if (T == PG_TYPE_Q4_K || T == PG_TYPE_Q5_K) {
        /* sub-block s (32 values): nibbles (s odd: high) of qs[32 (s/2) ..], Q5_K: | bit s of qh[l] << 4 */
        const uint8_t *qs = T == PG_TYPE_Q4_K ? ((const block_q4_K *)blk)->qs : ((const block_q5_K *)blk)->qs;
        for (int s = 0; s < 8; s++)
            for (int half = 0; half < 2; half++) {
                uint8x16_t q = vld1q_u8(qs + 32 * (s / 2) + 16 * half);
                uint8x16_t v = s % 2 ? vshrq_n_u8(q, 4) : vandq_u8(q, m4);
                if (T == PG_TYPE_Q5_K) {
                    uint8x16_t hb = vld1q_u8(((const block_q5_K *)blk)->qh + 16 * half);
                    hb = vandq_u8(vshlq_u8(hb, vdupq_n_s8((int8_t)-s)), m1);
                    v = vorrq_u8(v, vshlq_n_u8(hb, 4));
                }
                u[2 * s + half] = v;
            }
        const block_q4_K *b = (const block_q4_K *)blk;   /* Q5_K starts with the same d, dmin, scales */
        pg_kscales_q4k(b->scales, b->d, b->dmin, k);
        return;
    }
    /* Q6_K: value 128h + 32qd + l: nibble (qd >> 1) of ql[64h + 32 (qd & 1) + l], | ((qh[32h + l] >> 2qd) & 3) << 4 */
    const block_q6_K *b = (const block_q6_K *)blk;
    for (int h = 0; h < 2; h++)
        for (int qd = 0; qd < 4; qd++)
            for (int half = 0; half < 2; half++) {
                uint8x16_t l = vld1q_u8(b->ql + 64 * h + 32 * (qd & 1) + 16 * half);
                uint8x16_t v = qd >> 1 ? vshrq_n_u8(l, 4) : vandq_u8(l, m4);
                uint8x16_t qh = vld1q_u8(b->qh + 32 * h + 16 * half);
                qh = vandq_u8(vshlq_u8(qh, vdupq_n_s8((int8_t)(-2 * qd))), m3);
                u[8 * h + 2 * qd + half] = vorrq_u8(v, vshlq_n_u8(qh, 4));
            }
    pg_kscales_q6k(b, k);
}

/* The quantized matmuls, instantiated without and with SDOT (the latter
 * compiled for the dotprod extension; no other function needs it). */
#define GEMM_ARGS int64_t n, float *y, int64_t ldy, const void *w, size_t ldw, int nr, \
                  const void *x, size_t ldx, int nc, void *work
#define NQ_DP 0
#define NQ(name) name
#include "kernels_neon_q.h"
#undef NQ_DP
#undef NQ

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("dotprod"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif
#define NQ_DP 1
#define NQ(name) name##_dp
#include "kernels_neon_q.h"
#undef NQ_DP
#undef NQ
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

/* ---------------------------------------------------------------------- */
/* Float weights and vector helpers                                       */
/* ---------------------------------------------------------------------- */

enum { F_F32, F_F16, F_BF16 };

INLINE float32x4_t f16x4(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
INLINE float32x4_t bf16x4(const uint16_t *p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }

INLINE float32x4_t f_load(const int T, const uint8_t *row, int64_t k) {
    if (T == F_F32) return vld1q_f32((const float *)row + k);
    return T == F_F16 ? f16x4((const uint16_t *)row + k) : bf16x4((const uint16_t *)row + k);
}
INLINE float f_one(const int T, const uint8_t *row, int64_t k) {
    if (T == F_F32) return ((const float *)row)[k];
    uint16_t h = ((const uint16_t *)row)[k];
    return T == F_F16 ? h2f(h) : pg_bf16_to_f32(h);
}

/* weights of type T, activations f32 (F32/F16) or bf16 (BF16) */
INLINE void f_gemm_t(const int T, int64_t n, float *y, int64_t ldy, const uint8_t *w, size_t ldw, int nr,
                     const uint8_t *x, size_t ldx, int nc) {
    const int TX = T == F_BF16 ? F_BF16 : F_F32;
    for (int r = 0; r < nr; r++) {
        const uint8_t *row = w + (size_t)r * ldw;
        for (int c0 = 0; c0 < nc; c0 += N_RN) {
            int rn = PG_MIN(N_RN, nc - c0);
            float32x4_t acc[N_RN];
            for (int j = 0; j < N_RN; j++) acc[j] = vdupq_n_f32(0.0f);
            int64_t k = 0;
            for (; k + 4 <= n; k += 4) {
                float32x4_t a = f_load(T, row, k);
                for (int j = 0; j < rn; j++) acc[j] = vfmaq_f32(acc[j], a, f_load(TX, x + (size_t)(c0 + j) * ldx, k));
            }
            for (int j = 0; j < rn; j++) {
                float s = vaddvq_f32(acc[j]);
                for (int64_t t = k; t < n; t++) s += f_one(T, row, t) * f_one(TX, x + (size_t)(c0 + j) * ldx, t);
                y[(c0 + j) * ldy + r] = s;
            }
        }
    }
}

static void gemm_f32(GEMM_ARGS) { (void)work; f_gemm_t(F_F32, n, y, ldy, w, ldw, nr, x, ldx, nc); }
static void gemm_f16(GEMM_ARGS) { (void)work; f_gemm_t(F_F16, n, y, ldy, w, ldw, nr, x, ldx, nc); }
static void gemm_bf16(GEMM_ARGS) { (void)work; f_gemm_t(F_BF16, n, y, ldy, w, ldw, nr, x, ldx, nc); }

static float v_dot_f32(int n, const float *x, const float *y) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

static float v_sum_sq_f32(int n, const float *x) { return v_dot_f32(n, x, x); }

static float v_dot_f32_f16(int n, const float *x, const uint16_t *y) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), f16x4(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), f16x4(y + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++) s += x[i] * h2f(y[i]);
    return s;
}

static void v_axpy_f32(int n, float a, const float *x, float *y) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
    for (; i < n; i++) y[i] += a * x[i];
}

static void v_axpy_f16(int n, float a, const uint16_t *x, float *y) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), f16x4(x + i), a));
    for (; i < n; i++) y[i] += a * h2f(x[i]);
}

static void v_f32_to_f16_row(int n, const float *x, uint16_t *y) {
    int i = 0;   /* FCVTN rounds to nearest even in the default FPCR mode */
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) y[i] = pg_f32_to_half(x[i]);
}

static void v_f16_to_f32_row(int n, const uint16_t *x, float *y) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, f16x4(x + i));
    for (; i < n; i++) y[i] = h2f(x[i]);
}

int pg_kernels_fill_neon(pg_kernels *k, int dotprod) {
    k->name = dotprod ? "neon-dotprod" : "neon";
#define SET(type, f) k->gemm[type] = (pg_gemm_kernel){.fn = dotprod ? f##_dp : f, .mr = 1, .nr = N_RN}
    SET(PG_TYPE_Q4_0, gemm_q4_0);
    SET(PG_TYPE_Q4_1, gemm_q4_1);
    SET(PG_TYPE_Q5_0, gemm_q5_0);
    SET(PG_TYPE_Q5_1, gemm_q5_1);
    SET(PG_TYPE_Q8_0, gemm_q8_0);
    SET(PG_TYPE_Q2_K, gemm_q2k);
    SET(PG_TYPE_Q3_K, gemm_q3k);
    SET(PG_TYPE_Q4_K, gemm_q4k);
    SET(PG_TYPE_Q5_K, gemm_q5k);
    SET(PG_TYPE_Q6_K, gemm_q6k);
#undef SET
    k->gemm[PG_TYPE_F32] = (pg_gemm_kernel){.fn = gemm_f32, .mr = 1, .nr = N_RN};
    k->gemm[PG_TYPE_F16] = (pg_gemm_kernel){.fn = gemm_f16, .mr = 1, .nr = N_RN};
    k->gemm[PG_TYPE_BF16] = (pg_gemm_kernel){.fn = gemm_bf16, .mr = 1, .nr = N_RN};
    k->dot_f32 = v_dot_f32;
    k->sum_sq_f32 = v_sum_sq_f32;
    k->dot_f32_f16 = v_dot_f32_f16;
    k->axpy_f32 = v_axpy_f32;
    k->axpy_f16 = v_axpy_f16;
    k->f32_to_f16_row = v_f32_to_f16_row;
    k->f16_to_f32_row = v_f16_to_f32_row;
    return 1;
}

#else /* not arm64 */
int pg_kernels_fill_neon(pg_kernels *k, int dotprod) {
    (void)k;
    (void)dotprod;
    return 0;
}
#endif
