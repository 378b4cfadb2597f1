/* quantize.c -- float rows to F16/BF16 and the 32-element block types
 * (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with llama.cpp's algorithms, and the
 * per-type dispatch used by the traits table (the K-quants are in
 * quantize_k.c).
 *
 * Without an importance matrix, llama.cpp quantizes these types with its
 * reference functions (ggml quantize_row_qN_ref): one scale from the largest
 * magnitude (or the min/max range) and truncation of x/d + offset.  With an
 * imatrix it uses a weighted least-squares scale search (quantize_row_qN_impl);
 * Q8_0 ignores the imatrix.  All row functions: x (n) floats -> y (n/32 blocks). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")   /* a*b+c must round twice, as in ggml */
#endif

#include <float.h>
#include <math.h>

#include "quant_search.h"
#include "types.h"

/* ---- float types ---- */

static void quantize_row_f32(const float *x, void *y, int64_t n, const float *imatrix) {
    (void)imatrix;
    memcpy(y, x, (size_t)n * sizeof(float));
}

/* Round to nearest even like numpy's astype(float16) (what gguf-py writes).
 * NaN keeps its sign and top payload bits, as numpy does (ggml would write a
 * canonical 0x7e00); a payload that would vanish becomes 1 to stay NaN. */
static inline pg_half f32_to_half_numpy(float f) {
    uint32_t u = pg_f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        uint16_t h = (uint16_t)(0x7c00u | ((u & 0x007fffffu) >> 13));
        if (h == 0x7c00u) h++;
        return (pg_half)(((u >> 16) & 0x8000u) | h);
    }
    return pg_f32_to_half(f);
}

static void quantize_row_f16(const float *x, void *y, int64_t n, const float *imatrix) {
    (void)imatrix;
    pg_half *h = (pg_half *)y;
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_half_numpy(x[i]);
}

static void quantize_row_bf16(const float *x, void *y, int64_t n, const float *imatrix) {
    (void)imatrix;
    pg_bf16 *h = (pg_bf16 *)y;
    for (int64_t i = 0; i < n; i++) h[i] = pg_f32_to_bf16(x[i]);
}

/* ---- helpers ---- */

/* The value of largest magnitude, keeping its sign (first one on ties). */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *mn, float *mx) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

/* Importance weights of one 32-block: imatrix * sqrt(sigma^2 + x^2), where
 * sigma^2 is the mean square of the whole row (ggml *_impl). */
