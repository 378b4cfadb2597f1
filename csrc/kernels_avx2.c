/* kernels_avx2.c -- AVX2 + FMA + F16C tier: float-weight matmul, activation
 * conversion and the vector helpers.  The quantized matmuls are in
 * kernels_avx2_quant.c.  Compiled for AVX2 through the target pragma below
 * (no per-file compiler flags); nothing here may need AVX-512. */
#include <math.h>
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#define UNROLL _Pragma("unroll")
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define UNROLL _Pragma("GCC unroll 16")
#endif

#define INLINE static inline __attribute__((always_inline))

INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE int hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

INLINE float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

/* ---------------------------------------------------------------------- */
/* Float-weight matmul: dot-product tiles of RM rows x RN columns         */
/* ---------------------------------------------------------------------- */

enum { F_F32, F_F16, F_BF16 };
/* 12 accumulators + 3 weight vectors + 1 activation vector = the 16 ymm */
#define F_RM 3
#define F_RN 4

INLINE __m256 bf16x8(__m128i v) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16)); }

/* 8 weights / activations from element k (full vectors only) */
INLINE __m256 f_loadw(const int T, const uint8_t *row, int64_t k) {
    if (T == F_F32) return _mm256_loadu_ps((const float *)row + k);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + k));
    return T == F_F16 ? _mm256_cvtph_ps(h) : bf16x8(h);
}
INLINE __m256 f_loadx(const int T, const uint8_t *row, int64_t k) {
    if (T == F_BF16) return bf16x8(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + k)));
    return _mm256_loadu_ps((const float *)row + k);
}
/* one element, for the tail (same products as the vector lanes) */
INLINE float f_w1(const int T, const uint8_t *row, int64_t k) {
    if (T == F_F32) return ((const float *)row)[k];
    uint16_t h = ((const uint16_t *)row)[k];
    return T == F_F16 ? _cvtsh_ss(h) : pg_bf16_to_f32(h);
}
INLINE float f_x1(const int T, const uint8_t *row, int64_t k) {
    return T == F_BF16 ? pg_bf16_to_f32(((const uint16_t *)row)[k]) : ((const float *)row)[k];
}

/* Values k0 .. k1-1 of the dot products; y = partial sums (k0 == 0) or y + them. */
INLINE void f_tile(const int RM, const int RN, const int T, int64_t k0, int64_t k1, const uint8_t *w, size_t ldw,
                   const uint8_t *x, size_t ldx, float *y, int64_t ldy) {
    __m256 acc[F_RM][F_RN];
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
    int64_t k = k0;
    for (; k + 8 <= k1; k += 8) {
        __m256 a[F_RM];
        UNROLL for (int i = 0; i < RM; i++) a[i] = f_loadw(T, w + i * ldw, k);
        UNROLL for (int j = 0; j < RN; j++) {
            __m256 b = f_loadx(T, x + j * ldx, k);
            UNROLL for (int i = 0; i < RM; i++) acc[i][j] = _mm256_fmadd_ps(a[i], b, acc[i][j]);
        }
    }
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++) {
        float s = hsum8(acc[i][j]);
        for (int64_t t = k; t < k1; t++) s += f_w1(T, w + i * ldw, t) * f_x1(T, x + j * ldx, t);
        y[j * ldy + i] = (k0 ? y[j * ldy + i] : 0.0f) + s;
    }
}

#include "kernels_float_walk.h"

F_GEMM(gemm_f32, F_F32)
F_GEMM(gemm_f16, F_F16)
F_GEMM(gemm_bf16, F_BF16)

/* ---------------------------------------------------------------------- */
/* Activation conversion (the same values as kernels_ref.c)              */
/* ---------------------------------------------------------------------- */

/* 32 floats -> 32 int8 of round-half-even(v * id) at out; returns their sum */
INLINE int q8x32(const float *x, __m256 id, int8_t *out) {
    __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), id));
    __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id));
    __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id));
    __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id));
    int sum = hsum8i(_mm256_add_epi32(_mm256_add_epi32(q0, q1), _mm256_add_epi32(q2, q3)));
    /* packs work per 128-bit lane: fix the order with one dword permute */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)out, p);
    return sum;
}

