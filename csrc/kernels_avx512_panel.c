/* kernels_avx512_panel.c -- AVX-512 matmul of quantized weights on batches:
 * outer-product tiles over 16-column activation panels.
 *
 * The activations of 16 tokens are regrouped (once per pg_matmul call) so that
 * one zmm holds 4 consecutive values of each of the 16 tokens.  A tile then
 * broadcasts 4 unpacked weight values of a row (a 32-bit load) and one
 * vpdpbusd does 64 multiply-adds for 16 tokens at once: no horizontal sums,
 * and the per-block float scaling is shared by 16 tokens.
 *   32-blocks: per block and (row, 16 tokens): 8 vpdpbusd, then
 *              acc = fma(cvt(t - off * qsum), d * dx, acc) [+ fma(m, s, acc)]
 *              (the canonical order of kernels.h: bit-identical to the dot form)
 *   K-quants:  per group of 16 (or 32) values: 4 (8) vpdpbusd, then one
 *              vpmulld by the group's scale into the block's int32 sum; the
 *              minimums are 8 vpdpwssd of (mn pairs) x (bsums pairs); per
 *              block acc += cvt(I) * (d * dx) + cvt(M) * (-dmin * dx).
 * Without VNNI the dot products are vpmaddubsw + vpmaddwd (no saturation:
 * weights are < 64), except Q8_0, which keeps the dot-form kernels. */
#include "kernels_avx512.h"

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

#define P_COLS 16     /* tokens per panel (zmm lanes) */
#define P_RM 4        /* weight rows per tile (the work buffer holds A_RM / K_WORK_ROWS >= 4 rows) */
#define P_V 2         /* panels per tile */

INLINE __m512i dot4(const int vnni, __m512i acc, __m512i u, __m512i s) {
    if (vnni) {
        __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s));
        return acc;
    }
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
}

INLINE __m512i dot2w(const int vnni, __m512i acc, __m512i a, __m512i b) {
    if (vnni) {
        __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
        return acc;
    }
    return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
}

INLINE __m512i bcast32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* y[(16 v + lane) * ldy] = acc lanes, for the lanes < ncols (v-th panel of the tile) */
INLINE void store_cols(float *y, int64_t ldy, __m512 acc, int ncols) {
    if (ncols <= 0) return;
    __mmask16 m = ncols >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << ncols) - 1);
    __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                     _mm512_set1_epi32((int)ldy));
    _mm512_mask_i32scatter_ps(y, m, idx, acc, 4);
}

/* ---------------------------------------------------------------------- */
/* Panels                                                                 */
/* ---------------------------------------------------------------------- */

/* Q8_32 panel, per block of 32 (704 bytes):
 *   q: (8, 16, 4) int8 -- values 4k..4k+3 of each token; d: (16) f32; s: (16) f32;
 *   qsum: (16) int32 */
#define AP_BLOCK 704
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
            for (int k4 = 0; k4 < 8; k4++) memcpy(pb + 64 * k4 + 4 * c, row + 32 * b + 4 * k4, 4);
            ((float *)(pb + 512))[c] = d[b];
            ((float *)(pb + 576))[c] = s[b];
            ((int32_t *)(pb + 640))[c] = qsum[b];
        }
    }
}

/* Q8_256 panel, per block of 256 (4672 bytes):
 *   q: (64, 16, 4) int8; bs: (8, 16, 2) int16 -- bsums of groups 2g, 2g+1; d: (16) f32 */
#define KP_BLOCK 4672
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
            for (int k4 = 0; k4 < 64; k4++) memcpy(pb + 64 * k4 + 4 * c, row + 256 * b + 4 * k4, 4);
            for (int g = 0; g < 8; g++) memcpy(pb + 4096 + 64 * g + 4 * c, bs + 16 * b + 2 * g, 4);
            ((float *)(pb + 4608))[c] = d[b];
        }
    }
}

/* ---------------------------------------------------------------------- */
/* 32-block tiles                                                         */
/* ---------------------------------------------------------------------- */

/* shift: log2 of the offset of an offset type (Q4_0 3, Q5_0 4, Q8_0 unsigned 7), 0 for the
 * minimum types (Q4_1, Q5_1), whose c holds m */
