/* fuzz_gguf.c -- libFuzzer harness: the input is a GGUF file (or a llamafile).
 *
 * It is opened from memory (pg_gguf_open_memory: the input buffer is exactly the
 * file, so ASan sees any read past its end), every metadata value, nested array
 * and tensor info is queried, and then it goes through the model loader's steps
 * as pg_model_load (model_api.c) takes them after the open: config from the
 * metadata, weight views, the tokenizer, the vocabulary/embedding check.  When a
 * tokenizer comes out of a fuzzed vocabulary, it encodes and decodes a few texts. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "model.h"

static const char *const TEXTS[] = {
    "Hello world", " <start_of_turn>user\nhi<end_of_turn>\n", "\xe2\x96\x81\xe2\x96\x81 a\xff\xc3(",
};

static void check_matrix(const pg_matrix *m) {
    FUZZ_CHECK(m->rows >= 1 && m->cols >= 1);
    const int64_t row = pg_type_row_bytes(m->type, m->cols);
    FUZZ_CHECK(row > 0);
    fuzz_touch(m->data, (uint64_t)row * (uint64_t)m->rows);
}

static void exercise_tokenizer(const pg_tokenizer *tok, const uint8_t *data, size_t size) {
    const int64_t n_vocab = pg_tokenizer_n_vocab(tok);
    FUZZ_CHECK(n_vocab >= 1);
    for (size_t k = 0; k <= sizeof TEXTS / sizeof *TEXTS; k++) {
        /* the fixed texts, then the input's own first bytes */
        const char *text = k < sizeof TEXTS / sizeof *TEXTS ? TEXTS[k] : (const char *)data;
        const size_t len = k < sizeof TEXTS / sizeof *TEXTS ? strlen(text) : (size < 64 ? size : 64);
        int64_t n = 0;
        int32_t *ids = fuzz_tokenize(tok, text, len, (int)(k & 1), 1, 1, &n);
        if (!ids) continue;
        size_t out_len = 0;
        char *out = fuzz_detokenize(tok, ids, n, 1, 1, &out_len);
        FUZZ_CHECK(out != NULL);   /* ids from the encoder are always valid */
        free(out);
        free(ids);
    }
    const int32_t probes[] = {0, (int32_t)(n_vocab - 1), (int32_t)n_vocab, -1, pg_tokenizer_bos(tok),
                              pg_tokenizer_eos(tok), pg_tokenizer_eot(tok), pg_tokenizer_unk(tok)};
    for (size_t i = 0; i < sizeof probes / sizeof *probes; i++) {
        char buf[64];
        size_t n = 0;
        const pg_status st = pg_token_to_piece(tok, probes[i], 1, buf, sizeof buf, &n);
        FUZZ_CHECK(st == PG_OK || st == PG_ERR_ARG);
        (void)pg_tokenizer_is_eog(tok, probes[i]);
        size_t len = 0;
        const char *s = pg_tokenizer_token_text(tok, probes[i], &len);
        if (s) FUZZ_CHECK(pg_tokenizer_find(tok, s, len) == probes[i]);
    }
}

/* pg_model_load's steps after pg_gguf_open (keep in step with model_api.c). */
static void load_model(const pg_gguf *g, const uint8_t *data, size_t size) {
    static pg_config cfg;
    static pg_weights w;   /* big (PG_MAX_LAYERS layers): static, not on the stack */
    pg_status st = pg_config_from_gguf(g, 0.0f, &cfg);
    if (st == PG_OK) {
        FUZZ_CHECK(cfg.n_layer >= 1 && cfg.n_layer <= PG_MAX_LAYERS && cfg.n_embd >= 1 && cfg.n_head >= 1);
        st = pg_weights_from_gguf(g, &cfg, &w);
        if (st == PG_OK) {
            check_matrix(&w.token_embd);
            check_matrix(&w.output);
            fuzz_touch(w.output_norm, sizeof(float) * (size_t)cfg.n_embd);
            for (int l = 0; l < cfg.n_layer; l++) {
                const pg_layer_weights *L = &w.layers[l];
                const pg_matrix *ms[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
                for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) check_matrix(ms[i]);
                fuzz_touch(L->attn_norm, sizeof(float) * (size_t)cfg.n_embd);
                fuzz_touch(L->post_ffn_norm, sizeof(float) * (size_t)cfg.n_embd);
                if (L->q_norm) fuzz_touch(L->q_norm, sizeof(float) * (size_t)cfg.head_dim);
            }
        }
        free(w.vector_copies);   /* allocated even when a later step failed, as in pg_model_free */
        w.vector_copies = NULL;
    }
    /* The tokenizer is built whatever became of the weights, for coverage of odd vocabularies
     * (pg_model_load would have stopped at the first failure). */
    pg_tokenizer *tok = NULL;
    if (pg_tokenizer_from_gguf(g, &tok) == PG_OK) {
        if (st == PG_OK) (void)(pg_tokenizer_n_vocab(tok) > w.token_embd.rows);   /* the loader's check */
        exercise_tokenizer(tok, data, size);
        pg_tokenizer_free(tok);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pg_gguf *g = NULL;
    const pg_status st = pg_gguf_open_memory(data, size, &g);
    if (st != PG_OK) {
        FUZZ_CHECK(g == NULL && (st == PG_ERR_FORMAT || st == PG_ERR_UNSUPPORTED || st == PG_ERR_NOMEM));
        FUZZ_CHECK(pg_last_error()[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(pg_gguf_image_offset(g) + pg_gguf_image_size(g) <= size);
    fuzz_walk_gguf(g);
    load_model(g, data, size);
    pg_gguf_close(g);
    return 0;
}
