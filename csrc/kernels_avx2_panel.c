/* kernels_avx2_panel.c -- AVX2 matmul of quantized weights on batches:
 * outer-product tiles over 8-token activation panels.
 *
 * The activations of 8 tokens are regrouped (once per pg_matmul call) so that
 * one ymm holds 4 consecutive values of each of the 8 tokens.  A tile then
 * broadcasts 4 unpacked weight values of a row (a 32-bit load) and one
 * vpmaddubsw multiplies them with all 8 tokens at once: no horizontal sums,
 * and the per-block float work is shared by 8 tokens.  Lane t of every
 * vector is token t, so each output is one float chain over the blocks in
 * the canonical order of kernels.h, bit-identical to the dot form.
 *   32-blocks: the 16-bit pair sums of up to 8 vpmaddubsw (as many as cannot
 *     overflow: 8 for 4-bit weights, 4 for 5-bit, 1 for Q8_0 with the sign
 *     trick) are added, widened by one vpmaddwd, then per block
 *     acc = fma(isum - off * qsum, d * dx, acc) [+ fma(m, s, acc)].
 *   K-quants: per scale group, the 16-bit sums (1-8 vpmaddubsw) go through
 *     vpmaddwd with the group's 16-bit scale into the block's int32 sum I; the
 *     minimums M are 8 vpmaddwd of (mn pairs) x (bsums pairs); per block
 *     acc = fma(I, d * dx, acc); acc = fma(M, -dmin * dx, acc).
 * Weight rows are unpacked ("repacked") into the thread's work buffer once per
 * chunk and reused for every panel of it. */
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

#define P_COLS 8      /* tokens per panel (ymm int32 lanes) */
#define P_RM 3        /* weight rows per tile */
#define P_V 2         /* panels per tile */

/* vpmaddubsw results that can be added in 16 bits: u * q pair sums are at
 * most 2 * umax * 127 (the sum of n of them must stay <= 32767) */
INLINE int pairs_per_widen(const int T) {
    switch (T) {
    case PG_TYPE_Q4_0: case PG_TYPE_Q4_1: case PG_TYPE_Q4_K: return 8;    /* u <= 15 */
    case PG_TYPE_Q5_0: case PG_TYPE_Q5_1: case PG_TYPE_Q5_K: return 4;    /* u <= 31 */
    case PG_TYPE_Q2_K: case PG_TYPE_Q3_K: return 4;                       /* u <= 7; one 16-group */
    case PG_TYPE_Q6_K: return 2;                                          /* u <= 63 */
    default: return 1;                                                    /* Q8_0: |w| <= 128 */
    }
}

/* GCC otherwise computes all the products of an unrolled block first and keeps them on the
 * stack (AVX2 has 16 ymm registers): a third of the hot loop's instructions were spills and
 * reloads.  This pins each running sum where the source has it; mat-mat speed rose by 25-60%
 * (bench_matmul, PYGEMMA_CPU=avx2).  The operations and their order are unchanged. */
#define KEEP_IN_REGISTER(x) __asm__("" : "+x"(x))

/* y[(8 v + t) * ldy] = lane t of acc, for the tokens t < ncols */
INLINE void store_cols(float *y, int64_t ldy, __m256 acc, int ncols) {
    float out[8];
    _mm256_storeu_ps(out, acc);
    for (int t = 0; t < P_COLS && t < ncols; t++) y[t * ldy] = out[t];
}

/* ---------------------------------------------------------------------- */
/* Activation panels                                                      */
/* ---------------------------------------------------------------------- */

/* Q8_32 panel, per block of 32 (352 bytes):
 *   q: (8, 8, 4) int8 -- values 4k..4k+3 of each token; d: (8) f32; s: (8) f32; qsum: (8) int32 */
#define AP_BLOCK 352
#define AP_D 256
#define AP_S 288
#define AP_QSUM 320
static size_t ap_bytes(int64_t n) { return (size_t)(n / 32) * AP_BLOCK; }

