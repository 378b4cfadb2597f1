/* kernels_matvec_x86.h -- the x86 matrix-vector products of the quantized
 * types (one token: decoding), in the canonical order of kernels.h; included by
 * kernels_avx2_matvec.c and kernels_avx512_matvec.c under their targets (the
 * AVX-512 file adds VNNI instantiations: vpdpbusd/vpdpwssd on ymm).
 *
 * Decoding streams every weight from DRAM once, so the access pattern decides
 * the speed: the rows of a tile of 8 are read in pairs, one pair after the other
 * (rows are contiguous in a GGUF tensor: two sequential streams), never 8 at
 * once.  Per row, the exact integer sums of 8 blocks are built side by side
 * (lanes = blocks) and stored with the blocks' scales in the thread's work
 * buffer; when the tile's 8 rows are done, 8x8 transposes turn them into lanes
 * = rows and the float chain runs for the 8 rows at once:
 *   32-blocks: acc = fma(isum - off * qsum, d * dx, acc) [+ fma(m, s, acc)]
 *   K-quants:  acc = fma(I, d * dx, acc); acc = fma(M, -dmin * dx, acc)
 * The 4- and 5-bit types take two blocks a ymm (nibbles of block b in the low
 * 128 bits, b+1 in the high), with the activations regrouped the same way once
 * per call.
 *
 * The including file defines INLINE, UNROLL and PREFETCH(p), includes
 * kernels_avx2.h, and is compiled for at least AVX2+FMA+F16C. */
#ifndef PG_KERNELS_MATVEC_X86_H
#define PG_KERNELS_MATVEC_X86_H

#ifndef MV_ROWS
#define MV_ROWS 2          /* rows of a tile processed side by side */
#endif

#include <stddef.h>

/* The rows of a chunk are one stream (contiguous in the tensor) consumed a pair of
 * rows at a time; while a pair's `bytes` from offset `done` of each row are processed,
 * the same share of the stream PF_AHEAD(ldw) bytes further on is prefetched. */
INLINE void stream_prefetch(const uint8_t *pair, size_t ldw, size_t done, size_t bytes) {
    if (!PF_AHEAD(ldw)) return;
    const uint8_t *p = pair + PF_AHEAD(ldw) + MV_ROWS * done;
    for (size_t c = 0; c < MV_ROWS * bytes; c += 64) PREFETCH(p + c);
}

/* VNNI on ymm (AVX512_VNNI + VL); only reached in the vnni instantiations */
INLINE __m256i mv_dpbusd(__m256i acc, __m256i u, __m256i s) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s));
    return acc;
}
INLINE __m256i mv_dpwssd(__m256i acc, __m256i a, __m256i b) {
    __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
}

/* Transpose 8 vectors of 8 int32 (or float bits): v[i][l] -> v[l][i]. */
INLINE void transpose8(__m256i v[8]) {
    __m256i t[8], u[8];
    UNROLL for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
    UNROLL for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    UNROLL for (int l = 0; l < 4; l++) {
        v[l] = _mm256_permute2x128_si256(u[l], u[4 + l], 0x20);
        v[4 + l] = _mm256_permute2x128_si256(u[l], u[4 + l], 0x31);
    }
}

/* 8 vectors from rows of a (8, ld) array, columns c..c+7, transposed: out[l] lane i = a[i][c + l] */
INLINE void load_transposed(const int32_t *a, int64_t ld, int64_t c, __m256i out[8]) {
    UNROLL for (int i = 0; i < 8; i++) out[i] = _mm256_loadu_si256((const __m256i *)(a + i * ld + c));
    transpose8(out);
}

/* The f16 at row + (b0 + l) * bb + off for l = 0..7 (blocks past nb - 1 repeat it), as floats,
 * packed in general-purpose registers and moved with one vmovq/vpinsrq. */
