/* kernels_neon_q.h -- the NEON quantized matmuls, instantiated once per
 * translation unit: kernels_neon.c (NQ_DP = 0, SMULL + SMLAL/SADALP, any
 * arm64) and kernels_neon_dp.c (NQ_DP = 1, SDOT, compiled for the dotprod
 * extension); NQ(name) names each instantiation's functions.
 *
 * A tile is R weight rows x C tokens, 4 or 8 outputs; output o = i + R*j (row
 * i, token j) is lane o % 4 of output vector o / 4.  Per block, each output's
 * exact integer dot product is built in an int32x4 of partial sums, reduce4
 * turns four of them into one vector (lane = output), and the float part runs
 * once per vector in the canonical order of kernels.h:
 *   32-blocks: acc = fma(isum, d*dx, acc) [+ fma(m, s, acc) for Q4_1/Q5_1],
 *              isum over the signed weights (u - 8, u - 16, u, int8)
 *   K-quants:  acc = fma(I, d*dx, acc); acc = fma(M, (-dmin)*dx, acc),
 *              I = sum sc[g] * dot_g, M = sum mn[g] * bsums[g] (pg_kscales)
 * Both variants compute the same integers, and VFMA is fmaf per lane, so they
 * equal the scalar reference bit for bit.  Each weight block is unpacked once
 * per tile and reused for its C tokens; rows or tokens missing at the edges of
 * a chunk repeat the last one and their lanes are dropped.  The helpers are in
 * kernels_neon_unpack.h. */

/* ---------------------------------------------------------------------- */
/* Integer dot products                                                   */
/* ---------------------------------------------------------------------- */

/* int32x4 partial sums of one 32-block: w0 . q0 + w1 . q1 (16 bytes each) */
INLINE int32x4_t NQ(a_dot)(const int T, int8x16_t w0, int8x16_t w1, int8x16_t q0, int8x16_t q1) {
#if NQ_DP && defined(__clang__)   /* older clang declares vdotq_s32 only for -march=...+dotprod */
    (void)T;
    int32x4_t acc = vdupq_n_s32(0);
    __asm__("sdot %0.4s, %1.16b, %2.16b\n\tsdot %0.4s, %3.16b, %4.16b"
            : "+w"(acc) : "w"(w0), "w"(q0), "w"(w1), "w"(q1));
    return acc;
#elif NQ_DP
    (void)T;
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, q0), w1, q1);
#else
    if (T == PG_TYPE_Q8_0) {   /* |w * q| up to 2^14: widen each pair of products to int32 */
        int32x4_t acc = vpaddlq_s16(vmull_s8(vget_low_s8(w0), vget_low_s8(q0)));
        acc = vpadalq_s16(acc, vmull_high_s8(w0, q0));
        acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w1), vget_low_s8(q1)));
        return vpadalq_s16(acc, vmull_high_s8(w1, q1));
    }
    /* |w| <= 31: four products per int16 lane stay below 2^15 */
    int16x8_t t = vmull_s8(vget_low_s8(w0), vget_low_s8(q0));
    t = vmlal_high_s8(t, w0, q0);
    t = vmlal_s8(t, vget_low_s8(w1), vget_low_s8(q1));
    t = vmlal_high_s8(t, w1, q1);
    return vpaddlq_s16(t);
#endif
}

/* acc + sc * (u0 . q0 [+ u1 . q1 when pair]), u < 64 unsigned values of one
 * scale group (16 values, or 32 for Q4_K/Q5_K where pairs share a scale) */
