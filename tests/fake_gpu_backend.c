/* fake_gpu_backend.c -- a GPU library without a GPU, for the CPU tests of the core's GPU
 * plumbing (dlopen, ABI check, layer split, residual hand-over, errors).
 *
 * It implements kernels/pg_gpu_abi.h in plain C: "uploading" dequantizes the offloaded
 * layers to float32 (through the host's dequantize), the "device" KV cache is float32 with
 * the core's slot layout (ring slot = pos % cache_len), and forward() runs the layers with
 * transformers' float numerics (the core's precise=1 path), so its results must match the
 * CPU's within float rounding.
 *
 * Built by the tests with:  cc -shared -fPIC -O1 -I kernels tests/fake_gpu_backend.c -lm
 *   -DFAKE_ABI_VERSION=N   report another ABI version
 *   -DFAKE_NO_ENTRY        export no pg_gpu_backend_v1
 * Behaviour at run time (environment, read at each call):
 *   FAKE_GPU_FAIL=device|model|seq|forward   that call fails (device: "no device")
 *   FAKE_GPU_MEM=BYTES     device memory; weights or KV cache beyond it fail with NOMEM
 *   FAKE_GPU_LOG=PATH      append one line per model_create / seq_create / forward call */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_gpu_abi.h"

#ifndef FAKE_ABI_VERSION
#define FAKE_ABI_VERSION PG_GPU_ABI_VERSION
#endif

static const pg_gpu_host *g_host;
static __thread char g_err[512];

static int fail(int st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return st;
}

static int failing(const char *what) {
    const char *f = getenv("FAKE_GPU_FAIL");
    return f && strcmp(f, what) == 0;
}

static uint64_t mem_limit(void) {
    const char *s = getenv("FAKE_GPU_MEM");
    return s ? strtoull(s, NULL, 10) : (16ull << 30);
}

static void log_line(const char *fmt, ...) {
    const char *path = getenv("FAKE_GPU_LOG");
    if (!path) return;
    FILE *f = fopen(path, "a");
    if (!f) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

typedef struct { float *w; int64_t rows, cols; } mat;   /* w: (rows, cols) float32 */

typedef struct {
    const float *attn_norm, *q_norm, *k_norm, *post_attn_norm, *ffn_norm, *post_ffn_norm;
    mat wq, wk, wv, wo, gate, up, down;
} layer;

struct pg_gpu_model {
    pg_gpu_model_desc d;
    uint8_t sliding[256];
    layer L[256];
    mat output;
    uint64_t bytes;                  /* GGUF bytes "uploaded" */
};

struct pg_gpu_seq {
    pg_gpu_model *m;
    pg_gpu_seq_desc d;
    int32_t cache_len[256];
    float *inv_local, *inv_global;   /* (hd/2) */
    float *k[256], *v[256];          /* (Hkv, cache_len, hd) */
    float *x, *xn, *q, *kk, *vv, *att, *o, *g, *u;   /* one token's activations */
    uint64_t bytes;
};

static const char *last_error(void) { return g_err; }

static int device_info(int32_t device, pg_gpu_device_info *out) {
    if (failing("device")) return fail(PG_GPU_ERR_GPU, "no GPU device found (fake: FAKE_GPU_FAIL=device)");
    if (device != 0) return fail(PG_GPU_ERR_ARG, "no device %d", device);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "Fake GPU");
    snprintf(out->runtime, sizeof out->runtime, "fake");
    snprintf(out->blas, sizeof out->blas, "none");
    out->total_bytes = out->free_bytes = mem_limit();
    out->cc_major = 1;
    out->n_sm = 1;
    out->warp_size = 1;
    return PG_GPU_OK;
}

/* The real library's options are accepted (they change nothing here); others are errors. */
static int set_option(const char *name, int64_t value) {
    (void)value;
    if (!name) return fail(PG_GPU_ERR_ARG, "no option name");
    if (!strcmp(name, PG_GPU_OPT_TINYBLAS) || !strcmp(name, PG_GPU_OPT_GRAPHS)) return PG_GPU_OK;
    return fail(PG_GPU_ERR_ARG, "unknown GPU option '%s'", name);
}

