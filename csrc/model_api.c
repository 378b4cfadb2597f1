/* model_api.c -- public model/context handles: load, create, eval, rewind. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "threadpool.h"

PG_API void pg_model_params_init(pg_model_params *p) { memset(p, 0, sizeof *p); }

PG_API void pg_context_params_init(pg_context_params *p) {
    memset(p, 0, sizeof *p);
}

/* Touch every page of the tensor data (a read per 4 KiB page), reporting progress about
 * every 1% and at the end, so the first evals do not stall on page faults and a person
 * sees the load advance.  The callback may cancel. */
static pg_status read_in_weights(const pg_gguf *g, pg_progress_fn progress, void *user) {
    const int64_t nt = pg_gguf_n_tensors(g);
    uint64_t total = 0, done = 0, next_report = 0;
    for (int64_t t = 0; t < nt; t++) total += pg_gguf_tensor_nbytes(g, t);
    volatile unsigned char sink = 0;
    if (progress(0.0f, user)) return pg_fail(PG_ERR_CANCELLED, "model load cancelled");
    for (int64_t t = 0; t < nt; t++) {
        const unsigned char *data = pg_gguf_tensor_data(g, t);
        const uint64_t n = pg_gguf_tensor_nbytes(g, t);
        for (uint64_t off = 0; off < n; off += 4096) {
            sink ^= data[off];
            if (done + off >= next_report) {
                if (progress(total ? (float)((double)(done + off) / (double)total) : 1.0f, user))
                    return pg_fail(PG_ERR_CANCELLED, "model load cancelled");
                next_report = done + off + total / 100 + 1;
            }
        }
        done += n;
    }
    (void)sink;
    if (progress(1.0f, user)) return pg_fail(PG_ERR_CANCELLED, "model load cancelled");
    return PG_OK;
}

PG_API pg_status pg_model_load(const char *path, const pg_model_params *p, pg_model **out) {
    if (!path || !out) return pg_fail(PG_ERR_ARG, "pg_model_load: NULL argument");
    *out = NULL;
    pg_model_params defaults;
    if (!p) { pg_model_params_init(&defaults); p = &defaults; }
    pg_model *m = calloc(1, sizeof *m);
    if (!m) return pg_fail(PG_ERR_NOMEM, "out of memory");
    pg_status st = pg_gguf_open(path, &m->gguf);
    if (st == PG_OK) st = pg_config_from_gguf(m->gguf, p->query_pre_attn_scalar, &m->cfg);
    if (st == PG_OK) st = pg_weights_from_gguf(m->gguf, &m->cfg, &m->w);
    if (st == PG_OK) {
        m->cfg.n_vocab = (int32_t)m->w.token_embd.rows;
        strncpy(m->arch_name, m->cfg.arch == PG_ARCH_GEMMA2 ? "gemma2" : "gemma3", sizeof m->arch_name - 1);
        st = pg_tokenizer_from_gguf(m->gguf, &m->tok);
    }
    if (st == PG_OK && pg_tokenizer_n_vocab(m->tok) > m->cfg.n_vocab)
        st = pg_fail(PG_ERR_FORMAT, "tokenizer has %lld tokens but token_embd.weight only %d rows",
                     (long long)pg_tokenizer_n_vocab(m->tok), m->cfg.n_vocab);
    if (st == PG_OK && p->progress) st = read_in_weights(m->gguf, p->progress, p->progress_user);
    if (st == PG_OK) st = pg_model_gpu_attach(m, p->gpu_library, p->n_gpu_layers);
    if (st != PG_OK) {
        pg_model_free(m);
        return st;
    }
    *out = m;
    return PG_OK;
}

PG_API void pg_model_free(pg_model *m) {
    if (!m) return;
    pg_model_gpu_detach(m);
    pg_tokenizer_free(m->tok);
    free(m->w.vector_copies);
    pg_gguf_close(m->gguf);
    free(m);
}

PG_API const pg_gguf *pg_model_gguf(const pg_model *m) { return m->gguf; }
PG_API const pg_tokenizer *pg_model_tokenizer(const pg_model *m) { return m->tok; }
PG_API const char *pg_model_arch(const pg_model *m) { return m->arch_name; }
PG_API int32_t pg_model_n_vocab(const pg_model *m) { return m->cfg.n_vocab; }
PG_API int32_t pg_model_n_ctx_train(const pg_model *m) { return m->cfg.n_ctx_train; }
PG_API int32_t pg_model_n_embd(const pg_model *m) { return m->cfg.n_embd; }
PG_API int32_t pg_model_n_layer(const pg_model *m) { return m->cfg.n_layer; }

