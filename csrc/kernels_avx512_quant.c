/* kernels_avx512_quant.c -- AVX-512 matmul of the quantized types, dot form
 * (single tokens and small batches), and the row unpacking shared with the
 * panel tiles of kernels_avx512_panel.c.
 *
 * Dot-form tiles: RM weight rows x RN tokens, each output a zmm of partial
 * sums reduced at the end.  Weight blocks are unpacked in registers straight
 * from the GGUF rows (once per tile, i.e. per RN tokens) into unsigned 8-bit
 * values in element order:
 *   32-blocks (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0): two blocks per zmm;
 *     per (row, token, pair of blocks): vpdpbusd, cvt, mul, fma.
 *     Offsets (Q4_0: u-8, Q5_0: u-16, Q8_0 with VNNI: (w^0x80)-128) are folded
 *     into the accumulator's initial value, -off * (sums of 4 activations),
 *     computed once per token; Q4_1/Q5_1 minimums add m * s (s = dx*sum q).
 *   K-quants: per 64 values, vpmaddubsw then vpdpwssd with the 16-bit
 *     group scales, exact int32 over the 256-block; then one fma with d*dx
 *     and one with the minimums (-dmin*mn per 16 values, times dx*bsums).
 * VNNI instructions are emitted only through inline asm in the `vnni`
 * instantiations, so the compiler never generates them for the generic
 * AVX-512 path (this file is compiled for AVX-512 F/BW/VL/DQ only). */
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

#include "kernels_avx2.h"   /* 256-bit unpacking and K-scale decoding, under this file's target */

/* Software prefetch distance for weight rows: with several rows streamed at
 * once the hardware prefetcher alone leaves mat-vec latency-bound on DRAM.
 * Measured on 2 threads (Q4_0 / Q4_K cold mat-vec, % of read bandwidth):
 * 1 KB 52/50, 4 KB 52/61, 8 KB 75/75, 16 KB 77/75. */
#define PF_BYTES 8192

/* acc += sum of 4 u8*s8 products per int32 lane (vpdpbusd) */
INLINE __m512i vnni_dpbusd(__m512i acc, __m512i u, __m512i s) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s));
    return acc;
}
/* acc += sum of 2 s16*s16 products per int32 lane (vpdpwssd) */
INLINE __m512i vnni_dpwssd(__m512i acc, __m512i a, __m512i b) {
    __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
}

INLINE float h2f(pg_half h) { return _cvtsh_ss(h); }

/* [v0 x 8 | v1 x 8] from two consecutive floats (v1 = 0 if !two) */
INLINE __m512 pair_bcast(const float *p, const int two) {
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    __m128 v = two ? _mm_castpd_ps(_mm_load_sd((const double *)p)) : _mm_load_ss(p);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v));
}

/* ====================================================================== */
/* 32-blocks                                                              */
/* ====================================================================== */

#define A_RM 4
/* the panels' repacked rows, or the mat-vec's buffers (the same kernel entry) */
static size_t a_work(int64_t n) { return PG_MAX(A_RM * pg512_arow_bytes(n), pg_avx2_matvec_work_a(n)); }

/* 2 x 16 packed nibble bytes -> [lo0 | hi0 | lo1 | hi1], i.e. 64 values in
 * element order: broadcast loads and masked ops, no port-5 shuffle */
INLINE __m512i nibbles2(const uint8_t *qs0, const uint8_t *qs1, const int two) {
    __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)qs0));
    v = two ? _mm512_mask_broadcast_i32x4(v, 0xFF00, _mm_loadu_si128((const __m128i *)qs1))
            : _mm512_maskz_mov_epi32(0x00FF, v);
    v = _mm512_mask_srli_epi16(v, 0xFF00FF00u, v, 4);          /* 128-bit lanes 1, 3: high nibbles */
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
}

/* 5th bits: bit l of qh is value l of the block */
INLINE __m512i add_qh(__m512i v, const uint8_t *qh0, const uint8_t *qh1, const int two) {
    uint32_t h0, h1 = 0;
    memcpy(&h0, qh0, 4);
    if (two) memcpy(&h1, qh1, 4);
    __mmask64 k = _cvtu64_mask64((uint64_t)h0 | ((uint64_t)h1 << 32));
    return _mm512_mask_add_epi8(v, k, v, _mm512_set1_epi8(16));
}