INLINE int32x4_t NQ(k_acc)(const int pair, int32x4_t acc, int8x16_t u0, int8x16_t u1, int8x16_t q0,
                           int8x16_t q1, int16_t sc) {
#if NQ_DP
#if defined(__clang__)
    int32x4_t t = vdupq_n_s32(0);
    __asm__("sdot %0.4s, %1.16b, %2.16b" : "+w"(t) : "w"(u0), "w"(q0));
    if (pair) __asm__("sdot %0.4s, %1.16b, %2.16b" : "+w"(t) : "w"(u1), "w"(q1));
#else
    int32x4_t t = vdotq_s32(vdupq_n_s32(0), u0, q0);
    if (pair) t = vdotq_s32(t, u1, q1);
#endif
    return vmlaq_n_s32(acc, t, sc);
#else
    /* u <= 63 (two products a lane) or, paired, u <= 31 (four): below 2^15 */
    int16x8_t t = vmull_s8(vget_low_s8(u0), vget_low_s8(q0));
    t = vmlal_high_s8(t, u0, q0);
    if (pair) {
        t = vmlal_s8(t, vget_low_s8(u1), vget_low_s8(q1));
        t = vmlal_high_s8(t, u1, q1);
    }
    acc = vmlal_n_s16(acc, vget_low_s16(t), sc);
    return vmlal_high_n_s16(acc, t, sc);
#endif
}

/* ---------------------------------------------------------------------- */
/* Tiles: R rows (wr[R] row starts) x C tokens (xr[C] activation rows)     */
/* ---------------------------------------------------------------------- */

/* y (nc, ldy): the tile's outputs, nr/nc of them real (at most R/C) */
INLINE void NQ(a_tile)(const int T, const int R, const int C, int64_t n, const uint8_t *const *wr,
                       const uint8_t *const *xr, float *y, int64_t ldy, int nr, int nc) {
    const size_t bb = a_block_bytes(T);
    const int has_min = T == PG_TYPE_Q4_1 || T == PG_TYPE_Q5_1;
    const float *xd[4], *xs[4];   /* (C) per-token scales d[n/32], s[n/32] */
    UNROLL for (int j = 0; j < C; j++) {
        xd[j] = pg_act_q8_d(xr[j], n);
        xs[j] = pg_act_q8_s(xr[j], n);
    }
    float32x4_t acc[2] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};   /* (R*C/4) */
    for (int64_t b = 0; b < n / 32; b++) {
        int8x16_t q0[4], q1[4];   /* (C) the block's activations */
        UNROLL for (int j = 0; j < C; j++) {
            q0[j] = vld1q_s8((const int8_t *)xr[j] + 32 * b);
            q1[j] = vld1q_s8((const int8_t *)xr[j] + 32 * b + 16);
        }
        int32x4_t p[8];           /* (R*C) partial sums, output i + R*j */
        float d[4], m[4] = {0};   /* (R) */
        UNROLL for (int i = 0; i < R; i++) {
            const uint8_t *blk = wr[i] + b * bb;
            __builtin_prefetch(blk + PF_BYTES);
            int8x16_t w0, w1;
            a_unpack(T, blk, &w0, &w1, &d[i], &m[i]);
            UNROLL for (int j = 0; j < C; j++) p[i + R * j] = NQ(a_dot)(T, w0, w1, q0[j], q1[j]);
        }
        float dx[4], s[4];        /* (C) */
        UNROLL for (int j = 0; j < C; j++) {
            dx[j] = xd[j][b];
            s[j] = xs[j][b];
        }
        UNROLL for (int v = 0; v < R * C / 4; v++) {
            float32x4_t scale = vmulq_f32(lanes_by_row(R, d), lanes_by_token(R, dx, v));
            acc[v] = vfmaq_f32(acc[v], vcvtq_f32_s32(reduce4(p + 4 * v)), scale);
            if (has_min) acc[v] = vfmaq_f32(acc[v], lanes_by_row(R, m), lanes_by_token(R, s, v));
        }
    }
    store_lanes(R, C, acc, y, ldy, nr, nc);
}

