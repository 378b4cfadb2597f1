/* kernels_neon_q.h -- body of the NEON quantized matmuls, included twice by
 * kernels_neon.c: NQ_DP = 0 (SMULL/SADALP) and NQ_DP = 1 (SDOT, compiled for
 * the dotprod extension); NQ(name) names each instantiation. */

/* acc + 4-way dot products of 16 signed bytes */
static inline __attribute__((always_inline)) int32x4_t NQ(dot16)(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if NQ_DP && defined(__clang__)   /* clang declares vdotq_s32 only for -march=...+dotprod */
    __asm__("sdot %0.4s, %1.16b, %2.16b" : "+w"(acc) : "w"(a), "w"(b));
    return acc;
#elif NQ_DP
    return vdotq_s32(acc, a, b);
#else
    int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    int16x8_t hi = vmull_high_s8(a, b);
    return vpadalq_s16(vpadalq_s16(acc, lo), hi);
#endif
}

INLINE void NQ(a_gemm_t)(const int T, int64_t n, float *y, int64_t ldy, const uint8_t *w, size_t ldw,
                     int nr, const uint8_t *x, size_t ldx, int nc) {
    int64_t nb = n / 32;
    const int has_min = T == PG_TYPE_Q4_1 || T == PG_TYPE_Q5_1;
    for (int r = 0; r < nr; r++) {
        const uint8_t *row = w + (size_t)r * ldw;
        for (int c0 = 0; c0 < nc; c0 += N_RN) {
            int rn = PG_MIN(N_RN, nc - c0);
            float sum[N_RN] = {0};
            for (int64_t b = 0; b < nb; b++) {
                int8x16_t w0, w1;
                float d, m = 0.0f;
                a_unpack(T, row + b * a_block_bytes(T), &w0, &w1, &d, &m);
                for (int j = 0; j < rn; j++) {
                    const uint8_t *xr = x + (size_t)(c0 + j) * ldx;
                    const int8_t *q = (const int8_t *)xr + 32 * b;
                    int32x4_t t = NQ(dot16)(NQ(dot16)(vdupq_n_s32(0), w0, vld1q_s8(q)), w1, vld1q_s8(q + 16));
                    sum[j] += (float)vaddvq_s32(t) * (d * pg_act_q8_d(xr, n)[b]);
                    if (has_min) sum[j] += m * pg_act_q8_s(xr, n)[b];
                }
            }
            for (int j = 0; j < rn; j++) y[(c0 + j) * ldy + r] = sum[j];
        }
    }
}

#define A_GEMM(t, T) \
    static void NQ(gemm_##t)(GEMM_ARGS) { (void)work; NQ(a_gemm_t)(T, n, y, ldy, w, ldw, nr, x, ldx, nc); }
A_GEMM(q4_0, PG_TYPE_Q4_0)
A_GEMM(q4_1, PG_TYPE_Q4_1)
A_GEMM(q5_0, PG_TYPE_Q5_0)
A_GEMM(q5_1, PG_TYPE_Q5_1)
A_GEMM(q8_0, PG_TYPE_Q8_0)
#undef A_GEMM

INLINE void NQ(k_gemm_t)(const int T, int64_t n, float *y, int64_t ldy, const uint8_t *w, size_t ldw,
                     int nr, const uint8_t *x, size_t ldx, int nc) {
    int64_t nb = n / 256;
    for (int r = 0; r < nr; r++) {
        const uint8_t *row = w + (size_t)r * ldw;
        for (int c0 = 0; c0 < nc; c0 += N_RN) {
            int rn = PG_MIN(N_RN, nc - c0);
            float sum[N_RN] = {0};
            for (int64_t b = 0; b < nb; b++) {
                uint8x16_t u[16];
                pg_kscales k;
                k_unpack(T, row + b * k_block_bytes(T), u, &k);
                int16x8_t mn0 = vld1q_s16(k.mn), mn1 = vld1q_s16(k.mn + 8);
                for (int j = 0; j < rn; j++) {
                    const uint8_t *xr = x + (size_t)(c0 + j) * ldx;
                    const int8_t *q = (const int8_t *)xr + 256 * b;
                    int32x4_t is = vdupq_n_s32(0);
                    for (int g = 0; g < 16; g++) {
                        int32x4_t t = NQ(dot16)(vdupq_n_s32(0), vreinterpretq_s8_u8(u[g]), vld1q_s8(q + 16 * g));
                        is = vmlaq_n_s32(is, t, k.sc[g]);
                    }
                    const int16_t *bs = pg_act_q8_bsums(xr, n) + 16 * b;
                    int16x8_t b0 = vld1q_s16(bs), b1 = vld1q_s16(bs + 8);
                    int32x4_t ms = vmull_s16(vget_low_s16(mn0), vget_low_s16(b0));
                    ms = vmlal_high_s16(ms, mn0, b0);
                    ms = vmlal_s16(ms, vget_low_s16(mn1), vget_low_s16(b1));
                    ms = vmlal_high_s16(ms, mn1, b1);
                    float dx = pg_act_q8_d(xr, n)[b];
                    sum[j] += dx * (k.d * (float)vaddvq_s32(is) - k.dmin * (float)vaddvq_s32(ms));
                }
            }
            for (int j = 0; j < rn; j++) y[(c0 + j) * ldy + r] = sum[j];
        }
    }
}

#define K_GEMM(t, T) \
    static void NQ(gemm_##t)(GEMM_ARGS) { (void)work; NQ(k_gemm_t)(T, n, y, ldy, w, ldw, nr, x, ldx, nc); }
K_GEMM(q2k, PG_TYPE_Q2_K)
K_GEMM(q3k, PG_TYPE_Q3_K)
K_GEMM(q4k, PG_TYPE_Q4_K)
K_GEMM(q5k, PG_TYPE_Q5_K)
K_GEMM(q6k, PG_TYPE_Q6_K)
#undef K_GEMM
