/* model.c -- the Gemma 2 / Gemma 3 forward pass, read top to bottom.
 *
 * One chunk of B tokens goes through:
 *   embed * sqrt(D)
 *   per layer:  x += postnorm(attention(prenorm(x)));  x += postnorm(geglu_ffn(prenorm(x)))
 *   final norm -> output head (tied embedding) -> final soft-cap
 * Matrix products go through pg_matmul (matrix-matrix for B > 1, matrix-vector
 * for B == 1); element-wise work is split across the same thread pool. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "context.h"
#include "kernels.h"
#include "quants.h"
#include "threadpool.h"
#include "types.h"

/* ---- small element-wise kernels (output first) --------------------------------- */

/* o (n) = x (n) / rms(x) * w (n); w already holds Gemma's (1 + weight).
 * precise: float sums as transformers; otherwise ggml's order of operations
 * (squares summed in double, mean rounded to float, x * scale, then * w), so
 * that the 8-bit activation quantization downstream sees the same values. */
static void rmsnorm(float *o, const float *x, const float *w, int n, float eps, int precise) {
    if (precise) {
        float ss = pg_sum_sq_f32(n, x) / (float)n;
        float inv = 1.0f / sqrtf(ss + eps);
        for (int i = 0; i < n; i++) o[i] = x[i] * inv * w[i];
        return;
    }
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++) {
        float y = x[i] * scale;
        o[i] = y * w[i];
    }
}

/* cap * tanh(x / cap); llama.cpp multiplies by the reciprocal instead of dividing. */
static inline float softcap(float x, float cap, int precise) {
    return precise ? cap * tanhf(x / cap) : tanhf(x * (1.0f / cap)) * cap;
}

/* tanh-approximated GELU, as Gemma's gelu_pytorch_tanh (and ggml's formula). */
static inline float gelu_tanh(float x) {
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(c * x * (1.0f + 0.044715f * x * x)));
}

/* llama.cpp evaluates GELU through a table indexed by the F16 bits of x
 * (exact for |x| >= 10, where it is 0 or x); we do the same by default. */
static pg_half g_gelu_table[1 << 16];
static pthread_once_t g_gelu_once = PTHREAD_ONCE_INIT;

static void gelu_table_init(void) {
    for (int i = 0; i < (1 << 16); i++) g_gelu_table[i] = pg_f32_to_half(gelu_tanh(pg_half_to_f32((pg_half)i)));
}

static inline float gelu_table(float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return pg_half_to_f32(g_gelu_table[pg_f32_to_half(x)]);
}

/* x[i] = x[i] rounded to F16 (nearest even) and back, with the tier's vector conversions */
static void round_rows_f16(float *x, int n) {
    uint16_t h[256];
    for (int i = 0; i < n; i += 256) {
        int m = PG_MIN(256, n - i);
        pg_f32_to_f16_row(m, x + i, h);
        pg_f16_to_f32_row(m, h, x + i);
    }
}

/* NEOX-style RoPE on one head: pairs (i, i + hd/2) rotate by angle theta_i.
 * precise: theta_i = (pos * pos_scale) * inv_freq[i], as transformers;
 * otherwise ggml's recurrence theta_{i+1} = theta_i * inv_freq[1] from pos,
 * times pos_scale (linear scaling). */
void pg_rope_neox(float *v, int hd, float pos, float pos_scale, const float *inv_freq, int precise) {
    int half = hd / 2;
    float theta_extrap = pos;
    for (int i = 0; i < half; i++) {
        float theta;
        if (precise) {
            theta = (pos * pos_scale) * inv_freq[i];
        } else {
            theta = pos_scale * theta_extrap;
            theta_extrap *= half > 1 ? inv_freq[1] : 1.0f;
        }
        float c = cosf(theta), s = sinf(theta);
        float a = v[i], b = v[i + half];
        v[i] = a * c - b * s;
        v[i + half] = a * s + b * c;
    }
}

/* ---- parallel helpers ------------------------------------------------------------- */

typedef struct {
    struct pg_context *ctx;     /* owner of the activation buffers and the thread pool */
    struct pg_context *const *seqs; /* (n) row t's sequence (KV cache, position), or NULL:
                                       every row belongs to ctx, at ctx->n_past + t */
    int layer;
    int n;                      /* tokens in the chunk */
    const float *norm_w;        /* rmsnorm weight for the norm tasks */
    const float *src;           /* (n, width) input of the norm tasks */
    float *dst;                 /* (n, width) output */
    int width;
    int add;                    /* norm task: dst += norm(src) instead of dst = norm(src) */
} task;

