/* tokenizer_gguf.c -- build the tokenizer from a GGUF file's tokenizer.ggml.* metadata. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static pg_status find_array(const pg_gguf *g, const char *key, int elem_type, int64_t n_expected,
                            int64_t *index) {
    *index = pg_gguf_find_key(g, key);
    if (*index < 0) return PG_OK;
    if (pg_gguf_kv_arr_type(g, *index) != elem_type)
        return pg_fail(PG_ERR_FORMAT, "metadata '%s' has the wrong element type", key);
    if (n_expected >= 0 && pg_gguf_kv_arr_len(g, *index) != n_expected)
        return pg_fail(PG_ERR_FORMAT, "metadata '%s' has %lld entries, tokenizer.ggml.tokens %lld", key,
                       (long long)pg_gguf_kv_arr_len(g, *index), (long long)n_expected);
    return PG_OK;
}

static pg_status get_opt_int(const pg_gguf *g, const char *key, int32_t *out) {
    int64_t i = pg_gguf_find_key(g, key), v;
    if (i < 0) return PG_OK;
    PG_TRY(pg_gguf_kv_get_int(g, i, &v));
    if (v < -1 || v > INT32_MAX) return pg_fail(PG_ERR_FORMAT, "metadata '%s' = %lld is out of range", key, (long long)v);
    *out = (int32_t)v;
    return PG_OK;
}

PG_API pg_status pg_tokenizer_from_gguf(const pg_gguf *g, pg_tokenizer **out) {
    *out = NULL;
    int64_t km = pg_gguf_find_key(g, "tokenizer.ggml.model");
    if (km < 0) return pg_fail(PG_ERR_FORMAT, "model file has no tokenizer (tokenizer.ggml.model missing)");
    const char *model = NULL;
    uint64_t len = 0;
    PG_TRY(pg_gguf_kv_get_str(g, km, &model, &len));
    if (strcmp(model, "llama") != 0)
        return pg_fail(PG_ERR_UNSUPPORTED, "tokenizer model '%s' is not supported (Gemma uses 'llama')", model);

    int64_t kt, ks, ky;
    PG_TRY(find_array(g, "tokenizer.ggml.tokens", PG_GGUF_STRING, -1, &kt));
    if (kt < 0) return pg_fail(PG_ERR_FORMAT, "model file lacks tokenizer.ggml.tokens");
    const int64_t n = pg_gguf_kv_arr_len(g, kt);
    if (n < 1 || n > (1 << 24)) return pg_fail(PG_ERR_FORMAT, "tokenizer.ggml.tokens has %lld entries", (long long)n);
    PG_TRY(find_array(g, "tokenizer.ggml.scores", PG_GGUF_FLOAT32, n, &ks));
    PG_TRY(find_array(g, "tokenizer.ggml.token_type", PG_GGUF_INT32, n, &ky));

    pg_tokenizer_config cfg;
    pg_tokenizer_config_init(&cfg);
    cfg.n_vocab = n;
    const char **tokens = malloc(sizeof(char *) * (size_t)n);   /* views into the GGUF */
    uint64_t *lens = malloc(sizeof(uint64_t) * (size_t)n);
    float *scores = ks >= 0 ? malloc(sizeof(float) * (size_t)n) : NULL;     /* aligned copies */
    int32_t *types = ky >= 0 ? malloc(sizeof(int32_t) * (size_t)n) : NULL;
    pg_status st = PG_OK;
    if (!tokens || !lens || (ks >= 0 && !scores) || (ky >= 0 && !types)) st = pg_fail(PG_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; st == PG_OK && i < n; i++) st = pg_gguf_kv_arr_str(g, kt, i, &tokens[i], &lens[i]);
    if (st == PG_OK) {
        if (scores) memcpy(scores, pg_gguf_kv_arr_data(g, ks), sizeof(float) * (size_t)n);
        if (types) memcpy(types, pg_gguf_kv_arr_data(g, ky), sizeof(int32_t) * (size_t)n);
        cfg.tokens = tokens;
        cfg.token_lens = lens;
        cfg.scores = scores;
        cfg.types = types;
        int32_t add_bos = cfg.add_bos, add_eos = cfg.add_eos, add_space = cfg.add_space_prefix;
        st = get_opt_int(g, "tokenizer.ggml.bos_token_id", &cfg.bos_id);
        if (st == PG_OK) st = get_opt_int(g, "tokenizer.ggml.eos_token_id", &cfg.eos_id);
        if (st == PG_OK) st = get_opt_int(g, "tokenizer.ggml.unknown_token_id", &cfg.unk_id);
        if (st == PG_OK) st = get_opt_int(g, "tokenizer.ggml.padding_token_id", &cfg.pad_id);
        if (st == PG_OK) st = get_opt_int(g, "tokenizer.ggml.add_bos_token", &add_bos);
        if (st == PG_OK) st = get_opt_int(g, "tokenizer.ggml.add_eos_token", &add_eos);
        if (st == PG_OK) st = get_opt_int(g, "tokenizer.ggml.add_space_prefix", &add_space);
        cfg.add_bos = add_bos;
        cfg.add_eos = add_eos;
        cfg.add_space_prefix = add_space;
    }
    if (st == PG_OK) st = pg_tokenizer_create(&cfg, out);
    if (st != PG_OK) pg_fail_prefix(st, "tokenizer");
    free(tokens);
    free(lens);
    free(scores);
    free(types);
    return st;
}
