/* quantize_k.c -- Q2_K .. Q6_K quantizers with llama.cpp's algorithms.
 *
 * Without an importance matrix each row goes through the reference quantizer
 * (ggml quantize_row_qN_K_ref), as llama.cpp does; with one, through the
 * weighted variant (ggml quantize_row_qN_K_impl): errors weighted by
 * imatrix[i] * sqrt(sigma^2 + x[i]^2) and the sub-block scales themselves
 * fitted with make_qp_quants / make_qx_quants.
 *
 * Every super-block (256 values) is independent; all routines are
 * x: (n) floats -> y: (n / 256) blocks.  The final levels are always
 * recomputed from the fp16-rounded scales actually stored, so the
 * dequantized values are the best fit to what a reader will see. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")   /* a*b+c must round twice, as in ggml */
#endif

#include <math.h>

#include "quant_search.h"

/* ---- bit packing shared by several types ---- */

/* Four 2-bit planes: byte l of each 32-byte group of qs (64 bytes) holds
 * elements l, l+32, l+64, l+96 of its 128 values.  L: (256) values 0..3. */
static void pack_2bit(uint8_t *qs, const uint8_t *L) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
}

/* Q4_K/Q5_K 6-bit scale and min of the 8 sub-blocks, packed in 12 bytes:
 * bytes 0-3 hold scales 0-3 (+ top bits of scales 4-7), 4-7 mins 0-3 (+ top
 * bits of mins 4-7), 8-11 the low nibbles of scales/mins 4-7.  Values above
 * 63 are packed exactly as ggml does (the caller clamps where ggml does). */
static void pack_scale_min_k4(uint8_t *scales, int j, uint8_t ls, uint8_t lm) {
    if (j < 4) {
        scales[j] = ls;
        scales[j + 4] = lm;
    } else {
        scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
        scales[j - 0] |= (uint8_t)((lm >> 4) << 6);
    }
}

