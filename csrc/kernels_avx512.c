/* kernels_avx512.c -- AVX-512 tier: float-weight matmul (F32, F16, BF16 with
 * vdpbf16ps where present), activation conversion and the vector helpers.
 * The quantized matmuls are in kernels_avx512_quant.c.
 *
 * Compiled for AVX-512 F/BW/VL/DQ through the target pragma below (no
 * per-file compiler flags); the BF16 dot product is inline asm in the one
 * kernel that the fill function installs only when the CPU has AVX512_BF16. */
#include <string.h>

#include "kernels.h"

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

/* acc += a0*b0 + a1*b1 per lane, a and b 32 bf16 each (vdpbf16ps) */
INLINE __m512 bf16_dp(__m512 acc, __m512i a, __m512i b) {
    __asm__("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
}

INLINE __mmask16 tail16(int64_t r) { return r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << r) - 1); }
INLINE __mmask32 tail32(int64_t r) { return r >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << r) - 1); }

/* ---------------------------------------------------------------------- */
/* Float-weight matmul: dot-product tiles of RM rows x RN columns         */
/* ---------------------------------------------------------------------- */

enum { F_F32, F_F16, F_BF16, F_BF16DP };
#define F_RM 4
#define F_RN 4

INLINE __m512 bf16x16(__m256i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16)); }

/* 16 weights from element k of a row (masked) */
INLINE __m512 f_loadw(const int T, const uint8_t *row, int64_t k, __mmask16 m) {
    if (T == F_F32) return _mm512_maskz_loadu_ps(m, (const float *)row + k);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)row + k);
    return T == F_F16 ? _mm512_cvtph_ps(h) : bf16x16(h);
}
/* 16 activations: f32 rows for F32/F16 weights, bf16 rows for BF16 */
INLINE __m512 f_loadx(const int T, const uint8_t *row, int64_t k, __mmask16 m) {
    if (T == F_BF16) return bf16x16(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + k));
    return _mm512_maskz_loadu_ps(m, (const float *)row + k);
}

INLINE void f_step(const int RM, const int RN, const int T, __m512 acc[F_RM][F_RN], int64_t k, __mmask32 m,
                   const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx) {
    if (T == F_BF16DP) {        /* 32 bf16 pairs per step */
        __m512i a[F_RM];
        UNROLL for (int i = 0; i < RM; i++) a[i] = _mm512_maskz_loadu_epi16(m, (const uint16_t *)(w + i * ldw) + k);
        UNROLL for (int j = 0; j < RN; j++) {
            __m512i b = _mm512_maskz_loadu_epi16(m, (const uint16_t *)(x + j * ldx) + k);
            UNROLL for (int i = 0; i < RM; i++) acc[i][j] = bf16_dp(acc[i][j], a[i], b);
        }
        return;
    }
    __m512 a[F_RM];
    UNROLL for (int i = 0; i < RM; i++) a[i] = f_loadw(T, w + i * ldw, k, (__mmask16)m);
    UNROLL for (int j = 0; j < RN; j++) {
        __m512 b = f_loadx(T, x + j * ldx, k, (__mmask16)m);
        UNROLL for (int i = 0; i < RM; i++) acc[i][j] = _mm512_fmadd_ps(a[i], b, acc[i][j]);
    }
}

/* Values k0 .. k1-1 of the dot products; y = partial sums (k0 == 0) or y + them. */
INLINE void f_tile(const int RM, const int RN, const int T, int64_t k0, int64_t k1, const uint8_t *w, size_t ldw,
                   const uint8_t *x, size_t ldx, float *y, int64_t ldy) {
    const int64_t step = T == F_BF16DP ? 32 : 16;
    __m512 acc[F_RM][F_RN];
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
    int64_t k = k0;
    for (; k + step <= k1; k += step) f_step(RM, RN, T, acc, k, 0xFFFFFFFFu, w, ldw, x, ldx);
    if (k < k1) f_step(RM, RN, T, acc, k, step == 32 ? tail32(k1 - k) : tail16(k1 - k), w, ldw, x, ldx);
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++)
        y[j * ldy + i] = (k0 ? y[j * ldy + i] : 0.0f) + _mm512_reduce_add_ps(acc[i][j]);
}

