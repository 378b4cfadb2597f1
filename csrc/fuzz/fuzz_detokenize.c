/* fuzz_detokenize.c -- libFuzzer harness: the input is an array of int32 token ids
 * (little-endian, any values: out-of-range and negative ones included) for the decoder.
 *
 * With the default model's vocabulary ($PYGEMMA_FUZZ_VOCAB, built once): pg_detokenize
 * (special 0 and 1) must refuse an invalid id with PG_ERR_ARG, and otherwise equal the
 * concatenation of pg_token_to_piece of each id; every per-token query must work on any id. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

static pg_tokenizer *g_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    g_tok = fuzz_load_vocab();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const int64_t n = (int64_t)(size / sizeof(int32_t)), n_vocab = pg_tokenizer_n_vocab(g_tok);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n + 1);   /* exactly n ids: ASan sees overruns */
    FUZZ_CHECK(ids != NULL);
    if (n) memcpy(ids, data, sizeof(int32_t) * (size_t)n);
    int all_valid = 1;
    for (int64_t i = 0; i < n; i++) all_valid &= ids[i] >= 0 && ids[i] < n_vocab;

    for (int special = 0; special <= 1; special++) {
        size_t len = 0;
        char *text = fuzz_detokenize(g_tok, ids, n, special, 1, &len);
        FUZZ_CHECK((text != NULL) == all_valid);
        /* the pieces, one by one; they concatenate to the text when no leading space is dropped */
        size_t at = 0;
        int same = 1;
        for (int64_t i = 0; i < n; i++) {
            size_t need = 0, got = 0;
            const pg_status st = pg_token_to_piece(g_tok, ids[i], special, NULL, 0, &need);
            if (ids[i] < 0 || ids[i] >= n_vocab) {
                FUZZ_CHECK(st == PG_ERR_ARG);
                continue;
            }
            FUZZ_CHECK(st == PG_OK);
            char *piece = malloc(need + 1);
            FUZZ_CHECK(piece != NULL);
            FUZZ_CHECK(pg_token_to_piece(g_tok, ids[i], special, piece, need, &got) == PG_OK && got == need);
            if (need > 0)
                FUZZ_CHECK(pg_token_to_piece(g_tok, ids[i], special, piece, need - 1, &got) == PG_ERR_ARG);
            if (text && same) {
                if (at + need <= len && memcmp(text + at, piece, need) == 0) at += need;
                else same = 0;
            }
            free(piece);
        }
        if (text && !pg_tokenizer_add_space_prefix(g_tok)) FUZZ_CHECK(same && at == len);
        free(text);
    }

    for (int64_t i = 0; i < n; i++) {
        const int32_t id = ids[i];
        const int valid = id >= 0 && id < n_vocab;
        size_t len = 0;
        const char *s = pg_tokenizer_token_text(g_tok, id, &len);
        FUZZ_CHECK((s != NULL) == valid);
        if (s) {
            fuzz_touch(s, len + 1);
            FUZZ_CHECK(pg_tokenizer_find(g_tok, s, len) == id);   /* texts are unique */
        }
        const int type = pg_tokenizer_token_type(g_tok, id);
        FUZZ_CHECK(valid ? type >= 0 : type == -1);
        (void)pg_tokenizer_token_score(g_tok, id);
        (void)pg_tokenizer_is_eog(g_tok, id);
    }
    free(ids);
    return 0;
}