/* Row t's sequence and position within it. */
static inline struct pg_context *row_seq(const task *a, int t) { return a->seqs ? a->seqs[t] : a->ctx; }
static inline int64_t row_pos(const task *a, int t) {
    return a->seqs ? a->seqs[t]->n_past : a->ctx->n_past + t;
}

/* Run fn on the pool, or on the caller alone when the job is about `cost`
 * element operations too few to pay for waking the other threads (decoding's
 * norms, RoPE and GeGLU of one token; a few microseconds each). */
#define PG_SERIAL_COST 32768
static void run_tasks(struct pg_context *ctx, pg_pool_fn fn, void *arg, int64_t cost) {
    if (cost < PG_SERIAL_COST) fn(arg, 0, 1);
    else pg_pool_run(ctx->pool, fn, arg);
}

static void split(int total, int ith, int nth, int *lo, int *hi) {
    int per = (total + nth - 1) / nth;
    *lo = PG_MIN(total, ith * per);
    *hi = PG_MIN(total, *lo + per);
}

/* dst[t] = norm(src[t]) or dst[t] += norm(src[t]) for every token t. */
static void norm_rows_task(void *arg, int ith, int nth) {
    task *a = arg;
    const float eps = a->ctx->model->cfg.norm_eps;
    int lo, hi;
    split(a->n, ith, nth, &lo, &hi);
    float tmp[a->add ? a->width : 1];
    for (int t = lo; t < hi; t++) {
        const float *x = a->src + (int64_t)t * a->width;
        float *o = a->dst + (int64_t)t * a->width;
        if (a->add) {
            rmsnorm(tmp, x, a->norm_w, a->width, eps, a->ctx->precise);
            for (int i = 0; i < a->width; i++) o[i] += tmp[i];
        } else {
            rmsnorm(o, x, a->norm_w, a->width, eps, a->ctx->precise);
        }
    }
}

static void norm_rows(struct pg_context *ctx, int n, const float *w, const float *src, float *dst, int width,
                      int add) {
    task a = {.ctx = ctx, .n = n, .norm_w = w, .src = src, .dst = dst, .width = width, .add = add};
    run_tasks(ctx, norm_rows_task, &a, (int64_t)n * width);
}

/* gate (n, F) = gelu(gate) * up, split by elements. */
static void geglu_task(void *arg, int ith, int nth) {
    task *a = arg;
    int64_t total = (int64_t)a->n * a->ctx->model->cfg.n_ff;
    int64_t per = (total + nth - 1) / nth, lo = PG_MIN(total, ith * per), hi = PG_MIN(total, lo + per);
    float *g = a->ctx->gate, *u = a->ctx->up;
    if (a->ctx->precise) {
        for (int64_t i = lo; i < hi; i++) g[i] = gelu_tanh(g[i]) * u[i];
        return;
    }
    /* gelu_table() in blocks: the F16 conversions vectorised, the table read per element */
    uint16_t h[256];
    float t[256];
    for (int64_t i0 = lo; i0 < hi; i0 += 256) {
        const int m = (int)PG_MIN(256, hi - i0);
        pg_f32_to_f16_row(m, g + i0, h);
        for (int i = 0; i < m; i++) h[i] = g_gelu_table[h[i]];
        pg_f16_to_f32_row(m, h, t);
        for (int i = 0; i < m; i++) {
            const float x = g[i0 + i];
            const float y = x <= -10.0f ? 0.0f : x >= 10.0f ? x : t[i];
            g[i0 + i] = y * u[i0 + i];
        }
    }
}

/* Per token and head: Gemma 3's q/k norms, RoPE, then the chunk's keys and
 * values go into the cache. */