/* How a 32-block type's unsigned values relate to the weights. */
enum { A_OFFSET, A_MIN, A_SIGNED };
INLINE int a_kind(const int T, const int vnni) {
    if (T == PG_TYPE_Q4_1 || T == PG_TYPE_Q5_1) return A_MIN;
    if (T == PG_TYPE_Q8_0 && !vnni) return A_SIGNED;     /* w+128 would saturate vpmaddubsw */
    return A_OFFSET;
}
INLINE int a_offset(const int T) { return T == PG_TYPE_Q4_0 ? 8 : T == PG_TYPE_Q5_0 ? 16 : T == PG_TYPE_Q8_0 ? 128 : 0; }
INLINE size_t a_block_bytes(const int T) {
    switch (T) {
    case PG_TYPE_Q4_0: return sizeof(block_q4_0);
    case PG_TYPE_Q4_1: return sizeof(block_q4_1);
    case PG_TYPE_Q5_0: return sizeof(block_q5_0);
    case PG_TYPE_Q5_1: return sizeof(block_q5_1);
    default: return sizeof(block_q8_0);
    }
}

/* Blocks 2p and 2p+1 (only 2p if !two) of a row: 64 values (u8, or s8 for
 * A_SIGNED), fp16 scales and minimums (0 where absent). */
typedef struct {
    __m512i q;
    pg_half d0, d1, m0, m1;
} apair;

INLINE apair a_unpack(const int T, const int vnni, const uint8_t *b0, const uint8_t *b1, const int two) {
    apair r;
    r.m0 = r.m1 = 0;
    if (T == PG_TYPE_Q4_0) {
        const block_q4_0 *x0 = (const block_q4_0 *)b0, *x1 = (const block_q4_0 *)b1;
        r.q = nibbles2(x0->qs, x1->qs, two);
        r.d0 = x0->d;
        r.d1 = two ? x1->d : 0;
    } else if (T == PG_TYPE_Q4_1) {
        const block_q4_1 *x0 = (const block_q4_1 *)b0, *x1 = (const block_q4_1 *)b1;
        r.q = nibbles2(x0->qs, x1->qs, two);
        r.d0 = x0->d;
        r.d1 = two ? x1->d : 0;
        r.m0 = x0->m;
        r.m1 = two ? x1->m : 0;
    } else if (T == PG_TYPE_Q5_0) {
        const block_q5_0 *x0 = (const block_q5_0 *)b0, *x1 = (const block_q5_0 *)b1;
        r.q = add_qh(nibbles2(x0->qs, x1->qs, two), x0->qh, x1->qh, two);
        r.d0 = x0->d;
        r.d1 = two ? x1->d : 0;
    } else if (T == PG_TYPE_Q5_1) {
        const block_q5_1 *x0 = (const block_q5_1 *)b0, *x1 = (const block_q5_1 *)b1;
        r.q = add_qh(nibbles2(x0->qs, x1->qs, two), x0->qh, x1->qh, two);
        r.d0 = x0->d;
        r.d1 = two ? x1->d : 0;
        r.m0 = x0->m;
        r.m1 = two ? x1->m : 0;
    } else {  /* Q8_0: w ^ 0x80 = w + 128 as u8 for VNNI (offset 128), signed as is otherwise */
        const block_q8_0 *x0 = (const block_q8_0 *)b0, *x1 = (const block_q8_0 *)b1;
        __m256i flip = _mm256_set1_epi8(vnni ? -128 : 0);
        __m256i lo = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)x0->qs), flip);
        __m256i hi = two ? _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)x1->qs), flip) : _mm256_setzero_si256();
        r.q = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        r.d0 = x0->d;
        r.d1 = two ? x1->d : 0;
    }
    return r;
}

/* [h2f(h0) x 8 | h2f(h1) x 8] */
INLINE __m512 pair_h(pg_half h0, pg_half h1) {
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)h0 | ((uint32_t)h1 << 16))));
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}

/* Repacked rows for the panel tiles (layout in kernels_avx512.h); the
 * constant term c is the minimum, or -off * d. */
#define A_REPACK(name, T, vnni)                                                          \
    static void name(const uint8_t *src, int64_t nb, uint8_t *dst) {                    \
        int64_t np = (nb + 1) / 2;                                                       \
        pg512_arow o = pg512_arow_at(dst, np);                                           \
        for (int64_t p = 0; p < np; p++) {                                               \
            const uint8_t *b0 = src + 2 * p * a_block_bytes(T);                          \
            apair a = a_unpack(T, vnni, b0, b0 + a_block_bytes(T), 2 * p + 1 < nb);      \
            _mm512_store_si512(o.q + 64 * p, a.q);                                       \
            __m128 f = _mm_cvtph_ps(_mm_set_epi16(0, 0, 0, 0, (short)a.m1, (short)a.m0,  \
                                                  (short)a.d1, (short)a.d0));            \
            float d[4];                                                                  \
            _mm_storeu_ps(d, f);                                                         \
            o.d[2 * p] = d[0];                                                           \
            o.d[2 * p + 1] = d[1];                                                       \
            o.c[2 * p] = a_kind(T, vnni) == A_MIN ? d[2] : -(float)a_offset(T) * d[0];   \
            o.c[2 * p + 1] = a_kind(T, vnni) == A_MIN ? d[3] : -(float)a_offset(T) * d[1]; \
        }                                                                                \
    }