static void to_panel_q8_32(int64_t n, const void *x, size_t ldx, int cols, void *panel) {
    int64_t nb = n / 32;
    uint8_t *p = panel;
    if (cols < P_COLS) memset(panel, 0, ap_bytes(n));
    for (int c = 0; c < cols; c++) {
        const uint8_t *row = (const uint8_t *)x + (size_t)c * ldx;
        const float *d = pg_act_q8_d(row, n), *s = pg_act_q8_s(row, n);
        const int16_t *qsum = pg_act_q8_qsum(row, n);
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *pb = p + b * AP_BLOCK;
            for (int k4 = 0; k4 < 8; k4++) memcpy(pb + 32 * k4 + 4 * c, row + 32 * b + 4 * k4, 4);
            ((float *)(pb + AP_D))[c] = d[b];
            ((float *)(pb + AP_S))[c] = s[b];
            ((int32_t *)(pb + AP_QSUM))[c] = qsum[b];
        }
    }
}

/* Q8_256 panel, per block of 256 (2336 bytes):
 *   q: (64, 8, 4) int8; bs: (8, 8, 2) int16 -- bsums of groups 2g, 2g+1; d: (8) f32 */
#define KP_BLOCK 2336
#define KP_BS 2048
#define KP_D 2304
static size_t kp_bytes(int64_t n) { return (size_t)(n / 256) * KP_BLOCK; }

static void to_panel_q8_256(int64_t n, const void *x, size_t ldx, int cols, void *panel) {
    int64_t nb = n / 256;
    uint8_t *p = panel;
    if (cols < P_COLS) memset(panel, 0, kp_bytes(n));
    for (int c = 0; c < cols; c++) {
        const uint8_t *row = (const uint8_t *)x + (size_t)c * ldx;
        const float *d = pg_act_q8_d(row, n);
        const int16_t *bs = pg_act_q8_bsums(row, n);
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *pb = p + b * KP_BLOCK;
            for (int k4 = 0; k4 < 64; k4++) memcpy(pb + 32 * k4 + 4 * c, row + 256 * b + 4 * k4, 4);
            for (int g = 0; g < 8; g++) memcpy(pb + KP_BS + 32 * g + 4 * c, bs + 16 * b + 2 * g, 4);
            ((float *)(pb + KP_D))[c] = d[b];
        }
    }
}

/* ---------------------------------------------------------------------- */
/* 32-block weights                                                       */
/* ---------------------------------------------------------------------- */

/* A repacked 32-block: unsigned values (|w| for Q8_0), the signed Q8_0
 * values for the sign trick, d and m as floats. */
typedef struct {
    uint8_t q[32];
    int8_t sq[32];
    float d, m;
} arep;

/* The work buffer serves the panels' repacked rows and the mat-vec's buffers (the same kernel entry). */
static size_t a_work(int64_t n) {
    return PG_MAX((size_t)P_RM * (size_t)(n / 32) * sizeof(arep), pg_avx2_matvec_work_a(n));
}

INLINE void a_repack(const int T, const uint8_t *src, int64_t nb, arep *dst) {
    for (int64_t b = 0; b < nb; b++) {
        pg_half d, m;
        __m256i q = pg2_a_unpack(T, src + b * pg2_a_block_bytes(T), &d, &m);
        if (pg2_a_kind(T) == PG2_SIGNED) {
            _mm256_storeu_si256((__m256i *)dst[b].sq, q);
            q = _mm256_sign_epi8(q, q);
        }
        _mm256_storeu_si256((__m256i *)dst[b].q, q);
        dst[b].d = _cvtsh_ss(d);
        dst[b].m = _cvtsh_ss(m);
    }
}

