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

#include <stddef.h>

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

/* Lanes o = float of the f16 at blk[o % R] + off: packed in general-purpose
 * registers (integer ports) and moved with one vmovq/vpinsrq, instead of
 * eight vector inserts. */
INLINE __m256 halves_by_row(const int R, const uint8_t *const *blk, const int off) {
    uint64_t lo = 0, hi = 0;
    UNROLL for (int i = 0; i < 4; i++) {
        uint16_t a, c;
        memcpy(&a, blk[i % R] + off, 2);
        memcpy(&c, blk[(4 + i) % R] + off, 2);
        lo |= (uint64_t)a << (16 * i);
        hi |= (uint64_t)c << (16 * i);
    }
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)hi, (long long)lo));
}

/* Lane o = the sum of the 4 int32 lanes of output o, where v[k] holds outputs
 * 2k (lanes 0-3) and 2k+1 (lanes 4-7). */
INLINE __m256i reduce_pairs(const __m256i v[4]) {
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));  /* 0 2 4 6 | 1 3 5 7 */
    return _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* The 4- and 5-bit types take two rows a ymm: the 16 nibble bytes of rows r
 * (low 128 bits) and r' (high) give values 0-15 of both (lo) and 16-31 (hi),
 * multiplied with the activation halves broadcast to both 128-bit lanes. */
INLINE void pair_unpack(const int T, const uint8_t *b0, const uint8_t *b1, __m256i *lo, __m256i *hi) {
    size_t qs_off = T == PG_TYPE_Q4_0 ? offsetof(block_q4_0, qs) : T == PG_TYPE_Q4_1 ? offsetof(block_q4_1, qs)
                  : T == PG_TYPE_Q5_0 ? offsetof(block_q5_0, qs) : offsetof(block_q5_1, qs);
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(b0 + qs_off))),
                                        _mm_loadu_si128((const __m128i *)(b1 + qs_off)), 1);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    *lo = _mm256_and_si256(v, m4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    if (T == PG_TYPE_Q5_0 || T == PG_TYPE_Q5_1) {
        /* 5th bit of value l = bit l of qh: bits 0-15 go to lo, 16-31 to hi */
        size_t qh_off = T == PG_TYPE_Q5_0 ? offsetof(block_q5_0, qh) : offsetof(block_q5_1, qh);
        uint32_t h0, h1;
        memcpy(&h0, b0 + qh_off, 4);
        memcpy(&h1, b1 + qh_off, 4);
        __m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_cvtsi32_si128((int)h0)), _mm_cvtsi32_si128((int)h1), 1);
        const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL), five = _mm256_set1_epi8(0x10);
        __m256i l = _mm256_shuffle_epi8(h, _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
        __m256i u = _mm256_shuffle_epi8(h, _mm256_setr_epi8(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
                                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        *lo = _mm256_or_si256(*lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(l, bit), bit), five));
        *hi = _mm256_or_si256(*hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(u, bit), bit), five));
    }
}

/* Tile of the 4/5-bit types: R rows (even) x C tokens, row pairs per ymm. */
INLINE void a_tile_pairs(const int T, const int R, const int C, int64_t n, const uint8_t *const *wr,
                         const uint8_t *const *xr, float *y, int64_t ldy, int nr, int nc) {
    const int kind = pg2_a_kind(T), HP = R / 2;
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
        const uint8_t *blk[8];
        UNROLL for (int i = 0; i < R; i++) {
            blk[i] = wr[i] + b * bb;
            _mm_prefetch((const char *)blk[i] + PF_BYTES, _MM_HINT_T0);
        }
        __m256i xlo[4], xhi[4];
        UNROLL for (int j = 0; j < C; j++) {
            xlo[j] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xr[j] + 32 * b)));
            xhi[j] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xr[j] + 32 * b + 16)));
        }
        __m256i p[4];
        UNROLL for (int q = 0; q < HP; q++) {
            __m256i lo, hi;
            pair_unpack(T, blk[2 * q], blk[2 * q + 1], &lo, &hi);
            UNROLL for (int j = 0; j < C; j++)
                p[q + HP * j] = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo[j]),
                                                                   _mm256_maddubs_epi16(hi, xhi[j])), ones);
        }
        __m256i isum = reduce_pairs(p);
        float dxv[4], sv[4];
        int qsv[4];
        UNROLL for (int j = 0; j < C; j++) {
            dxv[j] = xd[j][b];
            sv[j] = xs[j][b];
            qsv[j] = xq16[j][b];
        }
        if (kind == PG2_OFFSET)
            isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(by_token_epi32(R, C, qsv), pg2_a_offset_shift(T)));
        __m256 scale = _mm256_mul_ps(halves_by_row(R, blk, 0), by_token_ps(R, C, dxv));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc);
        if (kind == PG2_MIN) acc = _mm256_fmadd_ps(halves_by_row(R, blk, 2), by_token_ps(R, C, sv), acc);
    }
    store_lanes(R, C, acc, y, ldy, nr, nc);
}

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
        const uint8_t *blk[8];
        UNROLL for (int i = 0; i < R; i++) blk[i] = wr[i] + b * bb;
        __m256 scale = _mm256_mul_ps(halves_by_row(R, blk, 0), by_token_ps(R, C, dxv));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc);
        if (kind == PG2_MIN) acc = _mm256_fmadd_ps(halves_by_row(R, blk, 2), by_token_ps(R, C, sv), acc);
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
        /* rows one after the other (not unrolled: the 8 chunks below must be, so that every
         * shift and shuffle pattern is a constant) */
