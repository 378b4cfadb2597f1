/* quant_search.h -- the scale searches behind llama.cpp's quantizers, shared by
 * quantize.c (32-element types) and quantize_k.c (K-quants).  Internal.
 *
 * Every routine reproduces the floating-point operations of ggml-quants.c in
 * the same order (no reassociation, no fused multiply-add), so that our
 * bytes equal llama.cpp's.  Do not "simplify" an expression such as
 * w*x*l into w*(x*l): the product would round differently. */
#ifndef PG_QUANT_SEARCH_H
#define PG_QUANT_SEARCH_H

#include <stdint.h>
#include <string.h>

#include "quants.h"

/* Groups whose largest magnitude is below this are stored as all zeros. */
#define PG_GROUP_MAX_EPS 1e-15f

/* Round to nearest (ties to even) for |f| < 2^22, as ggml's nearest_int:
 * adding 1.5 * 2^23 lets the FPU round f into the low mantissa bits.  Values
 * out of that range give the same (meaningless) integers as ggml's. */
static inline int pg_nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int pg_clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Symmetric levels: L (n) in [0, 2*nmax) with x ~ scale * (L - nmax); returns
 * scale.  Weights qw (n) or, when NULL, x^2.  Tries 19 candidate scales around
 * nmax / max|x| and keeps the one with the best weighted least-squares fit
 * (ggml make_qx_quants, rmse_type 1). */
float pg_make_qx_quants(int n, int nmax, const float *x, int8_t *L, const float *qw);

/* Symmetric levels refined coordinate-wise with x^2 weights (ggml
 * make_q3_quants with do_rmse): L (n) in [0, 2*nmax); returns scale. */
float pg_make_q3_quants(int n, int nmax, const float *x, int8_t *L);

/* Asymmetric levels: L (n) in [0, nmax] with x ~ scale * L - the_min.
 * Scans nstep+1 candidate scales (rmin + rdelta*is + nmax) / (max - min) and
 * solves each weighted least-squares fit for scale and min.  `use_mad` weighs
 * absolute instead of squared errors.  Laux (n) is scratch.
 * ggml make_qkx2_quants (reference quantizers). */
float pg_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          int use_mad);
/* The same search as used with an importance matrix (ggml make_qkx3_quants):
 * levels of candidates are clamped before rounding and a degenerate range
 * (max <= min) gives zeros. */
float pg_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          int use_mad);

/* Non-negative levels L (n) in [0, nmax] for non-negative x (the sub-block
 * scales of a super-block), weighted by qw (n); returns scale
 * (ggml make_qp_quants). */
float pg_make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw);

/* ---- row quantizers of quantize_k.c (n % 256 == 0; imatrix (n) or NULL) ---- */
void pg_quantize_row_q2_K(const float *x, void *y, int64_t n, const float *imatrix);
void pg_quantize_row_q3_K(const float *x, void *y, int64_t n, const float *imatrix);
void pg_quantize_row_q4_K(const float *x, void *y, int64_t n, const float *imatrix);
void pg_quantize_row_q5_K(const float *x, void *y, int64_t n, const float *imatrix);
void pg_quantize_row_q6_K(const float *x, void *y, int64_t n, const float *imatrix);

#endif
