/* model_gpu.c -- offloading a model's last layers (and its output head) to a GPU library.
 *
 * Split (as llama.cpp's -ngl): with N requested layers and n_layer in the model,
 *   layers [0, n_layer - min(N, n_layer))   CPU
 *   layers [n_layer - min(N, n_layer), n_layer)   device
 *   output norm + head + final soft-cap     device when N > n_layer, else CPU
 * The CPU always embeds the tokens; pg_forward_gpu hands the residual stream (n, D) over
 * after the CPU layers and takes it (or the logits / the greedy token) back. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "context.h"

static pg_gpu_matrix view(const pg_matrix *m) {
    pg_gpu_matrix g = {m->type, m->data, m->rows, m->cols};
    return g;
}

pg_status pg_model_gpu_attach(pg_model *m, const char *library, int32_t n_gpu_layers) {
    const pg_config *c = &m->cfg;
    if (n_gpu_layers <= 0 || !library) return PG_OK;
    const pg_backend *b;
    PG_TRY(pg_backend_open(library, &b));
    pg_gpu_device_info dev;
    PG_TRY(pg_backend_device(b, &dev));

    const int32_t n_dev = PG_MIN(n_gpu_layers, c->n_layer);
    const int output = n_gpu_layers > c->n_layer;
    pg_gpu_layer *ls = calloc(PG_MAX_LAYERS, sizeof *ls);
    if (!ls) return pg_fail(PG_ERR_NOMEM, "out of memory");
    for (int l = 0; l < c->n_layer; l++) {
        const pg_layer_weights *L = &m->w.layers[l];
        ls[l] = (pg_gpu_layer){
            .attn_norm = L->attn_norm, .wq = view(&L->wq), .wk = view(&L->wk), .wv = view(&L->wv),
            .q_norm = L->q_norm, .k_norm = L->k_norm, .wo = view(&L->wo), .post_attn_norm = L->post_attn_norm,
            .ffn_norm = L->ffn_norm, .w_gate = view(&L->w_gate), .w_up = view(&L->w_up),
            .w_down = view(&L->w_down), .post_ffn_norm = L->post_ffn_norm};
    }
    pg_gpu_model_desc d = {
        .n_vocab = c->n_vocab, .n_embd = c->n_embd, .n_layer = c->n_layer, .n_ff = c->n_ff,
        .n_head = c->n_head, .n_head_kv = c->n_head_kv, .head_dim = c->head_dim, .norm_eps = c->norm_eps,
        .attn_softcap = c->attn_softcap, .final_softcap = c->final_softcap, .query_scale = c->query_scale,
        .sliding_window = c->sliding_window, .rope_scale_global = c->rope_scale_global,
        .is_sliding = c->is_sliding, .first_layer = c->n_layer - n_dev, .output_on_gpu = output,
        .layers = ls, .output_norm = m->w.output_norm, .output = view(&m->w.output)};
    pg_status st = pg_backend_fail(b, b->t->model_create(&d, &m->gpu_model), "uploading the model to the GPU");
    free(ls);
    if (st == PG_ERR_NOMEM)
        return pg_fail_prefix(st, "GPU out of memory with -ngl %d (%d of %d layers%s); try a smaller -ngl",
                              n_gpu_layers, n_dev, c->n_layer, output ? " + output" : "");
    if (st != PG_OK) return st;
    m->gpu = b;
    m->n_gpu_layers = n_dev;
    m->gpu_output = output;
    m->gpu_bytes = b->t->model_bytes(m->gpu_model);
    snprintf(m->gpu_info, sizeof m->gpu_info, "%s (%.1f GiB), %d/%d layers%s on GPU", dev.name,
             (double)dev.total_bytes / (1u << 30), n_dev, c->n_layer, output ? " + output" : "");
    return PG_OK;
}

void pg_model_gpu_detach(pg_model *m) {
    if (m->gpu && m->gpu_model) m->gpu->t->model_free(m->gpu_model);
    m->gpu_model = NULL;
    m->gpu = NULL;
    m->n_gpu_layers = 0;
}

pg_status pg_context_gpu_attach(pg_context *ctx) {
    const pg_model *m = ctx->model;
    if (!m->gpu) return PG_OK;
    pg_gpu_seq_desc d = {.n_ctx = ctx->n_ctx, .n_batch = ctx->n_batch, .precise = ctx->precise,
                         .cache_len = ctx->cache_len, .inv_freq_local = ctx->inv_freq_local,
                         .inv_freq_global = ctx->inv_freq_global};
    pg_status st = pg_backend_fail(m->gpu, m->gpu->t->seq_create(m->gpu_model, &d, &ctx->gpu_seq),
                                   "creating the GPU KV cache");
    if (st == PG_ERR_NOMEM)
        return pg_fail_prefix(st, "GPU out of memory for n_ctx=%d with %d layers on the GPU; "
                              "try a smaller -ngl or context", ctx->n_ctx, m->n_gpu_layers);
    return st;
}

void pg_context_gpu_detach(pg_context *ctx) {
    if (ctx->gpu_seq) ctx->model->gpu->t->seq_free(ctx->gpu_seq);
    ctx->gpu_seq = NULL;
}

pg_status pg_forward_gpu(pg_context *ctx, int32_t n, float *logits_out, int *head_done) {
    const pg_model *m = ctx->model;
    const int D = m->cfg.n_embd, first = m->cfg.n_layer - m->n_gpu_layers;
    *head_done = 0;
    pg_gpu_batch b = {.n = n, .pos = ctx->n_past, .x = ctx->x};
    if (ctx->trace_hidden) b.trace = ctx->trace_hidden + (int64_t)first * n * D;
    if (m->gpu_output) {
        if (logits_out) {
            b.logits_rows = n;
            b.logits = logits_out;
        } else if (!ctx->argmax_out) {
            b.logits_rows = 1;
            b.logits = ctx->logits;
        }
        b.argmax = ctx->argmax_out;
    } else {
        b.x_out = ctx->x;
    }
    PG_TRY(pg_backend_fail(m->gpu, m->gpu->t->forward(ctx->gpu_seq, &b), "GPU forward pass"));
    if (m->gpu_output) {
        if (logits_out) memcpy(ctx->logits, logits_out + (int64_t)(n - 1) * m->cfg.n_vocab,
                               sizeof(float) * (size_t)m->cfg.n_vocab);
        ctx->has_logits = b.logits != NULL;
        *head_done = 1;
    }
    return PG_OK;
}

/* ---- public ----------------------------------------------------------------------------- */

