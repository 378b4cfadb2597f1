/* kernels_ref.c -- scalar reference of every kernel, and the tier dispatch.
 *
 * The reference is written for clarity: one dot product per output, integer
 * sums per block, then the float scales in the canonical order of kernels.h
 * (one fmaf per block, blocks in order), which every SIMD tier reproduces bit
 * for bit for the quantized types.  It is also the kernel set of the "scalar"
 * tier, so it must be correct on any CPU. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "cpu.h"
#include "kernels.h"

/* ---------------------------------------------------------------------- */
/* Activation formats                                                     */
/* ---------------------------------------------------------------------- */

int pg_act_format_of(int wtype) {
    switch (wtype) {
    case PG_TYPE_F32: case PG_TYPE_F16: return PG_ACT_F32;
    case PG_TYPE_BF16: return PG_ACT_BF16;
    case PG_TYPE_Q4_0: case PG_TYPE_Q4_1: case PG_TYPE_Q5_0: case PG_TYPE_Q5_1:
    case PG_TYPE_Q8_0: return PG_ACT_Q8_32;
    case PG_TYPE_Q2_K: case PG_TYPE_Q3_K: case PG_TYPE_Q4_K: case PG_TYPE_Q5_K:
    case PG_TYPE_Q6_K: return PG_ACT_Q8_256;
    default: return -1;
    }
}

size_t pg_act_row_bytes(int fmt, int64_t n) {
    size_t b;
    switch (fmt) {
    case PG_ACT_F32: b = 4 * (size_t)n; break;
    case PG_ACT_BF16: b = 2 * (size_t)n; break;
    case PG_ACT_Q8_32: b = (size_t)n + 10 * (size_t)(n / 32); break;
    case PG_ACT_Q8_256: b = (size_t)n + 4 * (size_t)(n / 256) + 6 * (size_t)(n / 16); break;
    default: return 0;
    }
    return (b + 63) & ~(size_t)63;
}

/* v rounded to nearest even, as cvtps2dq does in the default MXCSR mode
 * (|v| <= 127 here; NaN from non-finite input maps to 0, never UB). */
static inline int round_q(float v) { return v == v ? (int)nearbyintf(v) : 0; }

static void act_bf16_ref(int64_t n, const float *x, void *row) {
    pg_bf16 *y = row;   /* (n) */
    for (int64_t i = 0; i < n; i++) y[i] = pg_f32_to_bf16(x[i]);
}

static void act_q8_32_ref(int64_t n, const float *x, void *row) {
    int8_t *qs = row;                                  /* (n) */
    float *d = (float *)pg_act_q8_d(row, n);           /* (n/32) */
    float *s = d + n / 32;                             /* (n/32) */
    int16_t *qsum = (int16_t *)(s + n / 32);           /* (n/32) */
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + 32 * b;
        float amax = 0.0f;
        for (int l = 0; l < 32; l++) amax = fmaxf(amax, fabsf(xb[l]));
        float db = pg_act_round_scale(amax / 127.0f), id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int l = 0; l < 32; l++) {
            int q = round_q(xb[l] * id);
            qs[32 * b + l] = (int8_t)q;
            sum += q;
        }
        d[b] = db;
        s[b] = db * (float)sum;
        qsum[b] = (int16_t)sum;
    }
}

static void act_q8_256_ref(int64_t n, const float *x, void *row) {
    int8_t *qs = row;                                  /* (n) */
    float *d = (float *)pg_act_q8_d(row, n);           /* (n/256) */
    int16_t *bs = (int16_t *)pg_act_q8_bsums(row, n);  /* (n/16) */
    float *dbs = (float *)pg_act_q8_dbs(row, n);       /* (n/16) */
    for (int64_t b = 0; b < n / 256; b++) {
        const float *xb = x + 256 * b;
        float amax = 0.0f, vmax = 0.0f;
        for (int l = 0; l < 256; l++) if (fabsf(xb[l]) > amax) { amax = fabsf(xb[l]); vmax = xb[l]; }
        float id = amax != 0.0f ? -127.0f / vmax : 0.0f, db = amax != 0.0f ? 1.0f / id : 0.0f;
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int l = 16 * g; l < 16 * g + 16; l++) {
                int q = round_q(xb[l] * id);
                if (q > 127) q = 127;
                qs[256 * b + l] = (int8_t)q;
                sum += q;
            }
            bs[16 * b + g] = (int16_t)sum;
            dbs[16 * b + g] = db * (float)sum;
        }
        d[b] = db;
    }
}