static void unpack_scale_min_k4(const uint8_t *q, int j, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

/* Q3_K: 16 6-bit scales (stored as l + 32) in 12 bytes: low nibbles in
 * bytes 0-7 (two per byte), top 2 bits in bytes 8-11.  scales is zeroed first. */
static void pack_scales_q3(uint8_t *scales, const int *ls) {
    memset(scales, 0, 12);
    for (int j = 0; j < QK_K / 16; ++j) {
        int l = ls[j];
        if (j < 8) scales[j] = (uint8_t)(l & 0xF);
        else scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
        l >>= 4;
        scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
    }
}

static int unpack_scale_q3(const uint8_t *scales, int j) {
    int8_t sc = (int8_t)(j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4);
    return (int8_t)((sc | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
}

/* Q3_K levels from the stored scales, then the high bits into hmask:
 * bit b of hmask[m] is the high bit of element 32*b + m.  L: (256) 0..7. */
static void finish_q3_K(block_q3_K *y, const float *x, int8_t *L) {
    for (int j = 0; j < QK_K / 16; ++j) {
        float d = pg_half_to_f32(y->d) * unpack_scale_q3(y->scales, j);
        if (!d) continue;   /* keep the levels of the scale search */
        for (int ii = 0; ii < 16; ++ii) {
            int l = pg_clampi(pg_nearest_int(x[16 * j + ii] / d), -4, 3);
            L[16 * j + ii] = (int8_t)(l + 4);
        }
    }
    memset(y->hmask, 0, sizeof y->hmask);
    uint8_t low[QK_K];
    for (int j = 0; j < QK_K; ++j) {
        low[j] = (uint8_t)L[j];
        if (L[j] > 3) {
            y->hmask[j % 32] |= (uint8_t)(1 << (j / 32));
            low[j] = (uint8_t)(L[j] - 4);
        }
    }
    pack_2bit(y->qs, low);
}

/* Q4_K / Q5_K: levels 0..nmax from the stored scales and mins. */
static void requantize_k4(uint8_t *L, const float *x, pg_half d16, pg_half dmin16,
                          const uint8_t *scales, int nmax) {
    for (int j = 0; j < QK_K / 32; ++j) {
        uint8_t sc, m;
        unpack_scale_min_k4(scales, j, &sc, &m);
        const float d = pg_half_to_f32(d16) * sc;
        if (!d) continue;
        const float dm = pg_half_to_f32(dmin16) * m;
        for (int ii = 0; ii < 32; ++ii) {
            int l = pg_nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)pg_clampi(l, 0, nmax);
        }
    }
}

/* Q2_K: levels 0..3 from the stored 4-bit scales and mins. */
static void requantize_q2_K(uint8_t *L, const float *x, const block_q2_K *y) {
    for (int j = 0; j < QK_K / 16; ++j) {
        const float d = pg_half_to_f32(y->d) * (y->scales[j] & 0xF);
        if (!d) continue;
        const float dm = pg_half_to_f32(y->dmin) * (y->scales[j] >> 4);
        for (int ii = 0; ii < 16; ++ii) {
            int l = pg_nearest_int((x[16 * j + ii] + dm) / d);
            L[16 * j + ii] = (uint8_t)pg_clampi(l, 0, 3);
        }
    }
}

/* Sum of squares of the super-block, accumulated in order as ggml does. */
static float sum_sq(const float *x, int n) {
    float s = 0;
    for (int i = 0; i < n; ++i) s += x[i] * x[i];
    return s;
}

/* ===================== Q2_K: 16 x 16, 2-bit, 4-bit scale and min ===================== */

static void q2_K_block(const float *x, block_q2_K *y, const float *qw) {
    uint8_t L[QK_K], Laux[16];
    float weights[16], scales[QK_K / 16], mins[QK_K / 16];

    if (!qw) {
        float max_scale = 0, max_min = 0;   /* scales are positive: the min is taken out */
        for (int j = 0; j < QK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = pg_make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j],
                                            Laux, -0.5f, 0.1f, 15, 1);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        const float q4scale = 15.f;
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; ++j)
                y->scales[j] = (uint8_t)pg_nearest_int(iscale * scales[j]);
            y->d = pg_f32_to_half(max_scale / q4scale);
        } else {
            memset(y->scales, 0, sizeof y->scales);
            y->d = pg_f32_to_half(0.f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; ++j)
                y->scales[j] |= (uint8_t)(pg_nearest_int(iscale * mins[j]) << 4);
            y->dmin = pg_f32_to_half(max_min / q4scale);
        } else {
            y->dmin = pg_f32_to_half(0.f);
        }
    } else {
        float sw[QK_K / 16];
        uint8_t Ls[QK_K / 16], Lm[QK_K / 16];
        float sigma2 = sum_sq(x, QK_K) / QK_K;
        for (int j = 0; j < QK_K / 16; ++j) {
            sw[j] = 0;
            for (int l = 0; l < 16; ++l)
                weights[l] = qw[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            for (int l = 0; l < 16; ++l) sw[j] += weights[l];
            scales[j] = pg_make_qkx3_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j],
                                            Laux, -0.9f, 0.05f, 36, 0);
        }
        float dm = pg_make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
        float mm = pg_make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
        y->d = pg_f32_to_half(dm);
        y->dmin = pg_f32_to_half(mm);
        for (int j = 0; j < QK_K / 16; ++j) y->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
    }
    requantize_q2_K(L, x, y);
    pack_2bit(y->qs, L);
}

/* ===================== Q3_K: 16 x 16, 3-bit, 6-bit signed scales ===================== */