PG_API int64_t pg_model_n_params(const pg_model *m) {
    int64_t n = 0;
    for (int64_t t = 0; t < pg_gguf_n_tensors(m->gguf); t++) {
        int64_t e = 1;
        for (int d = 0; d < pg_gguf_tensor_ndim(m->gguf, t); d++) e *= pg_gguf_tensor_dim(m->gguf, t, d);
        n += e;
    }
    return n;
}

PG_API uint64_t pg_model_weight_bytes(const pg_model *m) {
    uint64_t n = 0;
    for (int64_t t = 0; t < pg_gguf_n_tensors(m->gguf); t++) n += pg_gguf_tensor_nbytes(m->gguf, t);
    return n;
}

/* ---- contexts ------------------------------------------------------------------------ */

static float *alloc_f32(int64_t n) { return pg_malloc_aligned(sizeof(float) * (size_t)n); }

static void inv_freq_init(float *inv_freq, int hd, float base, int precise) {
    if (precise) {
        /* As transformers computes it: 1 / base^(2i/hd), rounded to float32. */
        for (int i = 0; i < hd / 2; i++) inv_freq[i] = (float)(1.0 / pow((double)base, (2.0 * i) / hd));
    } else {
        /* As ggml does: theta_scale = base^(-2/hd), then repeated float products. */
        const float theta_scale = powf(base, -2.0f / (float)hd);
        inv_freq[0] = 1.0f;
        for (int i = 1; i < hd / 2; i++) inv_freq[i] = inv_freq[i - 1] * theta_scale;
    }
}

PG_API pg_status pg_context_create(pg_model *m, const pg_context_params *p, pg_context **out) {
    if (!m || !out) return pg_fail(PG_ERR_ARG, "pg_context_create: NULL argument");
    *out = NULL;
    pg_context_params defaults;
    if (!p) { pg_context_params_init(&defaults); p = &defaults; }
    const pg_config *c = &m->cfg;
    int32_t n_ctx = p->n_ctx > 0 ? p->n_ctx : PG_MIN(8192, c->n_ctx_train);
    int32_t n_batch = p->n_batch > 0 ? p->n_batch : 512;
    if (p->n_ctx < 0) return pg_fail(PG_ERR_ARG, "n_ctx %d must be positive", p->n_ctx);
    if (n_ctx > (1 << 22)) return pg_fail(PG_ERR_ARG, "n_ctx %d is too large", n_ctx);
    if (n_batch > n_ctx) n_batch = n_ctx;

    pg_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return pg_fail(PG_ERR_NOMEM, "out of memory");
    ctx->model = m;
    ctx->n_ctx = n_ctx;
    ctx->n_batch = n_batch;
    ctx->precise = p->precise != 0;
    ctx->kv_type = ctx->precise ? PG_TYPE_F32 : PG_TYPE_F16;
    ctx->kv_elem = ctx->precise ? sizeof(float) : sizeof(uint16_t);
    pg_status st = pg_pool_create(p->n_threads, &ctx->pool);
    if (st != PG_OK) { free(ctx); return st; }

    const int64_t D = c->n_embd, F = c->n_ff, hd = c->head_dim, B = n_batch;
    const int64_t qd = (int64_t)c->n_head * hd, kvd = (int64_t)c->n_head_kv * hd;
    int ok = 1;
    for (int l = 0; l < c->n_layer; l++) {
        int32_t cl = n_ctx;
        if (c->is_sliding[l] && (int64_t)c->sliding_window + B < n_ctx) cl = c->sliding_window + (int32_t)B;
        if (c->is_sliding[l]) ctx->ring_len = cl;
        ctx->cache_len[l] = cl;
        if (l >= c->n_layer - m->n_gpu_layers) continue;   /* kept on the GPU */
        size_t bytes = ctx->kv_elem * (size_t)kvd * (size_t)cl;
        ctx->k_cache[l] = pg_malloc_aligned(bytes);
        ctx->v_cache[l] = pg_malloc_aligned(bytes);
        ok &= ctx->k_cache[l] && ctx->v_cache[l];
    }
    if (ctx->ring_len > 0) {
        ctx->ring_pos = malloc(sizeof(int64_t) * (size_t)ctx->ring_len);
        if (ctx->ring_pos) for (int32_t i = 0; i < ctx->ring_len; i++) ctx->ring_pos[i] = -1;
        ok &= ctx->ring_pos != NULL;
    }
    ctx->inv_freq_local = alloc_f32(hd / 2);
    ctx->inv_freq_global = alloc_f32(hd / 2);
    ctx->x = alloc_f32(B * D);
    ctx->xn = alloc_f32(B * D);
    ctx->q = alloc_f32(B * qd);
    ctx->k = alloc_f32(B * kvd);
    ctx->v = alloc_f32(B * kvd);
    ctx->att = alloc_f32(B * qd);
    ctx->o = alloc_f32(B * D);
    ctx->gate = alloc_f32(B * F);
    ctx->up = alloc_f32(B * F);
    /* attention scores: (threads, query heads per KV head, n_ctx) */
    ctx->scores = alloc_f32((int64_t)pg_pool_size(ctx->pool) * (c->n_head / c->n_head_kv) * n_ctx);
    ctx->logits = alloc_f32(c->n_vocab);
    ok &= ctx->inv_freq_local && ctx->inv_freq_global && ctx->x && ctx->xn && ctx->q && ctx->k && ctx->v &&
          ctx->att && ctx->o && ctx->gate && ctx->up && ctx->scores && ctx->logits;
    if (!ok) {
        pg_context_free(ctx);
        return pg_fail(PG_ERR_NOMEM, "out of memory allocating the KV cache and buffers for n_ctx=%d", n_ctx);
    }
    inv_freq_init(ctx->inv_freq_local, (int)hd, c->rope_base_local, ctx->precise);
    inv_freq_init(ctx->inv_freq_global, (int)hd, c->rope_base_global, ctx->precise);
    st = pg_context_gpu_attach(ctx);
    if (st != PG_OK) {
        pg_context_free(ctx);
        return st;
    }
    *out = ctx;
    return PG_OK;
}