/* ---------------------------------------------------------------------- */
/* Dot products: one weight row . one activation row                       */
/* ---------------------------------------------------------------------- */

static float dot_f32(int64_t n, const void *w, const void *x) {
    const float *a = w, *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static float dot_f16(int64_t n, const void *w, const void *x) {
    const pg_half *a = w;
    const float *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += pg_half_to_f32(a[i]) * b[i];
    return sum;
}

static float dot_bf16(int64_t n, const void *w, const void *x) {
    const pg_bf16 *a = w, *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += pg_bf16_to_f32(a[i]) * pg_bf16_to_f32(b[i]);
    return sum;
}

/* Unsigned 4/5/8-bit values of one 32-block, in element order. */
static void unpack_q4(const uint8_t qs[16], uint8_t u[32]) {
    for (int l = 0; l < 16; l++) {
        u[l] = qs[l] & 0xF;
        u[l + 16] = qs[l] >> 4;
    }
}

static void unpack_q5(const uint8_t qs[16], const uint8_t qh4[4], uint8_t u[32]) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    unpack_q4(qs, u);
    for (int l = 0; l < 32; l++) u[l] |= ((qh >> l) & 1) << 4;
}

/* sum over a 32-block of (u - off) * q */
static int idot32(const uint8_t u[32], int off, const int8_t *q) {
    int s = 0;
    for (int l = 0; l < 32; l++) s += ((int)u[l] - off) * q[l];
    return s;
}

static float dot_q4_0(int64_t n, const void *w, const void *x) {
    const block_q4_0 *b = w;
    const int8_t *q = x;
    const float *d = pg_act_q8_d(x, n);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        uint8_t u[32];
        unpack_q4(b[i].qs, u);
        sum = fmaf((float)idot32(u, 8, q + 32 * i), pg_half_to_f32(b[i].d) * d[i], sum);
    }
    return sum;
}

static float dot_q4_1(int64_t n, const void *w, const void *x) {
    const block_q4_1 *b = w;
    const int8_t *q = x;
    const float *d = pg_act_q8_d(x, n), *s = pg_act_q8_s(x, n);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        uint8_t u[32];
        unpack_q4(b[i].qs, u);
        sum = fmaf((float)idot32(u, 0, q + 32 * i), pg_half_to_f32(b[i].d) * d[i], sum);
        sum = fmaf(pg_half_to_f32(b[i].m), s[i], sum);
    }
    return sum;
}

static float dot_q5_0(int64_t n, const void *w, const void *x) {
    const block_q5_0 *b = w;
    const int8_t *q = x;
    const float *d = pg_act_q8_d(x, n);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        uint8_t u[32];
        unpack_q5(b[i].qs, b[i].qh, u);
        sum = fmaf((float)idot32(u, 16, q + 32 * i), pg_half_to_f32(b[i].d) * d[i], sum);
    }
    return sum;
}

static float dot_q5_1(int64_t n, const void *w, const void *x) {
    const block_q5_1 *b = w;
    const int8_t *q = x;
    const float *d = pg_act_q8_d(x, n), *s = pg_act_q8_s(x, n);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        uint8_t u[32];
        unpack_q5(b[i].qs, b[i].qh, u);
        sum = fmaf((float)idot32(u, 0, q + 32 * i), pg_half_to_f32(b[i].d) * d[i], sum);
        sum = fmaf(pg_half_to_f32(b[i].m), s[i], sum);
    }
    return sum;
}

static float dot_q8_0(int64_t n, const void *w, const void *x) {
    const block_q8_0 *b = w;
    const int8_t *q = x;
    const float *d = pg_act_q8_d(x, n);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int s = 0;
        for (int l = 0; l < 32; l++) s += b[i].qs[l] * q[32 * i + l];
        sum = fmaf((float)s, pg_half_to_f32(b[i].d) * d[i], sum);
    }
    return sum;
}

/* K-quants: unsigned values u[256] of a block in element order (see the
 * layouts in quants.h / ggml), then the common integer dot of kernels.h. */
static void unpack_q2k(const block_q2_K *b, uint8_t u[256]) {
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) u[128 * h + 32 * j + l] = (b->qs[32 * h + l] >> (2 * j)) & 3;
}

