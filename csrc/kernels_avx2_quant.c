/* kernels_avx2_quant.c -- AVX2 matmul of the quantized types (dot form).
 *
 * RM weight rows x RN tokens per tile; weight blocks are unpacked in
 * registers from the GGUF rows (once per tile) into unsigned bytes in element
 * order, and multiplied with vpmaddubsw (u8 x s8 -> pairs of s16, which never
 * saturate here: weights < 64, or |w| <= 128 with the sign trick of Q8_0):
 *   32-blocks: one block per ymm; per (row, token, block):
 *     maddubs [- off * pair sums of the activations] -> madd -> cvt -> fma(d*dx);
 *     Q4_1/Q5_1 minimums m * s go to a scalar accumulator per output.
 *   K-quants: per 32 values, maddubs then madd with the 16-bit group scales
 *     (exact int32 over the 256-block); per block one fma with d*dx and two
 *     with the minimums (-dmin*mn per 16 values, times dx*bsums). */
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

/* Software prefetch distance for weight rows (see kernels_avx512_quant.c). */
#define PF_BYTES 8192

INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE float h2f(pg_half h) { return _cvtsh_ss(h); }

/* 16 packed nibble bytes -> 32 values in element order [lo | hi] */
INLINE __m256i nibbles(const uint8_t *qs) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

/* 0x10 in byte l where bit l of the 32-bit qh is set */
INLINE __m256i qh_bits(const uint8_t *qh4) {
    uint32_t h;
    memcpy(&h, qh4, 4);
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf);           /* byte l = qh byte l/8 */
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* ====================================================================== */
/* 32-blocks                                                              */
/* ====================================================================== */

enum { A_OFFSET, A_MIN, A_SIGNED };
INLINE int a_kind(const int T) {
    return T == PG_TYPE_Q4_1 || T == PG_TYPE_Q5_1 ? A_MIN : T == PG_TYPE_Q8_0 ? A_SIGNED : A_OFFSET;
}
INLINE int a_offset(const int T) { return T == PG_TYPE_Q4_0 ? 8 : 16; }
INLINE size_t a_block_bytes(const int T) {
    switch (T) {
    case PG_TYPE_Q4_0: return sizeof(block_q4_0);
    case PG_TYPE_Q4_1: return sizeof(block_q4_1);
    case PG_TYPE_Q5_0: return sizeof(block_q5_0);
    case PG_TYPE_Q5_1: return sizeof(block_q5_1);
    default: return sizeof(block_q8_0);
    }
}

/* Block b of a row: 32 values (u8; s8 for Q8_0), scale and minimum. */
INLINE __m256i a_unpack(const int T, const uint8_t *blk, float *d, float *m) {
    if (T == PG_TYPE_Q4_0) {
        const block_q4_0 *x = (const block_q4_0 *)blk;
        *d = h2f(x->d);
        return nibbles(x->qs);
    }
    if (T == PG_TYPE_Q4_1) {
        const block_q4_1 *x = (const block_q4_1 *)blk;
        *d = h2f(x->d);
        *m = h2f(x->m);
        return nibbles(x->qs);
    }
    if (T == PG_TYPE_Q5_0) {
        const block_q5_0 *x = (const block_q5_0 *)blk;
        *d = h2f(x->d);
        return _mm256_or_si256(nibbles(x->qs), qh_bits(x->qh));
    }
    if (T == PG_TYPE_Q5_1) {
        const block_q5_1 *x = (const block_q5_1 *)blk;
        *d = h2f(x->d);
        *m = h2f(x->m);
        return _mm256_or_si256(nibbles(x->qs), qh_bits(x->qh));
    }
    const block_q8_0 *x = (const block_q8_0 *)blk;
    *d = h2f(x->d);
    return _mm256_loadu_si256((const __m256i *)x->qs);
}

#define A_RM 2
#define A_RN 2