/* dst = dequantized float32 copy of m; *bytes += the copy's size (the fake's device memory). */
static int upload(mat *dst, const pg_gpu_matrix *m, uint64_t *bytes) {
    dst->rows = m->rows;
    dst->cols = m->cols;
    dst->w = malloc(sizeof(float) * (size_t)(m->rows * m->cols));
    if (!dst->w) return fail(PG_GPU_ERR_NOMEM, "host out of memory");
    if (g_host->dequantize(m->type, m->data, dst->w, m->rows * m->cols) != 0)
        return fail(PG_GPU_ERR_UNSUPPORTED, "cannot dequantize type %d", m->type);
    *bytes += sizeof(float) * (uint64_t)(m->rows * m->cols);
    return PG_GPU_OK;
}

static int model_free(pg_gpu_model *m) {
    if (!m) return PG_GPU_OK;
    for (int l = 0; l < 256; l++) {
        mat *ms[] = {&m->L[l].wq, &m->L[l].wk, &m->L[l].wv, &m->L[l].wo, &m->L[l].gate, &m->L[l].up,
                     &m->L[l].down};
        for (int i = 0; i < 7; i++) free(ms[i]->w);
    }
    free(m->output.w);
    free(m);
    return PG_GPU_OK;
}

static int model_create(const pg_gpu_model_desc *d, pg_gpu_model **out) {
    *out = NULL;
    log_line("model_create first_layer=%d output=%d n_layer=%d", d->first_layer, d->output_on_gpu, d->n_layer);
    if (failing("model")) return fail(PG_GPU_ERR_GPU, "kernel image not usable on this device (fake)");
    if (d->n_layer > 256 || d->first_layer < 0 || d->first_layer > d->n_layer)
        return fail(PG_GPU_ERR_ARG, "bad layer split %d/%d", d->first_layer, d->n_layer);
    pg_gpu_model *m = calloc(1, sizeof *m);
    if (!m) return fail(PG_GPU_ERR_NOMEM, "host out of memory");
    m->d = *d;
    memcpy(m->sliding, d->is_sliding, (size_t)d->n_layer);
    m->d.is_sliding = m->sliding;
    m->d.layers = NULL;
    int st = PG_GPU_OK;
    for (int l = d->first_layer; l < d->n_layer && st == PG_GPU_OK; l++) {
        const pg_gpu_layer *s = &d->layers[l];
        layer *L = &m->L[l];
        L->attn_norm = s->attn_norm; L->q_norm = s->q_norm; L->k_norm = s->k_norm;
        L->post_attn_norm = s->post_attn_norm; L->ffn_norm = s->ffn_norm; L->post_ffn_norm = s->post_ffn_norm;
        const pg_gpu_matrix *src[] = {&s->wq, &s->wk, &s->wv, &s->wo, &s->w_gate, &s->w_up, &s->w_down};
        mat *dst[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
        for (int i = 0; i < 7 && st == PG_GPU_OK; i++) st = upload(dst[i], src[i], &m->bytes);
    }
    if (st == PG_GPU_OK && d->output_on_gpu) st = upload(&m->output, &d->output, &m->bytes);
    if (st == PG_GPU_OK && m->bytes > mem_limit())
        st = fail(PG_GPU_ERR_NOMEM, "weights need %llu bytes, the fake device has %llu",
                  (unsigned long long)m->bytes, (unsigned long long)mem_limit());
    if (st != PG_GPU_OK) { model_free(m); return st; }
    *out = m;
    return PG_GPU_OK;
}

static uint64_t model_bytes(const pg_gpu_model *m) { return m ? m->bytes : 0; }

static int seq_free(pg_gpu_seq *s) {
    if (!s) return PG_GPU_OK;
    for (int l = 0; l < 256; l++) { free(s->k[l]); free(s->v[l]); }
    float *b[] = {s->inv_local, s->inv_global, s->x, s->xn, s->q, s->kk, s->vv, s->att, s->o, s->g, s->u};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) free(b[i]);
    free(s);
    return PG_GPU_OK;
}

