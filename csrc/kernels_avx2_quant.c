/* kernels_avx2_quant.c -- AVX2 matmul of the quantized types, dot form: the
 * mat-vec of decoding and batches too small for the panels
 * (kernels_avx2_panel.c).
 *
 * A tile is 8 outputs, R weight rows x C tokens (8x1, 4x2 or 2x4); lane
 * o = i + R*j of its vectors is output (row i, token j).  Per block, each
 * output's integer dot product is built in a ymm of 8 int32 partial sums
 * (vpmaddubsw on the unpacked weights, vpmaddwd), the 8 ymm are reduced to one
 * (lane o = output o's exact block sum) and the float part runs once for all 8
 * outputs in the canonical order of kernels.h:
 *   32-blocks: isum (- off * qsum); acc = fma(isum, d*dx, acc) [+ fma(m, s)]
 *   K-quants:  I = sum sc*dot, M = sum mn*bsums (per 32 values vpmaddubsw then
 *              vpmaddwd with the 16-bit group scales);
 *              acc = fma(I, d*dx, acc); acc = fma(M, -dmin*dx, acc)
 * so every output equals the scalar reference and the panel path bit for bit.
 * Rows or tokens missing at the edges of a chunk repeat the last one; their
 * lanes are computed and dropped. */
#include "kernels.h"

#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#define UNROLL _Pragma("unroll")
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define UNROLL _Pragma("GCC unroll 16")
#endif

#include "kernels_avx2.h"

/* Software prefetch distance for weight rows: 8 rows stream at once, more
 * than the hardware prefetcher follows on many cores. */
#define PF_BYTES 4096

/* Lane o = v[o / R]: a per-token value spread over that token's R lanes. */
INLINE __m256 by_token_ps(const int R, const int C, const float *v) {
    if (C == 1) return _mm256_set1_ps(v[0]);
    if (C == 2) return _mm256_blend_ps(_mm256_set1_ps(v[0]), _mm256_set1_ps(v[1]), 0xF0);
    return _mm256_setr_ps(v[0], v[0], v[1], v[1], v[2], v[2], v[3], v[3]);   /* C == 4, R == 2 */
}
INLINE __m256i by_token_epi32(const int R, const int C, const int *v) {
    if (C == 1) return _mm256_set1_epi32(v[0]);
    if (C == 2) return _mm256_blend_epi32(_mm256_set1_epi32(v[0]), _mm256_set1_epi32(v[1]), 0xF0);
    return _mm256_setr_epi32(v[0], v[0], v[1], v[1], v[2], v[2], v[3], v[3]);   /* C == 4, R == 2 */
}
/* Lane o = float of the f16 h[o % R]. */
INLINE __m256 by_row_h(const int R, const pg_half *h) {
    __m128i v;
    if (R == 8) v = _mm_setr_epi16(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]);
    else if (R == 4) v = _mm_setr_epi16(h[0], h[1], h[2], h[3], h[0], h[1], h[2], h[3]);
    else v = _mm_setr_epi16(h[0], h[1], h[0], h[1], h[0], h[1], h[0], h[1]);
    return _mm256_cvtph_ps(v);
}
INLINE __m256 by_row_ps(const int R, const float *f) {
    if (R == 8) return _mm256_loadu_ps(f);
    if (R == 4) return _mm256_setr_ps(f[0], f[1], f[2], f[3], f[0], f[1], f[2], f[3]);
    return _mm256_setr_ps(f[0], f[1], f[0], f[1], f[0], f[1], f[0], f[1]);
}

INLINE void store_lanes(const int R, const int C, __m256 acc, float *y, int64_t ldy, int nr, int nc) {
    float out[8];
    _mm256_storeu_ps(out, acc);
    for (int j = 0; j < C && j < nc; j++)
        for (int i = 0; i < R && i < nr; i++) y[j * ldy + i] = out[i + R * j];
}

/* ====================================================================== */
/* 32-blocks                                                              */
/* ====================================================================== */