INLINE void ap_tile(const int RM, const int V, const int vnni, const int shift, int64_t n, const uint8_t *w,
                    size_t wst, const uint8_t *pan, size_t pst, float *y, int64_t ldy, int ncols) {
    int64_t nb = n / 32, np = (nb + 1) / 2;
    pg512_arow r[P_RM];
    UNROLL for (int i = 0; i < RM; i++) r[i] = pg512_arow_at(w + i * wst, np);
    __m512 acc[P_RM][P_V];
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int v = 0; v < V; v++) acc[i][v] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512i t[P_RM][P_V];
        UNROLL for (int i = 0; i < RM; i++) UNROLL for (int v = 0; v < V; v++) t[i][v] = _mm512_setzero_si512();
        UNROLL for (int k4 = 0; k4 < 8; k4++) {
            __m512i xv[P_V];
            UNROLL for (int v = 0; v < V; v++) xv[v] = _mm512_load_si512(pan + v * pst + b * AP_BLOCK + 64 * k4);
            UNROLL for (int i = 0; i < RM; i++) {
                __m512i wb = bcast32(r[i].q + 32 * b + 4 * k4);
                UNROLL for (int v = 0; v < V; v++) t[i][v] = dot4(vnni, t[i][v], wb, xv[v]);
            }
        }
        UNROLL for (int v = 0; v < V; v++) {
            const float *pd = (const float *)(pan + v * pst + b * AP_BLOCK + 512);
            __m512 dx = _mm512_load_ps(pd), sx = _mm512_load_ps(pd + 16);
            __m512i off = shift ? _mm512_slli_epi32(_mm512_load_si512(pd + 32), shift) : _mm512_setzero_si512();
            UNROLL for (int i = 0; i < RM; i++) {
                __m512i ti = shift ? _mm512_sub_epi32(t[i][v], off) : t[i][v];
                acc[i][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ti), _mm512_mul_ps(_mm512_set1_ps(r[i].d[b]), dx), acc[i][v]);
                if (!shift) acc[i][v] = _mm512_fmadd_ps(_mm512_set1_ps(r[i].c[b]), sx, acc[i][v]);
            }
        }
    }
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int v = 0; v < V; v++)
        store_cols(y + (size_t)16 * v * ldy + i, ldy, acc[i][v], ncols - 16 * v);
}