static int seq_create(pg_gpu_model *m, const pg_gpu_seq_desc *d, pg_gpu_seq **out) {
    *out = NULL;
    log_line("seq_create n_ctx=%d n_batch=%d precise=%d", d->n_ctx, d->n_batch, d->precise);
    if (failing("seq")) return fail(PG_GPU_ERR_GPU, "stream creation failed (fake)");
    const pg_gpu_model_desc *c = &m->d;
    pg_gpu_seq *s = calloc(1, sizeof *s);
    if (!s) return fail(PG_GPU_ERR_NOMEM, "host out of memory");
    s->m = m;
    s->d = *d;
    const int hd = c->head_dim, kvd = c->n_head_kv * hd, qd = c->n_head * hd;
    int ok = 1;
    for (int l = c->first_layer; l < c->n_layer; l++) {
        s->cache_len[l] = d->cache_len[l];
        size_t n = (size_t)kvd * (size_t)d->cache_len[l];
        s->k[l] = calloc(n, sizeof(float));
        s->v[l] = calloc(n, sizeof(float));
        ok &= s->k[l] && s->v[l];
        s->bytes += 2 * n * 2;   /* as an F16 cache would take */
    }
    s->inv_local = malloc(sizeof(float) * (size_t)(hd / 2));
    s->inv_global = malloc(sizeof(float) * (size_t)(hd / 2));
    if (s->inv_local && s->inv_global) {
        memcpy(s->inv_local, d->inv_freq_local, sizeof(float) * (size_t)(hd / 2));
        memcpy(s->inv_global, d->inv_freq_global, sizeof(float) * (size_t)(hd / 2));
    }
    const int64_t D = c->n_embd, F = c->n_ff, B = d->n_batch;
    s->x = malloc(sizeof(float) * (size_t)(B * D));
    s->xn = malloc(sizeof(float) * (size_t)D);
    s->q = malloc(sizeof(float) * (size_t)(B * qd));
    s->kk = malloc(sizeof(float) * (size_t)kvd);
    s->vv = malloc(sizeof(float) * (size_t)kvd);
    s->att = malloc(sizeof(float) * (size_t)qd);
    s->o = malloc(sizeof(float) * (size_t)(D > c->n_vocab ? D : c->n_vocab));
    s->g = malloc(sizeof(float) * (size_t)F);
    s->u = malloc(sizeof(float) * (size_t)F);
    ok &= s->inv_local && s->inv_global && s->x && s->xn && s->q && s->kk && s->vv && s->att && s->o && s->g &&
          s->u;
    if (!ok) { seq_free(s); return fail(PG_GPU_ERR_NOMEM, "host out of memory"); }
    if (m->bytes + s->bytes > mem_limit()) {
        uint64_t need = s->bytes;
        seq_free(s);
        return fail(PG_GPU_ERR_NOMEM, "KV cache needs %llu more bytes than the fake device has",
                    (unsigned long long)need);
    }
    *out = s;
    return PG_GPU_OK;
}

static uint64_t seq_bytes(const pg_gpu_seq *s) { return s ? s->bytes : 0; }

/* ---- float32 math (transformers' order of operations) -------------------------------- */

static void matvec(float *y, const mat *w, const float *x) {
    for (int64_t r = 0; r < w->rows; r++) {
        const float *row = w->w + r * w->cols;
        float acc = 0;
        for (int64_t c = 0; c < w->cols; c++) acc += row[c] * x[c];
        y[r] = acc;
    }
}

static void rmsnorm(float *o, const float *x, const float *w, int n, float eps) {
    float ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) o[i] = x[i] * inv * w[i];
}