A_REPACK(rp_q4_0, PG_TYPE_Q4_0, 1)
A_REPACK(rp_q4_1, PG_TYPE_Q4_1, 1)
A_REPACK(rp_q5_0, PG_TYPE_Q5_0, 1)
A_REPACK(rp_q5_1, PG_TYPE_Q5_1, 1)
A_REPACK(rp_q8_0u, PG_TYPE_Q8_0, 1)

/* ---------------------------------------------------------------------- */
/* Dot form: tiles of 16 outputs in the canonical order                    */
/* ---------------------------------------------------------------------- */

/* A tile is R weight rows x C tokens (16x1, 8x2 or 4x4), output o = i + R*j.
 * zmm k of the partial sums holds outputs 2k (low 256 bits) and 2k+1 (high):
 * rows 2p, 2p+1 of one token, so one broadcast activation block serves both
 * halves.  reduce16 turns the 8 zmm into one whose lane o is output o's exact
 * block sum; the float part then runs once for 16 outputs. */
INLINE __m512i reduce16(const __m512i v[8]) {
    __m512i t[4];
    UNROLL for (int m = 0; m < 4; m++)
        t[m] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * m], v[2 * m + 1]), _mm512_unpackhi_epi32(v[2 * m], v[2 * m + 1]));
    /* 128-bit lane L of u0: the lane-L sums of v0..v3; of u1: of v4..v7 */
    __m512i u0 = _mm512_add_epi32(_mm512_unpacklo_epi64(t[0], t[1]), _mm512_unpackhi_epi64(t[0], t[1]));
    __m512i u1 = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2], t[3]), _mm512_unpackhi_epi64(t[2], t[3]));
    /* halves: outputs 0 2 4 6 | 1 3 5 7 | 8 10 12 14 | 9 11 13 15 */
    __m512i s = _mm512_add_epi32(_mm512_shuffle_i32x4(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_i32x4(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15), s);
}

/* Lane o = v[o / R]: a per-token value spread over that token's R lanes. */
INLINE __m512 by_token_ps(const int R, const int C, const float *v) {
    if (C == 1) return _mm512_set1_ps(v[0]);
    if (C == 2) return _mm512_insertf32x8(_mm512_set1_ps(v[0]), _mm256_set1_ps(v[1]), 1);
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                 _mm512_castps128_ps512(_mm_setr_ps(v[0], v[1], v[2], v[3])));   /* R == C == 4 */
}
INLINE __m512i by_token_epi32(const int R, const int C, const int *v) {
    if (C == 1) return _mm512_set1_epi32(v[0]);
    if (C == 2) return _mm512_inserti32x8(_mm512_set1_epi32(v[0]), _mm256_set1_epi32(v[1]), 1);
    return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                    _mm512_castsi128_si512(_mm_setr_epi32(v[0], v[1], v[2], v[3])));
}
/* Lane o = f[o % R] */
INLINE __m512 by_row_ps(const int R, const float *f) {
    if (R == 16) return _mm512_loadu_ps(f);
    if (R == 8) return _mm512_broadcast_f32x8(_mm256_loadu_ps(f));
    return _mm512_broadcast_f32x4(_mm_loadu_ps(f));
}

INLINE void store_lanes(const int R, const int C, __m512 acc, float *y, int64_t ldy, int nr, int nc) {
    float out[16];
    _mm512_storeu_ps(out, acc);
    for (int j = 0; j < C && j < nc; j++)
        for (int i = 0; i < R && i < nr; i++) y[j * ldy + i] = out[i + R * j];
}

INLINE int a_offset_shift(const int T) { return T == PG_TYPE_Q4_0 ? 3 : T == PG_TYPE_Q5_0 ? 4 : 7; }