INLINE void a_tile(const int T, const int R, const int C, int64_t n, const uint8_t *const *wr,
                   const uint8_t *const *xr, float *y, int64_t ldy, int nr, int nc) {
    const int kind = pg2_a_kind(T);
    const size_t bb = pg2_a_block_bytes(T);
    const __m256i ones = _mm256_set1_epi16(1);
    const float *xd[4], *xs[4];
    const int16_t *xq16[4];
    UNROLL for (int j = 0; j < C; j++) {
        xd[j] = pg_act_q8_d(xr[j], n);
        xs[j] = pg_act_q8_s(xr[j], n);
        xq16[j] = pg_act_q8_qsum(xr[j], n);
    }
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 32; b++) {
        __m256i p[8];
        pg_half wd[8], wm[8];
        UNROLL for (int i = 0; i < R; i++) {
            const uint8_t *blk = wr[i] + b * bb;
            _mm_prefetch((const char *)blk + PF_BYTES, _MM_HINT_T0);
            __m256i wq = pg2_a_unpack(T, blk, &wd[i], &wm[i]), wa = wq;
            if (kind == PG2_SIGNED) wa = _mm256_sign_epi8(wq, wq);                /* |w| */
            UNROLL for (int j = 0; j < C; j++) {
                __m256i xq = _mm256_loadu_si256((const __m256i *)(xr[j] + 32 * b));
                if (kind == PG2_SIGNED) xq = _mm256_sign_epi8(xq, wq);           /* x * sign(w) */
                p[i + R * j] = _mm256_madd_epi16(_mm256_maddubs_epi16(wa, xq), ones);
            }
        }
        UNROLL for (int o = R * C; o < 8; o++) p[o] = _mm256_setzero_si256();
        __m256i isum = pg2_reduce8(p);
        float dxv[4], sv[4];
        int qsv[4];
        UNROLL for (int j = 0; j < C; j++) {
            dxv[j] = xd[j][b];
            sv[j] = xs[j][b];
            qsv[j] = xq16[j][b];
        }
        if (kind == PG2_OFFSET)
            isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(by_token_epi32(R, C, qsv), pg2_a_offset_shift(T)));
        __m256 scale = _mm256_mul_ps(by_row_h(R, wd), by_token_ps(R, C, dxv));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc);
        if (kind == PG2_MIN) acc = _mm256_fmadd_ps(by_row_h(R, wm), by_token_ps(R, C, sv), acc);
    }
    store_lanes(R, C, acc, y, ldy, nr, nc);
}

/* ====================================================================== */
/* K-quants                                                               */
/* ====================================================================== */

INLINE void k_tile(const int T, const int R, const int C, int64_t n, const uint8_t *const *wr,
                   const uint8_t *const *xr, float *y, int64_t ldy, int nr, int nc) {
    const size_t bb = pg2_k_block_bytes(T);
    const float *xd[4];
    const int16_t *xbs[4];
    UNROLL for (int j = 0; j < C; j++) {
        xd[j] = pg_act_q8_d(xr[j], n);
        xbs[j] = pg_act_q8_bsums(xr[j], n);
    }
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 256; b++) {
        __m256i pi[8], pm[8];
        float d[8], nmin[8];
        UNROLL for (int i = 0; i < R; i++) {
            const uint8_t *blk = wr[i] + b * bb;
            UNROLL for (int l = 0; l < (int)bb; l += 64) _mm_prefetch((const char *)blk + PF_BYTES + l, _MM_HINT_T0);
            pg2_kdec kd = pg2_k_dec(T, blk);
            d[i] = kd.d;
            nmin[i] = -kd.dmin;
            UNROLL for (int j = 0; j < C; j++) pi[i + R * j] = _mm256_setzero_si256();
            UNROLL for (int c = 0; c < 8; c++) {
                __m256i wq = pg2_k_chunk(T, blk, c), sv = pg2_k_scale_vec(kd.sc, c);
                UNROLL for (int j = 0; j < C; j++) {
                    __m256i xq = _mm256_loadu_si256((const __m256i *)(xr[j] + 256 * b + 32 * c));
                    pi[i + R * j] = _mm256_add_epi32(pi[i + R * j], _mm256_madd_epi16(_mm256_maddubs_epi16(wq, xq), sv));
                }
            }
            UNROLL for (int j = 0; j < C; j++)
                pm[i + R * j] = _mm256_madd_epi16(kd.mn, _mm256_loadu_si256((const __m256i *)(xbs[j] + 16 * b)));
        }
        UNROLL for (int o = R * C; o < 8; o++) pi[o] = pm[o] = _mm256_setzero_si256();
        __m256i I = pg2_reduce8(pi), M = pg2_reduce8(pm);
        float dxv[4];
        UNROLL for (int j = 0; j < C; j++) dxv[j] = xd[j][b];
        __m256 dx = by_token_ps(R, C, dxv);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I), _mm256_mul_ps(by_row_ps(R, d), dx), acc);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(M), _mm256_mul_ps(by_row_ps(R, nmin), dx), acc);
    }
    store_lanes(R, C, acc, y, ldy, nr, nc);
}