static void unpack_q3k(const block_q3_K *b, uint8_t u[256]) {
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++)
                u[128 * h + 32 * j + l] = ((b->qs[32 * h + l] >> (2 * j)) & 3) |
                                          (((b->hmask[l] >> (4 * h + j)) & 1) << 2);
}

static void unpack_q4k(const uint8_t qs[128], uint8_t u[256]) {
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) {
            u[64 * j + l] = qs[32 * j + l] & 0xF;
            u[64 * j + 32 + l] = qs[32 * j + l] >> 4;
        }
}

static void unpack_q5k(const block_q5_K *b, uint8_t u[256]) {
    unpack_q4k(b->qs, u);
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) {
            u[64 * j + l] |= ((b->qh[l] >> (2 * j)) & 1) << 4;
            u[64 * j + 32 + l] |= ((b->qh[l] >> (2 * j + 1)) & 1) << 4;
        }
}

static void unpack_q6k(const block_q6_K *b, uint8_t u[256]) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        uint8_t *o = u + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4);
            o[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
            o[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            o[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
}

/* acc + dx * (d * I - dmin * M) for one 256-block, I = sum sc*u*q and
 * M = sum mn*bsums (exact), in the canonical order of kernels.h */
static float kdot(float acc, const pg_kscales *k, const uint8_t u[256], const int8_t *q, const int16_t *bs, float dx) {
    int isum = 0, msum = 0;
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int l = 16 * g; l < 16 * g + 16; l++) s += u[l] * q[l];
        isum += k->sc[g] * s;
        msum += k->mn[g] * bs[g];
    }
    acc = fmaf((float)isum, k->d * dx, acc);
    return fmaf((float)msum, -k->dmin * dx, acc);
}

#define KDOT(name, blk_t, decode, unpack)                                          \
    static float name(int64_t n, const void *w, const void *x) {                    \
        const blk_t *b = w;                                                         \
        const int8_t *q = x;                                                        \
        const float *d = pg_act_q8_d(x, n);                                         \
        const int16_t *bs = pg_act_q8_bsums(x, n);                                  \
        float sum = 0.0f;                                                           \
        for (int64_t i = 0; i < n / 256; i++) {                                     \
            pg_kscales k;                                                           \
            uint8_t u[256];                                                         \
            decode;                                                                 \
            unpack;                                                                 \
            sum = kdot(sum, &k, u, q + 256 * i, bs + 16 * i, d[i]);                 \
        }                                                                           \
        return sum;                                                                 \
    }

KDOT(dot_q2_k, block_q2_K, pg_kscales_q2k(&b[i], &k), unpack_q2k(&b[i], u))
KDOT(dot_q3_k, block_q3_K, pg_kscales_q3k(&b[i], &k), unpack_q3k(&b[i], u))
KDOT(dot_q4_k, block_q4_K, pg_kscales_q4k(b[i].scales, b[i].d, b[i].dmin, &k), unpack_q4k(b[i].qs, u))
KDOT(dot_q5_k, block_q5_K, pg_kscales_q4k(b[i].scales, b[i].d, b[i].dmin, &k), unpack_q5k(&b[i], u))
KDOT(dot_q6_k, block_q6_K, pg_kscales_q6k(&b[i], &k), unpack_q6k(&b[i], u))

/* The reference tile: one dot product per output. */
#define REF_GEMM(name, dot)                                                                  \
    static void name(int64_t n, float *y, int64_t ldy, const void *w, size_t ldw, int nr,    \
                     const void *x, size_t ldx, int nc, void *work) {                        \
        (void)work;                                                                          \
        for (int c = 0; c < nc; c++)                                                         \
            for (int r = 0; r < nr; r++)                                                     \
                y[c * ldy + r] = dot(n, (const char *)w + r * ldw, (const char *)x + c * ldx); \
    }

REF_GEMM(gemm_f32, dot_f32)
REF_GEMM(gemm_f16, dot_f16)
REF_GEMM(gemm_bf16, dot_bf16)
REF_GEMM(gemm_q4_0, dot_q4_0)
REF_GEMM(gemm_q4_1, dot_q4_1)
REF_GEMM(gemm_q5_0, dot_q5_0)
REF_GEMM(gemm_q5_1, dot_q5_1)
REF_GEMM(gemm_q8_0, dot_q8_0)
REF_GEMM(gemm_q2_k, dot_q2_k)
REF_GEMM(gemm_q3_k, dot_q3_k)
REF_GEMM(gemm_q4_k, dot_q4_k)
REF_GEMM(gemm_q5_k, dot_q5_k)
REF_GEMM(gemm_q6_k, dot_q6_k)