INLINE void a_tile(const int T, const int R, const int C, const int vnni, int64_t n, const uint8_t *const *wr,
                   const uint8_t *const *xr, float *y, int64_t ldy, int nr, int nc) {
    const int kind = a_kind(T, vnni), HP = R / 2;
    const size_t bb = a_block_bytes(T);
    const __m512i ones = _mm512_set1_epi16(1), zero = _mm512_setzero_si512();
    /* the scales: one gather per block of the 32-bit word at each row's block start (d | m << 16) */
    int32_t offs[16];
    for (int o = 0; o < 16; o++) offs[o] = (int32_t)(wr[o % R] - wr[0]);
    const __m512i vidx = _mm512_loadu_si512(offs);
    const float *xd[4], *xs[4];
    const int16_t *xq16[4];
    UNROLL for (int j = 0; j < C; j++) {
        xd[j] = pg_act_q8_d(xr[j], n);
        xs[j] = pg_act_q8_s(xr[j], n);
        xq16[j] = pg_act_q8_qsum(xr[j], n);
    }
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / 32; b++) {
        __m512i P[8];
        UNROLL for (int p = 0; p < HP; p++) {
            const uint8_t *b0 = wr[2 * p] + b * bb, *b1 = wr[2 * p + 1] + b * bb;
            _mm_prefetch((const char *)b0 + PF_BYTES, _MM_HINT_T0);
            _mm_prefetch((const char *)b1 + PF_BYTES, _MM_HINT_T0);
            __m512i wq = a_unpack(T, vnni, b0, b1, 1).q;
            __mmask64 wneg = 0;
            if (kind == A_SIGNED) {
                wneg = _mm512_movepi8_mask(wq);
                wq = _mm512_abs_epi8(wq);
            }
            UNROLL for (int j = 0; j < C; j++) {
                __m512i xq = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(xr[j] + 32 * b)));
                __m512i t;
                if (kind == A_SIGNED)
                    t = _mm512_madd_epi16(_mm512_maddubs_epi16(wq, _mm512_mask_sub_epi8(xq, wneg, zero, xq)), ones);
                else if (vnni)
                    t = vnni_dpbusd(zero, wq, xq);
                else
                    t = _mm512_madd_epi16(_mm512_maddubs_epi16(wq, xq), ones);
                P[p + HP * j] = t;
            }
        }
        __m512i isum = reduce16(P);
        float dxv[4], sv[4];
        int qsv[4];
        UNROLL for (int j = 0; j < C; j++) {
            dxv[j] = xd[j][b];
            sv[j] = xs[j][b];
            qsv[j] = xq16[j][b];
        }
        if (kind == A_OFFSET)
            isum = _mm512_sub_epi32(isum, _mm512_slli_epi32(by_token_epi32(R, C, qsv), a_offset_shift(T)));
        __m512i dm = _mm512_i32gather_epi32(vidx, wr[0] + b * bb, 1);
        __m512 wd = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(wd, by_token_ps(R, C, dxv)), acc);
        if (kind == A_MIN)
            acc = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16))),
                                  by_token_ps(R, C, sv), acc);
    }
    store_lanes(R, C, acc, y, ldy, nr, nc);
}

#define GEMM_ARGS int64_t n, float *y, int64_t ldy, const void *w, size_t ldw, int nr, \
                  const void *x, size_t ldx, int nc, void *work

/* Tiles of R rows x C tokens; at the edges the missing rows/tokens repeat
 * the last real one (their lanes are dropped). */
#define SWEEP_RC(tile, T, vnni, R, C)                                                                  \
    for (int c = 0; c < nc; c += C) {                                                                  \
        const uint8_t *xr[4];                                                                          \
        for (int j = 0; j < C; j++) xr[j] = (const uint8_t *)x + (size_t)PG_MIN(c + j, nc - 1) * ldx;  \
        for (int r = 0; r < nr; r += R) {                                                              \
            const uint8_t *wr[16];                                                                     \
            for (int i = 0; i < R; i++) wr[i] = (const uint8_t *)w + (size_t)PG_MIN(r + i, nr - 1) * ldw; \
            tile(T, R, C, vnni, n, wr, xr, y + (int64_t)c * ldy + r, ldy, nr - r, nc - c);             \
        }                                                                                              \
    }

/* 1 token: kernels_avx512_matvec.c; 2-3: 8 rows x 2 tokens; 4 and more: 4 x 4 */
#define DOT_GEMM(name, tile, T, vnni, matvec)                                                          \
    static void name(GEMM_ARGS) {                                                                      \
        if (nc == 1) {                                                                                 \
            matvec(n, y, w, ldw, nr, x, work);                                                         \
        } else if (nc < 4) {                                                                           \
            SWEEP_RC(tile, T, vnni, 8, 2);                                                             \
        } else {                                                                                       \
            SWEEP_RC(tile, T, vnni, 4, 4);                                                             \
        }                                                                                              \
    }