/* ====================================================================== */
/* The sweep over a chunk                                                 */
/* ====================================================================== */

#define GEMM_ARGS int64_t n, float *y, int64_t ldy, const void *w, size_t ldw, int nr, \
                  const void *x, size_t ldx, int nc, void *work

/* Tiles of R rows x C tokens; at the edges the missing rows/tokens repeat
 * the last real one (their lanes are dropped). */
#define SWEEP_RC(tile, T, R, C)                                                                        \
    for (int c = 0; c < nc; c += C) {                                                                  \
        const uint8_t *xr[4];                                                                          \
        for (int j = 0; j < C; j++) xr[j] = (const uint8_t *)x + (size_t)PG_MIN(c + j, nc - 1) * ldx;  \
        for (int r = 0; r < nr; r += R) {                                                              \
            const uint8_t *wr[8];                                                                      \
            for (int i = 0; i < R; i++) wr[i] = (const uint8_t *)w + (size_t)PG_MIN(r + i, nr - 1) * ldw; \
            tile(T, R, C, n, wr, xr, y + (int64_t)c * ldy + r, ldy, nr - r, nc - c);                   \
        }                                                                                              \
    }

/* 1 token: 8 rows a tile; 2-3: 4 rows x 2 tokens; 4 and more: 2 rows x 4 tokens */
#define DOT_GEMM(name, tile, T)                                                                        \
    static void name(GEMM_ARGS) {                                                                      \
        (void)work;                                                                                    \
        if (nc == 1) {                                                                                 \
            SWEEP_RC(tile, T, 8, 1);                                                                   \
        } else if (nc < 4) {                                                                           \
            SWEEP_RC(tile, T, 4, 2);                                                                   \
        } else {                                                                                       \
            SWEEP_RC(tile, T, 2, 4);                                                                   \
        }                                                                                              \
    }

DOT_GEMM(gemm_q4_0, a_tile, PG_TYPE_Q4_0)
DOT_GEMM(gemm_q4_1, a_tile, PG_TYPE_Q4_1)
DOT_GEMM(gemm_q5_0, a_tile, PG_TYPE_Q5_0)
DOT_GEMM(gemm_q5_1, a_tile, PG_TYPE_Q5_1)
DOT_GEMM(gemm_q8_0, a_tile, PG_TYPE_Q8_0)
DOT_GEMM(gemm_q2k, k_tile, PG_TYPE_Q2_K)
DOT_GEMM(gemm_q3k, k_tile, PG_TYPE_Q3_K)
DOT_GEMM(gemm_q4k, k_tile, PG_TYPE_Q4_K)
DOT_GEMM(gemm_q5k, k_tile, PG_TYPE_Q5_K)
DOT_GEMM(gemm_q6k, k_tile, PG_TYPE_Q6_K)

void pg_avx2_fill_quant(pg_kernels *k) {
    /* mr = 8: mat-vec chunks are whole 8-row tiles; nr = 4 tokens */
#define SET(type, f) k->gemm[type] = (pg_gemm_kernel){.fn = f, .mr = 8, .nr = 4}
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
    pg_avx2_fill_panel(k);
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else /* not x86-64 */
void pg_avx2_fill_quant(pg_kernels *k) { (void)k; }
#endif