PG_API void pg_context_free(pg_context *ctx) {
    if (!ctx) return;
    pg_context_gpu_detach(ctx);
    for (int l = 0; l < PG_MAX_LAYERS; l++) {
        pg_free_aligned(ctx->k_cache[l]);
        pg_free_aligned(ctx->v_cache[l]);
    }
    free(ctx->ring_pos);
    float *bufs[] = {ctx->inv_freq_local, ctx->inv_freq_global, ctx->x, ctx->xn, ctx->q, ctx->k, ctx->v,
                     ctx->att, ctx->o, ctx->gate, ctx->up, ctx->scores, ctx->logits, ctx->batch_logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) pg_free_aligned(bufs[i]);
    pg_pool_free(ctx->pool);
    free(ctx);
}

PG_API int32_t pg_context_n_ctx(const pg_context *c) { return c->n_ctx; }
PG_API int64_t pg_context_n_past(const pg_context *c) { return c->n_past; }

PG_API uint64_t pg_context_kv_bytes(const pg_context *ctx) {
    const pg_config *c = &ctx->model->cfg;
    uint64_t n = 0;
    for (int l = 0; l < c->n_layer; l++)
        n += 2ull * ctx->kv_elem * (uint64_t)c->n_head_kv * c->head_dim * ctx->cache_len[l];
    return n;
}

PG_API pg_status pg_context_rewind(pg_context *ctx, int64_t n_past) {
    if (n_past < 0 || n_past > ctx->n_past)
        return pg_fail(PG_ERR_ARG, "cannot rewind to %lld: the cache holds %lld tokens", (long long)n_past,
                       (long long)ctx->n_past);
    if (ctx->ring_len > 0 && ctx->ring_len < ctx->n_ctx) {
        /* The next token (at n_past) needs the W-1 positions before it. */
        int64_t first = n_past - ctx->model->cfg.sliding_window + 1;
        for (int64_t r = first < 0 ? 0 : first; r < n_past; r++)
            if (ctx->ring_pos[r % ctx->ring_len] != r)
                return pg_fail(PG_ERR_STATE,
                               "cannot rewind to %lld: the sliding-window cache no longer holds position %lld",
                               (long long)n_past, (long long)r);
    }
    ctx->n_past = n_past;
    ctx->has_logits = 0;
    return PG_OK;
}