#define AP_GEMM(name, vnni, shift)                                                                    \
    static void name(pg512_arepack_fn rp, int64_t n, float *y, int64_t ldy, const void *w, size_t ldw, \
                     int nr, const void *xv, size_t pst, int nc, void *work) {                        \
        const uint8_t *pan = xv;                                                                      \
        size_t wst = pg512_arow_bytes(n);                                                             \
        for (int r = 0; r < nr; r += P_RM) {                                                          \
            int rm = PG_MIN(P_RM, nr - r);                                                            \
            for (int i = 0; i < rm; i++)                                                              \
                rp((const uint8_t *)w + (size_t)(r + i) * ldw, n / 32, (uint8_t *)work + i * wst);    \
            for (int c = 0; c < nc; c += P_COLS * P_V) {                                              \
                const uint8_t *pc = pan + (size_t)(c / P_COLS) * pst;                                 \
                float *yc = y + (size_t)c * ldy + r;                                                  \
                int two = nc - c > P_COLS;                                                            \
                if (rm == P_RM) {                                                                     \
                    if (two) ap_tile(P_RM, 2, vnni, shift, n, work, wst, pc, pst, yc, ldy, nc - c);   \
                    else ap_tile(P_RM, 1, vnni, shift, n, work, wst, pc, pst, yc, ldy, nc - c);       \
                } else {                                                                              \
                    for (int i = 0; i < rm; i++) {                                                    \
                        const uint8_t *wi = (const uint8_t *)work + i * wst;                          \
                        if (two) ap_tile(1, 2, vnni, shift, n, wi, wst, pc, pst, yc + i, ldy, nc - c); \
                        else ap_tile(1, 1, vnni, shift, n, wi, wst, pc, pst, yc + i, ldy, nc - c);    \
                    }                                                                                 \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
    }

AP_GEMM(ap_gemm_s3, 0, 3)
AP_GEMM(ap_gemm_s4, 0, 4)
AP_GEMM(ap_gemm_min, 0, 0)
AP_GEMM(ap_gemm_s3_vnni, 1, 3)
AP_GEMM(ap_gemm_s4_vnni, 1, 4)
AP_GEMM(ap_gemm_s7_vnni, 1, 7)
AP_GEMM(ap_gemm_min_vnni, 1, 0)

/* ---------------------------------------------------------------------- */
/* K-quant tiles                                                          */
/* ---------------------------------------------------------------------- */

/* GS: values per scale group (32 for Q4_K/Q5_K, whose 16-groups share scales in pairs). */
INLINE void kp_tile(const int RM, const int V, const int GS, const int vnni, int64_t n, const pg512_kpb *w,
                    const uint8_t *pan, size_t pst, float *y, int64_t ldy, int ncols) {
    int64_t nb = n / 256;
    __m512 acc[P_RM][P_V];
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int v = 0; v < V; v++) acc[i][v] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const pg512_kpb *blk[P_RM];
        UNROLL for (int i = 0; i < RM; i++) blk[i] = w + i * nb + b;
        const uint8_t *pb[P_V];
        UNROLL for (int v = 0; v < V; v++) pb[v] = pan + v * pst + b * KP_BLOCK;
        __m512i isum[P_RM][P_V];
        UNROLL for (int i = 0; i < RM; i++) UNROLL for (int v = 0; v < V; v++) isum[i][v] = _mm512_setzero_si512();
        for (int g = 0; g < 256 / GS; g++) {
            __m512i t[P_RM][P_V];
            UNROLL for (int i = 0; i < RM; i++) UNROLL for (int v = 0; v < V; v++) t[i][v] = _mm512_setzero_si512();
            UNROLL for (int k = 0; k < GS / 4; k++) {
                int k4 = g * (GS / 4) + k;
                __m512i xv[P_V];
                UNROLL for (int v = 0; v < V; v++) xv[v] = _mm512_load_si512(pb[v] + 64 * k4);
                UNROLL for (int i = 0; i < RM; i++) {
                    __m512i wb = bcast32(blk[i]->q + 4 * k4);
                    UNROLL for (int v = 0; v < V; v++) t[i][v] = dot4(vnni, t[i][v], wb, xv[v]);
                }
            }
            UNROLL for (int i = 0; i < RM; i++) {
                __m512i sc = _mm512_set1_epi32(blk[i]->sc[g * (GS / 16)]);
                UNROLL for (int v = 0; v < V; v++)
                    isum[i][v] = _mm512_add_epi32(isum[i][v], _mm512_mullo_epi32(t[i][v], sc));
            }
        }
        __m512i msum[P_RM][P_V];
        UNROLL for (int i = 0; i < RM; i++) UNROLL for (int v = 0; v < V; v++) msum[i][v] = _mm512_setzero_si512();
        UNROLL for (int g = 0; g < 8; g++) {
            __m512i bs[P_V];
            UNROLL for (int v = 0; v < V; v++) bs[v] = _mm512_load_si512(pb[v] + 4096 + 64 * g);
            UNROLL for (int i = 0; i < RM; i++) {
                __m512i mn = bcast32(blk[i]->mn + 2 * g);
                UNROLL for (int v = 0; v < V; v++) msum[i][v] = dot2w(vnni, msum[i][v], mn, bs[v]);
            }
        }
        UNROLL for (int v = 0; v < V; v++) {
            __m512 dx = _mm512_load_ps((const float *)(pb[v] + 4608));
            UNROLL for (int i = 0; i < RM; i++) {
                acc[i][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[i][v]),
                                            _mm512_mul_ps(_mm512_set1_ps(blk[i]->d), dx), acc[i][v]);
                acc[i][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(msum[i][v]),
                                            _mm512_mul_ps(_mm512_set1_ps(-blk[i]->dmin), dx), acc[i][v]);
            }
        }
    }
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int v = 0; v < V; v++)
        store_cols(y + (size_t)16 * v * ldy + i, ldy, acc[i][v], ncols - 16 * v);
}