static void q3_K_block(const float *x, block_q3_K *y, const float *qw) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    int ls[QK_K / 16];

    if (!qw) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            scales[j] = pg_make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            float a = fabsf(scales[j]);
            if (a > amax) { amax = a; max_scale = scales[j]; }
        }
        if (max_scale) {
            /* the largest |scale| maps to -32 (the signed 6-bit range is -32..31) */
            float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; ++j) {
                int8_t l = (int8_t)pg_nearest_int(iscale * scales[j]);
                ls[j] = pg_clampi(l, -32, 31) + 32;
            }
            pack_scales_q3(y->scales, ls);
            y->d = pg_f32_to_half(1 / iscale);
        } else {
            memset(y->scales, 0, sizeof y->scales);
            y->d = pg_f32_to_half(0.f);
        }
    } else {
        float weights[16], sw[QK_K / 16];
        int8_t Ls[QK_K / 16];
        float sigma2 = 2 * sum_sq(x, QK_K) / QK_K;
        for (int j = 0; j < QK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l)
                weights[l] = qw[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            float sumw = 0;
            for (int l = 0; l < 16; ++l) sumw += weights[l];
            sw[j] = sumw;
            scales[j] = pg_make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weights);
        }
        float d_block = pg_make_qx_quants(QK_K / 16, 32, scales, Ls, sw);
        for (int j = 0; j < QK_K / 16; ++j) ls[j] = Ls[j];
        pack_scales_q3(y->scales, ls);
        y->d = pg_f32_to_half(d_block);
    }
    finish_q3_K(y, x, L);
}

/* ===================== Q4_K / Q5_K: 8 x 32, 6-bit scale and min ===================== */

/* Sub-block scales and mins of a Q4_K/Q5_K super-block, stored in y's
 * scales/d/dmin (d16, dmin16, sc12); levels of the search left in L. */
static void k4_scales(const float *x, const float *qw, int nmax, float rmin_ref, int nstep_ref,
                      int clamp_impl, uint8_t *L, pg_half *d16, pg_half *dmin16, uint8_t *sc12) {
    uint8_t Laux[32];
    float weights[32], scales[QK_K / 32], mins[QK_K / 32];

    if (!qw) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 32; ++j) {
            float av_x = sqrtf(sum_sq(x + 32 * j, 32) / 32);
            for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] = pg_make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j],
                                            Laux, rmin_ref, 0.1f, nstep_ref, 0);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < QK_K / 32; ++j) {
            uint8_t ls = (uint8_t)pg_nearest_int(inv_scale * scales[j]);
            uint8_t lm = (uint8_t)pg_nearest_int(inv_min * mins[j]);
            pack_scale_min_k4(sc12, j, ls < 63 ? ls : 63, lm < 63 ? lm : 63);
        }
        *d16 = pg_f32_to_half(max_scale / 63.f);
        *dmin16 = pg_f32_to_half(max_min / 63.f);
    } else {
        float sw[QK_K / 32];
        uint8_t Ls[QK_K / 32], Lm[QK_K / 32];
        float sigma2 = 2 * sum_sq(x, QK_K) / QK_K;
        for (int j = 0; j < QK_K / 32; ++j) {
            for (int l = 0; l < 32; ++l)
                weights[l] = qw[32 * j + l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
            float sumw = 0;
            for (int l = 0; l < 32; ++l) sumw += weights[l];
            sw[j] = sumw;
            scales[j] = pg_make_qkx3_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j],
                                            Laux, -0.9f, 0.05f, 36, 0);
        }
        float d_block = pg_make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
        float m_block = pg_make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
        for (int j = 0; j < QK_K / 32; ++j) {
            uint8_t ls = Ls[j], lm = Lm[j];
            if (clamp_impl) {   /* ggml clamps here for Q5_K only */
                ls = ls < 63 ? ls : 63;
                lm = lm < 63 ? lm : 63;
            }
            pack_scale_min_k4(sc12, j, ls, lm);
        }
        *d16 = pg_f32_to_half(d_block);
        *dmin16 = pg_f32_to_half(m_block);
    }
    requantize_k4(L, x, *d16, *dmin16, sc12, nmax);
}