INLINE __m256 halves_by_block(const int full, const uint8_t *row, int64_t b0, int64_t nb, size_t bb, size_t off) {
    uint64_t lo = 0, hi = 0;
    UNROLL for (int l = 0; l < 4; l++) {
        uint16_t a, c;
        memcpy(&a, row + (size_t)(full ? b0 + l : PG_MIN(b0 + l, nb - 1)) * bb + off, 2);
        memcpy(&c, row + (size_t)(full ? b0 + 4 + l : PG_MIN(b0 + 4 + l, nb - 1)) * bb + off, 2);
        lo |= (uint64_t)a << (16 * l);
        hi |= (uint64_t)c << (16 * l);
    }
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)hi, (long long)lo));
}

/* ====================================================================== */
/* 32-blocks                                                              */
/* ====================================================================== */

INLINE size_t qs_offset(const int T) {
    return T == PG_TYPE_Q4_0 ? offsetof(block_q4_0, qs) : T == PG_TYPE_Q4_1 ? offsetof(block_q4_1, qs)
         : T == PG_TYPE_Q5_0 ? offsetof(block_q5_0, qs) : offsetof(block_q5_1, qs);
}

/* The 16 nibble bytes of blocks b (low 128 bits) and b' (high): values 0-15 of
 * both in lo, 16-31 in hi; the 5-bit types add their qh bits. */
INLINE void two_blocks(const int T, const uint8_t *b0, const uint8_t *b1, __m256i *lo, __m256i *hi) {
    const size_t q = qs_offset(T);
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(b0 + q))),
                                        _mm_loadu_si128((const __m128i *)(b1 + q)), 1);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    *lo = _mm256_and_si256(v, m4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    if (T == PG_TYPE_Q5_0 || T == PG_TYPE_Q5_1) {
        const size_t qo = T == PG_TYPE_Q5_0 ? offsetof(block_q5_0, qh) : offsetof(block_q5_1, qh);
        uint32_t h0, h1;
        memcpy(&h0, b0 + qo, 4);
        memcpy(&h1, b1 + qo, 4);
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

/* Lane o = sum of the 4 int32 of output o, where v[k] holds outputs 2k (lanes 0-3) and 2k+1 (4-7). */
INLINE __m256i reduce_pairs(const __m256i v[4]) {
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));  /* 0 2 4 6 | 1 3 5 7 */
    return _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Work bytes of a 32-block mat-vec of n values: the regrouped activations,
 * then (8, 8 * groups) int32 block sums, f32 d and f32 m. */
static size_t mv_work_a(int64_t n) {
    int64_t ng = (n / 32 + 7) / 8;
    return (size_t)n * 2 + 64 + 3 * (size_t)(8 * 8 * ng) * 4 + (size_t)(8 * ng) * 4;
}

/* Blocks b0 .. b0+7 of one row (full: all 8 exist; else the row's last, shorter group):
 * their exact sums (- nothing: the offset is subtracted in the chain) and scales into
 * ib, db, mb at b0. */
INLINE void a_group(const int T, const int vnni, const int full, const uint8_t *row, int64_t b0, int64_t nb, const uint8_t *x,
                    const uint8_t *xr, int32_t *ib, float *db, float *mb) {
    const int kind = pg2_a_kind(T);
    const size_t bb = pg2_a_block_bytes(T);
    const int cnt = full ? 8 : (int)(nb - b0);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i isum;
    if (T != PG_TYPE_Q8_0) {
        __m256i p[4];
        UNROLL for (int q = 0; q < 4; q++) {
            if (!full && 2 * q >= cnt) {
                p[q] = _mm256_setzero_si256();
                continue;
            }
            const int64_t ba = b0 + 2 * q, bz = full ? ba + 1 : PG_MIN(ba + 1, nb - 1);
            __m256i lo, hi;
            two_blocks(T, row + ba * bb, row + bz * bb, &lo, &hi);
            const uint8_t *xp = xr + 32 * ba;
            const __m256i xlo = _mm256_load_si256((const __m256i *)xp), xhi = _mm256_load_si256((const __m256i *)(xp + 32));
            p[q] = vnni ? mv_dpbusd(mv_dpbusd(_mm256_setzero_si256(), lo, xlo), hi, xhi)
                        : _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi)), ones);
        }
        isum = reduce_pairs(p);
    } else {   /* Q8_0: one block a ymm; the sign trick, or with VNNI w + 128 (the chain subtracts 128 qsum) */
        __m256i p[8];
        UNROLL for (int l = 0; l < 8; l++) {
            if (!full && l >= cnt) {
                p[l] = _mm256_setzero_si256();
                continue;
            }
            const int64_t b = b0 + l;
            __m256i wq = _mm256_loadu_si256((const __m256i *)(row + b * bb + offsetof(block_q8_0, qs)));
            __m256i xq = _mm256_loadu_si256((const __m256i *)(x + 32 * b));
            if (vnni) {
                p[l] = mv_dpbusd(_mm256_setzero_si256(), _mm256_xor_si256(wq, _mm256_set1_epi8(-128)), xq);
            } else {
                xq = _mm256_sign_epi8(xq, wq);
                p[l] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), xq), ones);
            }
        }
        isum = pg2_reduce8(p);
    }
    _mm256_storeu_si256((__m256i *)(ib + b0), isum);
    _mm256_storeu_ps(db + b0, halves_by_block(full, row, b0, nb, bb, 0));
    if (kind == PG2_MIN) _mm256_storeu_ps(mb + b0, halves_by_block(full, row, b0, nb, bb, 2));
}