#define A_GEMM(t, T)                                                 \
    DOT_GEMM(gemm_##t, a_tile, T, 0, pg512_matvec_##t)               \
    DOT_GEMM(gemm_##t##_vnni, a_tile, T, 1, pg512_matvec_##t##_vnni)
A_GEMM(q4_0, PG_TYPE_Q4_0)
A_GEMM(q4_1, PG_TYPE_Q4_1)
A_GEMM(q5_0, PG_TYPE_Q5_0)
A_GEMM(q5_1, PG_TYPE_Q5_1)
A_GEMM(q8_0, PG_TYPE_Q8_0)

/* ====================================================================== */
/* K-quants                                                               */
/* ====================================================================== */

/* work rows for the panel tiles (pg512_kpb blocks) */
static size_t k_work(int64_t n) { return PG_MAX(4 * (size_t)(n / 256) * sizeof(pg512_kpb), pg_avx2_matvec_work_k(n)); }

/* Decoded scales of a block: 16-bit scale and minimum multiplier of each
 * group of 16 values (the convention of pg_kscales in kernels.h). */
typedef struct {
    __m256i sc, mn;
    float d, dmin;
} kdec;

static const int16_t k_dup_idx[2][16] __attribute__((aligned(32))) = {
    {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7},
    {8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15},
};

/* Q4_K/Q5_K: 8 6-bit scales and 8 6-bit mins packed in 12 bytes (u0 u1 u2):
 *   scales 0..3 = u0 & 0x3f..,  scales 4..7 = (u2 & 0x0f..) | ((u0 >> 2) & 0x30..)
 *   mins   0..3 = u1 & 0x3f..,  mins   4..7 = ((u2 >> 4) & 0x0f..) | ((u1 >> 2) & 0x30..)
 * computed in one xmm (the 16-byte load stays inside the block). */
INLINE kdec dec_q4k(const uint8_t *s12, const pg_half *dd) {
    __m128i x = _mm_loadu_si128((const __m128i *)s12);
    __m128i lo = _mm_shuffle_epi32(x, _MM_SHUFFLE(2, 1, 2, 0));                  /* u0 u2 u1 u2 */
    lo = _mm_and_si128(_mm_srlv_epi32(lo, _mm_set_epi32(4, 0, 0, 0)),
                       _mm_set_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
    __m128i hi = _mm_shuffle_epi32(x, _MM_SHUFFLE(1, 1, 0, 0));                  /* u0 u0 u1 u1 */
    hi = _mm_and_si128(_mm_srli_epi32(hi, 2), _mm_set_epi32(0x30303030, 0, 0x30303030, 0));
    __m256i v = _mm256_cvtepu8_epi16(_mm_or_si128(lo, hi));                      /* sc0..7 m0..7 */
    kdec r;
    r.sc = _mm256_permutexvar_epi16(_mm256_load_si256((const __m256i *)k_dup_idx[0]), v);
    r.mn = _mm256_permutexvar_epi16(_mm256_load_si256((const __m256i *)k_dup_idx[1]), v);
    uint32_t d2;
    memcpy(&d2, dd, 4);                                                          /* d, dmin */
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)d2));
    r.d = _mm_cvtss_f32(f);
    r.dmin = _mm_cvtss_f32(_mm_movehdup_ps(f));
    return r;
}

INLINE kdec dec_q6k(const block_q6_K *b) {
    kdec r;
    r.sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    r.mn = _mm256_slli_epi16(r.sc, 5);                               /* 32 * sc */
    r.d = r.dmin = h2f(b->d);
    return r;
}

INLINE kdec dec_q3k(const block_q3_K *b) {
    uint32_t a0, a1, a2, w[4];
    memcpy(&a0, b->scales, 4);
    memcpy(&a1, b->scales + 4, 4);
    memcpy(&a2, b->scales + 8, 4);
    w[0] = (a0 & 0x0f0f0f0f) | ((a2 & 0x03030303) << 4);
    w[1] = (a1 & 0x0f0f0f0f) | (((a2 >> 2) & 0x03030303) << 4);
    w[2] = ((a0 >> 4) & 0x0f0f0f0f) | (((a2 >> 4) & 0x03030303) << 4);
    w[3] = ((a1 >> 4) & 0x0f0f0f0f) | (((a2 >> 6) & 0x03030303) << 4);
    kdec r;
    r.sc = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)w)), _mm256_set1_epi16(32));
    r.mn = _mm256_slli_epi16(r.sc, 2);                               /* 4 * sc */
    r.d = r.dmin = h2f(b->d);
    return r;
}