static void act_q8_32(int64_t n, const float *x, void *row) {
    int8_t *qs = row;                                  /* (n) */
    float *d = (float *)pg_act_q8_d(row, n);           /* (n/32) */
    float *s = d + n / 32;                             /* (n/32) */
    int16_t *qsum = (int16_t *)(s + n / 32);           /* (n/32) */
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + 32 * b;
        __m256 m = _mm256_max_ps(_mm256_max_ps(abs8(_mm256_loadu_ps(xb)), abs8(_mm256_loadu_ps(xb + 8))),
                                 _mm256_max_ps(abs8(_mm256_loadu_ps(xb + 16)), abs8(_mm256_loadu_ps(xb + 24))));
        float amax = hmax8(m), id = amax != 0.0f ? 127.0f / amax : 0.0f;   /* as ggml */
        int sum = q8x32(xb, _mm256_set1_ps(id), qs + 32 * b);
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
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < 256; k += 8) m = _mm256_max_ps(m, abs8(_mm256_loadu_ps(xb + k)));
        float amax = hmax8(m);
        float id = amax != 0.0f ? 127.0f / amax : 0.0f, db = amax != 0.0f ? 1.0f / id : 0.0f;  /* as ggml's Q8_K */
        __m256 vid = _mm256_set1_ps(id);
        for (int g = 0; g < 16; g++) {
            __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 16 * g), vid));
            __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 16 * g + 8), vid));
            int sum = hsum8i(_mm256_add_epi32(q0, q1));
            __m128i p = _mm_packs_epi16(_mm_packs_epi32(_mm256_castsi256_si128(q0), _mm256_extracti128_si256(q0, 1)),
                                        _mm_packs_epi32(_mm256_castsi256_si128(q1), _mm256_extracti128_si256(q1, 1)));
            _mm_storeu_si128((__m128i *)(qs + 256 * b + 16 * g), p);
            bs[16 * b + g] = (int16_t)sum;
            dbs[16 * b + g] = db * (float)sum;
        }
        d[b] = db;
    }
}

static void act_bf16(int64_t n, const float *x, void *row) {
    uint16_t *y = row;                                 /* (n) */
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7FFF);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i));
        __m256i hi = _mm256_srli_epi32(u, 16);
        __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(hi, one))), 16);
        __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF)), _mm256_set1_epi32(0x7F800000));
        r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(64)), nan);
        __m128i p = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storeu_si128((__m128i *)(y + i), p);
    }
    for (; i < n; i++) y[i] = pg_f32_to_bf16(x[i]);
}

/* ---------------------------------------------------------------------- */
/* Vector helpers                                                         */
/* ---------------------------------------------------------------------- */

INLINE __m256 f16x8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

static float v_dot_f32(int n, const float *x, const float *y) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
    }
    float s = hsum8(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

static float v_sum_sq_f32(int n, const float *x) { return v_dot_f32(n, x, x); }

static float v_dot_f32_f16(int n, const float *x, const uint16_t *y) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), f16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), f16x8(y + i + 8), a1);
    }
    float s = hsum8(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += x[i] * _cvtsh_ss(y[i]);
    return s;
}

static void v_axpy_f32(int n, float a, const float *x, float *y) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

static void v_axpy_f16(int n, float a, const uint16_t *x, float *y) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, f16x8(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, _cvtsh_ss(x[i]), y[i]);
}

static void v_f32_to_f16_row(int n, const float *x, uint16_t *y) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = pg_f32_to_half(x[i]);
}

static void v_f16_to_f32_row(int n, const uint16_t *x, float *y) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f16x8(x + i));
    for (; i < n; i++) y[i] = _cvtsh_ss(x[i]);
}

/* ---------------------------------------------------------------------- */
/* Attention: several query heads against one key / value rows             */
/* ---------------------------------------------------------------------- */

/* Up to 4 queries at once, each with v_dot_f32_f16's accumulators and order
 * (16 values a step in two ymm, then the same horizontal sum and tail), so the
 * key is converted once for all of them. */
static void v_qk_f16(int hd, int nq, const float *q, const uint16_t *k, float *s) {
    for (int q0 = 0; q0 < nq; q0 += 4) {
        const int m = PG_MIN(4, nq - q0);
        const float *qq = q + (size_t)q0 * hd;
        __m256 a0[4], a1[4];
        for (int i = 0; i < 4; i++) a0[i] = a1[i] = _mm256_setzero_ps();
        int e = 0;
        for (; e + 16 <= hd; e += 16) {
            __m256 k0 = f16x8(k + e), k1 = f16x8(k + e + 8);
            UNROLL for (int i = 0; i < 4; i++) {
                if (i >= m) break;
                a0[i] = _mm256_fmadd_ps(_mm256_loadu_ps(qq + (size_t)i * hd + e), k0, a0[i]);
                a1[i] = _mm256_fmadd_ps(_mm256_loadu_ps(qq + (size_t)i * hd + e + 8), k1, a1[i]);
            }
        }
        for (int i = 0; i < m; i++) {
            float r = hsum8(_mm256_add_ps(a0[i], a1[i]));
            for (int t = e; t < hd; t++) r += qq[(size_t)i * hd + t] * _cvtsh_ss(k[t]);
            s[q0 + i] = r;
        }
    }
}

static void v_qk_f32(int hd, int nq, const float *q, const float *k, float *s) {
    for (int i = 0; i < nq; i++) s[i] = v_dot_f32(hd, q + (size_t)i * hd, k);
}

/* out[i] += p[i][j] * v_j over the keys, 16 (nq > 2) or 32 output elements of up to
 * 4 queries held in registers across all keys: each value row is read once per
 * column block, and nothing is stored until the keys are done. */