PG_API pg_status pg_eval(pg_context *ctx, const int32_t *tokens, int64_t n, float *all_logits) {
    if (!ctx || (!tokens && n > 0)) return pg_fail(PG_ERR_ARG, "pg_eval: NULL argument");
    if (n <= 0) return pg_fail(PG_ERR_ARG, "pg_eval: no tokens to evaluate");
    if (ctx->n_past + n > ctx->n_ctx)
        return pg_fail(PG_ERR_CONTEXT, "context full: %lld cached + %lld new tokens exceed n_ctx = %d",
                       (long long)ctx->n_past, (long long)n, ctx->n_ctx);
    const int32_t n_vocab = ctx->model->cfg.n_vocab;
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return pg_fail(PG_ERR_ARG, "token id %d at index %lld is out of range [0, %d)", tokens[i],
                           (long long)i, n_vocab);
    ctx->cancel = 0;
    for (int64_t done = 0; done < n;) {
        int32_t chunk = (int32_t)PG_MIN((int64_t)ctx->n_batch, n - done);
        pg_status st = pg_forward_chunk(ctx, tokens + done, chunk,
                                        all_logits ? all_logits + done * (int64_t)n_vocab : NULL);
        if (st != PG_OK) {
            ctx->has_logits = 0;
            return st;
        }
        ctx->n_past += chunk;
        done += chunk;
    }
    return PG_OK;
}

PG_API const float *pg_context_logits(const pg_context *ctx) { return ctx->has_logits ? ctx->logits : NULL; }

PG_API void pg_context_cancel(pg_context *ctx) { ctx->cancel = 1; }

PG_API void pg_context_trace_hidden(pg_context *ctx, float *hidden) { ctx->trace_hidden = hidden; }

/* ---- several sequences at once (the server's parallel slots) ---------------------------- */

PG_API pg_status pg_eval_batch(pg_context *const *ctxs, const int32_t *tokens, int32_t n_seq) {
    if (!ctxs || !tokens) return pg_fail(PG_ERR_ARG, "pg_eval_batch: NULL argument");
    if (n_seq <= 0) return pg_fail(PG_ERR_ARG, "pg_eval_batch: no sequences");
    pg_context *act = ctxs[0];
    if (!act) return pg_fail(PG_ERR_ARG, "pg_eval_batch: NULL context at index 0");
    if (n_seq > act->n_batch)
        return pg_fail(PG_ERR_ARG, "pg_eval_batch: %d sequences exceed the first context's n_batch = %d", n_seq,
                       act->n_batch);
    const int32_t n_vocab = act->model->cfg.n_vocab;
    for (int32_t i = 0; i < n_seq; i++) {
        const pg_context *c = ctxs[i];
        if (!c) return pg_fail(PG_ERR_ARG, "pg_eval_batch: NULL context at index %d", i);
        for (int32_t j = 0; j < i; j++)
            if (ctxs[j] == c) return pg_fail(PG_ERR_ARG, "pg_eval_batch: context %d appears twice", i);
        if (c->model != act->model)
            return pg_fail(PG_ERR_ARG, "pg_eval_batch: context %d belongs to another model", i);
        /* The first context's score rows and numerics serve every row. */
        if (c->n_ctx > act->n_ctx || c->precise != act->precise)
            return pg_fail(PG_ERR_ARG, "pg_eval_batch: context %d has n_ctx %d / precise %d; the first has %d / %d",
                           i, c->n_ctx, c->precise, act->n_ctx, act->precise);
        if (c->n_past + 1 > c->n_ctx)
            return pg_fail(PG_ERR_CONTEXT, "context full: sequence %d holds %lld tokens, n_ctx = %d", i,
                           (long long)c->n_past, c->n_ctx);
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return pg_fail(PG_ERR_ARG, "token id %d of sequence %d is out of range [0, %d)", tokens[i], i, n_vocab);
    }
    /* Offloaded layers keep one KV cache per context on the device: one pass per sequence. */
    for (int32_t i = 0; i < n_seq; i++)
        if (ctxs[i]->gpu_seq) {
            for (int32_t k = 0; k < n_seq; k++) PG_TRY(pg_eval(ctxs[k], tokens + k, 1, NULL));
            return PG_OK;
        }
    if (act->batch_logits_rows < n_seq) {      /* every decode step reuses it: no per-step allocation */
        float *grown = pg_malloc_aligned(sizeof(float) * (size_t)n_seq * (size_t)n_vocab);
        if (!grown) return pg_fail(PG_ERR_NOMEM, "out of memory for %d sequences' logits", n_seq);
        pg_free_aligned(act->batch_logits);
        act->batch_logits = grown;
        act->batch_logits_rows = n_seq;
    }
    float *logits = act->batch_logits;         /* (n_seq, n_vocab) */
    act->cancel = 0;
    pg_status st = pg_forward_rows(act, ctxs, tokens, n_seq, logits);
    for (int32_t i = 0; i < n_seq; i++) {
        pg_context *c = ctxs[i];
        c->has_logits = st == PG_OK;
        if (st != PG_OK) continue;
        memcpy(c->logits, logits + (size_t)i * n_vocab, sizeof(float) * (size_t)n_vocab);
        c->n_past += 1;
    }
    return st;
}