/* ---------------------------------------------------------------------- */
/* Vector helpers                                                         */
/* ---------------------------------------------------------------------- */

static float ref_dot_f32(int n, const float *x, const float *y) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += x[i] * y[i];
    return s;
}

static float ref_sum_sq_f32(int n, const float *x) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    return s;
}

static float ref_dot_f32_f16(int n, const float *x, const uint16_t *y) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += x[i] * pg_half_to_f32(y[i]);
    return s;
}

static void ref_axpy_f32(int n, float a, const float *x, float *y) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void ref_axpy_f16(int n, float a, const uint16_t *x, float *y) {
    for (int i = 0; i < n; i++) y[i] = fmaf(a, pg_half_to_f32(x[i]), y[i]);
}

static void ref_f32_to_f16_row(int n, const float *x, uint16_t *y) {
    for (int i = 0; i < n; i++) y[i] = pg_f32_to_half(x[i]);
}

static void ref_f16_to_f32_row(int n, const uint16_t *x, float *y) {
    for (int i = 0; i < n; i++) y[i] = pg_half_to_f32(x[i]);
}

static void ref_qk_f16(int hd, int nq, const float *q, const uint16_t *k, float *s) {
    for (int i = 0; i < nq; i++) s[i] = ref_dot_f32_f16(hd, q + (size_t)i * hd, k);
}

static void ref_qk_f32(int hd, int nq, const float *q, const float *k, float *s) {
    for (int i = 0; i < nq; i++) s[i] = ref_dot_f32(hd, q + (size_t)i * hd, k);
}

#define REF_AV(name, vtype, widen)                                                                  \
    static void name(int hd, int nq, int nk, const float *p, int ldp, const vtype *v, int first,     \
                     int nslots, float *out) {                                                     \
        for (int i = 0; i < nq; i++) {                                                             \
            float *o = out + (size_t)i * hd;                                                       \
            memset(o, 0, sizeof(float) * (size_t)hd);                                              \
            for (int j = 0, slot = first; j < nk; j++, slot = slot + 1 == nslots ? 0 : slot + 1) { \
                const vtype *row = v + (size_t)slot * hd;                                          \
                const float a = p[(size_t)i * ldp + j];                                            \
                for (int e = 0; e < hd; e++) o[e] = fmaf(a, widen(row[e]), o[e]);                  \
            }                                                                                      \
        }                                                                                          \
    }
static inline float f32_id(float x) { return x; }
REF_AV(ref_av_f16, uint16_t, pg_half_to_f32)
REF_AV(ref_av_f32, float, f32_id)

static uint64_t ref_mem_read(const void *p, size_t bytes) {
    const uint64_t *v = p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i < bytes / 8; i += 8) {   /* independent chains keep loads in flight */
        __builtin_prefetch(v + i + 256);
        a += v[i] ^ v[i + 4];
        b += v[i + 1] ^ v[i + 5];
        c += v[i + 2] ^ v[i + 6];
        d += v[i + 3] ^ v[i + 7];
    }
    return a + b + c + d;
}