INLINE void NQ(k_tile)(const int T, const int R, const int C, int64_t n, const uint8_t *const *wr,
                       const uint8_t *const *xr, float *y, int64_t ldy, int nr, int nc) {
    const size_t bb = k_block_bytes(T);
    const int pair = T == PG_TYPE_Q4_K || T == PG_TYPE_Q5_K;   /* groups 2s, 2s+1 share a scale */
    const float *xd[4];           /* (C) per-token block scales d[n/256] */
    const int16_t *xbs[4];        /* (C) per-token group sums bsums[n/16] */
    UNROLL for (int j = 0; j < C; j++) {
        xd[j] = pg_act_q8_d(xr[j], n);
        xbs[j] = pg_act_q8_bsums(xr[j], n);
    }
    float32x4_t acc[2] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};   /* (R*C/4) */
    for (int64_t b = 0; b < n / 256; b++) {
        const uint8_t *blk[4];    /* (R) */
        pg_kscales ks[4];         /* (R) */
        float d[4], nmin[4];      /* (R) d and -dmin */
        UNROLL for (int i = 0; i < R; i++) {
            blk[i] = wr[i] + b * bb;
            UNROLL for (int l = 0; l < (int)bb; l += 64) __builtin_prefetch(blk[i] + PF_BYTES + l);
            k_scales(T, blk[i], &ks[i]);
            d[i] = ks[i].d;
            nmin[i] = -ks[i].dmin;
        }
        int32x4_t pi[8], pm[8];   /* (R*C) partial I and M, output i + R*j */
        UNROLL for (int o = 0; o < R * C; o++) pi[o] = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {   /* halves of 128 values, groups 8h + g */
            int16x8_t sc[4];              /* (R) scales of groups 8h .. 8h+7, one register a row */
            UNROLL for (int i = 0; i < R; i++) sc[i] = vld1q_s16(ks[i].sc + 8 * h);
            UNROLL for (int g = 0; g < 8; g += 1 + pair) {
                int8x16_t q0[4], q1[4];   /* (C) the group's activations */
                UNROLL for (int j = 0; j < C; j++) {
                    const int8_t *q = (const int8_t *)xr[j] + 256 * b + 128 * h + 16 * g;
                    q0[j] = vld1q_s8(q);
                    q1[j] = pair ? vld1q_s8(q + 16) : q0[j];
                }
                UNROLL for (int i = 0; i < R; i++) {
                    int8x16_t u0 = k_group(T, blk[i], h, g), u1 = pair ? k_group(T, blk[i], h, g + 1) : u0;
                    UNROLL for (int j = 0; j < C; j++)
                        pi[i + R * j] = NQ(k_acc)(pair, pi[i + R * j], u0, u1, q0[j], q1[j], sc[i][g]);
                }
            }
        }
        UNROLL for (int i = 0; i < R; i++) {
            int16x8_t mn0 = vld1q_s16(ks[i].mn), mn1 = vld1q_s16(ks[i].mn + 8);
            UNROLL for (int j = 0; j < C; j++) {
                int16x8_t b0 = vld1q_s16(xbs[j] + 16 * b), b1 = vld1q_s16(xbs[j] + 16 * b + 8);
                int32x4_t ms = vmull_s16(vget_low_s16(mn0), vget_low_s16(b0));
                ms = vmlal_high_s16(ms, mn0, b0);
                ms = vmlal_s16(ms, vget_low_s16(mn1), vget_low_s16(b1));
                pm[i + R * j] = vmlal_high_s16(ms, mn1, b1);
            }
        }
        float dx[4];              /* (C) */
        UNROLL for (int j = 0; j < C; j++) dx[j] = xd[j][b];
        UNROLL for (int v = 0; v < R * C / 4; v++) {
            float32x4_t dxv = lanes_by_token(R, dx, v);
            acc[v] = vfmaq_f32(acc[v], vcvtq_f32_s32(reduce4(pi + 4 * v)), vmulq_f32(lanes_by_row(R, d), dxv));
            acc[v] = vfmaq_f32(acc[v], vcvtq_f32_s32(reduce4(pm + 4 * v)), vmulq_f32(lanes_by_row(R, nmin), dxv));
        }
    }
    store_lanes(R, C, acc, y, ldy, nr, nc);
}

/* ---------------------------------------------------------------------- */
/* The sweep over a chunk                                                 */
/* ---------------------------------------------------------------------- */

