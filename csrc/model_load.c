/* model_load.c -- Gemma config from GGUF metadata and weight views into the mapping.
 *
 * Everything comes from metadata (never from file names).  Where GGUF files
 * carry no key (query_pre_attn_scalar, Gemma 3's local RoPE base and layer
 * pattern) we infer it exactly as llama.cpp does, so files behave the same. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model.h"

/* ---- typed metadata lookups ---------------------------------------------------- */

static pg_status meta_int(const pg_gguf *g, const char *arch, const char *suffix, int required,
                          int64_t def, int64_t *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t i = pg_gguf_find_key(g, key);
    if (i < 0) {
        if (required) return pg_fail(PG_ERR_FORMAT, "model metadata lacks required key '%s'", key);
        *out = def;
        return PG_OK;
    }
    return pg_gguf_kv_get_int(g, i, out);
}

static pg_status meta_float(const pg_gguf *g, const char *arch, const char *suffix, double def,
                            double *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t i = pg_gguf_find_key(g, key);
    if (i < 0) { *out = def; return PG_OK; }
    return pg_gguf_kv_get_float(g, i, out);
}

static int meta_has(const pg_gguf *g, const char *arch, const char *suffix) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return pg_gguf_find_key(g, key) >= 0;
}

static pg_status check_range(const char *what, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        return pg_fail(PG_ERR_FORMAT, "model metadata: %s = %lld is outside [%lld, %lld]", what,
                       (long long)v, (long long)lo, (long long)hi);
    return PG_OK;
}