INLINE void a_tile(const int T, const int RM, const int RN, int64_t n, const uint8_t *w, size_t ldw,
                   const uint8_t *x, size_t ldx, float *y, int64_t ldy) {
    const int kind = a_kind(T);
    const __m256i ones = _mm256_set1_epi16(1), ovec = _mm256_set1_epi8((char)a_offset(T));
    int64_t nb = n / 32;
    __m256 acc[A_RM][A_RN];
    float msum[A_RM][A_RN];
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++) {
        acc[i][j] = _mm256_setzero_ps();
        msum[i][j] = 0.0f;
    }
    for (int64_t b = 0; b < nb; b++) {
        __m256i wq[A_RM], wsg[A_RM];
        float wd[A_RM], wm[A_RM];
        UNROLL for (int i = 0; i < RM; i++) {
            _mm_prefetch((const char *)w + i * ldw + b * a_block_bytes(T) + PF_BYTES, _MM_HINT_T0);
            wq[i] = a_unpack(T, w + i * ldw + b * a_block_bytes(T), &wd[i], &wm[i]);
            if (kind == A_SIGNED) {
                wsg[i] = wq[i];
                wq[i] = _mm256_sign_epi8(wq[i], wq[i]);          /* |w| */
            }
        }
        UNROLL for (int j = 0; j < RN; j++) {
            const uint8_t *xr = x + j * ldx;
            __m256i xq = _mm256_loadu_si256((const __m256i *)(xr + 32 * b));
            float dx = pg_act_q8_d(xr, n)[b];
            __m256i xo = kind == A_OFFSET ? _mm256_maddubs_epi16(ovec, xq) : _mm256_setzero_si256();
            UNROLL for (int i = 0; i < RM; i++) {
                __m256i p;
                if (kind == A_OFFSET) p = _mm256_sub_epi16(_mm256_maddubs_epi16(wq[i], xq), xo);
                else if (kind == A_SIGNED) p = _mm256_maddubs_epi16(wq[i], _mm256_sign_epi8(xq, wsg[i]));
                else p = _mm256_maddubs_epi16(wq[i], xq);
                __m256 t = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
                acc[i][j] = _mm256_fmadd_ps(t, _mm256_set1_ps(wd[i] * dx), acc[i][j]);
                if (kind == A_MIN) msum[i][j] += wm[i] * pg_act_q8_s(xr, n)[b];
            }
        }
    }
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++)
        y[j * ldy + i] = hsum8(acc[i][j]) + msum[i][j];
}

/* Tiles over a chunk: RM x RN inside, RM x 1 / 1 x RN / 1 x 1 on the edges
 * (the same float operations per output in every variant). */
#define TILE_SWEEP(tile, T, RM, RN)                                                                   \
    do {                                                                                              \
        const uint8_t *w_ = w, *x_ = x;                                                               \
        int r = 0;                                                                                    \
        for (; r + RM <= nr; r += RM) {                                                               \
            int c = 0;                                                                                \
            for (; c + RN <= nc; c += RN)                                                             \
                tile(T, RM, RN, n, w_ + r * ldw, ldw, x_ + c * ldx, ldx, y + c * ldy + r, ldy);       \
            for (; c < nc; c++) tile(T, RM, 1, n, w_ + r * ldw, ldw, x_ + c * ldx, ldx, y + c * ldy + r, ldy); \
        }                                                                                             \
        for (; r < nr; r++) {                                                                         \
            int c = 0;                                                                                \
            for (; c + RN <= nc; c += RN)                                                             \
                tile(T, 1, RN, n, w_ + r * ldw, ldw, x_ + c * ldx, ldx, y + c * ldy + r, ldy);        \
            for (; c < nc; c++) tile(T, 1, 1, n, w_ + r * ldw, ldw, x_ + c * ldx, ldx, y + c * ldy + r, ldy); \
        }                                                                                             \
    } while (0)

#define GEMM_ARGS int64_t n, float *y, int64_t ldy, const void *w, size_t ldw, int nr, \
                  const void *x, size_t ldx, int nc, void *work

#define A_GEMM(t, T)                                  \
    static void gemm_##t(GEMM_ARGS) {                 \
        (void)work;                                   \
        TILE_SWEEP(a_tile, T, A_RM, A_RN);            \
    }
A_GEMM(q4_0, PG_TYPE_Q4_0)
A_GEMM(q4_1, PG_TYPE_Q4_1)
A_GEMM(q5_0, PG_TYPE_Q5_0)
A_GEMM(q5_1, PG_TYPE_Q5_1)
A_GEMM(q8_0, PG_TYPE_Q8_0)

/* ====================================================================== */
/* K-quants                                                               */
/* ====================================================================== */

#define K_RM 2
#define K_RN 2

INLINE size_t k_block_bytes(const int T) {
    switch (T) {
    case PG_TYPE_Q2_K: return sizeof(block_q2_K);
    case PG_TYPE_Q3_K: return sizeof(block_q3_K);
    case PG_TYPE_Q4_K: return sizeof(block_q4_K);
    case PG_TYPE_Q5_K: return sizeof(block_q5_K);
    default: return sizeof(block_q6_K);
    }
}

/* Scales of a block: sc (16 int16, one per 16 values), -dmin*mn as 2 x 8 floats, d. */
typedef struct {
    __m256i sc;
    __m256 wmin0, wmin1;
    float d;
} kdec;