INLINE void a_matvec(const int T, const int vnni, int64_t n, float *y, const uint8_t *w, size_t ldw, int nr, const uint8_t *x,
                     void *work) {
    const int kind = pg2_a_kind(T), pairs = T != PG_TYPE_Q8_0;
    const int64_t nb = n / 32, ng = (nb + 7) / 8, ld = 8 * ng;
    /* xr: (nb/2 pairs, 2, 32) the activations of blocks b, b+1 as [lo b | lo b+1], [hi b | hi b+1] */
    uint8_t *xr = (uint8_t *)(((uintptr_t)work + 63) & ~(uintptr_t)63);
    int32_t *ib = (int32_t *)(xr + (size_t)n * 2);                /* (8, ld) block sums */
    float *db = (float *)(ib + 8 * ld), *mb = db + 8 * ld;        /* (8, ld) d, m */
    const float *xd = pg_act_q8_d(x, n), *xs = pg_act_q8_s(x, n);
    const int16_t *xq = pg_act_q8_qsum(x, n);
    /* the offset subtracted from the block sums: off * qsum (Q4_0, Q5_0; Q8_0 unsigned with VNNI) */
    const int shift = kind == PG2_OFFSET ? pg2_a_offset_shift(T) : T == PG_TYPE_Q8_0 && vnni ? 7 : 0;
    int32_t *xoff = (int32_t *)(mb + 8 * ld);                     /* (nb) off * qsum */
    if (shift)
        for (int64_t b = 0; b < nb; b++) xoff[b] = (int32_t)xq[b] << shift;
    if (pairs)
        for (int64_t b = 0; b < nb; b += 2) {
            const uint8_t *x0 = x + 32 * b, *x1 = x + 32 * PG_MIN(b + 1, nb - 1);
            __m256i lo = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)x0)),
                                                 _mm_loadu_si128((const __m128i *)x1), 1);
            __m256i hi = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(x0 + 16))),
                                                 _mm_loadu_si128((const __m128i *)(x1 + 16)), 1);
            _mm256_store_si256((__m256i *)(xr + 32 * b), lo);
            _mm256_store_si256((__m256i *)(xr + 32 * b + 32), hi);
        }
    for (int r = 0; r < nr; r += 8) {
        /* MV_ROWS rows side by side (independent work for the out-of-order core) */
#pragma GCC unroll 1
        for (int i = 0; i < 8; i += MV_ROWS) {
            const uint8_t *r0 = w + (size_t)PG_MIN(r + i, nr - 1) * ldw, *r1 = w + (size_t)PG_MIN(r + i + 1, nr - 1) * ldw;
            const int64_t nfull = nb / 8;
            for (int64_t g = 0; g < nfull; g++) {
                stream_prefetch(r0, ldw, (size_t)(8 * g) * pg2_a_block_bytes(T), 8 * pg2_a_block_bytes(T));
                a_group(T, vnni, 1, r0, 8 * g, nb, x, xr, ib + i * ld, db + i * ld, mb + i * ld);
                if (MV_ROWS > 1)
                    a_group(T, vnni, 1, r1, 8 * g, nb, x, xr, ib + (i + 1) * ld, db + (i + 1) * ld, mb + (i + 1) * ld);
            }
            if (nfull < ng) {
                a_group(T, vnni, 0, r0, 8 * nfull, nb, x, xr, ib + i * ld, db + i * ld, mb + i * ld);
                if (MV_ROWS > 1)
                    a_group(T, vnni, 0, r1, 8 * nfull, nb, x, xr, ib + (i + 1) * ld, db + (i + 1) * ld, mb + (i + 1) * ld);
            }
        }
        __m256 acc = _mm256_setzero_ps();
        for (int64_t g = 0; g < ng; g++) {
            const int64_t b0 = 8 * g;
            __m256i I[8], D[8], M[8];
            load_transposed(ib, ld, b0, I);
            load_transposed((const int32_t *)db, ld, b0, D);
            if (kind == PG2_MIN) load_transposed((const int32_t *)mb, ld, b0, M);
#define A_CHAIN(l)                                                                                           \
    do {                                                                                                     \
        const int64_t b = b0 + (l);                                                                          \
        __m256i t = I[l];                                                                                    \
        if (shift) t = _mm256_sub_epi32(t, _mm256_set1_epi32(xoff[b]));                         \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_mul_ps(_mm256_castsi256_ps(D[l]), _mm256_set1_ps(xd[b])), acc); \
        if (kind == PG2_MIN) acc = _mm256_fmadd_ps(_mm256_castsi256_ps(M[l]), _mm256_set1_ps(xs[b]), acc);  \
    } while (0)
            if (b0 + 8 <= nb) {
                UNROLL for (int l = 0; l < 8; l++) A_CHAIN(l);
            } else {
                for (int l = 0; l < nb - b0; l++) A_CHAIN(l);
            }
#undef A_CHAIN
        }
        float out[8];
        _mm256_storeu_ps(out, acc);
        for (int i = 0; i < 8 && r + i < nr; i++) y[r + i] = out[i];
    }
}

