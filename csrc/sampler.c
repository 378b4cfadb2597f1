/* sampler.c -- the token sampler: parameters, penalty window, the llama.cpp-style chain, a
 * seeded RNG of our own, and raw log-probabilities.  The selection kernels live in
 * sampler_select.c; the semantics are documented in pygemma.h ("Sampler"). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__APPLE__)
#include <sys/random.h>
#endif

#include "internal.h"
#include "sampler_select.h"

/* A top-k this small is selected with a heap in one pass; larger ones use quickselect. */
#define HEAP_MAX_K 4096

struct pg_sampler {
    pg_sampler_params p;
    int32_t n_vocab;
    uint64_t seed;             /* the seed in use */
    uint64_t rng[4];           /* xoshiro256** state */

    /* penalty window (allocated only when some penalty is on) */
    int pen_on;
    int32_t *ring;             /* (ring_cap) the last accepted tokens, oldest at ring_head once full */
    int32_t ring_cap, ring_len, ring_head;
    int32_t *count;            /* (n_vocab) occurrences of each token in the window */
    int32_t *distinct;         /* (n_vocab) the tokens with count > 0, unordered */
    int32_t *slot;             /* (n_vocab) index of each token in distinct, -1 if absent */
    int32_t n_distinct;

    /* per-draw work buffers */
    float *scratch;            /* (n_vocab) penalized logits */
    float *prob;               /* (n_vocab) candidate weights */
    pg_cand *cand;             /* (n_vocab) candidates */
    pg_cand *cand_tmp;         /* (n_vocab + 1) work space for top-p */
};

/* ---- random numbers: splitmix64 to seed, xoshiro256** to draw (both public domain) ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4]) {
    const uint64_t result = rotl64(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

static uint64_t os_random_seed(void) {
    uint64_t v = 0;
    if (getentropy(&v, sizeof v) != 0) {
        /* no entropy source: mix the clock and an address, still different per run */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&v;
        v = splitmix64(&x);
    }
    return v == PG_SAMPLER_SEED_RANDOM ? v - 1 : v;     /* never report the "random" marker */
}

static void rng_seed(pg_sampler *s) {
    s->seed = s->p.seed == PG_SAMPLER_SEED_RANDOM ? os_random_seed() : s->p.seed;
    uint64_t x = s->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

/* ---- parameters ---- */

PG_API void pg_sampler_params_default(pg_sampler_params *p) {
    if (!p) return;
    *p = (pg_sampler_params){
        .temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
        .repeat_penalty = 1.0f, .frequency_penalty = 0.0f, .presence_penalty = 0.0f,
        .penalty_last_n = 64, .seed = PG_SAMPLER_SEED_RANDOM,
    };
}

static pg_status check_params(const pg_sampler_params *p, int32_t n_vocab) {
    if (n_vocab <= 0) return pg_fail(PG_ERR_ARG, "sampler: n_vocab = %d must be > 0", (int)n_vocab);
    if (!isfinite(p->temperature))
        return pg_fail(PG_ERR_ARG, "sampler: temperature = %g must be a finite number", p->temperature);
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
        return pg_fail(PG_ERR_ARG, "sampler: top_p = %g must be in [0, 1]", p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return pg_fail(PG_ERR_ARG, "sampler: min_p = %g must be in [0, 1]", p->min_p);
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty))
        return pg_fail(PG_ERR_ARG, "sampler: repeat_penalty = %g must be finite and > 0", p->repeat_penalty);
    if (!isfinite(p->frequency_penalty))
        return pg_fail(PG_ERR_ARG, "sampler: frequency_penalty = %g must be finite", p->frequency_penalty);
    if (!isfinite(p->presence_penalty))
        return pg_fail(PG_ERR_ARG, "sampler: presence_penalty = %g must be finite", p->presence_penalty);
    if (p->penalty_last_n < -1)
        return pg_fail(PG_ERR_ARG, "sampler: penalty_last_n = %d must be >= -1", (int)p->penalty_last_n);
    return PG_OK;
}