static void qk_prepare_task(void *arg, int ith, int nth) {
    task *a = arg;
    struct pg_context *ctx = a->ctx;
    const pg_config *c = &ctx->model->cfg;
    const pg_layer_weights *L = &ctx->model->w.layers[a->layer];
    const int hd = c->head_dim, H = c->n_head, Hkv = c->n_head_kv, l = a->layer;
    const int sliding = c->is_sliding[l];
    const float *inv_freq = sliding ? ctx->inv_freq_local : ctx->inv_freq_global;
    const float pos_scale = sliding ? 1.0f : c->rope_scale_global;
    int lo, hi;
    split(a->n * (H + Hkv), ith, nth, &lo, &hi);
    for (int item = lo; item < hi; item++) {
        int t = item / (H + Hkv), h = item % (H + Hkv);
        const int64_t pos = row_pos(a, t);
        struct pg_context *seq = row_seq(a, t);
        const int32_t cl = seq->cache_len[l];
        if (h < H) {
            float *qh = ctx->q + ((int64_t)t * H + h) * hd;
            if (L->q_norm) rmsnorm(qh, qh, L->q_norm, hd, c->norm_eps, ctx->precise);
            pg_rope_neox(qh, hd, (float)pos, pos_scale, inv_freq, ctx->precise);
        } else {
            h -= H;
            float *kh = ctx->k + ((int64_t)t * Hkv + h) * hd;
            const float *vh = ctx->v + ((int64_t)t * Hkv + h) * hd;
            if (L->k_norm) rmsnorm(kh, kh, L->k_norm, hd, c->norm_eps, ctx->precise);
            pg_rope_neox(kh, hd, (float)pos, pos_scale, inv_freq, ctx->precise);
            size_t off = (((size_t)h * cl + (size_t)(pos % cl)) * hd) * ctx->kv_elem;
            char *kc = (char *)seq->k_cache[l] + off, *vc = (char *)seq->v_cache[l] + off;
            if (ctx->kv_type == PG_TYPE_F16) {
                pg_f32_to_f16_row(hd, kh, (uint16_t *)kc);
                pg_f32_to_f16_row(hd, vh, (uint16_t *)vc);
            } else {
                memcpy(kc, kh, sizeof(float) * hd);
                memcpy(vc, vh, sizeof(float) * hd);
            }
        }
    }
}

/* att[t, h] = softmax(softcap(q·K * scale) + mask) · V for every (token, head).
 * One work item is a token and a KV head with all the query heads that share it
 * (GQA), so each key and value row is read once for the group (kernels.h:
 * qk_f16/av_f16).  Every (token, head) is computed by the same operations
 * whatever the chunk or batch it is in.  Default numerics follow llama.cpp's F16
 * path: the scaled query and the softmax probabilities are rounded to F16 before
 * their products with the F16 cache, the softmax sum is accumulated in double. */
static void attention_task(void *arg, int ith, int nth) {
    task *a = arg;
    struct pg_context *ctx = a->ctx;
    const pg_config *c = &ctx->model->cfg;
    const pg_kernels *k = pg_kernels_get();
    const int hd = c->head_dim, H = c->n_head, Hkv = c->n_head_kv, group = H / Hkv, l = a->layer;
    const int precise = ctx->precise;
    float *scores = ctx->scores + (int64_t)ith * group * ctx->n_ctx;   /* (group, n_ctx) */
    float qs[group * hd];                                              /* (group, hd) the scaled queries */
    float s[group];
    int lo, hi;
    split(a->n * Hkv, ith, nth, &lo, &hi);
    for (int item = lo; item < hi; item++) {
        const int t = item / Hkv, kvh = item % Hkv, h0 = kvh * group;
        const int64_t pos = row_pos(a, t);
        const struct pg_context *seq = row_seq(a, t);
        const int32_t cl = seq->cache_len[l];
        int64_t first = 0;
        if (c->is_sliding[l] && pos - c->sliding_window + 1 > 0) first = pos - c->sliding_window + 1;
        const float *q = ctx->q + ((int64_t)t * H + h0) * hd;
        const size_t head_off = (size_t)kvh * cl * hd * ctx->kv_elem;
        const char *K = (const char *)seq->k_cache[l] + head_off;
        const char *V = (const char *)seq->v_cache[l] + head_off;
        const size_t row = (size_t)hd * ctx->kv_elem;
        if (precise) {
            memcpy(qs, q, sizeof(float) * (size_t)group * hd);
        } else {
            for (int i = 0; i < group * hd; i++) qs[i] = q[i] * c->query_scale;
            round_rows_f16(qs, group * hd);
        }
        const float post_scale = precise ? c->query_scale : 1.0f;
        const int n_keys = (int)(pos - first + 1), first_slot = (int)(first % cl);
        float mx[group];
        for (int h = 0; h < group; h++) mx[h] = -INFINITY;
        for (int j = 0, slot = first_slot; j < n_keys; j++, slot = slot + 1 == cl ? 0 : slot + 1) {
            const void *key = K + (size_t)slot * row;
            if (precise) k->qk_f32(hd, group, qs, key, s);
            else k->qk_f16(hd, group, qs, key, s);
            for (int h = 0; h < group; h++) {
                float v = s[h] * post_scale;
                if (c->attn_softcap > 0) v = softcap(v, c->attn_softcap, precise);
                scores[(size_t)h * ctx->n_ctx + j] = v;
                if (v > mx[h]) mx[h] = v;
            }
        }
        for (int h = 0; h < group; h++) {
            float *sc = scores + (size_t)h * ctx->n_ctx;
            double sum = 0;
            for (int j = 0; j < n_keys; j++) {
                sc[j] = expf(sc[j] - mx[h]);
                sum += sc[j];
            }
            const float inv = (float)(1.0 / sum);
            for (int j = 0; j < n_keys; j++) sc[j] *= inv;
            if (!precise) round_rows_f16(sc, n_keys);
        }
        float *out = ctx->att + ((int64_t)t * H + h0) * hd;
        if (precise) k->av_f32(hd, group, n_keys, scores, ctx->n_ctx, (const float *)V, first_slot, cl, out);
        else k->av_f16(hd, group, n_keys, scores, ctx->n_ctx, (const uint16_t *)V, first_slot, cl, out);
    }
}