/* ====================================================================== */
/* K-quants                                                               */
/* ====================================================================== */

/* Work bytes of a K-quant mat-vec: (8, 8 * groups) int32 I and M, f32 d and -dmin. */
static size_t mv_work_k(int64_t n) {
    int64_t ng = (n / 256 + 7) / 8;
    return 64 + 4 * (size_t)(8 * 8 * ng) * 4;
}

/* One block: the 8 int32 partial sums of I (values x group scales) and of M
 * (minimum multipliers x bsums), and the block's d and -dmin. */
INLINE void k_block(const int T, const int vnni, const uint8_t *blk, const uint8_t *x, const int16_t *xbs, int64_t b,
                    __m256i *pi, __m256i *pm, float *d, float *nmin) {
    pg2_kdec kd = pg2_k_dec(T, blk);
    int32_t sw[8];
    if (pg2_k_scale32(T)) _mm256_storeu_si256((__m256i *)sw, kd.sc);
    __m256i s = _mm256_setzero_si256();
    UNROLL for (int c = 0; c < 8; c++) {
        __m256i xq = _mm256_loadu_si256((const __m256i *)(x + 256 * b + 32 * c));
        __m256i sv = pg2_k_scale32(T) ? _mm256_set1_epi32(sw[c]) : pg2_k_scale_vec(kd.sc, c);
        __m256i pq = _mm256_maddubs_epi16(pg2_k_chunk(T, blk, c), xq);
        s = vnni ? mv_dpwssd(s, pq, sv) : _mm256_add_epi32(s, _mm256_madd_epi16(pq, sv));
    }
    *pi = s;
    *pm = _mm256_madd_epi16(kd.mn, _mm256_loadu_si256((const __m256i *)(xbs + 16 * b)));
    *d = kd.d;
    *nmin = -kd.dmin;
}