#define AV_BODY(load8, CW)                                                                         \
    for (int q0 = 0; q0 < nq; q0 += 4) {                                                           \
        const int m = PG_MIN(4, nq - q0);                                                          \
        for (int e = 0; e < hd; e += CW) {                                                         \
            __m256 acc[4][CW / 8];                                                                 \
            UNROLL for (int i = 0; i < 4; i++) UNROLL for (int c = 0; c < CW / 8; c++)              \
                acc[i][c] = _mm256_setzero_ps();                                                   \
            for (int j = 0, slot = first; j < nk; j++, slot = slot + 1 == nslots ? 0 : slot + 1) { \
                __m256 vv[CW / 8];                                                                 \
                UNROLL for (int c = 0; c < CW / 8; c++) vv[c] = load8(v + (size_t)slot * hd + e + 8 * c); \
                UNROLL for (int i = 0; i < 4; i++) {                                               \
                    if (i >= m) break;                                                             \
                    __m256 a = _mm256_broadcast_ss(p + (size_t)(q0 + i) * ldp + j);                \
                    UNROLL for (int c = 0; c < CW / 8; c++) acc[i][c] = _mm256_fmadd_ps(a, vv[c], acc[i][c]); \
                }                                                                                  \
            }                                                                                      \
            for (int i = 0; i < m; i++)                                                            \
                UNROLL for (int c = 0; c < CW / 8; c++)                                            \
                    _mm256_storeu_ps(out + (size_t)(q0 + i) * hd + e + 8 * c, acc[i][c]);          \
        }                                                                                          \
    }

static void v_av_f16(int hd, int nq, int nk, const float *p, int ldp, const uint16_t *v, int first, int nslots,
                     float *out) {
    if (hd % 32) {                   /* odd head sizes: the vector helper, per key (same result) */
        for (int i = 0; i < nq; i++) {
            memset(out + (size_t)i * hd, 0, sizeof(float) * (size_t)hd);
            for (int j = 0, slot = first; j < nk; j++, slot = slot + 1 == nslots ? 0 : slot + 1)
                v_axpy_f16(hd, p[(size_t)i * ldp + j], v + (size_t)slot * hd, out + (size_t)i * hd);
        }
        return;
    }
    if (nq <= 2) {
        AV_BODY(f16x8, 32)
    } else {
        AV_BODY(f16x8, 16)
    }
}

static void v_av_f32(int hd, int nq, int nk, const float *p, int ldp, const float *v, int first, int nslots,
                     float *out) {
    if (hd % 32) {
        for (int i = 0; i < nq; i++) {
            memset(out + (size_t)i * hd, 0, sizeof(float) * (size_t)hd);
            for (int j = 0, slot = first; j < nk; j++, slot = slot + 1 == nslots ? 0 : slot + 1)
                v_axpy_f32(hd, p[(size_t)i * ldp + j], v + (size_t)slot * hd, out + (size_t)i * hd);
        }
        return;
    }
    if (nq <= 2) {
        AV_BODY(_mm256_loadu_ps, 32)
    } else {
        AV_BODY(_mm256_loadu_ps, 16)
    }
}

static uint64_t v_mem_read(const void *p, size_t bytes) {
    const __m256i *v = p;
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 8 <= bytes / 32; i += 8) {
        /* plain loads: the hardware prefetcher alone streams fastest (a T0 software prefetch measured ~10% lower) */
        a = _mm256_xor_si256(a, _mm256_xor_si256(_mm256_load_si256(v + i), _mm256_load_si256(v + i + 4)));
        b = _mm256_xor_si256(b, _mm256_xor_si256(_mm256_load_si256(v + i + 1), _mm256_load_si256(v + i + 5)));
        c = _mm256_xor_si256(c, _mm256_xor_si256(_mm256_load_si256(v + i + 2), _mm256_load_si256(v + i + 6)));
        d = _mm256_xor_si256(d, _mm256_xor_si256(_mm256_load_si256(v + i + 3), _mm256_load_si256(v + i + 7)));
    }
    __m256i x = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    return (uint64_t)_mm256_extract_epi64(x, 0) ^ (uint64_t)_mm256_extract_epi64(x, 3);
}

int pg_kernels_fill_avx2(pg_kernels *k) {
    k->name = "avx2";
    k->gemm[PG_TYPE_F32] = (pg_gemm_kernel){.fn = gemm_f32, .mr = F_RM, .nr = F_RN};
    k->gemm[PG_TYPE_F16] = (pg_gemm_kernel){.fn = gemm_f16, .mr = F_RM, .nr = F_RN};
    k->gemm[PG_TYPE_BF16] = (pg_gemm_kernel){.fn = gemm_bf16, .mr = F_RM, .nr = F_RN};
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
    pg_avx2_fill_quant(k);
    return 1;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else /* not x86-64 */
int pg_kernels_fill_avx2(pg_kernels *k) {
    (void)k;
    return 0;
}
#endif