PG_API pg_status pg_sampler_create(const pg_sampler_params *p, int32_t n_vocab, pg_sampler **out) {
    if (!p || !out) return pg_fail(PG_ERR_ARG, "pg_sampler_create: NULL argument");
    *out = NULL;
    PG_TRY(check_params(p, n_vocab));
    pg_sampler *s = calloc(1, sizeof *s);
    if (!s) return pg_fail(PG_ERR_NOMEM, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->pen_on = p->penalty_last_n != 0 &&
                (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
    const size_t nv = (size_t)n_vocab;
    s->scratch = malloc(nv * sizeof *s->scratch);
    s->prob = malloc(nv * sizeof *s->prob);
    s->cand = malloc(nv * sizeof *s->cand);
    s->cand_tmp = malloc((nv + 1) * sizeof *s->cand_tmp);
    int ok = s->scratch && s->prob && s->cand && s->cand_tmp;
    if (ok && s->pen_on) {
        s->count = calloc(nv, sizeof *s->count);
        s->distinct = malloc(nv * sizeof *s->distinct);
        s->slot = malloc(nv * sizeof *s->slot);
        ok = s->count && s->distinct && s->slot;
        if (ok) memset(s->slot, 0xff, nv * sizeof *s->slot);   /* all -1 */
    }
    if (!ok) {
        pg_sampler_free(s);
        return pg_fail(PG_ERR_NOMEM, "sampler: out of memory for n_vocab = %d", (int)n_vocab);
    }
    rng_seed(s);
    *out = s;
    return PG_OK;
}

PG_API void pg_sampler_free(pg_sampler *s) {
    if (!s) return;
    free(s->ring);
    free(s->count);
    free(s->distinct);
    free(s->slot);
    free(s->scratch);
    free(s->prob);
    free(s->cand);
    free(s->cand_tmp);
    free(s);
}

PG_API uint64_t pg_sampler_seed(const pg_sampler *s) { return s ? s->seed : 0; }

PG_API void pg_sampler_reset(pg_sampler *s) {
    if (!s) return;
    if (s->pen_on) {
        for (int32_t i = 0; i < s->n_distinct; i++) {
            s->count[s->distinct[i]] = 0;
            s->slot[s->distinct[i]] = -1;
        }
        s->n_distinct = 0;
    }
    s->ring_len = s->ring_head = 0;
    rng_seed(s);
}

/* ---- penalty window ---- */

static void window_remove(pg_sampler *s, int32_t t) {
    if (--s->count[t] > 0) return;
    const int32_t j = s->slot[t], last = s->distinct[--s->n_distinct];
    s->distinct[j] = last;
    s->slot[last] = j;
    s->slot[t] = -1;
}

static void window_add(pg_sampler *s, int32_t t) {
    if (s->count[t]++ > 0) return;
    s->slot[t] = s->n_distinct;
    s->distinct[s->n_distinct++] = t;
}

PG_API pg_status pg_sampler_accept(pg_sampler *s, int32_t token) {
    if (!s) return pg_fail(PG_ERR_ARG, "pg_sampler_accept: NULL sampler");
    if (token < 0 || token >= s->n_vocab)
        return pg_fail(PG_ERR_ARG, "sampler: token %d out of range [0, %d)", (int)token, (int)s->n_vocab);
    if (!s->pen_on) return PG_OK;
    const int32_t last_n = s->p.penalty_last_n;
    if (last_n > 0) {
        if (s->ring_len == last_n) {                    /* full: overwrite the oldest */
            window_remove(s, s->ring[s->ring_head]);
            s->ring[s->ring_head] = token;
            s->ring_head = (s->ring_head + 1) % last_n;
            window_add(s, token);
            return PG_OK;
        }
        /* not full yet, so never wrapped: the ring grows linearly up to last_n */
        if (s->ring_len == s->ring_cap) {
            const int32_t cap = s->ring_cap == 0 ? PG_MIN(last_n, 64)
                                                 : (int32_t)PG_MIN((int64_t)last_n, 2 * (int64_t)s->ring_cap);
            int32_t *r = realloc(s->ring, (size_t)cap * sizeof *r);
            if (!r) return pg_fail(PG_ERR_NOMEM, "sampler: out of memory for the penalty window");
            s->ring = r;
            s->ring_cap = cap;
        }
        s->ring[s->ring_len++] = token;
    }
    window_add(s, token);                               /* last_n == -1: nothing ever leaves */
    return PG_OK;
}

/* scratch (n_vocab) = logits with the penalties applied to the tokens in the window. */
static const float *apply_penalties(pg_sampler *s, const float *logits) {
    if (!s->pen_on || s->n_distinct == 0) return logits;
    memcpy(s->scratch, logits, (size_t)s->n_vocab * sizeof *logits);
    const pg_sampler_params *p = &s->p;
    for (int32_t i = 0; i < s->n_distinct; i++) {
        const int32_t t = s->distinct[i];
        float l = logits[t];
        if (isnan(l)) continue;                         /* stays NaN, i.e. excluded */
        l = l > 0.0f ? l / p->repeat_penalty : l * p->repeat_penalty;
        l -= (float)s->count[t] * p->frequency_penalty + p->presence_penalty;
        s->scratch[t] = isnan(l) ? -INFINITY : l;       /* -inf - -inf and the like */
    }
    return s->scratch;
}

/* ---- the chain ---- */

/* Run penalties, top-k, top-p and min-p; leave the survivors in cand[0..*n_out) and their
 * temperature-scaled weights in prob[0..*n_out) (unnormalized; *total is their sum, added
 * in the order a draw walks them). */
static pg_status run_chain(pg_sampler *s, const float *logits, int32_t *n_out, double *total) {
    const pg_sampler_params *p = &s->p;
    const int32_t nv = s->n_vocab;
    const float *x = apply_penalties(s, logits);

    /* greedy; also a temperature so small that 1 / temperature overflows, which is the limit */
    if (p->temperature <= 0.0f || p->top_k == 1 || !(1.0f / p->temperature < INFINITY)) {
        const int64_t best = pg_sel_argmax(x, nv);
        if (best < 0) return pg_fail(PG_ERR_ARG, "sampler: every logit is NaN or -inf");
        s->cand[0] = (pg_cand){x[best] < FLT_MAX ? x[best] : FLT_MAX, (int32_t)best};
        s->prob[0] = 1.0f;
        *n_out = 1;
        *total = 1.0;
        return PG_OK;
    }

    /* top-k: a heap leaves cand sorted best first; otherwise cand is in id order (or
     * quickselect order), with the max found separately */
    const int32_t k = (p->top_k <= 0 || p->top_k >= nv) ? nv : p->top_k;
    int32_t n;
    int sorted;
    float lmax;
    double z_all = 0.0;                                 /* top-p's normalizer, when taken over x */
    if (k <= HEAP_MAX_K) {
        n = pg_sel_top_k_heap(s->cand, x, nv, k);
        sorted = 1;
        lmax = n > 0 ? s->cand[0].logit : -INFINITY;
    } else {
        lmax = pg_sel_max(x, nv);                       /* the best token is always among the top k */
        if (!(lmax > -INFINITY)) return pg_fail(PG_ERR_ARG, "sampler: every logit is NaN or -inf");
        lmax = lmax < FLT_MAX ? lmax : FLT_MAX;
        if (k >= nv) {
            /* The whole vocabulary.  Top-p and min-p only cut from the bottom, so tokens that
             * cannot survive them need never be listed:
             *   min-p removes everything below l_max + log(min_p);
             *   the tokens of weight exp(l - l_max) < (1 - top_p) z / nv hold at most
             *   (1 - top_p) of the mass together, so the nucleus is complete above them
             *   (half that bound is used, a margin for rounding). */
            float floor_l = p->min_p > 0.0f ? lmax + logf(p->min_p) : -INFINITY;
            if (p->top_p < 1.0f) {
                z_all = pg_sel_exp_sum(NULL, x, nv, lmax, 1.0f);
                const float f = lmax + (float)log(0.5 * (1.0 - p->top_p) * z_all / nv);
                floor_l = f > floor_l ? f : floor_l;
            }
            n = pg_sel_fill(s->cand, x, nv, floor_l);
        } else {
            n = pg_sel_fill(s->cand, x, nv, -INFINITY);
            if (k < n) {
                pg_sel_partition(s->cand, n, k);
                n = k;
            }
        }
        sorted = 0;
    }
    if (n == 0) return pg_fail(PG_ERR_ARG, "sampler: every logit is NaN or -inf");

    /* top-p: probabilities over the top-k survivors at temperature 1, as llama.cpp */
    if (p->top_p < 1.0f && n > 1) {
        for (int32_t i = 0; i < n; i++) s->prob[i] = s->cand[i].logit;
        const double z_cand = pg_sel_exp_sum(s->prob, s->prob, n, lmax, 1.0f);
        const double z = z_all > 0.0 ? z_all : z_cand;
        if (sorted) {
            double cum = 0.0;
            int32_t keep = n;
            for (int32_t i = 0; i < n; i++) {
                cum += s->prob[i];
                if (cum >= p->top_p * z) {
                    keep = i + 1;
                    break;
                }
            }
            n = keep;
        } else {
            n = pg_sel_top_p(s->cand, s->prob, n, lmax, z, p->top_p, s->cand_tmp);
        }
    }

    /* min-p: keep l >= l_max + log(min_p); the best token always passes.  A stable
     * compaction, so a sorted list stays sorted. */
    if (p->min_p > 0.0f && n > 1) {
        const float thr = lmax + logf(p->min_p);
        int32_t m = 0;
        for (int32_t i = 0; i < n; i++)
            if (s->cand[i].logit >= thr) s->cand[m++] = s->cand[i];
        n = m;
    }

    /* temperature and the weights the draw uses */
    for (int32_t i = 0; i < n; i++) s->prob[i] = s->cand[i].logit;
    pg_sel_exp_sum(s->prob, s->prob, n, lmax, 1.0f / p->temperature);
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) sum += s->prob[i];
    *n_out = n;
    *total = sum;
    return PG_OK;
}

PG_API pg_status pg_sampler_sample(pg_sampler *s, const float *logits, int32_t *token_out) {
    if (!s || !logits || !token_out) return pg_fail(PG_ERR_ARG, "pg_sampler_sample: NULL argument");
    int32_t n;
    double total;
    PG_TRY(run_chain(s, logits, &n, &total));
    /* One uniform per draw, also for greedy, so a draw's position in the stream does not
     * depend on what earlier draws were. */
    const double target = rng_uniform(s->rng) * total;
    double run = 0.0;
    int32_t pick = -1;
    for (int32_t i = 0; i < n; i++) {
        run += s->prob[i];
        if (run > target) {                             /* strict: a zero weight is never picked */
            pick = i;
            break;
        }
    }
    /* u * total rounded up to total (chance ~2^-53): the last token with any weight */
    for (int32_t i = n - 1; pick < 0 && i >= 0; i--)
        if (s->prob[i] > 0.0f) pick = i;
    if (pick < 0) pick = 0;
    *token_out = s->cand[pick].id;
    return PG_OK;
}

PG_API pg_status pg_sampler_candidates(pg_sampler *s, const float *logits, int32_t cap,
                                       int32_t *ids_out, float *probs_out, int32_t *n_out) {
    if (!s || !logits || !n_out || (cap > 0 && (!ids_out || !probs_out)))
        return pg_fail(PG_ERR_ARG, "pg_sampler_candidates: NULL argument");
    int32_t n;
    double total;
    PG_TRY(run_chain(s, logits, &n, &total));
    for (int32_t i = 0; i < n && i < cap; i++) {
        ids_out[i] = s->cand[i].id;
        probs_out[i] = (float)(s->prob[i] / total);
    }
    *n_out = n;
    return PG_OK;
}

/* ---- raw log-probabilities ---- */

/* *lmax and *log_z such that log_softmax(l) = (l - lmax) - log_z. */
static pg_status log_normalizer(const float *logits, int32_t n_vocab, float *lmax, double *log_z) {
    float m = pg_sel_max(logits, n_vocab);
    if (!(m > -INFINITY)) return pg_fail(PG_ERR_ARG, "logprobs: every logit is NaN or -inf");
    if (m > FLT_MAX) m = FLT_MAX;                       /* +inf logits share the mass equally */
    *lmax = m;
    *log_z = log(pg_sel_exp_sum(NULL, logits, n_vocab, m, 1.0f));
    return PG_OK;
}

static float logprob_of(float l, float lmax, double log_z) {
    if (isnan(l)) return -INFINITY;
    if (l > FLT_MAX) l = FLT_MAX;
    return (float)((double)(l - lmax) - log_z);
}

PG_API pg_status pg_sampler_top_logprobs(const float *logits, int32_t n_vocab, int32_t k,
                                         int32_t *ids_out, float *logprobs_out) {
    if (!logits || (k > 0 && (!ids_out || !logprobs_out)))
        return pg_fail(PG_ERR_ARG, "pg_sampler_top_logprobs: NULL argument");
    if (n_vocab <= 0) return pg_fail(PG_ERR_ARG, "logprobs: n_vocab = %d must be > 0", (int)n_vocab);
    if (k < 0 || k > n_vocab)
        return pg_fail(PG_ERR_ARG, "logprobs: k = %d must be in [0, n_vocab = %d]", (int)k, (int)n_vocab);
    if (k == 0) return PG_OK;
    float lmax = 0.0f;
    double log_z = 0.0;
    PG_TRY(log_normalizer(logits, n_vocab, &lmax, &log_z));
    pg_cand *c = malloc((size_t)(k <= HEAP_MAX_K ? k : n_vocab) * sizeof *c);
    if (!c) return pg_fail(PG_ERR_NOMEM, "logprobs: out of memory");
    int32_t got;
    if (k <= HEAP_MAX_K) {
        got = pg_sel_top_k_heap(c, logits, n_vocab, k);
    } else {
        got = pg_sel_fill(c, logits, n_vocab, -INFINITY);
        if (got > k) {
            pg_sel_partition(c, got, k);
            got = k;
        }
        pg_sel_sort(c, got);
    }
    for (int32_t i = 0; i < got; i++) {
        ids_out[i] = c[i].id;
        logprobs_out[i] = logprob_of(c[i].logit, lmax, log_z);
    }
    free(c);
    /* Fewer than k usable logits: every usable one is listed; pad with the NaN/-inf tokens
     * by id, at probability 0. */
    for (int32_t t = 0; got < k && t < n_vocab; t++) {
        if (logits[t] > -INFINITY) continue;
        ids_out[got] = t;
        logprobs_out[got++] = -INFINITY;
    }
    return PG_OK;
}

PG_API pg_status pg_sampler_token_logprob(const float *logits, int32_t n_vocab, int32_t token,
                                          float *logprob_out) {
    if (!logits || !logprob_out) return pg_fail(PG_ERR_ARG, "pg_sampler_token_logprob: NULL argument");
    if (n_vocab <= 0) return pg_fail(PG_ERR_ARG, "logprobs: n_vocab = %d must be > 0", (int)n_vocab);
    if (token < 0 || token >= n_vocab)
        return pg_fail(PG_ERR_ARG, "logprobs: token %d out of range [0, %d)", (int)token, (int)n_vocab);
    float lmax = 0.0f;
    double log_z = 0.0;
    PG_TRY(log_normalizer(logits, n_vocab, &lmax, &log_z));
    *logprob_out = logprob_of(logits[token], lmax, log_z);
    return PG_OK;
}