/* RM rows (rw: repacked) x V panels of 8 tokens, all blocks. */
INLINE void ap_tile(const int T, const int RM, const int V, int64_t nb, const arep *const *rw,
                    const uint8_t *pan, size_t pst, float *y, int64_t ldy, int nrows, int ncols) {
    const int kind = pg2_a_kind(T), ppw = pairs_per_widen(T);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[P_RM][P_V];
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int v = 0; v < V; v++) acc[i][v] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i t[P_RM][P_V], p16[P_RM][P_V];
        UNROLL for (int k4 = 0; k4 < 8; k4++) {
            __m256i xv[P_V];
            UNROLL for (int v = 0; v < V; v++)
                xv[v] = _mm256_load_si256((const __m256i *)(pan + v * pst + b * AP_BLOCK + 32 * k4));
            UNROLL for (int i = 0; i < RM; i++) {
                __m256i wb = pg2_bcast32(rw[i][b].q + 4 * k4), sb;
                if (kind == PG2_SIGNED) sb = pg2_bcast32(rw[i][b].sq + 4 * k4);
                UNROLL for (int v = 0; v < V; v++) {
                    __m256i m = _mm256_maddubs_epi16(wb, kind == PG2_SIGNED ? _mm256_sign_epi8(xv[v], sb) : xv[v]);
                    p16[i][v] = k4 % ppw == 0 ? m : _mm256_add_epi16(p16[i][v], m);
                    KEEP_IN_REGISTER(p16[i][v]);
                    if (k4 % ppw == ppw - 1) {
                        __m256i w32 = _mm256_madd_epi16(p16[i][v], ones);
                        t[i][v] = k4 == ppw - 1 ? w32 : _mm256_add_epi32(t[i][v], w32);
                        KEEP_IN_REGISTER(t[i][v]);
                    }
                }
            }
        }
        UNROLL for (int v = 0; v < V; v++) {
            const uint8_t *pb = pan + v * pst + b * AP_BLOCK;
            __m256 dx = _mm256_load_ps((const float *)(pb + AP_D));
            __m256i off = _mm256_setzero_si256();
            if (kind == PG2_OFFSET)
                off = _mm256_slli_epi32(_mm256_load_si256((const __m256i *)(pb + AP_QSUM)), pg2_a_offset_shift(T));
            UNROLL for (int i = 0; i < RM; i++) {
                __m256i ti = kind == PG2_OFFSET ? _mm256_sub_epi32(t[i][v], off) : t[i][v];
                acc[i][v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ti), _mm256_mul_ps(_mm256_set1_ps(rw[i][b].d), dx),
                                            acc[i][v]);
                if (kind == PG2_MIN)
                    acc[i][v] = _mm256_fmadd_ps(_mm256_set1_ps(rw[i][b].m),
                                                _mm256_load_ps((const float *)(pb + AP_S)), acc[i][v]);
            }
        }
    }
    UNROLL for (int i = 0; i < RM; i++) {
        if (i >= nrows) break;
        UNROLL for (int v = 0; v < V; v++) store_cols(y + (size_t)P_COLS * v * ldy + i, ldy, acc[i][v], ncols - P_COLS * v);
    }
}

/* ---------------------------------------------------------------------- */
/* K-quant weights                                                        */
/* ---------------------------------------------------------------------- */

/* A repacked K-quant block: values, each 16-group's scale doubled into a
 * 32-bit word (a broadcast gives it in every 16-bit lane), the minimum
 * multipliers in pairs (groups 2g, 2g+1 per word), d and dmin. */
typedef struct {
    uint8_t q[256];
    int32_t sc2[16];
    int16_t mn[16];
    float d, dmin;
} krep;

static size_t k_work(int64_t n) {
    return PG_MAX((size_t)P_RM * (size_t)(n / 256) * sizeof(krep), pg_avx2_matvec_work_k(n));
}