INLINE int NQ(is_k)(const int T) {
    return T == PG_TYPE_Q2_K || T == PG_TYPE_Q3_K || T == PG_TYPE_Q4_K || T == PG_TYPE_Q5_K || T == PG_TYPE_Q6_K;
}

/* Tokens c0 .. c1-1 of the chunk in tiles of R rows x C tokens; at the edges
 * the missing rows/tokens repeat the last real one (lanes dropped). */
INLINE void NQ(sweep)(const int T, const int R, const int C, int c0, int c1, int64_t n, float *y, int64_t ldy,
                      const uint8_t *w, size_t ldw, int nr, const uint8_t *x, size_t ldx) {
    for (int c = c0; c < c1; c += C) {
        const uint8_t *xr[4];   /* (C) */
        UNROLL for (int j = 0; j < C; j++) xr[j] = x + (size_t)PG_MIN(c + j, c1 - 1) * ldx;
        for (int r = 0; r < nr; r += R) {
            const uint8_t *wr[4];   /* (R) */
            UNROLL for (int i = 0; i < R; i++) wr[i] = w + (size_t)PG_MIN(r + i, nr - 1) * ldw;
            if (NQ(is_k)(T)) NQ(k_tile)(T, R, C, n, wr, xr, y + (int64_t)c * ldy + r, ldy, nr - r, c1 - c);
            else NQ(a_tile)(T, R, C, n, wr, xr, y + (int64_t)c * ldy + r, ldy, nr - r, c1 - c);
        }
    }
}

/* Whole groups of 4 tokens: 2 rows x 4 tokens a tile; the rest: pairs in 4x2
 * tiles, a last single token (and mat-vec) in 4x1 tiles. */
INLINE void NQ(gemm_t)(const int T, int64_t n, float *y, int64_t ldy, const uint8_t *w, size_t ldw, int nr,
                       const uint8_t *x, size_t ldx, int nc) {
    int c4 = nc / 4 * 4, c2 = c4 + (nc - c4) / 2 * 2;
    if (c4 > 0) NQ(sweep)(T, 2, 4, 0, c4, n, y, ldy, w, ldw, nr, x, ldx);
    if (c2 > c4) NQ(sweep)(T, 4, 2, c4, c2, n, y, ldy, w, ldw, nr, x, ldx);
    if (nc > c2) NQ(sweep)(T, 4, 1, c2, nc, n, y, ldy, w, ldw, nr, x, ldx);
}

#define Q_GEMM(t, T)                                                                                   \
    static void NQ(gemm_##t)(int64_t n, float *y, int64_t ldy, const void *w, size_t ldw, int nr,      \
                             const void *x, size_t ldx, int nc, void *work) {                           \
        (void)work;                                                                                    \
        NQ(gemm_t)(T, n, y, ldy, w, ldw, nr, x, ldx, nc);                                              \
    }
Q_GEMM(q4_0, PG_TYPE_Q4_0)
Q_GEMM(q4_1, PG_TYPE_Q4_1)
Q_GEMM(q5_0, PG_TYPE_Q5_0)
Q_GEMM(q5_1, PG_TYPE_Q5_1)
Q_GEMM(q8_0, PG_TYPE_Q8_0)
Q_GEMM(q2k, PG_TYPE_Q2_K)
Q_GEMM(q3k, PG_TYPE_Q3_K)
Q_GEMM(q4k, PG_TYPE_Q4_K)
Q_GEMM(q5k, PG_TYPE_Q5_K)
Q_GEMM(q6k, PG_TYPE_Q6_K)
#undef Q_GEMM

void NQ(pg_neon_fill_quant)(pg_kernels *k) {
    /* mr = 4: the mat-vec tile is 4 rows (the batch tiles' 4 or 2 rows divide
     * it); nr = 4 tokens, the widest batch tile */
#define SET(type, f) k->gemm[type] = (pg_gemm_kernel){.fn = NQ(f), .mr = 4, .nr = 4}
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
}