#define KP_GEMM(name, GS, vnni)                                                                       \
    static void name(pg512_krepack_fn rp, int64_t n, float *y, int64_t ldy, const void *w, size_t ldw, \
                     int nr, const void *xv, size_t pst, int nc, void *work) {                        \
        const uint8_t *pan = xv;                                                                      \
        int64_t nb = n / 256;                                                                         \
        pg512_kpb *kw = work;                                                                         \
        for (int r = 0; r < nr; r += P_RM) {                                                          \
            int rm = PG_MIN(P_RM, nr - r);                                                            \
            for (int i = 0; i < rm; i++) rp((const uint8_t *)w + (size_t)(r + i) * ldw, nb, kw + i * nb); \
            for (int c = 0; c < nc; c += P_COLS * P_V) {                                              \
                const uint8_t *pc = pan + (size_t)(c / P_COLS) * pst;                                 \
                float *yc = y + (size_t)c * ldy + r;                                                  \
                int two = nc - c > P_COLS;                                                            \
                if (rm == P_RM) {                                                                     \
                    if (two) kp_tile(P_RM, 2, GS, vnni, n, kw, pc, pst, yc, ldy, nc - c);             \
                    else kp_tile(P_RM, 1, GS, vnni, n, kw, pc, pst, yc, ldy, nc - c);                 \
                } else {                                                                              \
                    for (int i = 0; i < rm; i++) {                                                    \
                        if (two) kp_tile(1, 2, GS, vnni, n, kw + i * nb, pc, pst, yc + i, ldy, nc - c); \
                        else kp_tile(1, 1, GS, vnni, n, kw + i * nb, pc, pst, yc + i, ldy, nc - c);   \
                    }                                                                                 \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
    }

KP_GEMM(kp_gemm16, 16, 0)
KP_GEMM(kp_gemm16_vnni, 16, 1)
KP_GEMM(kp_gemm32, 32, 0)
KP_GEMM(kp_gemm32_vnni, 32, 1)

#define GEMM_ARGS int64_t n, float *y, int64_t ldy, const void *w, size_t ldw, int nr, \
                  const void *x, size_t ldx, int nc, void *work
#define GEMM_PASS n, y, ldy, w, ldw, nr, x, ldx, nc, work

#define A_P(t, T, kind)                                                                                \
    static void pgemm_##t(GEMM_ARGS) { ap_gemm_##kind(pg512_arepack_of(T, 0), GEMM_PASS); }            \
    static void pgemm_##t##_vnni(GEMM_ARGS) { ap_gemm_##kind##_vnni(pg512_arepack_of(T, 1), GEMM_PASS); }
A_P(q4_0, PG_TYPE_Q4_0, s3)
A_P(q4_1, PG_TYPE_Q4_1, min)
A_P(q5_0, PG_TYPE_Q5_0, s4)
A_P(q5_1, PG_TYPE_Q5_1, min)
static void pgemm_q8_0_vnni(GEMM_ARGS) { ap_gemm_s7_vnni(pg512_arepack_of(PG_TYPE_Q8_0, 1), GEMM_PASS); }

#define K_P(t, T, GS)                                                                                  \
    static void pgemm_##t(GEMM_ARGS) { kp_gemm##GS(pg512_krepack_of(T), GEMM_PASS); }              \
    static void pgemm_##t##_vnni(GEMM_ARGS) { kp_gemm##GS##_vnni(pg512_krepack_of(T), GEMM_PASS); }
K_P(q2k, PG_TYPE_Q2_K, 16)
K_P(q3k, PG_TYPE_Q3_K, 16)
K_P(q4k, PG_TYPE_Q4_K, 32)
K_P(q5k, PG_TYPE_Q5_K, 32)
K_P(q6k, PG_TYPE_Q6_K, 16)

void pg512_fill_panel(pg_kernels *k, int vnni) {
#define SET(type, fn, to, bytes)                             \
    do {                                                     \
        pg_gemm_kernel *g = &k->gemm[type];                  \
        g->pfn = vnni ? fn##_vnni : fn;                      \
        g->pmr = P_RM;                                       \
        g->panel_cols = P_COLS;                              \
        g->to_panel = to;                                    \
        g->panel_bytes = bytes;                              \
    } while (0)
    SET(PG_TYPE_Q4_0, pgemm_q4_0, to_panel_q8_32, ap_bytes);
    SET(PG_TYPE_Q4_1, pgemm_q4_1, to_panel_q8_32, ap_bytes);
    SET(PG_TYPE_Q5_0, pgemm_q5_0, to_panel_q8_32, ap_bytes);
    SET(PG_TYPE_Q5_1, pgemm_q5_1, to_panel_q8_32, ap_bytes);
    if (vnni) {         /* the signed Q8_0 weights would saturate vpmaddubsw */
        pg_gemm_kernel *g = &k->gemm[PG_TYPE_Q8_0];
        g->pfn = pgemm_q8_0_vnni;
        g->pmr = P_RM;
        g->panel_cols = P_COLS;
        g->to_panel = to_panel_q8_32;
        g->panel_bytes = ap_bytes;
    }
    SET(PG_TYPE_Q2_K, pgemm_q2k, to_panel_q8_256, kp_bytes);
    SET(PG_TYPE_Q3_K, pgemm_q3k, to_panel_q8_256, kp_bytes);
    SET(PG_TYPE_Q4_K, pgemm_q4k, to_panel_q8_256, kp_bytes);
    SET(PG_TYPE_Q5_K, pgemm_q5k, to_panel_q8_256, kp_bytes);
    SET(PG_TYPE_Q6_K, pgemm_q6k, to_panel_q8_256, kp_bytes);
#undef SET
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else /* not x86-64 */
void pg512_fill_panel(pg_kernels *k, int vnni) { (void)k; (void)vnni; }
#endif
