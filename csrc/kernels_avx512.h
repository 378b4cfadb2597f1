/* kernels_avx512.h -- shared by the AVX-512 tier files only (every function
 * here is compiled for AVX-512 and must be called from that tier only).
 *
 * Weight rows are unpacked ("repacked") into the thread's work buffer before
 * the tiles run, in one of these layouts:
 *   arow (32-block types), per row of nb blocks, np = ceil(nb/2) pairs:
 *     q: (np, 64) u8 values in element order (block b at q + 32 b; a missing
 *        last block is zeros), d: (np, 2) float scales, c: (np, 2) float
 *        constant term per block: the minimum m (Q4_1, Q5_1) or -off * d for
 *        the offset types (Q4_0: u - 8, Q5_0: u - 16, Q8_0: (w ^ 0x80) - 128)
 *   kpb (K-quants): see the struct */
#ifndef PG_KERNELS_AVX512_H
#define PG_KERNELS_AVX512_H

#include "kernels.h"

typedef struct {
    uint8_t *q;
    float *d, *c;
} pg512_arow;

static inline pg512_arow pg512_arow_at(const uint8_t *base, int64_t np) {
    pg512_arow r;
    r.q = (uint8_t *)base;
    r.d = (float *)(base + 64 * np);
    r.c = r.d + 2 * np;
    return r;
}

/* Bytes of one repacked 32-block row of n values (a multiple of 64). */
static inline size_t pg512_arow_bytes(int64_t n) {
    int64_t np = (n / 32 + 1) / 2;
    return (size_t)((np * 80 + 63) & ~63LL);
}

/* K-quant block for the panel tiles: values, 32-bit scale per 16 values (for
 * broadcast multiplies), 16-bit minimum multipliers, d and dmin. */
typedef struct {
    uint8_t q[256];
    int32_t sc[16];
    int16_t mn[16];
    float d, dmin;
    float pad_[6];
} pg512_kpb;

_Static_assert(sizeof(pg512_kpb) == 384, "kpb is 6 cache lines");

/* Repack one row of nb blocks (src: GGUF blocks) into dst. */
typedef void (*pg512_arepack_fn)(const uint8_t *src, int64_t nb, uint8_t *dst);
typedef void (*pg512_krepack_fn)(const uint8_t *src, int64_t nb, void *dst);

/* Weight type -> its repack function (NULL if none; Q8_0 has only the
 * unsigned form used with VNNI). */
pg512_arepack_fn pg512_arepack_of(int type, int vnni);
pg512_krepack_fn pg512_krepack_of(int type);

/* kernels_avx512_matvec.c: one-token products in the canonical order
 * (kernels_matvec_x86.h); work: pg_avx2_matvec_work_a/k(n) bytes. */
typedef void pg512_matvec_fn(int64_t n, float *y, const void *w, size_t ldw, int nr, const void *x, void *work);
pg512_matvec_fn pg512_matvec_q4_0, pg512_matvec_q4_1, pg512_matvec_q5_0, pg512_matvec_q5_1, pg512_matvec_q8_0;
pg512_matvec_fn pg512_matvec_q2k, pg512_matvec_q3k, pg512_matvec_q4k, pg512_matvec_q5k, pg512_matvec_q6k;
pg512_matvec_fn pg512_matvec_q4_0_vnni, pg512_matvec_q4_1_vnni, pg512_matvec_q5_0_vnni, pg512_matvec_q5_1_vnni,
    pg512_matvec_q8_0_vnni;
pg512_matvec_fn pg512_matvec_q2k_vnni, pg512_matvec_q3k_vnni, pg512_matvec_q4k_vnni, pg512_matvec_q5k_vnni,
    pg512_matvec_q6k_vnni;

/* The panel path (kernels_avx512_panel.c): fills the pfn/to_panel entries. */
void pg512_fill_panel(pg_kernels *k, int vnni);

#endif