INLINE void k_repack(const int T, const uint8_t *src, int64_t nb, krep *dst) {
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = src + b * pg2_k_block_bytes(T);
        krep *o = dst + b;
        UNROLL for (int c = 0; c < 8; c++) _mm256_storeu_si256((__m256i *)(o->q + 32 * c), pg2_k_chunk(T, blk, c));
        pg2_kdec k = pg2_k_dec(T, blk);
        __m256i lo = _mm256_unpacklo_epi16(k.sc, k.sc), hi = _mm256_unpackhi_epi16(k.sc, k.sc);
        _mm256_storeu_si256((__m256i *)o->sc2, _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256((__m256i *)(o->sc2 + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
        _mm256_storeu_si256((__m256i *)o->mn, k.mn);
        o->d = k.d;
        o->dmin = k.dmin;
    }
}

INLINE void kp_tile(const int T, const int RM, const int V, int64_t nb, const krep *const *rw,
                    const uint8_t *pan, size_t pst, float *y, int64_t ldy, int nrows, int ncols) {
    const int ppw = pairs_per_widen(T);
    __m256 acc[P_RM][P_V];
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int v = 0; v < V; v++) acc[i][v] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i isum[P_RM][P_V], p16[P_RM][P_V];
        UNROLL for (int i = 0; i < RM; i++) UNROLL for (int v = 0; v < V; v++) isum[i][v] = _mm256_setzero_si256();
        for (int k8 = 0; k8 < 64; k8 += 8) {            /* 32 values a step: whole scale groups */
            UNROLL for (int k = 0; k < 8; k++) {
                const int k4 = k8 + k;
                __m256i xv[P_V];
                UNROLL for (int v = 0; v < V; v++)
                    xv[v] = _mm256_load_si256((const __m256i *)(pan + v * pst + b * KP_BLOCK + 32 * k4));
                UNROLL for (int i = 0; i < RM; i++) {
                    __m256i wb = pg2_bcast32(rw[i][b].q + 4 * k4);
                    UNROLL for (int v = 0; v < V; v++) {
                        __m256i m = _mm256_maddubs_epi16(wb, xv[v]);
                        p16[i][v] = k % ppw == 0 ? m : _mm256_add_epi16(p16[i][v], m);
                        KEEP_IN_REGISTER(p16[i][v]);
                        if (k % ppw == ppw - 1) {
                            __m256i sc = _mm256_set1_epi32(rw[i][b].sc2[k4 / 4]);
                            isum[i][v] = _mm256_add_epi32(isum[i][v], _mm256_madd_epi16(p16[i][v], sc));
                            KEEP_IN_REGISTER(isum[i][v]);
                        }
                    }
                }
            }
        }
        UNROLL for (int v = 0; v < V; v++) {
            const uint8_t *pb = pan + v * pst + b * KP_BLOCK;
            __m256 dx = _mm256_load_ps((const float *)(pb + KP_D));
            UNROLL for (int i = 0; i < RM; i++) {
                __m256i msum = _mm256_setzero_si256();
                UNROLL for (int g = 0; g < 8; g++)
                    msum = _mm256_add_epi32(msum, _mm256_madd_epi16(pg2_bcast32(rw[i][b].mn + 2 * g),
                                                                    _mm256_load_si256((const __m256i *)(pb + KP_BS + 32 * g))));
                acc[i][v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[i][v]),
                                            _mm256_mul_ps(_mm256_set1_ps(rw[i][b].d), dx), acc[i][v]);
                acc[i][v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum),
                                            _mm256_mul_ps(_mm256_set1_ps(-rw[i][b].dmin), dx), acc[i][v]);
            }
        }
    }
    UNROLL for (int i = 0; i < RM; i++) {
        if (i >= nrows) break;
        UNROLL for (int v = 0; v < V; v++) store_cols(y + (size_t)P_COLS * v * ldy + i, ldy, acc[i][v], ncols - P_COLS * v);
    }
}

/* ---------------------------------------------------------------------- */
/* Chunks: repack P_RM rows, then sweep the panels                        */
/* ---------------------------------------------------------------------- */

#define GEMM_ARGS int64_t n, float *y, int64_t ldy, const void *w, size_t ldw, int nr, \
                  const void *x, size_t ldx, int nc, void *work

