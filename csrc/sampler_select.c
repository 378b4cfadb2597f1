/* sampler_select.c -- candidate selection and softmax kernels behind the sampler.
 *
 * The vocabulary is large (262144 for Gemma 3), so nothing here sorts all of it per token:
 *   - a bounded min-heap for small top-k (one pass, almost every element rejected by a compare),
 *   - quickselect for large selections, sorting only the part the chain actually walks,
 *   - an exp/sum written with GCC/clang vector extensions, so the softmax normalizer over the
 *     whole vocabulary costs a fraction of scalar expf's ~1 ms.
 * The vector code needs no -m flags: 4-wide float vectors are SSE2 on x86-64 and NEON on
 * arm64, and an 8-wide AVX2 build of the same body is picked at run time where available.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "sampler_select.h"

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f v4_splat(float a) { return (v4f){a, a, a, a}; }

/* Lanes of a where mask is all-ones, else lanes of b (mask lanes are 0 or -1, as comparisons give). */
static inline v4f v4_select(v4i mask, v4f a, v4f b) {
    return (v4f)(((v4i)a & mask) | ((v4i)b & ~mask));
}

/* 1 if any lane of a comparison mask is set. */
static inline int v4_any(v4i m) {
    uint64_t h[2];
    memcpy(h, &m, sizeof h);
    return (h[0] | h[1]) != 0;
}

/* 1 if any of x[0..16) is above thr (NaN never is). */
static inline int block16_any_above(const float *x, float thr) {
    v4f a, b, c, d;
    memcpy(&a, x, sizeof a);
    memcpy(&b, x + 4, sizeof b);
    memcpy(&c, x + 8, sizeof c);
    memcpy(&d, x + 12, sizeof d);
    const v4f t = v4_splat(thr);
    return v4_any((a > t) | (b > t) | (c > t) | (d > t));
}

/* ---- exp and sum of exp, one body for every vector width ----
 *
 * exp(x) for x <= 0 (larger x is clamped to 0); NaN, -inf and x < -87.33 give 0.
 * Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then the Cephes expf polynomial
 * (about 1 ulp), scaled by 2^n built in the exponent bits (n >= -126 keeps 2^n normal).
 * round(x log2 e) uses the 1.5 * 2^23 trick: adding it puts the integer in the low mantissa
 * bits (0x4B400000 are the bits of 1.5 * 2^23). */
#define DEFINE_EXP_NONPOS(NAME, VF, VI, ATTR)                                              \
    static inline ATTR VF NAME(VF x) {                                                     \
        const VI ok = x >= -87.33654f;                 /* false for NaN and -inf */         \
        x = (VF)((VI)x & ok);                                                              \
        x = (VF)((VI)x & ~(x > 0.0f));                                                     \
        const VF t = x * 1.44269504088896341f + 12582912.0f;                               \
        const VF n = t - 12582912.0f;                                                      \
        const VI ni = (VI)t - 0x4B400000;                                                  \
        const VF r = x - n * 0.693359375f - n * -2.12194440e-4f;                           \
        VF p = r * 1.9875691500e-4f + 1.3981999507e-3f;                                    \
        p = p * r + 8.3334519073e-3f;                                                      \
        p = p * r + 4.1665795894e-2f;                                                      \
        p = p * r + 1.6666665459e-1f;                                                      \
        p = p * r + 5.0000001201e-1f;                                                      \
        const VF y = p * r * r + r + 1.0f;                                                 \
        return (VF)((VI)(y * (VF)((ni + 127) << 23)) & ok);                                \
    }

/* sum_i exp(min((x[i] - shift) * scale, 0)) over x (n), terms to out (n) if not NULL.
 * Float lanes over blocks of 256 elements, blocks added in double: accurate to ~1e-7
 * relative over the whole vocabulary.  Two vectors per step: two independent chains. */