pg_status pg_config_from_gguf(const pg_gguf *g, float query_pre_attn_scalar, pg_config *c) {
    memset(c, 0, sizeof *c);
    const char *arch = NULL;
    uint64_t len = 0;
    int64_t ka = pg_gguf_find_key(g, "general.architecture");
    if (ka < 0) return pg_fail(PG_ERR_FORMAT, "model metadata lacks 'general.architecture'");
    PG_TRY(pg_gguf_kv_get_str(g, ka, &arch, &len));
    if (strcmp(arch, "gemma2") == 0) c->arch = PG_ARCH_GEMMA2;
    else if (strcmp(arch, "gemma3") == 0) c->arch = PG_ARCH_GEMMA3;
    else
        return pg_fail(PG_ERR_UNSUPPORTED,
                       "architecture '%s' is not supported (pygemma runs gemma2 and gemma3)", arch);

    int64_t v;
    PG_TRY(meta_int(g, arch, "embedding_length", 1, 0, &v));
    PG_TRY(check_range("embedding_length", v, 1, 1 << 20)); c->n_embd = (int32_t)v;
    PG_TRY(meta_int(g, arch, "block_count", 1, 0, &v));
    PG_TRY(check_range("block_count", v, 1, PG_MAX_LAYERS)); c->n_layer = (int32_t)v;
    PG_TRY(meta_int(g, arch, "feed_forward_length", 1, 0, &v));
    PG_TRY(check_range("feed_forward_length", v, 1, 1 << 22)); c->n_ff = (int32_t)v;
    PG_TRY(meta_int(g, arch, "attention.head_count", 1, 0, &v));
    PG_TRY(check_range("attention.head_count", v, 1, 4096)); c->n_head = (int32_t)v;
    PG_TRY(meta_int(g, arch, "attention.head_count_kv", 0, c->n_head, &v));
    PG_TRY(check_range("attention.head_count_kv", v, 1, c->n_head)); c->n_head_kv = (int32_t)v;
    if (c->n_head % c->n_head_kv != 0)
        return pg_fail(PG_ERR_FORMAT, "model metadata: head_count %d is not a multiple of head_count_kv %d",
                       c->n_head, c->n_head_kv);
    PG_TRY(meta_int(g, arch, "attention.key_length", 0, c->n_embd / c->n_head, &v));
    PG_TRY(check_range("attention.key_length", v, 2, 4096)); c->head_dim = (int32_t)v;
    if (v % 2) return pg_fail(PG_ERR_FORMAT, "model metadata: key_length %lld is odd (RoPE needs pairs)", (long long)v);
    PG_TRY(meta_int(g, arch, "attention.value_length", 0, c->head_dim, &v));
    if (v != c->head_dim)
        return pg_fail(PG_ERR_UNSUPPORTED, "value_length %lld differs from key_length %d", (long long)v, c->head_dim);
    PG_TRY(meta_int(g, arch, "context_length", 0, 8192, &v));
    PG_TRY(check_range("context_length", v, 1, 1 << 24)); c->n_ctx_train = (int32_t)v;

    double d;
    PG_TRY(meta_float(g, arch, "attention.layer_norm_rms_epsilon", 1e-6, &d));
    if (!(d > 0 && d < 1)) return pg_fail(PG_ERR_FORMAT, "model metadata: rms epsilon %g is out of range", d);
    c->norm_eps = (float)d;

    int is_g2 = c->arch == PG_ARCH_GEMMA2;
    PG_TRY(meta_float(g, arch, "attn_logit_softcapping", is_g2 ? 50.0 : 0.0, &d));
    if (d < 0) return pg_fail(PG_ERR_FORMAT, "model metadata: attn_logit_softcapping %g < 0", d);
    c->attn_softcap = (float)d;
    PG_TRY(meta_float(g, arch, "final_logit_softcapping", is_g2 ? 30.0 : 0.0, &d));
    if (d < 0) return pg_fail(PG_ERR_FORMAT, "model metadata: final_logit_softcapping %g < 0", d);
    c->final_softcap = (float)d;

    PG_TRY(meta_int(g, arch, "attention.sliding_window", 0, 4096, &v));
    PG_TRY(check_range("attention.sliding_window", v, 1, 1 << 24)); c->sliding_window = (int32_t)v;

    /* RoPE: gemma2 uses one base; gemma3 uses 10000 on local layers and
     * rope.freq_base (1e6) on global ones, where linear scaling applies. */
    PG_TRY(meta_float(g, arch, "rope.freq_base", is_g2 ? 10000.0 : 1000000.0, &d));
    if (!(d > 1)) return pg_fail(PG_ERR_FORMAT, "model metadata: rope.freq_base %g is out of range", d);
    c->rope_base_global = (float)d;
    c->rope_base_local = is_g2 ? (float)d : 10000.0f;
    c->rope_scale_global = 1.0f;
    if (meta_has(g, arch, "rope.scaling.factor")) {
        const char *kind = "linear";
        char key[128];
        snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
        int64_t kt = pg_gguf_find_key(g, key);
        if (kt >= 0) PG_TRY(pg_gguf_kv_get_str(g, kt, &kind, &len));
        PG_TRY(meta_float(g, arch, "rope.scaling.factor", 1.0, &d));
        if (strcmp(kind, "none") != 0 && d != 0 && d != 1.0) {
            if (strcmp(kind, "linear") != 0)
                return pg_fail(PG_ERR_UNSUPPORTED, "RoPE scaling type '%s' is not supported", kind);
            if (!(d > 0)) return pg_fail(PG_ERR_FORMAT, "model metadata: rope.scaling.factor %g", d);
            c->rope_scale_global = (float)(1.0 / d);
        }
    } else if (meta_has(g, arch, "rope.scale_linear")) {
        PG_TRY(meta_float(g, arch, "rope.scale_linear", 1.0, &d));
        if (!(d > 0)) return pg_fail(PG_ERR_FORMAT, "model metadata: rope.scale_linear %g", d);
        c->rope_scale_global = (float)(1.0 / d);
    }

    /* Gemma 2 alternates sliding (even) and global (odd) layers; Gemma 3 has
     * five sliding layers then one global. */
    for (int l = 0; l < c->n_layer; l++)
        c->is_sliding[l] = is_g2 ? (l % 2 == 0) : ((l + 1) % 6 != 0);

    /* No GGUF key carries query_pre_attn_scalar: llama.cpp uses hidden/heads
     * for the 27B models (46 layers for gemma2, 62 for gemma3) and head_dim
     * otherwise.  A caller-given value (> 0) overrides. */
    float qpas = (float)c->head_dim;
    if ((is_g2 && c->n_layer == 46) || (!is_g2 && c->n_layer == 62))
        qpas = (float)(c->n_embd / c->n_head);
    if (meta_has(g, arch, "attention.query_pre_attn_scalar")) {
        PG_TRY(meta_float(g, arch, "attention.query_pre_attn_scalar", qpas, &d));
        qpas = (float)d;
    }
    if (query_pre_attn_scalar > 0) qpas = query_pre_attn_scalar;
    if (!(qpas > 0)) return pg_fail(PG_ERR_FORMAT, "query_pre_attn_scalar %g is not positive", qpas);
    c->query_scale = 1.0f / sqrtf(qpas);
    return PG_OK;
}

/* ---- tensors ----------------------------------------------------------------------- */

static pg_status find_tensor(const pg_gguf *g, const char *name, int optional, int64_t *out) {
    *out = pg_gguf_find_tensor(g, name);
    if (*out < 0 && !optional) return pg_fail(PG_ERR_FORMAT, "model file lacks tensor '%s'", name);
    return PG_OK;
}