/* logits (n, V) = soft-capped output head. */
static void softcap_task(void *arg, int ith, int nth) {
    task *a = arg;
    int64_t total = (int64_t)a->n * a->width;
    int64_t per = (total + nth - 1) / nth, lo = PG_MIN(total, ith * per), hi = PG_MIN(total, lo + per);
    float cap = a->ctx->model->cfg.final_softcap;
    for (int64_t i = lo; i < hi; i++) a->dst[i] = softcap(a->dst[i], cap, a->ctx->precise);
}

static pg_status matmul(struct pg_context *ctx, const pg_matrix *w, const float *x, int n, float *y) {
    return pg_matmul(ctx->pool, w->type, w->data, w->rows, w->cols, x, n, y);
}

/* Products of one input in one dispatch (Q/K/V, gate/up): y_i (n, rows_i) = x @ W_i^T */
static pg_status matmul_group(struct pg_context *ctx, const float *x, int n, int count, const pg_matrix *const *w,
                              float *const *y) {
    pg_mm_out m[PG_MM_GROUP_MAX];
    for (int i = 0; i < count; i++) m[i] = (pg_mm_out){w[i]->type, w[i]->data, w[i]->rows, y[i]};
    return pg_matmul_group(ctx->pool, m, count, w[0]->cols, x, n);
}

/* ---- the forward pass ---------------------------------------------------------------- */

static pg_status embed(struct pg_context *ctx, const int32_t *tokens, int n) {
    const pg_config *c = &ctx->model->cfg;
    const pg_matrix *E = &ctx->model->w.token_embd;
    const pg_type_traits *tt = pg_type_traits_get(E->type);
    const int64_t row_bytes = pg_type_row_bytes(E->type, E->cols);
    const float scale = sqrtf((float)c->n_embd);
    for (int t = 0; t < n; t++) {
        if (tokens[t] < 0 || tokens[t] >= E->rows)
            return pg_fail(PG_ERR_ARG, "token id %d is out of range [0, %lld)", tokens[t], (long long)E->rows);
        float *x = ctx->x + (int64_t)t * c->n_embd;
        tt->dequant_row((const char *)E->data + tokens[t] * row_bytes, x, c->n_embd);
        for (int i = 0; i < c->n_embd; i++) x[i] *= scale;
    }
    return PG_OK;
}