#define DEFINE_EXP_SUM(NAME, EXP, VF, W, ATTR)                                             \
    static ATTR double NAME(float *out, const float *x, int64_t n, float shift, float scale) { \
        double total = 0.0;                                                                \
        for (int64_t b = 0; b < n; b += 256) {                                             \
            const int64_t e = b + 256 < n ? b + 256 : n;                                   \
            VF acc0 = (VF){0}, acc1 = (VF){0};                                             \
            int64_t i = b;                                                                 \
            for (; i + 2 * W <= e; i += 2 * W) {                                           \
                VF a, c;                                                                   \
                memcpy(&a, x + i, sizeof a);                                               \
                memcpy(&c, x + i + W, sizeof c);                                           \
                const VF ya = EXP((a - shift) * scale), yc = EXP((c - shift) * scale);     \
                acc0 += ya;                                                                \
                acc1 += yc;                                                                \
                if (out) {                                                                 \
                    memcpy(out + i, &ya, sizeof ya);                                       \
                    memcpy(out + i + W, &yc, sizeof yc);                                   \
                }                                                                          \
            }                                                                              \
            for (; i < e; i += W) {                     /* tail: pad with -inf, term 0 */  \
                VF a = (VF){0} - INFINITY;                                                 \
                for (int64_t j = 0; j < W && i + j < e; j++) a[j] = x[i + j];              \
                const VF y = EXP((a - shift) * scale);                                     \
                acc0 += y;                                                                 \
                if (out)                                                                   \
                    for (int64_t j = 0; j < W && i + j < e; j++) out[i + j] = y[j];        \
            }                                                                              \
            acc0 += acc1;                                                                  \
            double sblock = 0.0;                                                           \
            for (int j = 0; j < W; j++) sblock += acc0[j];                                 \
            total += sblock;                                                               \
        }                                                                                  \
        return total;                                                                      \
    }

DEFINE_EXP_NONPOS(v4_exp_nonpos, v4f, v4i, )
DEFINE_EXP_SUM(exp_sum_v4, v4_exp_nonpos, v4f, 4, )

#if defined(__x86_64__) || defined(__i386__)
/* 8 wide on CPUs with AVX2 (selected at run time; no -m flags needed to build) */
#define PG_TARGET_AVX2 __attribute__((target("avx2,fma")))
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
DEFINE_EXP_NONPOS(v8_exp_nonpos, v8f, v8i, PG_TARGET_AVX2)
DEFINE_EXP_SUM(exp_sum_v8, v8_exp_nonpos, v8f, 8, PG_TARGET_AVX2)
#endif

double pg_sel_exp_sum(float *out, const float *x, int64_t n, float shift, float scale) {
#if defined(__x86_64__) || defined(__i386__)
    const int tier = pg_cpu_tier_active();
    if (tier == PG_CPU_AVX2 || tier == PG_CPU_AVX512) return exp_sum_v8(out, x, n, shift, scale);
#endif
    return exp_sum_v4(out, x, n, shift, scale);
}

float pg_sel_max(const float *x, int64_t n) {
    /* four independent running maxima so the compares pipeline */
    v4f m0 = v4_splat(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v4f a, b, c, d;
        memcpy(&a, x + i, sizeof a);
        memcpy(&b, x + i + 4, sizeof b);
        memcpy(&c, x + i + 8, sizeof c);
        memcpy(&d, x + i + 12, sizeof d);
        m0 = v4_select(a > m0, a, m0);                  /* NaN > m is false: NaN never wins */
        m1 = v4_select(b > m1, b, m1);
        m2 = v4_select(c > m2, c, m2);
        m3 = v4_select(d > m3, d, m3);
    }
    m0 = v4_select(m1 > m0, m1, m0);
    m2 = v4_select(m3 > m2, m3, m2);
    m0 = v4_select(m2 > m0, m2, m0);
    float best = -INFINITY;
    for (int j = 0; j < 4; j++) best = m0[j] > best ? m0[j] : best;
    for (; i < n; i++) best = x[i] > best ? x[i] : best;
    return best;
}

