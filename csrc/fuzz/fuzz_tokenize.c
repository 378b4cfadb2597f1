/* fuzz_tokenize.c -- libFuzzer harness: the input is text (any bytes) for the encoder.
 *
 * One tokenizer, the default model's real 262k-token Gemma vocabulary (file named by
 * $PYGEMMA_FUZZ_VOCAB), is built once.  Each input is encoded four ways (add_special x
 * parse_special) with the size protocol checked, and decoded again; for valid UTF-8
 * without a special-token prefix, decoding gives the text back (with U+2581 as ' ', which
 * is how SentencePiece stores spaces).  Invalid UTF-8 does not round-trip, by design:
 * llama.cpp's encoder takes a lead byte's length on trust (see tokenizer_encode.c). */
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

/* RFC 3629 UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static int valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        const uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xc2 && c <= 0xdf) { k = 1; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { k = 2; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { k = 3; cp = c & 0x07; }
        else return 0;
        if (n - i - 1 < k) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* text with every U+2581 (e2 96 81) replaced by a space, into out (room for n bytes). */
static size_t spaces_for_u2581(const uint8_t *s, size_t n, uint8_t *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) { out[o++] = ' '; i += 3; }
        else out[o++] = s[i++];
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    const int roundtrip = valid_utf8(data, size) && !pg_tokenizer_add_space_prefix(g_tok);
    int64_t n_plain = -1;
    for (int add_special = 0; add_special <= 1; add_special++) {
        for (int parse_special = 0; parse_special <= 1; parse_special++) {
            /* the size protocol's "too small" cases once per input: each call is a whole encode */
            const int first = !add_special && !parse_special;
            int64_t n = 0;
            int32_t *ids = fuzz_tokenize(g_tok, text, size, add_special, parse_special, first, &n);
            FUZZ_CHECK(ids != NULL);   /* Gemma's vocabulary has all 256 byte tokens */
            if (add_special && pg_tokenizer_add_bos(g_tok)) FUZZ_CHECK(n >= 1 && ids[0] == pg_tokenizer_bos(g_tok));
            if (first) n_plain = n;
            if (add_special && !parse_special)   /* add_special only adds BOS / EOS around the same ids */
                FUZZ_CHECK(n == n_plain + pg_tokenizer_add_bos(g_tok) + pg_tokenizer_add_eos(g_tok));
            for (int special = first ? 0 : 1; special <= 1; special++) {
                size_t len = 0;
                char *back = fuzz_detokenize(g_tok, ids, n, special, first, &len);
                FUZZ_CHECK(back != NULL);   /* the encoder's ids are all valid */
                if (roundtrip && special && !add_special) {
                    uint8_t *want = malloc(size + 1);
                    FUZZ_CHECK(want != NULL);
                    const size_t want_len = spaces_for_u2581(data, size, want);
                    FUZZ_CHECK(len == want_len && memcmp(back, want, len) == 0);
                    free(want);
                }
                free(back);
            }
            free(ids);
        }
    }
    return 0;
}