void pg_kernels_fill_ref(pg_kernels *k) {
    memset(k, 0, sizeof *k);
    k->name = "scalar";
    static const struct { int type; pg_gemm_fn fn; } g[] = {
        {PG_TYPE_F32, gemm_f32}, {PG_TYPE_F16, gemm_f16}, {PG_TYPE_BF16, gemm_bf16},
        {PG_TYPE_Q4_0, gemm_q4_0}, {PG_TYPE_Q4_1, gemm_q4_1}, {PG_TYPE_Q5_0, gemm_q5_0},
        {PG_TYPE_Q5_1, gemm_q5_1}, {PG_TYPE_Q8_0, gemm_q8_0}, {PG_TYPE_Q2_K, gemm_q2_k},
        {PG_TYPE_Q3_K, gemm_q3_k}, {PG_TYPE_Q4_K, gemm_q4_k}, {PG_TYPE_Q5_K, gemm_q5_k},
        {PG_TYPE_Q6_K, gemm_q6_k},
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
        k->gemm[g[i].type] = (pg_gemm_kernel){.fn = g[i].fn, .mr = 1, .nr = 1};
    k->act[PG_ACT_BF16] = act_bf16_ref;
    k->act[PG_ACT_Q8_32] = act_q8_32_ref;
    k->act[PG_ACT_Q8_256] = act_q8_256_ref;
    k->dot_f32 = ref_dot_f32;
    k->sum_sq_f32 = ref_sum_sq_f32;
    k->dot_f32_f16 = ref_dot_f32_f16;
    k->axpy_f32 = ref_axpy_f32;
    k->axpy_f16 = ref_axpy_f16;
    k->f32_to_f16_row = ref_f32_to_f16_row;
    k->f16_to_f32_row = ref_f16_to_f32_row;
    k->qk_f16 = ref_qk_f16;
    k->qk_f32 = ref_qk_f32;
    k->av_f16 = ref_av_f16;
    k->av_f32 = ref_av_f32;
    k->mem_read = ref_mem_read;
}

/* ---------------------------------------------------------------------- */
/* Dispatch                                                               */
/* ---------------------------------------------------------------------- */

/* [tier][0]: the best kernels the CPU allows; [tier][1]: the same tier
 * without the optional instruction sets (AVX-512 VNNI / BF16, NEON dotprod),
 * selected by pg_kernels_set_generic() so tests cover both paths. */
static pg_kernels g_tables[PG_CPU_NEON + 1][2];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_generic;

static void init_tables(void) {
    pg_kernels ref;
    pg_kernels_fill_ref(&ref);
    for (int t = 0; t <= PG_CPU_NEON; t++) g_tables[t][0] = g_tables[t][1] = ref;
    const pg_cpu_flags *f = pg_cpu_flags_get();
    if (pg_cpu_tier_supported(PG_CPU_AVX2)) {
        pg_kernels_fill_avx2(&g_tables[PG_CPU_AVX2][0]);
        pg_kernels_fill_avx2(&g_tables[PG_CPU_AVX2][1]);
    }
    if (pg_cpu_tier_supported(PG_CPU_AVX512)) {
        pg_kernels_fill_avx512(&g_tables[PG_CPU_AVX512][0], f->avx512vnni, f->avx512bf16);
        pg_kernels_fill_avx512(&g_tables[PG_CPU_AVX512][1], 0, 0);
    }
    if (pg_cpu_tier_supported(PG_CPU_NEON)) {
        pg_kernels_fill_neon(&g_tables[PG_CPU_NEON][0], f->dotprod);
        pg_kernels_fill_neon(&g_tables[PG_CPU_NEON][1], 0);
    }
}

const pg_kernels *pg_kernels_get(void) {
    pthread_once(&g_once, init_tables);
    int t = pg_cpu_tier_active();
    if (t < 0 || t > PG_CPU_NEON) t = PG_CPU_SCALAR;
    return &g_tables[t][__atomic_load_n(&g_generic, __ATOMIC_RELAXED) ? 1 : 0];
}

PG_API const char *pg_kernels_name(void) { return pg_kernels_get()->name; }

PG_API void pg_kernels_set_generic(int on) { __atomic_store_n(&g_generic, on ? 1 : 0, __ATOMIC_RELAXED); }

/* The public helpers: one indirect call into the active tier. */
PG_API float pg_dot_f32(int n, const float *x, const float *y) {
    return n > 0 ? pg_kernels_get()->dot_f32(n, x, y) : 0.0f;
}
PG_API float pg_sum_sq_f32(int n, const float *x) {
    return n > 0 ? pg_kernels_get()->sum_sq_f32(n, x) : 0.0f;
}
PG_API float pg_dot_f32_f16(int n, const float *x, const uint16_t *y) {
    return n > 0 ? pg_kernels_get()->dot_f32_f16(n, x, y) : 0.0f;
}
PG_API void pg_axpy_f32(int n, float a, const float *x, float *y) {
    if (n > 0) pg_kernels_get()->axpy_f32(n, a, x, y);
}
PG_API void pg_axpy_f16(int n, float a, const uint16_t *x, float *y) {
    if (n > 0) pg_kernels_get()->axpy_f16(n, a, x, y);
}
PG_API void pg_f32_to_f16_row(int n, const float *x, uint16_t *y) {
    if (n > 0) pg_kernels_get()->f32_to_f16_row(n, x, y);
}
PG_API void pg_f16_to_f32_row(int n, const uint16_t *x, float *y) {
    if (n > 0) pg_kernels_get()->f16_to_f32_row(n, x, y);
}