int64_t pg_sel_argmax(const float *x, int64_t n) {
    const float m = pg_sel_max(x, n);
    if (!(m > -INFINITY)) return -1;
    /* the first element >= m is the first equal to it: ties go to the lowest id */
    const float below = nextafterf(m, -INFINITY);
    int64_t i = 0;
    while (i + 16 <= n && !block16_any_above(x + i, below)) i += 16;
    for (; i < n; i++)
        if (x[i] == m) return i;
    return -1;
}

/* ---- bounded min-heap for top-k: root = the worst of the kept candidates ---- */

static void heap_sift_down(pg_cand *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t worst = i;
        const int32_t l = 2 * i + 1, r = l + 1;
        if (l < n && pg_cand_before(h[worst], h[l])) worst = l;
        if (r < n && pg_cand_before(h[worst], h[r])) worst = r;
        if (worst == i) return;
        const pg_cand t = h[i];
        h[i] = h[worst];
        h[worst] = t;
        i = worst;
    }
}

static void heap_sift_up(pg_cand *h, int32_t i) {
    while (i > 0) {
        const int32_t parent = (i - 1) / 2;
        if (!pg_cand_before(h[parent], h[i])) return;
        const pg_cand t = h[i];
        h[i] = h[parent];
        h[parent] = t;
        i = parent;
    }
}

int32_t pg_sel_top_k_heap(pg_cand *h, const float *x, int32_t n, int32_t k) {
    int32_t size = 0;
    int32_t i = 0;
    for (; i < n && size < k; i++) {
        if (!(x[i] > -INFINITY)) continue;              /* NaN and -inf are never candidates */
        h[size] = (pg_cand){x[i] < FLT_MAX ? x[i] : FLT_MAX, i};
        heap_sift_up(h, size++);
    }
    /* Scanning in id order, an equal logit always has a larger id than everything kept,
     * so a strict compare against the root is exactly the pg_cand order. */
    float thr = size > 0 ? h[0].logit : INFINITY;
    while (i < n) {
        /* almost every block of 16 holds nothing above the heap's worst: skip it whole */
        if (i + 16 <= n && !block16_any_above(x + i, thr)) {
            i += 16;
            continue;
        }
        const int32_t e = i + 16 < n ? i + 16 : n;
        for (; i < e; i++) {
            if (!(x[i] > thr)) continue;
            h[0] = (pg_cand){x[i] < FLT_MAX ? x[i] : FLT_MAX, i};
            heap_sift_down(h, size, 0);
            thr = h[0].logit;
        }
    }
    /* heap sort: move the worst to the back, leaving h[0..size) best first */
    for (int32_t end = size - 1; end > 0; end--) {
        const pg_cand t = h[0];
        h[0] = h[end];
        h[end] = t;
        heap_sift_down(h, end, 0);
    }
    return size;
}

int32_t pg_sel_fill(pg_cand *c, const float *x, int32_t n, float floor_l) {
    /* x >= floor_l and x > -inf, i.e. x > below (NaN fails every compare) */
    const float below = floor_l > -INFINITY ? nextafterf(floor_l, -INFINITY) : -INFINITY;
    int32_t m = 0, i = 0;
    while (i < n) {
        if (i + 16 <= n && !block16_any_above(x + i, below)) {   /* a high floor skips most blocks */
            i += 16;
            continue;
        }
        const int32_t e = i + 16 < n ? i + 16 : n;
        for (; i < e; i++) {                            /* branch-free: write, then keep or not */
            c[m] = (pg_cand){x[i] < FLT_MAX ? x[i] : FLT_MAX, i};
            m += x[i] > below;
        }
    }
    return m;
}

static int cand_cmp(const void *a, const void *b) {
    const pg_cand x = *(const pg_cand *)a, y = *(const pg_cand *)b;
    return pg_cand_before(x, y) ? -1 : pg_cand_before(y, x) ? 1 : 0;
}

void pg_sel_sort(pg_cand *c, int32_t n) {
    if (n > 1) qsort(c, (size_t)n, sizeof *c, cand_cmp);
}

static inline void cand_swap(pg_cand *c, int32_t i, int32_t j) {
    const pg_cand t = c[i];
    c[i] = c[j];
    c[j] = t;
}