#include "kernels_float_walk.h"

F_GEMM(gemm_f32, F_F32)
F_GEMM(gemm_f16, F_F16)
F_GEMM(gemm_bf16, F_BF16)
F_GEMM(gemm_bf16_dp, F_BF16DP)

/* ---------------------------------------------------------------------- */
/* Activation conversion (the same values as kernels_ref.c)              */
/* ---------------------------------------------------------------------- */

/* 16 floats -> 16 int8 of round-half-even(v * id); returns the int32 values */
INLINE __m512i q8x16(__m512 v, __m512 id, int8_t *out) {
    __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(v, id));
    _mm_storeu_si128((__m128i *)out, _mm512_cvtsepi32_epi8(q));
    return q;
}

static void act_q8_32(int64_t n, const float *x, void *row) {
    int8_t *qs = row;                                  /* (n) */
    float *d = (float *)pg_act_q8_d(row, n);           /* (n/32) */
    float *s = d + n / 32;                             /* (n/32) */
    int16_t *qsum = (int16_t *)(s + n / 32);           /* (n/32) */
    for (int64_t b = 0; b < n / 32; b++) {
        __m512 v0 = _mm512_loadu_ps(x + 32 * b), v1 = _mm512_loadu_ps(x + 32 * b + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        /* as ggml: id = 127/amax, the dot products use the F16-rounded scale */
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i q = _mm512_add_epi32(q8x16(v0, vid, qs + 32 * b), q8x16(v1, vid, qs + 32 * b + 16));
        int sum = _mm512_reduce_add_epi32(q);
        d[b] = pg_act_round_scale(amax / 127.0f);
        s[b] = d[b] * (float)sum;
        qsum[b] = (int16_t)sum;
    }
}

static void act_q8_256(int64_t n, const float *x, void *row) {
    int8_t *qs = row;                                  /* (n) */
    float *d = (float *)pg_act_q8_d(row, n);           /* (n/256) */
    int16_t *bs = (int16_t *)pg_act_q8_bsums(row, n);  /* (n/16) */
    float *dbs = (float *)pg_act_q8_dbs(row, n);       /* (n/16) */
    for (int64_t b = 0; b < n / 256; b++) {
        const float *xb = x + 256 * b;
        __m512 m = _mm512_setzero_ps();
        for (int g = 0; g < 16; g++) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(xb + 16 * g)));
        float amax = _mm512_reduce_max_ps(m);
        float id = amax != 0.0f ? 127.0f / amax : 0.0f, db = amax != 0.0f ? 1.0f / id : 0.0f;  /* as ggml's Q8_K */
        __m512 vid = _mm512_set1_ps(id);
        for (int g = 0; g < 16; g++) {
            int sum = _mm512_reduce_add_epi32(q8x16(_mm512_loadu_ps(xb + 16 * g), vid, qs + 256 * b + 16 * g));
            bs[16 * b + g] = (int16_t)sum;
            dbs[16 * b + g] = db * (float)sum;
        }
        d[b] = db;
    }
}

static void act_bf16(int64_t n, const float *x, void *row) {
    uint16_t *y = row;                                 /* (n) */
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7FFF);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail16(n - i);
        __m512i u = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, x + i));
        __m512i hi = _mm512_srli_epi32(u, 16);
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(hi, one))), 16);
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)),
                                                _mm512_set1_epi32(0x7F800000));
        r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(64)));
        _mm256_mask_storeu_epi16(y + i, m, _mm512_cvtepi32_epi16(r));
    }
}

/* ---------------------------------------------------------------------- */
/* Vector helpers                                                         */
/* ---------------------------------------------------------------------- */

INLINE __m512 f16x16(const uint16_t *p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }

static float v_dot_f32(int n, const float *x, const float *y) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail16(n - i);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

static float v_sum_sq_f32(int n, const float *x) { return v_dot_f32(n, x, x); }

static float v_dot_f32_f16(int n, const float *x, const uint16_t *y) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), f16x16(y + i, 0xFFFF), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), f16x16(y + i + 16, 0xFFFF), a1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail16(n - i);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), f16x16(y + i, m), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