INLINE kdec k_dec(const int T, const uint8_t *blk) {
    pg_kscales k;
    switch (T) {
    case PG_TYPE_Q2_K: pg_kscales_q2k((const block_q2_K *)blk, &k); break;
    case PG_TYPE_Q3_K: pg_kscales_q3k((const block_q3_K *)blk, &k); break;
    case PG_TYPE_Q4_K: {
        const block_q4_K *b = (const block_q4_K *)blk;
        pg_kscales_q4k(b->scales, b->d, b->dmin, &k);
        break;
    }
    case PG_TYPE_Q5_K: {
        const block_q5_K *b = (const block_q5_K *)blk;
        pg_kscales_q4k(b->scales, b->d, b->dmin, &k);
        break;
    }
    default: pg_kscales_q6k((const block_q6_K *)blk, &k); break;
    }
    kdec r;
    r.sc = _mm256_loadu_si256((const __m256i *)k.sc);
    __m256i mn = _mm256_loadu_si256((const __m256i *)k.mn);
    __m256 nd = _mm256_set1_ps(-k.dmin);
    r.wmin0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(mn))), nd);
    r.wmin1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(mn, 1))), nd);
    r.d = k.d;
    return r;
}

/* Values 32c .. 32c+31 of a block, unsigned, in element order. */
INLINE __m256i k_chunk(const int T, const uint8_t *blk, const int c) {
    const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1), m4 = _mm256_set1_epi8(0x0F);
    if (T == PG_TYPE_Q2_K || T == PG_TYPE_Q3_K) {
        /* value 128h + 32j + l = (qs[32h + l] >> 2j) & 3, Q3_K: | hmask bit (4h+j) << 2 */
        const int h = c / 4, j = c % 4;
        const uint8_t *qs = T == PG_TYPE_Q2_K ? ((const block_q2_K *)blk)->qs : ((const block_q3_K *)blk)->qs;
        __m256i v = _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(qs + 32 * h)), 2 * j), m3);
        if (T == PG_TYPE_Q3_K) {
            __m256i hm = _mm256_loadu_si256((const __m256i *)((const block_q3_K *)blk)->hmask);
            v = _mm256_or_si256(v, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), m1), 2));
        }
        return v;
    }
    if (T == PG_TYPE_Q4_K || T == PG_TYPE_Q5_K) {
        /* sub-block c: nibbles (c odd: high) of qs[32 (c/2) ..], Q5_K: | bit c of qh[l] << 4 */
        const uint8_t *qs = T == PG_TYPE_Q4_K ? ((const block_q4_K *)blk)->qs : ((const block_q5_K *)blk)->qs;
        __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * (c / 2)));
        __m256i v = _mm256_and_si256(c % 2 ? _mm256_srli_epi16(q, 4) : q, m4);
        if (T == PG_TYPE_Q5_K) {
            __m256i hb = _mm256_loadu_si256((const __m256i *)((const block_q5_K *)blk)->qh);
            v = _mm256_or_si256(v, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, c), m1), 4));
        }
        return v;
    }
    /* Q6_K: value 128h + 32qd + l: nibble (qd >> 1) of ql[64h + 32 (qd & 1) + l], | ((qh[32h + l] >> 2qd) & 3) << 4 */
    const block_q6_K *b = (const block_q6_K *)blk;
    const int h = c / 4, qd = c % 4;
    __m256i l = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32 * (qd & 1)));
    __m256i v = _mm256_and_si256(qd >> 1 ? _mm256_srli_epi16(l, 4) : l, m4);
    __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
    return _mm256_or_si256(v, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * qd), m3), 4));
}

/* 16-bit lanes 0..7 take scale 2c, lanes 8..15 scale 2c+1 (c = 0..7) */
INLINE __m256i k_scale_vec(__m256i sc, const int c) {
    __m256i half = c < 4 ? _mm256_permute2x128_si256(sc, sc, 0x00) : _mm256_permute2x128_si256(sc, sc, 0x11);
    const int w0 = (2 * c) % 8, w1 = w0 + 1;
    const __m256i pat = _mm256_setr_epi8(2 * w0, 2 * w0 + 1, 2 * w0, 2 * w0 + 1, 2 * w0, 2 * w0 + 1, 2 * w0, 2 * w0 + 1,
                                         2 * w0, 2 * w0 + 1, 2 * w0, 2 * w0 + 1, 2 * w0, 2 * w0 + 1, 2 * w0, 2 * w0 + 1,
                                         2 * w1, 2 * w1 + 1, 2 * w1, 2 * w1 + 1, 2 * w1, 2 * w1 + 1, 2 * w1, 2 * w1 + 1,
                                         2 * w1, 2 * w1 + 1, 2 * w1, 2 * w1 + 1, 2 * w1, 2 * w1 + 1, 2 * w1, 2 * w1 + 1);
    return _mm256_shuffle_epi8(half, pat);
}