PG_API const char *pg_model_gpu_info(const pg_model *m) { return m->gpu ? m->gpu_info : ""; }
PG_API int32_t pg_model_n_gpu_layers(const pg_model *m) { return m->gpu ? m->n_gpu_layers : 0; }
PG_API uint64_t pg_model_gpu_bytes(const pg_model *m) { return m->gpu ? m->gpu_bytes : 0; }

PG_API uint64_t pg_context_gpu_bytes(const pg_context *ctx) {
    return ctx->gpu_seq ? ctx->model->gpu->t->seq_bytes(ctx->gpu_seq) : 0;
}

/* Greedy token of a logits row: the largest value, lowest id on ties, NaN as -inf (as the
 * sampler's greedy path). */
static int32_t argmax_row(const float *x, int32_t n) {
    int32_t best = -1;
    float bv = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (!isnan(x[i]) && (best < 0 || x[i] > bv)) { best = i; bv = x[i]; }
    return best;
}

PG_API pg_status pg_eval_argmax(pg_context *ctx, const int32_t *tokens, int64_t n, int32_t *token_out) {
    if (!ctx || !token_out) return pg_fail(PG_ERR_ARG, "pg_eval_argmax: NULL argument");
    *token_out = -1;
    int32_t tok = -1;
    ctx->argmax_out = &tok;
    pg_status st = pg_eval(ctx, tokens, n, NULL);
    ctx->argmax_out = NULL;
    PG_TRY(st);
    if (ctx->has_logits) tok = argmax_row(ctx->logits, ctx->model->cfg.n_vocab);
    if (tok < 0) return pg_fail(PG_ERR_ARG, "every logit is NaN: no greedy token");
    *token_out = tok;
    return PG_OK;
}

PG_API pg_status pg_gpu_set_option(const char *library, const char *name, int64_t value) {
    const pg_backend *b;
    PG_TRY(pg_backend_open(library, &b));
    char what[96];
    snprintf(what, sizeof what, "GPU option '%s'", name ? name : "(null)");
    return pg_backend_fail(b, b->t->set_option(name, value), what);
}