#pragma GCC unroll 1
        for (int i = 0; i < R; i++) {
            const uint8_t *blk = wr[i] + b * bb;
            UNROLL for (int l = 0; l < (int)bb; l += 64) _mm_prefetch((const char *)blk + PF_BYTES + l, _MM_HINT_T0);
            pg2_kdec kd = pg2_k_dec(T, blk);
            d[i] = kd.d;
            nmin[i] = -kd.dmin;
            __m256i s[4];
            int32_t sw[8];
            if (pg2_k_scale32(T)) _mm256_storeu_si256((__m256i *)sw, kd.sc);
            UNROLL for (int j = 0; j < C; j++) s[j] = _mm256_setzero_si256();
            UNROLL for (int c = 0; c < 8; c++) {
                __m256i wq = pg2_k_chunk(T, blk, c);
                __m256i sv = pg2_k_scale32(T) ? _mm256_set1_epi32(sw[c]) : pg2_k_scale_vec(kd.sc, c);
                UNROLL for (int j = 0; j < C; j++) {
                    __m256i xq = _mm256_loadu_si256((const __m256i *)(xr[j] + 256 * b + 32 * c));
                    s[j] = _mm256_add_epi32(s[j], _mm256_madd_epi16(_mm256_maddubs_epi16(wq, xq), sv));
                }
            }
            UNROLL for (int j = 0; j < C; j++) {
                pi[i + R * j] = s[j];
                pm[i + R * j] = _mm256_madd_epi16(kd.mn, _mm256_loadu_si256((const __m256i *)(xbs[j] + 16 * b)));
            }
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

/* 1 token: kernels_avx2_matvec.c; 2-3: 4 rows x 2 tokens; 4 and more: 2 rows x 4 tokens */
#define DOT_GEMM(name, tile, T, matvec)                                                                \
    static void name(GEMM_ARGS) {                                                                      \
        if (nc == 1) {                                                                                 \
            matvec(n, y, w, ldw, nr, x, work);                                                         \
        } else if (nc < 4) {                                                                           \
            SWEEP_RC(tile, T, 4, 2);                                                                   \
        } else {                                                                                       \
            SWEEP_RC(tile, T, 2, 4);                                                                   \
        }                                                                                              \
    }

DOT_GEMM(gemm_q4_0, a_tile_pairs, PG_TYPE_Q4_0, pg_avx2_matvec_q4_0)
DOT_GEMM(gemm_q4_1, a_tile_pairs, PG_TYPE_Q4_1, pg_avx2_matvec_q4_1)
DOT_GEMM(gemm_q5_0, a_tile_pairs, PG_TYPE_Q5_0, pg_avx2_matvec_q5_0)
DOT_GEMM(gemm_q5_1, a_tile_pairs, PG_TYPE_Q5_1, pg_avx2_matvec_q5_1)
DOT_GEMM(gemm_q8_0, a_tile, PG_TYPE_Q8_0, pg_avx2_matvec_q8_0)
DOT_GEMM(gemm_q2k, k_tile, PG_TYPE_Q2_K, pg_avx2_matvec_q2k)
DOT_GEMM(gemm_q3k, k_tile, PG_TYPE_Q3_K, pg_avx2_matvec_q3k)
DOT_GEMM(gemm_q4k, k_tile, PG_TYPE_Q4_K, pg_avx2_matvec_q4k)
DOT_GEMM(gemm_q5k, k_tile, PG_TYPE_Q5_K, pg_avx2_matvec_q5k)
DOT_GEMM(gemm_q6k, k_tile, PG_TYPE_Q6_K, pg_avx2_matvec_q6k)

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