void pg_sel_partition(pg_cand *c, int32_t n, int32_t m) {
    if (m <= 0 || m >= n) return;
    int32_t lo = 0, hi = n;                             /* the m-th boundary lies in [lo, hi) */
    /* Quickselect with a median-of-three pivot; after a bounded number of rounds (only an
     * adversarial input gets there) sort what is left, so the worst case stays n log n. */
    for (int rounds = 0; hi - lo > 16; rounds++) {
        if (rounds > 64) {
            pg_sel_sort(c + lo, hi - lo);
            return;
        }
        const int32_t mid = lo + (hi - lo) / 2;
        if (pg_cand_before(c[mid], c[lo])) cand_swap(c, mid, lo);
        if (pg_cand_before(c[hi - 1], c[lo])) cand_swap(c, hi - 1, lo);
        if (pg_cand_before(c[hi - 1], c[mid])) cand_swap(c, hi - 1, mid);
        cand_swap(c, mid, hi - 1);                      /* pivot (the median) to the end */
        const pg_cand pivot = c[hi - 1];
        int32_t store = lo;
        for (int32_t i = lo; i < hi - 1; i++)
            if (pg_cand_before(c[i], pivot)) cand_swap(c, i, store++);
        cand_swap(c, store, hi - 1);                    /* c[lo..store) beat the pivot */
        if (store == m || store + 1 == m) return;
        if (m < store) hi = store;
        else lo = store + 1;
    }
    pg_sel_sort(c + lo, hi - lo);
}

/* ---- top-p by bucketing: sort only the bucket where the nucleus ends ---- */

#define TOP_P_BUCKETS 1024                              /* of 1/32 nat each: 32 nats, then one overflow */
#define TOP_P_PER_NAT 32.0f

static inline int top_p_bucket(float lmax, float l) {
    float key = (lmax - l) * TOP_P_PER_NAT;             /* >= 0; may be +inf */
    key = key < (float)(TOP_P_BUCKETS - 1) ? key : (float)(TOP_P_BUCKETS - 1);   /* minss, no branch */
    return (int)key;
}

int32_t pg_sel_top_p(pg_cand *c, const float *w, int32_t n, float lmax, double z, double top_p,
                     pg_cand *tmp) {
    static const int NB = TOP_P_BUCKETS;
    int32_t count[TOP_P_BUCKETS] = {0};
    double mass[TOP_P_BUCKETS] = {0};
    for (int32_t i = 0; i < n; i++) {
        const int b = top_p_bucket(lmax, c[i].logit);
        count[b]++;
        mass[b] += w[i];
    }
    /* the bucket where the cumulative probability reaches top_p */
    const double target = top_p * z;
    double cum = 0.0;
    int last = NB - 1;
    for (int b = 0; b < NB; b++) {
        if (cum + mass[b] >= target) {
            last = b;
            break;
        }
        cum += mass[b];
    }
    /* Buckets before `last` are kept whole (into tmp, in id order); the tokens of `last` are
     * compacted in place to the front of c.  Branch-free, since the bucket of each token is
     * unpredictable: every token is written to both places and each cursor advances only
     * when it belongs there (tmp[before] takes the writes that do not count). */
    int32_t before = 0, in_last = 0;
    double cum_before = 0.0;
    for (int32_t i = 0; i < n; i++) {
        const pg_cand ci = c[i];
        const int b = top_p_bucket(lmax, ci.logit);
        tmp[before] = ci;
        before += b < last;
        cum_before += (double)w[i] * (b < last);
        c[in_last] = ci;                                /* in_last <= i: never ahead of the read */
        in_last += b == last;
    }
    memmove(c + before, c, (size_t)in_last * sizeof *c);
    memcpy(c, tmp, (size_t)before * sizeof *c);
    /* walk the boundary bucket best first to the exact cut */
    pg_sel_sort(c + before, in_last);
    cum = cum_before;
    for (int32_t i = before; i < before + in_last; i++) {
        cum += exp((double)c[i].logit - lmax);
        if (cum >= target) return i + 1;
    }
    return before + in_last;
}