/* A 2-D weight of shape (rows, cols), any supported type. */
static pg_status get_matrix(const pg_gguf *g, const char *name, int64_t rows, int64_t cols, pg_matrix *m) {
    int64_t t;
    PG_TRY(find_tensor(g, name, 0, &t));
    int type = pg_gguf_tensor_type(g, t);
    if (!pg_type_supported(type))
        return pg_fail(PG_ERR_UNSUPPORTED, "tensor '%s' has type %s, which pygemma cannot compute with", name,
                       pg_type_name(type) ? pg_type_name(type) : "?");
    int64_t ne0 = pg_gguf_tensor_dim(g, t, 0), ne1 = pg_gguf_tensor_dim(g, t, 1);
    if (pg_gguf_tensor_ndim(g, t) > 2 || ne0 != cols || (rows > 0 && ne1 != rows))
        return pg_fail(PG_ERR_FORMAT, "tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]", name,
                       (long long)ne0, (long long)ne1, (long long)cols, (long long)rows);
    m->type = type;
    m->data = pg_gguf_tensor_data(g, t);
    m->rows = ne1;
    m->cols = ne0;
    return PG_OK;
}

/* A 1-D F32 vector of length n (norm weights). */
static pg_status get_vector(const pg_gguf *g, const char *name, int64_t n, int optional, const float **out) {
    int64_t t;
    *out = NULL;
    PG_TRY(find_tensor(g, name, optional, &t));
    if (t < 0) return PG_OK;
    if (pg_gguf_tensor_type(g, t) != PG_TYPE_F32)
        return pg_fail(PG_ERR_UNSUPPORTED, "tensor '%s' has type %s; norm weights must be F32", name,
                       pg_type_name(pg_gguf_tensor_type(g, t)));
    if (pg_gguf_tensor_dim(g, t, 0) != n || pg_gguf_tensor_ndim(g, t) != 1)
        return pg_fail(PG_ERR_FORMAT, "tensor '%s' has %lld elements, expected %lld", name,
                       (long long)pg_gguf_tensor_dim(g, t, 0), (long long)n);
    if (((uintptr_t)pg_gguf_tensor_data(g, t)) % 4 != 0)
        return pg_fail(PG_ERR_FORMAT, "tensor '%s' data is not 4-byte aligned", name);
    *out = (const float *)pg_gguf_tensor_data(g, t);
    return PG_OK;
}

pg_status pg_weights_from_gguf(const pg_gguf *g, const pg_config *c, pg_weights *w) {
    memset(w, 0, sizeof *w);
    const int64_t D = c->n_embd, F = c->n_ff, qd = (int64_t)c->n_head * c->head_dim,
                  kvd = (int64_t)c->n_head_kv * c->head_dim;
    PG_TRY(get_matrix(g, "token_embd.weight", -1, D, &w->token_embd));
    if (w->token_embd.rows < 1 || w->token_embd.rows > (1 << 24))
        return pg_fail(PG_ERR_FORMAT, "token_embd.weight has %lld rows", (long long)w->token_embd.rows);
    int64_t t_out;
    PG_TRY(find_tensor(g, "output.weight", 1, &t_out));
    if (t_out >= 0) PG_TRY(get_matrix(g, "output.weight", w->token_embd.rows, D, &w->output));
    else w->output = w->token_embd;      /* tied embeddings */
    PG_TRY(get_vector(g, "output_norm.weight", D, 0, &w->output_norm));

    char name[96];
#define NAME(fmt) (snprintf(name, sizeof name, "blk.%d." fmt, l), name)
    for (int l = 0; l < c->n_layer; l++) {
        pg_layer_weights *L = &w->layers[l];
        PG_TRY(get_vector(g, NAME("attn_norm.weight"), D, 0, &L->attn_norm));
        PG_TRY(get_matrix(g, NAME("attn_q.weight"), qd, D, &L->wq));
        PG_TRY(get_matrix(g, NAME("attn_k.weight"), kvd, D, &L->wk));
        PG_TRY(get_matrix(g, NAME("attn_v.weight"), kvd, D, &L->wv));
        int need_qk_norm = c->arch == PG_ARCH_GEMMA3;
        PG_TRY(get_vector(g, NAME("attn_q_norm.weight"), c->head_dim, !need_qk_norm, &L->q_norm));
        PG_TRY(get_vector(g, NAME("attn_k_norm.weight"), c->head_dim, !need_qk_norm, &L->k_norm));
        PG_TRY(get_matrix(g, NAME("attn_output.weight"), D, qd, &L->wo));
        PG_TRY(get_vector(g, NAME("post_attention_norm.weight"), D, 0, &L->post_attn_norm));
        PG_TRY(get_vector(g, NAME("ffn_norm.weight"), D, 0, &L->ffn_norm));
        PG_TRY(get_matrix(g, NAME("ffn_gate.weight"), F, D, &L->w_gate));
        PG_TRY(get_matrix(g, NAME("ffn_up.weight"), F, D, &L->w_up));
        PG_TRY(get_matrix(g, NAME("ffn_down.weight"), D, F, &L->w_down));
        PG_TRY(get_vector(g, NAME("post_ffw_norm.weight"), D, 0, &L->post_ffn_norm));
    }
#undef NAME
    return PG_OK;
}