INLINE void k_tile(const int T, const int RM, const int RN, int64_t n, const uint8_t *w, size_t ldw,
                   const uint8_t *x, size_t ldx, float *y, int64_t ldy) {
    int64_t nb = n / 256;
    __m256 acc[K_RM][K_RN];
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk[K_RM];
        kdec kd[K_RM];
        UNROLL for (int i = 0; i < RM; i++) {
            blk[i] = w + i * ldw + b * k_block_bytes(T);
            UNROLL for (int l = 0; l < (int)k_block_bytes(T); l += 64)
                _mm_prefetch((const char *)blk[i] + PF_BYTES + l, _MM_HINT_T0);
            kd[i] = k_dec(T, blk[i]);
        }
        __m256i is[K_RM][K_RN];
        UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++) is[i][j] = _mm256_setzero_si256();
        UNROLL for (int c = 0; c < 8; c++) {
            __m256i wq[K_RM], sv[K_RM];
            UNROLL for (int i = 0; i < RM; i++) {
                wq[i] = k_chunk(T, blk[i], c);
                sv[i] = k_scale_vec(kd[i].sc, c);
            }
            UNROLL for (int j = 0; j < RN; j++) {
                __m256i xq = _mm256_loadu_si256((const __m256i *)(x + j * ldx + 256 * b + 32 * c));
                UNROLL for (int i = 0; i < RM; i++)
                    is[i][j] = _mm256_add_epi32(is[i][j], _mm256_madd_epi16(_mm256_maddubs_epi16(wq[i], xq), sv[i]));
            }
        }
        UNROLL for (int j = 0; j < RN; j++) {
            const uint8_t *xr = x + j * ldx;
            float dx = pg_act_q8_d(xr, n)[b];
            const float *dbs = pg_act_q8_dbs(xr, n) + 16 * b;
            __m256 xm0 = _mm256_loadu_ps(dbs), xm1 = _mm256_loadu_ps(dbs + 8);
            UNROLL for (int i = 0; i < RM; i++) {
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[i][j]), _mm256_set1_ps(kd[i].d * dx), acc[i][j]);
                acc[i][j] = _mm256_fmadd_ps(kd[i].wmin0, xm0, acc[i][j]);
                acc[i][j] = _mm256_fmadd_ps(kd[i].wmin1, xm1, acc[i][j]);
            }
        }
    }
    UNROLL for (int i = 0; i < RM; i++) UNROLL for (int j = 0; j < RN; j++)
        y[j * ldy + i] = hsum8(acc[i][j]);
}

#define K_GEMM(t, T)                                  \
    static void gemm_##t(GEMM_ARGS) {                 \
        (void)work;                                   \
        TILE_SWEEP(k_tile, T, K_RM, K_RN);            \
    }
K_GEMM(q2k, PG_TYPE_Q2_K)
K_GEMM(q3k, PG_TYPE_Q3_K)
K_GEMM(q4k, PG_TYPE_Q4_K)
K_GEMM(q5k, PG_TYPE_Q5_K)
K_GEMM(q6k, PG_TYPE_Q6_K)

void pg_avx2_fill_quant(pg_kernels *k) {
#define SET(type, f, mr_, nr_) k->gemm[type] = (pg_gemm_kernel){.fn = f, .mr = mr_, .nr = nr_}
    SET(PG_TYPE_Q4_0, gemm_q4_0, A_RM, A_RN);
    SET(PG_TYPE_Q4_1, gemm_q4_1, A_RM, A_RN);
    SET(PG_TYPE_Q5_0, gemm_q5_0, A_RM, A_RN);
    SET(PG_TYPE_Q5_1, gemm_q5_1, A_RM, A_RN);
    SET(PG_TYPE_Q8_0, gemm_q8_0, A_RM, A_RN);
    SET(PG_TYPE_Q2_K, gemm_q2k, K_RM, K_RN);
    SET(PG_TYPE_Q3_K, gemm_q3k, K_RM, K_RN);
    SET(PG_TYPE_Q4_K, gemm_q4k, K_RM, K_RN);
    SET(PG_TYPE_Q5_K, gemm_q5k, K_RM, K_RN);
    SET(PG_TYPE_Q6_K, gemm_q6k, K_RM, K_RN);
#undef SET
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else /* not x86-64 */
void pg_avx2_fill_quant(pg_kernels *k) { (void)k; }
#endif