static void rope(float *v, int hd, float pos, float scale, const float *inv_freq, int precise) {
    const int half = hd / 2;
    float ext = pos;
    for (int i = 0; i < half; i++) {
        float th;
        if (precise) {
            th = (pos * scale) * inv_freq[i];
        } else {
            th = scale * ext;
            ext *= half > 1 ? inv_freq[1] : 1.0f;
        }
        float c = cosf(th), s = sinf(th), a = v[i], b = v[i + half];
        v[i] = a * c - b * s;
        v[i + half] = a * s + b * c;
    }
}

static float softcap(float x, float cap) { return cap * tanhf(x / cap); }

static float gelu(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * x * (1.0f + 0.044715f * x * x)));
}

static void layer_forward(pg_gpu_seq *s, int l, int n, int64_t pos0) {
    const pg_gpu_model_desc *c = &s->m->d;
    const layer *L = &s->m->L[l];
    const int D = c->n_embd, H = c->n_head, Hkv = c->n_head_kv, hd = c->head_dim, F = c->n_ff;
    const int sl = c->is_sliding[l], cl = s->cache_len[l], group = H / Hkv;
    const float *inv = sl ? s->inv_local : s->inv_global;
    const float pscale = sl ? 1.0f : c->rope_scale_global;
    /* all tokens' q, and k/v into the cache, before any attention (causal within the chunk) */
    for (int t = 0; t < n; t++) {
        const int64_t pos = pos0 + t;
        float *x = s->x + (int64_t)t * D, *q = s->q + (int64_t)t * H * hd;
        rmsnorm(s->xn, x, L->attn_norm, D, c->norm_eps);
        matvec(q, &L->wq, s->xn);
        matvec(s->kk, &L->wk, s->xn);
        matvec(s->vv, &L->wv, s->xn);
        for (int h = 0; h < H; h++) {
            if (L->q_norm) rmsnorm(q + h * hd, q + h * hd, L->q_norm, hd, c->norm_eps);
            rope(q + h * hd, hd, (float)pos, pscale, inv, s->d.precise);
        }
        for (int h = 0; h < Hkv; h++) {
            float *k = s->kk + h * hd;
            if (L->k_norm) rmsnorm(k, k, L->k_norm, hd, c->norm_eps);
            rope(k, hd, (float)pos, pscale, inv, s->d.precise);
            size_t off = ((size_t)h * cl + (size_t)(pos % cl)) * hd;
            memcpy(s->k[l] + off, k, sizeof(float) * hd);
            memcpy(s->v[l] + off, s->vv + h * hd, sizeof(float) * hd);
        }
    }
    float *scores = malloc(sizeof(float) * (size_t)(pos0 + n));
    for (int t = 0; t < n; t++) {
        const int64_t pos = pos0 + t;
        int64_t first = 0;
        if (sl && pos - c->sliding_window + 1 > 0) first = pos - c->sliding_window + 1;
        for (int h = 0; h < H; h++) {
            const float *q = s->q + ((int64_t)t * H + h) * hd;
            const float *K = s->k[l] + (size_t)(h / group) * cl * hd, *V = s->v[l] + (size_t)(h / group) * cl * hd;
            float mx = -INFINITY, sum = 0;
            for (int64_t j = first; j <= pos; j++) {
                const float *k = K + (j % cl) * hd;
                float d = 0;
                for (int i = 0; i < hd; i++) d += q[i] * k[i];
                d *= c->query_scale;
                if (c->attn_softcap > 0) d = softcap(d, c->attn_softcap);
                scores[j - first] = d;
                if (d > mx) mx = d;
            }
            for (int64_t j = first; j <= pos; j++) sum += scores[j - first] = expf(scores[j - first] - mx);
            float *a = s->att + h * hd;
            memset(a, 0, sizeof(float) * hd);
            for (int64_t j = first; j <= pos; j++) {
                const float *v = V + (j % cl) * hd, p = scores[j - first] / sum;
                for (int i = 0; i < hd; i++) a[i] += p * v[i];
            }
        }
        float *x = s->x + (int64_t)t * D;
        matvec(s->o, &L->wo, s->att);
        rmsnorm(s->o, s->o, L->post_attn_norm, D, c->norm_eps);
        for (int i = 0; i < D; i++) x[i] += s->o[i];
    }
    free(scores);
    for (int t = 0; t < n; t++) {
        float *x = s->x + (int64_t)t * D;
        rmsnorm(s->xn, x, L->ffn_norm, D, c->norm_eps);
        matvec(s->g, &L->gate, s->xn);
        matvec(s->u, &L->up, s->xn);
        for (int i = 0; i < F; i++) s->g[i] = gelu(s->g[i]) * s->u[i];
        matvec(s->o, &L->down, s->g);
        rmsnorm(s->o, s->o, L->post_ffn_norm, D, c->norm_eps);
        for (int i = 0; i < D; i++) x[i] += s->o[i];
    }
}