INLINE kdec dec_q2k(const block_q2_K *b) {
    __m128i v = _mm_loadu_si128((const __m128i *)b->scales);
    kdec r;
    r.sc = _mm256_cvtepu8_epi16(_mm_and_si128(v, _mm_set1_epi8(0x0F)));
    r.mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F)));
    r.d = h2f(b->d);
    r.dmin = h2f(b->dmin);
    return r;
}

/* 32 bytes -> [b & 15 | b >> 4]: 64 values (broadcast load, masked shift) */
INLINE __m512i nib_split(const uint8_t *qs) {
    __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qs));
    v = _mm512_mask_srli_epi16(v, 0xFFFF0000u, v, 4);
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
}

/* Q2_K/Q3_K: the 2-bit values of 64 elements 128h + 32j .. +63 (j = 0 or 2):
 * bits 2j.. of qs[32h + l] for the first 32, 2j+2.. for the next 32 */
INLINE __m512i two_bits(const uint8_t *qs32, int j) {
    __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qs32));
    __m512i sh = _mm512_set_epi64(2 * j + 2, 2 * j + 2, 2 * j + 2, 2 * j + 2, 2 * j, 2 * j, 2 * j, 2 * j);
    return _mm512_and_si512(_mm512_srlv_epi64(q, sh), _mm512_set1_epi8(3));
}

/* 1 at bit `bit` of the 32 bytes for the first 32 values, bit+1 for the next 32 */
INLINE __mmask64 hi_bits(const uint8_t *h32, int bit) {
    __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)h32));
    __m512i m = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8((char)(1 << bit))),
                                   _mm256_set1_epi8((char)(1 << (bit + 1))), 1);
    return _mm512_test_epi8_mask(h, m);
}

INLINE size_t k_block_bytes(const int T) {
    switch (T) {
    case PG_TYPE_Q2_K: return sizeof(block_q2_K);
    case PG_TYPE_Q3_K: return sizeof(block_q3_K);
    case PG_TYPE_Q4_K: return sizeof(block_q4_K);
    case PG_TYPE_Q5_K: return sizeof(block_q5_K);
    default: return sizeof(block_q6_K);
    }
}

INLINE kdec k_dec(const int T, const uint8_t *blk) {
    switch (T) {
    case PG_TYPE_Q2_K: return dec_q2k((const block_q2_K *)blk);
    case PG_TYPE_Q3_K: return dec_q3k((const block_q3_K *)blk);
    case PG_TYPE_Q4_K: {
        const block_q4_K *b = (const block_q4_K *)blk;
        return dec_q4k(b->scales, &b->d);
    }
    case PG_TYPE_Q5_K: {
        const block_q5_K *b = (const block_q5_K *)blk;
        return dec_q4k(b->scales, &b->d);
    }
    default: return dec_q6k((const block_q6_K *)blk);
    }
}

/* Values 64c .. 64c+63 of a block, unsigned, in element order. */
INLINE __m512i k_chunk(const int T, const uint8_t *blk, const int c) {
    if (T == PG_TYPE_Q2_K) {
        const block_q2_K *b = (const block_q2_K *)blk;
        return two_bits(b->qs + 32 * (c / 2), 2 * (c % 2));
    }
    if (T == PG_TYPE_Q3_K) {
        const block_q3_K *b = (const block_q3_K *)blk;
        int h = c / 2, j = 2 * (c % 2);
        __m512i v = two_bits(b->qs + 32 * h, j);
        return _mm512_mask_add_epi8(v, hi_bits(b->hmask, 4 * h + j), v, _mm512_set1_epi8(4));
    }
    if (T == PG_TYPE_Q4_K) return nib_split(((const block_q4_K *)blk)->qs + 32 * c);
    if (T == PG_TYPE_Q5_K) {
        const block_q5_K *b = (const block_q5_K *)blk;
        __m512i v = nib_split(b->qs + 32 * c);
        return _mm512_mask_add_epi8(v, hi_bits(b->qh, 2 * c), v, _mm512_set1_epi8(16));
    }
    /* Q6_K: values 128h + 0..63 are the low nibbles of ql[64h..+63] with qh
     * bits 0-1 / 2-3; values 128h + 64..127 the high nibbles, bits 4-5 / 6-7 */
    const block_q6_K *b = (const block_q6_K *)blk;
    const int h = c / 2, odd = c % 2;
    __m512i l = _mm512_loadu_si512(b->ql + 64 * h);
    if (odd) l = _mm512_srli_epi16(l, 4);
    __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
    qh = odd ? _mm512_srlv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0))
             : _mm512_sllv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4));
    return _mm512_or_si512(_mm512_and_si512(l, _mm512_set1_epi8(0x0F)), _mm512_and_si512(qh, _mm512_set1_epi8(0x30)));
}