static void q4_K_block(const float *x, block_q4_K *y, const float *qw) {
    uint8_t L[QK_K];
    k4_scales(x, qw, 15, -1.f, 20, 0, L, &y->d, &y->dmin, y->scales);
    /* byte l of each 32-byte group: element l (low nibble) and l+32 (high) of 64 */
    uint8_t *q = y->qs;
    for (int j = 0; j < QK_K; j += 64, q += 32)
        for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

static void q5_K_block(const float *x, block_q5_K *y, const float *qw) {
    uint8_t L[QK_K];
    k4_scales(x, qw, 31, -0.5f, 15, 1, L, &y->d, &y->dmin, y->scales);
    /* as Q4_K, plus the 5th bits: bit 2k (2k+1) of qh[l] for the low (high)
     * half of the k-th 64-element group */
    memset(y->qh, 0, sizeof y->qh);
    uint8_t *ql = y->qs;
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < QK_K; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
        for (int j = 0; j < 32; ++j) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) { l1 -= 16; y->qh[j] |= m1; }
            if (l2 > 15) { l2 -= 16; y->qh[j] |= m2; }
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
    }
}

/* ===================== Q6_K: 16 x 16, 6-bit, int8 scales ===================== */

static void q6_K_block(const float *x, block_q6_K *y, const float *qw) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
        /* with an imatrix ggml weighs by the importance alone here */
        scales[ib] = pg_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, qw ? qw + 16 * ib : NULL);
        float a = fabsf(scales[ib]);
        if (a > max_abs_scale) { max_abs_scale = a; max_scale = scales[ib]; }
    }
    if (max_abs_scale < PG_GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        return;
    }
    float iscale = -128.f / max_scale;
    y->d = pg_f32_to_half(1 / iscale);
    for (int ib = 0; ib < QK_K / 16; ++ib) {
        int l = pg_nearest_int(iscale * scales[ib]);
        y->scales[ib] = (int8_t)(l < 127 ? l : 127);
    }
    for (int j = 0; j < QK_K / 16; ++j) {
        float d = pg_half_to_f32(y->d) * y->scales[j];
        if (!d) continue;
        for (int ii = 0; ii < 16; ++ii) {
            int l = pg_clampi(pg_nearest_int(x[16 * j + ii] / d), -32, 31);
            L[16 * j + ii] = (int8_t)(l + 32);
        }
    }
    /* per 128 values: ql holds low nibbles (elements l, l+32 | l+64, l+96),
     * qh the top 2 bits of l, l+32, l+64, l+96 */
    uint8_t *ql = y->ql, *qh = y->qh;
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t *Lj = (const uint8_t *)L + j + l;
            ql[l + 0] = (uint8_t)((Lj[0] & 0xF) | ((Lj[64] & 0xF) << 4));
            ql[l + 32] = (uint8_t)((Lj[32] & 0xF) | ((Lj[96] & 0xF) << 4));
            qh[l] = (uint8_t)((Lj[0] >> 4) | ((Lj[32] >> 4) << 2) | ((Lj[64] >> 4) << 4) |
                              ((Lj[96] >> 4) << 6));
        }
    }
}

/* ===================== row entry points ===================== */

#define K_ROW(name, block_t, fn)                                                       \
    void name(const float *x, void *y, int64_t n, const float *imatrix) {              \
        block_t *b = (block_t *)y;                                                     \
        for (int64_t i = 0; i < n / QK_K; i++)                                         \
            fn(x + i * QK_K, b + i, imatrix ? imatrix + i * QK_K : NULL);              \
    }

K_ROW(pg_quantize_row_q2_K, block_q2_K, q2_K_block)
K_ROW(pg_quantize_row_q3_K, block_q3_K, q3_K_block)
K_ROW(pg_quantize_row_q4_K, block_q4_K, q4_K_block)
K_ROW(pg_quantize_row_q5_K, block_q5_K, q5_K_block)
K_ROW(pg_quantize_row_q6_K, block_q6_K, q6_K_block)