INLINE void k_matvec(const int T, const int vnni, int64_t n, float *y, const uint8_t *w, size_t ldw, int nr, const uint8_t *x,
                     void *work) {
    const size_t bb = pg2_k_block_bytes(T);
    const int64_t nb = n / 256, ng = (nb + 7) / 8, ld = 8 * ng;
    int32_t *ib = (int32_t *)(((uintptr_t)work + 63) & ~(uintptr_t)63);   /* (8, ld) I */
    int32_t *mb = ib + 8 * ld;                                             /* (8, ld) M */
    float *db = (float *)(mb + 8 * ld), *nb_ = db + 8 * ld;                /* (8, ld) d, -dmin */
    const float *xd = pg_act_q8_d(x, n);
    const int16_t *xbs = pg_act_q8_bsums(x, n);
    for (int r = 0; r < nr; r += 8) {
        /* MV_ROWS rows side by side (independent work for the out-of-order core) */
#pragma GCC unroll 1
        for (int i = 0; i < 8; i += MV_ROWS) {
            const uint8_t *r0 = w + (size_t)PG_MIN(r + i, nr - 1) * ldw, *r1 = w + (size_t)PG_MIN(r + i + 1, nr - 1) * ldw;
            for (int64_t g = 0; g < ng; g++) {
                const int64_t b0 = 8 * g;
                const int cnt = (int)PG_MIN(8, nb - b0);      /* blocks in this group (a row's last may have fewer) */
                stream_prefetch(r0, ldw, (size_t)b0 * bb, (size_t)cnt * bb);
                __m256i pi0[8], pm0[8], pi1[8], pm1[8];
                for (int l = cnt; l < 8; l++) pi0[l] = pm0[l] = pi1[l] = pm1[l] = _mm256_setzero_si256();
#pragma GCC unroll 1
                for (int l = 0; l < cnt; l++) {
                    const int64_t b = b0 + l;
                    k_block(T, vnni, r0 + b * bb, x, xbs, b, &pi0[l], &pm0[l], db + i * ld + b, nb_ + i * ld + b);
                    if (MV_ROWS > 1)
                        k_block(T, vnni, r1 + b * bb, x, xbs, b, &pi1[l], &pm1[l], db + (i + 1) * ld + b, nb_ + (i + 1) * ld + b);
                }
                _mm256_storeu_si256((__m256i *)(ib + i * ld + b0), pg2_reduce8(pi0));
                _mm256_storeu_si256((__m256i *)(mb + i * ld + b0), pg2_reduce8(pm0));
                if (MV_ROWS > 1) {
                    _mm256_storeu_si256((__m256i *)(ib + (i + 1) * ld + b0), pg2_reduce8(pi1));
                    _mm256_storeu_si256((__m256i *)(mb + (i + 1) * ld + b0), pg2_reduce8(pm1));
                }
            }
        }
        __m256 acc = _mm256_setzero_ps();
        for (int64_t g = 0; g < ng; g++) {
            const int64_t b0 = 8 * g;
            __m256i I[8], M[8], D[8], N[8];
            load_transposed(ib, ld, b0, I);
            load_transposed(mb, ld, b0, M);
            load_transposed((const int32_t *)db, ld, b0, D);
            load_transposed((const int32_t *)nb_, ld, b0, N);
#define K_CHAIN(l)                                                                                           \
    do {                                                                                                     \
        __m256 dx = _mm256_set1_ps(xd[b0 + (l)]);                                                            \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I[l]), _mm256_mul_ps(_mm256_castsi256_ps(D[l]), dx), acc);  \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(M[l]), _mm256_mul_ps(_mm256_castsi256_ps(N[l]), dx), acc);  \
    } while (0)
            if (b0 + 8 <= nb) {
                UNROLL for (int l = 0; l < 8; l++) K_CHAIN(l);
            } else {
                for (int l = 0; l < nb - b0; l++) K_CHAIN(l);
            }
#undef K_CHAIN
        }
        float out[8];
        _mm256_storeu_ps(out, acc);
        for (int i = 0; i < 8 && r + i < nr; i++) y[r + i] = out[i];
    }
}

#endif