/* Repacked blocks for the panel tiles. */
#define K_REPACK(name, T)                                                             \
    static void name(const uint8_t *src, int64_t nb, void *dst) {                      \
        for (int64_t i = 0; i < nb; i++) {                                              \
            const uint8_t *blk = src + i * k_block_bytes(T);                            \
            pg512_kpb *o = (pg512_kpb *)dst + i;                                        \
            UNROLL for (int c = 0; c < 4; c++) _mm512_store_si512(o->q + 64 * c, k_chunk(T, blk, c)); \
            kdec k = k_dec(T, blk);                                                     \
            _mm512_store_si512(o->sc, _mm512_cvtepi16_epi32(k.sc));                     \
            _mm256_store_si256((__m256i *)o->mn, k.mn);                                 \
            o->d = k.d;                                                                 \
            o->dmin = k.dmin;                                                           \
        }                                                                               \
    }
K_REPACK(rkp_q2k, PG_TYPE_Q2_K)
K_REPACK(rkp_q3k, PG_TYPE_Q3_K)
K_REPACK(rkp_q4k, PG_TYPE_Q4_K)
K_REPACK(rkp_q5k, PG_TYPE_Q5_K)
K_REPACK(rkp_q6k, PG_TYPE_Q6_K)

/* For the 64 values c of a block: 16-bit lane l (values 2l, 2l+1) takes the
 * scale of group 4c + l/8. */
/* For 32 values c of the rows of a zmm [sc0 | sc1] (16 int16 each): lanes
 * 0-7 take sc0[2c], 8-15 sc0[2c+1], 16-23 sc1[2c], 24-31 sc1[2c+1]. */
static const int16_t k_scale_idx2[8][32] __attribute__((aligned(64))) = {
#define R(c) {2*c, 2*c, 2*c, 2*c, 2*c, 2*c, 2*c, 2*c, 2*c+1, 2*c+1, 2*c+1, 2*c+1, 2*c+1, 2*c+1, 2*c+1, 2*c+1, \
              16+2*c, 16+2*c, 16+2*c, 16+2*c, 16+2*c, 16+2*c, 16+2*c, 16+2*c,                               \
              17+2*c, 17+2*c, 17+2*c, 17+2*c, 17+2*c, 17+2*c, 17+2*c, 17+2*c}
    R(0), R(1), R(2), R(3), R(4), R(5), R(6), R(7)
#undef R
};

INLINE __m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

/* Per row pair and 32 values: vpmaddubsw, then vpmaddwd (vpdpwssd) with the
 * 16-bit group scales into I; M = mn pairs x bsums pairs; see the file comment. */
