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
#define F_GEMM(name, T)                                                                              \
    static void name(int64_t n, float *y, int64_t ldy, const void *wv, size_t ldw, int nr,           \
                     const void *xv, size_t ldx, int nc, void *work) {                               \
        const uint8_t *w = wv, *x = xv;                                                              \
        (void)work;                                                                                  \
        for (int64_t k0 = 0; k0 < n; k0 += F_KB) {                                                   \
            int64_t k1 = PG_MIN(n, k0 + F_KB);                                                       \
            int r = 0;                                                                               \
            for (; r + F_RM <= nr; r += F_RM) {                                                      \
                int c = 0;                                                                           \
                for (; c + F_RN <= nc; c += F_RN)                                                    \
                    f_tile(F_RM, F_RN, T, k0, k1, w + r * ldw, ldw, x + c * ldx, ldx, y + c * ldy + r, ldy); \
                for (; c < nc; c++)                                                                  \
                    f_tile(F_RM, 1, T, k0, k1, w + r * ldw, ldw, x + c * ldx, ldx, y + c * ldy + r, ldy); \
            }                                                                                        \
            for (; r < nr; r++) {                                                                    \
                int c = 0;                                                                           \
                for (; c + F_RN <= nc; c += F_RN)                                                    \
                    f_tile(1, F_RN, T, k0, k1, w + r * ldw, ldw, x + c * ldx, ldx, y + c * ldy + r, ldy); \
                for (; c < nc; c++)                                                                  \
                    f_tile(1, 1, T, k0, k1, w + r * ldw, ldw, x + c * ldx, ldx, y + c * ldy + r, ldy); \
            }                                                                                        \
        }                                                                                            \
    }

#endif