static pg_status layer_forward(struct pg_context *ctx, struct pg_context *const *seqs, int l, int n) {
    const pg_config *c = &ctx->model->cfg;
    const pg_layer_weights *L = &ctx->model->w.layers[l];
    const int D = c->n_embd;
    task a = {.ctx = ctx, .seqs = seqs, .layer = l, .n = n};

    /* attention block */
    norm_rows(ctx, n, L->attn_norm, ctx->x, ctx->xn, D, 0);
    PG_TRY(matmul_group(ctx, ctx->xn, n, 3, (const pg_matrix *[]){&L->wq, &L->wk, &L->wv},
                        (float *[]){ctx->q, ctx->k, ctx->v}));
    run_tasks(ctx, qk_prepare_task, &a, (int64_t)n * (c->n_head + c->n_head_kv) * c->head_dim * 4);
    /* attention: about n * heads * keys * head_dim (keys: at most the cache) */
    run_tasks(ctx, attention_task, &a, (int64_t)n * c->n_head * c->head_dim * PG_MIN(ctx->n_past + n, ctx->n_ctx) +
                                       (seqs ? PG_SERIAL_COST : 0));
    PG_TRY(matmul(ctx, &L->wo, ctx->att, n, ctx->o));
    norm_rows(ctx, n, L->post_attn_norm, ctx->o, ctx->x, D, 1);

    /* feed-forward block: GeGLU */
    norm_rows(ctx, n, L->ffn_norm, ctx->x, ctx->xn, D, 0);
    PG_TRY(matmul_group(ctx, ctx->xn, n, 2, (const pg_matrix *[]){&L->w_gate, &L->w_up},
                        (float *[]){ctx->gate, ctx->up}));
    run_tasks(ctx, geglu_task, &a, (int64_t)n * c->n_ff * 4);
    PG_TRY(matmul(ctx, &L->w_down, ctx->gate, n, ctx->o));
    norm_rows(ctx, n, L->post_ffn_norm, ctx->o, ctx->x, D, 1);
    return PG_OK;
}

pg_status pg_forward_rows(struct pg_context *ctx, struct pg_context *const *seqs, const int32_t *tokens,
                          int32_t n, float *logits_out) {
    const pg_config *c = &ctx->model->cfg;
    pthread_once(&g_gelu_once, gelu_table_init);
    const pg_weights *w = &ctx->model->w;
    const int D = c->n_embd;
    PG_TRY(embed(ctx, tokens, n));

    /* Sliding rings: remember which position each slot now holds. */
    for (int t = 0; t < n; t++) {
        struct pg_context *seq = seqs ? seqs[t] : ctx;
        const int64_t pos = seqs ? seq->n_past : ctx->n_past + t;
        if (seq->ring_len > 0) seq->ring_pos[pos % seq->ring_len] = pos;
    }

    /* Layers [0, n_cpu) here; the rest, if offloaded, on the GPU (model_gpu.c). */
    const int n_cpu = c->n_layer - (ctx->gpu_seq ? ctx->model->n_gpu_layers : 0);
    for (int l = 0; l < n_cpu; l++) {
        if (ctx->cancel) return pg_fail(PG_ERR_CANCELLED, "evaluation cancelled");
        PG_TRY(layer_forward(ctx, seqs, l, n));
        if (ctx->trace_hidden && !seqs)
            memcpy(ctx->trace_hidden + (int64_t)l * n * D, ctx->x, sizeof(float) * (size_t)n * D);
    }
    if (ctx->gpu_seq) {
        if (seqs) return pg_fail(PG_ERR_ARG, "several sequences in one pass with GPU offload");   /* see pg_eval_batch */
        if (ctx->cancel) return pg_fail(PG_ERR_CANCELLED, "evaluation cancelled");
        int head_done;
        PG_TRY(pg_forward_gpu(ctx, n, logits_out, &head_done));
        if (head_done) return PG_OK;
    }

    /* Output head: all tokens' logits into the caller's buffer, or only the last one's. */
    const int first = logits_out ? 0 : n - 1, m = n - first;
    float *dst = logits_out ? logits_out : ctx->logits;
    norm_rows(ctx, m, w->output_norm, ctx->x + (int64_t)first * D, ctx->xn, D, 0);
    PG_TRY(matmul(ctx, &w->output, ctx->xn, m, dst));
    if (c->final_softcap > 0) {
        task a = {.ctx = ctx, .n = m, .dst = dst, .width = (int)w->output.rows};
        run_tasks(ctx, softcap_task, &a, (int64_t)m * w->output.rows * 8);
    }
    if (logits_out) memcpy(ctx->logits, logits_out + (int64_t)(n - 1) * w->output.rows,
                           sizeof(float) * w->output.rows);
    ctx->has_logits = 1;
    return PG_OK;
}

pg_status pg_forward_chunk(struct pg_context *ctx, const int32_t *tokens, int32_t n, float *logits_out) {
    return pg_forward_rows(ctx, NULL, tokens, n, logits_out);
}