INLINE void k_tile(const int T, const int R, const int C, const int vnni, int64_t n, const uint8_t *const *wr,
                   const uint8_t *const *xr, float *y, int64_t ldy, int nr, int nc) {
    const int HP = R / 2;
    const size_t bb = k_block_bytes(T);
    const float *xd[4];
    const int16_t *xbs[4];
    UNROLL for (int j = 0; j < C; j++) {
        xd[j] = pg_act_q8_d(xr[j], n);
        xbs[j] = pg_act_q8_bsums(xr[j], n);
    }
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / 256; b++) {
        __m512i PI[8], PM[8];
        float d[16], nmin[16];
        UNROLL for (int p = 0; p < HP; p++) {
            const uint8_t *b0 = wr[2 * p] + b * bb, *b1 = wr[2 * p + 1] + b * bb;
            UNROLL for (int l = 0; l < (int)k_block_bytes(T); l += 64) {
                _mm_prefetch((const char *)b0 + PF_BYTES + l, _MM_HINT_T0);
                _mm_prefetch((const char *)b1 + PF_BYTES + l, _MM_HINT_T0);
            }
            pg2_kdec k0 = pg2_k_dec(T, b0), k1 = pg2_k_dec(T, b1);
            d[2 * p] = k0.d;
            d[2 * p + 1] = k1.d;
            nmin[2 * p] = -k0.dmin;
            nmin[2 * p + 1] = -k1.dmin;
            __m512i sc = join(k0.sc, k1.sc), mn = join(k0.mn, k1.mn);
            UNROLL for (int j = 0; j < C; j++) PI[p + HP * j] = _mm512_setzero_si512();
            UNROLL for (int c = 0; c < 8; c++) {
                __m512i wq = join(pg2_k_chunk(T, b0, c), pg2_k_chunk(T, b1, c));
                __m512i sv = _mm512_permutexvar_epi16(_mm512_load_si512(k_scale_idx2[c]), sc);
                UNROLL for (int j = 0; j < C; j++) {
                    __m512i xq = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(xr[j] + 256 * b + 32 * c)));
                    __m512i pq = _mm512_maddubs_epi16(wq, xq);
                    PI[p + HP * j] = vnni ? vnni_dpwssd(PI[p + HP * j], pq, sv)
                                          : _mm512_add_epi32(PI[p + HP * j], _mm512_madd_epi16(pq, sv));
                }
            }
            UNROLL for (int j = 0; j < C; j++)
                PM[p + HP * j] = _mm512_madd_epi16(mn, _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(xbs[j] + 16 * b))));
        }
        __m512i I = reduce16(PI), M = reduce16(PM);
        float dxv[4];
        UNROLL for (int j = 0; j < C; j++) dxv[j] = xd[j][b];
        __m512 dx = by_token_ps(R, C, dxv);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I), _mm512_mul_ps(by_row_ps(R, d), dx), acc);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(M), _mm512_mul_ps(by_row_ps(R, nmin), dx), acc);
    }
    store_lanes(R, C, acc, y, ldy, nr, nc);
}

#define K_GEMM(t, T)                                                 \
    DOT_GEMM(gemm_##t, k_tile, T, 0, pg512_matvec_##t)               \
    DOT_GEMM(gemm_##t##_vnni, k_tile, T, 1, pg512_matvec_##t##_vnni)
K_GEMM(q2k, PG_TYPE_Q2_K)
K_GEMM(q3k, PG_TYPE_Q3_K)
K_GEMM(q4k, PG_TYPE_Q4_K)
K_GEMM(q5k, PG_TYPE_Q5_K)
K_GEMM(q6k, PG_TYPE_Q6_K)

pg512_arepack_fn pg512_arepack_of(int type, int vnni) {
    switch (type) {
    case PG_TYPE_Q4_0: return rp_q4_0;
    case PG_TYPE_Q4_1: return rp_q4_1;
    case PG_TYPE_Q5_0: return rp_q5_0;
    case PG_TYPE_Q5_1: return rp_q5_1;
    case PG_TYPE_Q8_0: return vnni ? rp_q8_0u : NULL;   /* no signed panel form */
    default: return NULL;
    }
}

pg512_krepack_fn pg512_krepack_of(int type) {
    switch (type) {
    case PG_TYPE_Q2_K: return rkp_q2k;
    case PG_TYPE_Q3_K: return rkp_q3k;
    case PG_TYPE_Q4_K: return rkp_q4k;
    case PG_TYPE_Q5_K: return rkp_q5k;
    case PG_TYPE_Q6_K: return rkp_q6k;
    default: return NULL;
    }
}

void pg_avx512_fill_quant(pg_kernels *k, int vnni) {
    /* mr = 16: mat-vec chunks are whole 16-row tiles; the work buffer is the panel path's */
#define SET(type, f, work_) \
    k->gemm[type] = (pg_gemm_kernel){.fn = vnni ? f##_vnni : f, .mr = 16, .nr = 4, .work = work_}
    SET(PG_TYPE_Q4_0, gemm_q4_0, a_work);
    SET(PG_TYPE_Q5_0, gemm_q5_0, a_work);
    SET(PG_TYPE_Q4_1, gemm_q4_1, a_work);
    SET(PG_TYPE_Q5_1, gemm_q5_1, a_work);
    SET(PG_TYPE_Q8_0, gemm_q8_0, a_work);
    SET(PG_TYPE_Q2_K, gemm_q2k, k_work);
    SET(PG_TYPE_Q3_K, gemm_q3k, k_work);
    SET(PG_TYPE_Q4_K, gemm_q4k, k_work);
    SET(PG_TYPE_Q5_K, gemm_q5k, k_work);
    SET(PG_TYPE_Q6_K, gemm_q6k, k_work);
#undef SET
    pg512_fill_panel(k, vnni);
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else /* not x86-64 */
void pg_avx512_fill_quant(pg_kernels *k, int vnni) { (void)k; (void)vnni; }
#endif