static void v_axpy_f32(int n, float a, const float *x, float *y) {
    __m512 va = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail16(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

static void v_axpy_f16(int n, float a, const uint16_t *x, float *y) {
    __m512 va = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail16(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, f16x16(x + i, m), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

/* Attention: up to 4 queries at once, each with v_dot_f32_f16's accumulators
 * and order (32 values a step in two zmm, masked tail, the same reduction). */
static void v_qk_f16(int hd, int nq, const float *q, const uint16_t *k, float *s) {
    for (int q0 = 0; q0 < nq; q0 += 4) {
        const int m = PG_MIN(4, nq - q0);
        const float *qq = q + (size_t)q0 * hd;
        __m512 a0[4], a1[4];
        for (int i = 0; i < 4; i++) a0[i] = a1[i] = _mm512_setzero_ps();
        int e = 0;
        for (; e + 32 <= hd; e += 32) {
            __m512 k0 = f16x16(k + e, 0xFFFF), k1 = f16x16(k + e + 16, 0xFFFF);
            UNROLL for (int i = 0; i < 4; i++) {
                if (i >= m) break;
                a0[i] = _mm512_fmadd_ps(_mm512_loadu_ps(qq + (size_t)i * hd + e), k0, a0[i]);
                a1[i] = _mm512_fmadd_ps(_mm512_loadu_ps(qq + (size_t)i * hd + e + 16), k1, a1[i]);
            }
        }
        for (; e < hd; e += 16) {
            __mmask16 t = tail16(hd - e);
            __m512 k0 = f16x16(k + e, t);
            for (int i = 0; i < m; i++)
                a0[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(t, qq + (size_t)i * hd + e), k0, a0[i]);
        }
        for (int i = 0; i < m; i++) s[q0 + i] = _mm512_reduce_add_ps(_mm512_add_ps(a0[i], a1[i]));
    }
}

static void v_qk_f32(int hd, int nq, const float *q, const float *k, float *s) {
    for (int i = 0; i < nq; i++) s[i] = v_dot_f32(hd, q + (size_t)i * hd, k);
}

/* out[i] = sum_j p[i][j] * v_j: 32 output elements (64 for nq <= 2) of up to 4
 * queries in registers across all keys (see kernels_avx2.c). */
#define AV_BODY(load16, CW)                                                                        \
    for (int q0 = 0; q0 < nq; q0 += 4) {                                                           \
        const int m = PG_MIN(4, nq - q0);                                                          \
        for (int e = 0; e < hd; e += CW) {                                                         \
            __m512 acc[4][CW / 16];                                                                \
            UNROLL for (int i = 0; i < 4; i++) UNROLL for (int c = 0; c < CW / 16; c++)             \
                acc[i][c] = _mm512_setzero_ps();                                                   \
            for (int j = 0, slot = first; j < nk; j++, slot = slot + 1 == nslots ? 0 : slot + 1) { \
                __m512 vv[CW / 16];                                                                \
                UNROLL for (int c = 0; c < CW / 16; c++) vv[c] = load16(v + (size_t)slot * hd + e + 16 * c); \
                UNROLL for (int i = 0; i < 4; i++) {                                               \
                    if (i >= m) break;                                                             \
                    __m512 a = _mm512_set1_ps(p[(size_t)(q0 + i) * ldp + j]);                      \
                    UNROLL for (int c = 0; c < CW / 16; c++) acc[i][c] = _mm512_fmadd_ps(a, vv[c], acc[i][c]); \
                }                                                                                  \
            }                                                                                      \
            for (int i = 0; i < m; i++)                                                            \
                UNROLL for (int c = 0; c < CW / 16; c++)                                           \
                    _mm512_storeu_ps(out + (size_t)(q0 + i) * hd + e + 16 * c, acc[i][c]);         \
        }                                                                                          \
    }

INLINE __m512 f16x16_full(const uint16_t *p) { return f16x16(p, 0xFFFF); }

static void v_av_f16(int hd, int nq, int nk, const float *p, int ldp, const uint16_t *v, int first, int nslots,
                     float *out) {
    if (hd % 64) {
        for (int i = 0; i < nq; i++) {
            memset(out + (size_t)i * hd, 0, sizeof(float) * (size_t)hd);
            for (int j = 0, slot = first; j < nk; j++, slot = slot + 1 == nslots ? 0 : slot + 1)
                v_axpy_f16(hd, p[(size_t)i * ldp + j], v + (size_t)slot * hd, out + (size_t)i * hd);
        }
        return;
    }
    if (nq <= 2) {
        AV_BODY(f16x16_full, 64)
    } else {
        AV_BODY(f16x16_full, 32)
    }
}

static void v_av_f32(int hd, int nq, int nk, const float *p, int ldp, const float *v, int first, int nslots,
                     float *out) {
    if (hd % 64) {
        for (int i = 0; i < nq; i++) {
            memset(out + (size_t)i * hd, 0, sizeof(float) * (size_t)hd);
            for (int j = 0, slot = first; j < nk; j++, slot = slot + 1 == nslots ? 0 : slot + 1)
                v_axpy_f32(hd, p[(size_t)i * ldp + j], v + (size_t)slot * hd, out + (size_t)i * hd);
        }
        return;
    }
    if (nq <= 2) {
        AV_BODY(_mm512_loadu_ps, 64)
    } else {
        AV_BODY(_mm512_loadu_ps, 32)
    }
}

static void v_f32_to_f16_row(int n, const float *x, uint16_t *y) {
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail16(n - i);
        __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_mask_storeu_epi16(y + i, m, h);
    }
}

static void v_f16_to_f32_row(int n, const uint16_t *x, float *y) {
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail16(n - i);
        _mm512_mask_storeu_ps(y + i, m, f16x16(x + i, m));
    }
}

static uint64_t v_mem_read(const void *p, size_t bytes) {
    const __m512i *v = p;
    __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
    for (size_t i = 0; i + 4 <= bytes / 64; i += 4) {
        /* plain loads: the hardware prefetcher alone streams fastest */
        a = _mm512_xor_si512(a, _mm512_load_si512(v + i));
        b = _mm512_xor_si512(b, _mm512_load_si512(v + i + 1));
        c = _mm512_xor_si512(c, _mm512_load_si512(v + i + 2));
        d = _mm512_xor_si512(d, _mm512_load_si512(v + i + 3));
    }
    return (uint64_t)_mm512_reduce_add_epi64(_mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(c, d)));
}

int pg_kernels_fill_avx512(pg_kernels *k, int vnni, int bf16) {
    k->name = vnni ? (bf16 ? "avx512-vnni-bf16" : "avx512-vnni") : (bf16 ? "avx512-bf16" : "avx512");
    k->gemm[PG_TYPE_F32] = (pg_gemm_kernel){.fn = gemm_f32, .mr = F_RM, .nr = F_RN};
    k->gemm[PG_TYPE_F16] = (pg_gemm_kernel){.fn = gemm_f16, .mr = F_RM, .nr = F_RN};
    k->gemm[PG_TYPE_BF16] = (pg_gemm_kernel){.fn = bf16 ? gemm_bf16_dp : gemm_bf16, .mr = F_RM, .nr = F_RN};
    k->act[PG_ACT_BF16] = act_bf16;
    k->act[PG_ACT_Q8_32] = act_q8_32;
    k->act[PG_ACT_Q8_256] = act_q8_256;
    k->dot_f32 = v_dot_f32;
    k->sum_sq_f32 = v_sum_sq_f32;
    k->dot_f32_f16 = v_dot_f32_f16;
    k->axpy_f32 = v_axpy_f32;
    k->axpy_f16 = v_axpy_f16;
    k->f32_to_f16_row = v_f32_to_f16_row;
    k->f16_to_f32_row = v_f16_to_f32_row;
    k->qk_f16 = v_qk_f16;
    k->qk_f32 = v_qk_f32;
    k->av_f16 = v_av_f16;
    k->av_f32 = v_av_f32;
    k->mem_read = v_mem_read;
    pg_avx512_fill_quant(k, vnni);
    return 1;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else /* not x86-64 */
int pg_kernels_fill_avx512(pg_kernels *k, int vnni, int bf16) {
    (void)k; (void)vnni; (void)bf16;
    return 0;
}
#endif
