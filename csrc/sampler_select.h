/* sampler_select.h -- candidate selection and softmax kernels behind the sampler (not public).
 *
 * Every function here treats NaN logits as -inf (excluded) and +inf as FLT_MAX, so a
 * broken model output can never crash the sampler or poison a sum.
 */
#ifndef PG_SAMPLER_SELECT_H
#define PG_SAMPLER_SELECT_H

#include <stdint.h>

/* One candidate token: its (penalized) logit and its id. */
typedef struct {
    float logit;
    int32_t id;
} pg_cand;

/* The one order used for every sort and selection: higher logit first, then lower id.
 * It is total (ids are distinct), so every algorithm gives the same sequence on every
 * platform -- which keeps seeded sampling reproducible. */
static inline int pg_cand_before(pg_cand a, pg_cand b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

/* Largest element of x (n) ignoring NaN; -inf when n == 0 or nothing is above -inf. */
float pg_sel_max(const float *x, int64_t n);

/* Index of the first element equal to the largest (ignoring NaN); -1 if none is above -inf. */
int64_t pg_sel_argmax(const float *x, int64_t n);

/* sum_i exp(min((x[i] - shift) * scale, 0)), in double; NaN, -inf and terms below
 * exp(-87.3) count as 0.  `out` (n, may alias x or be NULL) receives each term. */
double pg_sel_exp_sum(float *out, const float *x, int64_t n, float shift, float scale);

/* h (k) = the k best tokens of x (n) in pg_cand order, sorted; returns how many were found
 * (fewer than k when fewer than k logits are above -inf).  Meant for small k. */
int32_t pg_sel_top_k_heap(pg_cand *h, const float *x, int32_t n, int32_t k);

/* c (n) = every token of x (n) whose logit is above -inf and >= floor_l, in id order;
 * returns the count. */
int32_t pg_sel_fill(pg_cand *c, const float *x, int32_t n, float floor_l);

/* Reorder c (n) so that c[0..m) hold the m best candidates (in no particular order). */
void pg_sel_partition(pg_cand *c, int32_t n, int32_t m);

/* Sort c (n) in pg_cand order. */
void pg_sel_sort(pg_cand *c, int32_t n);

/* Top-p (nucleus) over candidates c (n) whose weights w (n) = exp(logit - lmax) sum to z:
 * keeps the best-first prefix whose probability first reaches top_p (at least one token).
 * Moves the kept ones to c[0..m) and returns m.  Only the bucket of logits (1/32 nat wide)
 * where the cut falls is sorted; the kept tokens above it stay in id order.
 * tmp (n + 1): work space. */
int32_t pg_sel_top_p(pg_cand *c, const float *w, int32_t n, float lmax, double z, double top_p,
                     pg_cand *tmp);

#endif