static void impl_weights(float *w, const float *xb, const float *qw, float sigma2) {
    for (int j = 0; j < 32; ++j) w[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
}

static float row_sigma2(const float *x, int64_t n) {
    float s = 0;
    for (int64_t j = 0; j < n; ++j) s += x[j] * x[j];
    return s / n;
}

/* 5-bit levels L (32) 0..31: low nibbles into qs (element j low, j+16 high),
 * fifth bits into the 32-bit little-endian qh (bit j for element j). */
static void pack_q5(uint8_t *qs, uint8_t qh_out[4], const uint8_t *L) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        qs[j] = (uint8_t)((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
        qh |= ((L[j] & 0x10u) >> 4) << j;
        qh |= ((L[j + 16] & 0x10u) >> 4) << (j + 16);
    }
    for (int k = 0; k < 4; k++) qh_out[k] = (uint8_t)(qh >> (8 * k));
}

/* ---- Q4_0 / Q5_0: symmetric, d = max / -2^(bits-1) ---- */

static void quantize_row_q4_0(const float *x, void *vy, int64_t n, const float *imatrix) {
    block_q4_0 *y = (block_q4_0 *)vy;
    const int64_t nb = n / QK4_0;
    if (imatrix) {
        float sigma2 = row_sigma2(x, n), w[QK4_0];
        int8_t L[QK4_0];
        for (int64_t i = 0; i < nb; i++) {
            const float *xb = x + i * QK4_0;
            impl_weights(w, xb, imatrix + i * QK4_0, sigma2);
            y[i].d = pg_f32_to_half(pg_make_qx_quants(QK4_0, 8, xb, L, w));
            for (int j = 0; j < 16; ++j) y[i].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
        }
        return;
    }
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * QK4_0;
        const float d = signed_absmax(xb, QK4_0) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = pg_f32_to_half(d);
        for (int j = 0; j < 16; ++j) {
            /* x*id is in [-8, 8]; +8.5 and truncation round to 0..16, clamp to 15 */
            int xi0 = (int8_t)(xb[j] * id + 8.5f);
            int xi1 = (int8_t)(xb[j + 16] * id + 8.5f);
            xi0 = xi0 < 15 ? xi0 : 15;
            xi1 = xi1 < 15 ? xi1 : 15;
            y[i].qs[j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

static void quantize_row_q5_0(const float *x, void *vy, int64_t n, const float *imatrix) {
    block_q5_0 *y = (block_q5_0 *)vy;
    const int64_t nb = n / QK5_0;
    uint8_t L[QK5_0];
    if (imatrix) {
        float sigma2 = row_sigma2(x, n), w[QK5_0];
        int8_t Ls[QK5_0];
        for (int64_t i = 0; i < nb; i++) {
            const float *xb = x + i * QK5_0;
            impl_weights(w, xb, imatrix + i * QK5_0, sigma2);
            y[i].d = pg_f32_to_half(pg_make_qx_quants(QK5_0, 16, xb, Ls, w));
            for (int j = 0; j < QK5_0; ++j) L[j] = (uint8_t)Ls[j];
            pack_q5(y[i].qs, y[i].qh, L);
        }
        return;
    }
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * QK5_0;
        const float d = signed_absmax(xb, QK5_0) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = pg_f32_to_half(d);
        for (int j = 0; j < QK5_0; ++j) {
            int q = (int8_t)(xb[j] * id + 16.5f);
            L[j] = (uint8_t)(q < 31 ? q : 31);
        }
        pack_q5(y[i].qs, y[i].qh, L);
    }
}

/* ---- Q4_1 / Q5_1: asymmetric, d = (max - min) / (2^bits - 1), m = min ---- */

static void quantize_row_q4_1(const float *x, void *vy, int64_t n, const float *imatrix) {
    block_q4_1 *y = (block_q4_1 *)vy;
    const int64_t nb = n / QK4_1;
    if (imatrix) {
        float sigma2 = row_sigma2(x, n), w[QK4_1], min;
        uint8_t L[QK4_1], Laux[QK4_1];
        for (int64_t i = 0; i < nb; i++) {
            const float *xb = x + i * QK4_1;
            impl_weights(w, xb, imatrix + i * QK4_1, sigma2);
            float d = pg_make_qkx3_quants(QK4_1, 15, xb, w, L, &min, Laux, -0.9f, 0.05f, 36, 0);
            y[i].d = pg_f32_to_half(d);
            y[i].m = pg_f32_to_half(-min);
            for (int j = 0; j < 16; ++j) y[i].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
        }
        return;
    }
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * QK4_1;
        float min, max;
        min_max(xb, QK4_1, &min, &max);
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = pg_f32_to_half(d);
        y[i].m = pg_f32_to_half(min);
        for (int j = 0; j < 16; ++j) {
            int xi0 = (int8_t)((xb[j] - min) * id + 0.5f);
            int xi1 = (int8_t)((xb[j + 16] - min) * id + 0.5f);
            xi0 = xi0 < 15 ? xi0 : 15;
            xi1 = xi1 < 15 ? xi1 : 15;
            y[i].qs[j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

static void quantize_row_q5_1(const float *x, void *vy, int64_t n, const float *imatrix) {
    block_q5_1 *y = (block_q5_1 *)vy;
    const int64_t nb = n / QK5_1;
    uint8_t L[QK5_1];
    if (imatrix) {
        float sigma2 = row_sigma2(x, n), w[QK5_1], min;
        uint8_t Laux[QK5_1];
        for (int64_t i = 0; i < nb; i++) {
            const float *xb = x + i * QK5_1;
            impl_weights(w, xb, imatrix + i * QK5_1, sigma2);
            float d = pg_make_qkx3_quants(QK5_1, 31, xb, w, L, &min, Laux, -0.9f, 0.05f, 36, 0);
            y[i].d = pg_f32_to_half(d);
            y[i].m = pg_f32_to_half(-min);
            pack_q5(y[i].qs, y[i].qh, L);
        }
        return;
    }
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * QK5_1;
        float min, max;
        min_max(xb, QK5_1, &min, &max);
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = pg_f32_to_half(d);
        y[i].m = pg_f32_to_half(min);
        for (int j = 0; j < QK5_1; ++j) L[j] = (uint8_t)((xb[j] - min) * id + 0.5f);
        pack_q5(y[i].qs, y[i].qh, L);
    }
}

/* ---- Q8_0: d = absmax / 127, q = roundf(x / d) (half away from zero) ---- */

static void quantize_row_q8_0(const float *x, void *vy, int64_t n, const float *imatrix) {
    (void)imatrix;   /* llama.cpp ignores it for Q8_0 too */
    block_q8_0 *y = (block_q8_0 *)vy;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *xb = x + i * QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) amax = amax > fabsf(xb[j]) ? amax : fabsf(xb[j]);
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = pg_f32_to_half(d);
        for (int j = 0; j < QK8_0; ++j) y[i].qs[j] = (int8_t)roundf(xb[j] * id);
    }
}

pg_quantize_row_fn pg_quantize_fn(int type) {
    switch (type) {
    case PG_TYPE_F32: return quantize_row_f32;
    case PG_TYPE_F16: return quantize_row_f16;
    case PG_TYPE_BF16: return quantize_row_bf16;
    case PG_TYPE_Q4_0: return quantize_row_q4_0;
    case PG_TYPE_Q4_1: return quantize_row_q4_1;
    case PG_TYPE_Q5_0: return quantize_row_q5_0;
    case PG_TYPE_Q5_1: return quantize_row_q5_1;
    case PG_TYPE_Q8_0: return quantize_row_q8_0;
    case PG_TYPE_Q2_K: return pg_quantize_row_q2_K;
    case PG_TYPE_Q3_K: return pg_quantize_row_q3_K;
    case PG_TYPE_Q4_K: return pg_quantize_row_q4_K;
    case PG_TYPE_Q5_K: return pg_quantize_row_q5_K;
    case PG_TYPE_Q6_K: return pg_quantize_row_q6_K;
    default: return NULL;
    }
}