static int forward(pg_gpu_seq *s, const pg_gpu_batch *b) {
    const pg_gpu_model_desc *c = &s->m->d;
    log_line("forward n=%d pos=%lld logits_rows=%d argmax=%d x_out=%d trace=%d", b->n, (long long)b->pos,
             b->logits_rows, b->argmax != NULL, b->x_out != NULL, b->trace != NULL);
    if (failing("forward")) return fail(PG_GPU_ERR_GPU, "an illegal memory access was encountered (fake)");
    if (b->n < 1 || b->n > s->d.n_batch || b->pos < 0 || b->pos + b->n > s->d.n_ctx)
        return fail(PG_GPU_ERR_ARG, "bad batch: n=%d pos=%lld", b->n, (long long)b->pos);
    if (b->logits_rows && b->logits_rows != 1 && b->logits_rows != b->n)
        return fail(PG_GPU_ERR_ARG, "logits_rows %d", b->logits_rows);
    if (!c->output_on_gpu && (b->logits_rows || b->argmax))
        return fail(PG_GPU_ERR_ARG, "logits asked for but the output head is not on the device");
    const int D = c->n_embd, V = c->n_vocab;
    memcpy(s->x, b->x, sizeof(float) * (size_t)b->n * D);
    for (int l = c->first_layer; l < c->n_layer; l++) {
        layer_forward(s, l, b->n, b->pos);
        if (b->trace) memcpy(b->trace + (int64_t)(l - c->first_layer) * b->n * D, s->x, sizeof(float) * (size_t)b->n * D);
    }
    if (b->x_out) memcpy(b->x_out, s->x, sizeof(float) * (size_t)b->n * D);
    if (!c->output_on_gpu || (!b->logits_rows && !b->argmax)) return PG_GPU_OK;
    const int first = b->logits_rows == b->n ? 0 : b->n - 1;
    for (int t = first; t < b->n; t++) {
        rmsnorm(s->xn, s->x + (int64_t)t * D, c->output_norm, D, c->norm_eps);
        matvec(s->o, &s->m->output, s->xn);
        if (c->final_softcap > 0) for (int i = 0; i < V; i++) s->o[i] = softcap(s->o[i], c->final_softcap);
        if (b->logits_rows) memcpy(b->logits + (int64_t)(t - first) * V, s->o, sizeof(float) * (size_t)V);
    }
    if (b->argmax) {   /* s->o holds the last row */
        int best = 0;
        for (int i = 1; i < V; i++) if (s->o[i] > s->o[best]) best = i;
        *b->argmax = best;
    }
    return PG_GPU_OK;
}

static const pg_gpu_backend g_table = {
    FAKE_ABI_VERSION, sizeof(pg_gpu_backend), "fake", last_error, device_info, set_option,
    model_create, model_free, model_bytes, seq_create, seq_free, seq_bytes, forward};

#ifndef FAKE_NO_ENTRY
__attribute__((visibility("default"))) int pg_gpu_backend_v1(const pg_gpu_host *host, const pg_gpu_backend **out) {
    g_host = host;
    *out = &g_table;
    return 0;
}
#else
/* an older entry name: a library that is not what the core looks for */
__attribute__((visibility("default"))) int pg_gpu_backend_v0(const pg_gpu_backend **out) {
    *out = &g_table;
    return 0;
}
#endif