/* x = the chunk's first panel, ldx = the panel stride (see pg_gemm_kernel.pfn) */
#define PANEL_GEMM(name, T, BLK, BS, repack, tile)                                                     \
    static void name(GEMM_ARGS) {                                                                      \
        const uint8_t *pan = x;                                                                        \
        int64_t nb = n / (BS);                                                                         \
        BLK *rows = work;                                                                              \
        for (int r = 0; r < nr; r += P_RM) {                                                           \
            int rm = PG_MIN(P_RM, nr - r);                                                             \
            const BLK *rw[P_RM];                                                                       \
            for (int i = 0; i < rm; i++) repack(T, (const uint8_t *)w + (size_t)(r + i) * ldw, nb, rows + i * nb); \
            for (int i = 0; i < P_RM; i++) rw[i] = rows + PG_MIN(i, rm - 1) * nb;                      \
            for (int c = 0; c < nc; c += P_COLS * P_V) {                                               \
                const uint8_t *pc = pan + (size_t)(c / P_COLS) * ldx;                                  \
                float *yc = y + (size_t)c * ldy + r;                                                   \
                if (nc - c > P_COLS) tile(T, P_RM, P_V, nb, rw, pc, ldx, yc, ldy, rm, nc - c);         \
                else tile(T, P_RM, 1, nb, rw, pc, ldx, yc, ldy, rm, nc - c);                           \
            }                                                                                          \
        }                                                                                              \
    }

PANEL_GEMM(pgemm_q4_0, PG_TYPE_Q4_0, arep, 32, a_repack, ap_tile)
PANEL_GEMM(pgemm_q4_1, PG_TYPE_Q4_1, arep, 32, a_repack, ap_tile)
PANEL_GEMM(pgemm_q5_0, PG_TYPE_Q5_0, arep, 32, a_repack, ap_tile)
PANEL_GEMM(pgemm_q5_1, PG_TYPE_Q5_1, arep, 32, a_repack, ap_tile)
PANEL_GEMM(pgemm_q8_0, PG_TYPE_Q8_0, arep, 32, a_repack, ap_tile)
PANEL_GEMM(pgemm_q2k, PG_TYPE_Q2_K, krep, 256, k_repack, kp_tile)
PANEL_GEMM(pgemm_q3k, PG_TYPE_Q3_K, krep, 256, k_repack, kp_tile)
PANEL_GEMM(pgemm_q4k, PG_TYPE_Q4_K, krep, 256, k_repack, kp_tile)
PANEL_GEMM(pgemm_q5k, PG_TYPE_Q5_K, krep, 256, k_repack, kp_tile)
PANEL_GEMM(pgemm_q6k, PG_TYPE_Q6_K, krep, 256, k_repack, kp_tile)

void pg_avx2_fill_panel(pg_kernels *k) {
#define SET(type, fn, to, bytes, wk)                         \
    do {                                                     \
        pg_gemm_kernel *g = &k->gemm[type];                  \
        g->pfn = fn;                                         \
        g->pmr = P_RM;                                       \
        g->panel_cols = P_COLS;                              \
        g->to_panel = to;                                    \
        g->panel_bytes = bytes;                              \
        g->work = wk;                                        \
    } while (0)
    SET(PG_TYPE_Q4_0, pgemm_q4_0, to_panel_q8_32, ap_bytes, a_work);
    SET(PG_TYPE_Q4_1, pgemm_q4_1, to_panel_q8_32, ap_bytes, a_work);
    SET(PG_TYPE_Q5_0, pgemm_q5_0, to_panel_q8_32, ap_bytes, a_work);
    SET(PG_TYPE_Q5_1, pgemm_q5_1, to_panel_q8_32, ap_bytes, a_work);
    SET(PG_TYPE_Q8_0, pgemm_q8_0, to_panel_q8_32, ap_bytes, a_work);
    SET(PG_TYPE_Q2_K, pgemm_q2k, to_panel_q8_256, kp_bytes, k_work);
    SET(PG_TYPE_Q3_K, pgemm_q3k, to_panel_q8_256, kp_bytes, k_work);
    SET(PG_TYPE_Q4_K, pgemm_q4k, to_panel_q8_256, kp_bytes, k_work);
    SET(PG_TYPE_Q5_K, pgemm_q5k, to_panel_q8_256, kp_bytes, k_work);
    SET(PG_TYPE_Q6_K, pgemm_q6k, to_panel_q8_256, kp_bytes, k_work);
#undef SET
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else /* not x86-64 */
void pg_avx2_fill_panel(pg_kernels *k) { (void)k; }
#endif
