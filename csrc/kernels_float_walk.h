/* kernels_float_walk.h -- the tile walk shared by the SIMD float-weight
 * matmuls (AVX2, AVX-512).  Include after defining, in the including file,
 * F_RM, F_RN and the ISA's
 *   f_tile(RM, RN, T, k0, k1, w, ldw, x, ldx, y, ldy)
 * which adds the dot products over values k0..k1-1 of an RM x RN tile to y. */
#ifndef PG_KERNELS_FLOAT_WALK_H
#define PG_KERNELS_FLOAT_WALK_H

/* The chunk in blocks of F_KB values: a tile's rows and columns of one block
 * stay in L1 (4 + 4 rows of 4 KB) while the block is swept. */
#define F_KB 1024
#define F_TILES(T, k0, k1, r_lo, r_hi)                                                               \
    do {                                                                                             \
        int r = (r_lo);                                                                              \
        for (; r + F_RM <= (r_hi); r += F_RM) {                                                      \
            int c = 0;                                                                               \
            for (; c + F_RN <= nc; c += F_RN)                                                        \
                f_tile(F_RM, F_RN, T, k0, k1, w + r * ldw, ldw, x + c * ldx, ldx, y + c * ldy + r, ldy); \
            for (; c < nc; c++)                                                                      \
                f_tile(F_RM, 1, T, k0, k1, w + r * ldw, ldw, x + c * ldx, ldx, y + c * ldy + r, ldy); \
        }                                                                                            \
        for (; r < (r_hi); r++) {                                                                    \
            int c = 0;                                                                               \
            for (; c + F_RN <= nc; c += F_RN)                                                        \
                f_tile(1, F_RN, T, k0, k1, w + r * ldw, ldw, x + c * ldx, ldx, y + c * ldy + r, ldy); \
            for (; c < nc; c++)                                                                      \
                f_tile(1, 1, T, k0, k1, w + r * ldw, ldw, x + c * ldx, ldx, y + c * ldy + r, ldy);   \
        }                                                                                            \
    } while (0)

/* Every output sums its k-blocks in order (y = partial of block 0, then y += each
 * next block's partial), whatever the walk; so a single token walks row tile by
 * row tile (each tile's rows stream from memory once, in full), a batch k-block
 * by k-block (the block's activation columns stay in L1), with the same results. */
#define F_GEMM(name, T)                                                                              \
    static void name(int64_t n, float *y, int64_t ldy, const void *wv, size_t ldw, int nr,           \
                     const void *xv, size_t ldx, int nc, void *work) {                               \
        const uint8_t *w = wv, *x = xv;                                                              \
        (void)work;                                                                                  \
        if (nc == 1) {                                                                               \
            for (int rt = 0; rt < nr; rt += F_RM) {                                                  \
                int re = rt + F_RM <= nr ? rt + F_RM : nr;                                           \
                for (int64_t k0 = 0; k0 < n; k0 += F_KB) F_TILES(T, k0, PG_MIN(n, k0 + F_KB), rt, re); \
            }                                                                                        \
            return;                                                                                  \
        }                                                                                            \
        for (int64_t k0 = 0; k0 < n; k0 += F_KB) F_TILES(T, k0, PG_MIN(n, k0 + F_KB), 0, nr);        \
    }

#endif
