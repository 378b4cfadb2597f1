/* tokenizer_decode.c -- token ids -> bytes, as llama.cpp's llama_token_to_piece
 * and llama_detokenize for SPM vocabularies.
 *
 *   normal        text with U+2581 turned back into ' '
 *   byte <0xXX>   the byte XX
 *   user-defined  text as is
 *   control, unknown  text as is with `special`, else nothing
 *   unused, undefined nothing
 */
#include <string.h>

#include "tokenizer.h"

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The value of a byte token's text "<0xXX>" (read like strtol: up to two hex
 * digits from offset 3, stopping at the first other character). */
static uint8_t byte_of_token(const char *s, uint32_t n) {
    int v = 0;
    for (uint32_t i = 3; i < 5 && i < n; i++) {
        int d = hex_digit(s[i]);
        if (d < 0) break;
        v = v * 16 + d;
    }
    return (uint8_t)v;
}

/* Write the piece of `id` to dst (room for cap bytes) when it fits, dropping
 * one leading space if lstrip; return its length either way. */
static size_t piece(const pg_tokenizer *t, int32_t id, int special, int lstrip, char *dst, size_t cap) {
    uint32_t attr = t->attrs[id];
    const char *s = pg_tok_text(t, id);
    size_t n = t->lens[id];
    if (attr & (PG_ATTR_UNKNOWN | PG_ATTR_CONTROL)) {
        if (!special) return 0;
    } else if (attr & PG_ATTR_USER_DEFINED) {
        /* as is */
    } else if (attr & PG_ATTR_NORMAL) {
        size_t out = 0;
        for (size_t i = 0; i < n;) {
            char c = s[i];
            if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) { c = ' '; i += 3; }
            else i++;
            if (lstrip) {
                lstrip = 0;
                if (c == ' ') continue;
            }
            if (out < cap) dst[out] = c;
            out++;
        }
        return out;
    } else if (attr & PG_ATTR_BYTE) {
        char b = (char)byte_of_token(s, (uint32_t)n);
        if (lstrip && b == ' ') return 0;
        if (cap >= 1) dst[0] = b;
        return 1;
    } else {
        return 0;  /* unused / undefined */
    }
    if (lstrip && n > 0 && s[0] == ' ') { s++; n--; }
    if (n <= cap) memcpy(dst, s, n);
    return n;
}

PG_API pg_status pg_token_to_piece(const pg_tokenizer *t, int32_t id, int special, char *buf, size_t cap,
                                   size_t *n_out) {
    if (!t) return pg_fail(PG_ERR_ARG, "pg_token_to_piece: tokenizer is NULL");
    if (!n_out) return pg_fail(PG_ERR_ARG, "pg_token_to_piece: n_out is NULL");
    *n_out = 0;
    if (id < 0 || id >= t->n_vocab)
        return pg_fail(PG_ERR_ARG, "invalid token id %d (vocabulary has %lld tokens)", id, (long long)t->n_vocab);
    size_t n = piece(t, id, special, 0, buf, buf ? cap : 0);
    *n_out = n;
    if (buf && n > cap)
        return pg_fail(PG_ERR_ARG, "pg_token_to_piece: room for %zu bytes, %zu needed", cap, n);
    return PG_OK;
}

PG_API pg_status pg_detokenize(const pg_tokenizer *t, const int32_t *ids, int64_t n, int special, char *buf,
                               size_t cap, size_t *n_out) {
    if (!t) return pg_fail(PG_ERR_ARG, "pg_detokenize: tokenizer is NULL");
    if (!n_out) return pg_fail(PG_ERR_ARG, "pg_detokenize: n_out is NULL");
    *n_out = 0;
    if (n < 0 || (!ids && n > 0)) return pg_fail(PG_ERR_ARG, "pg_detokenize: bad id array (n = %lld)", (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return pg_fail(PG_ERR_ARG, "invalid token id %d at position %lld (vocabulary has %lld tokens)", ids[i],
                           (long long)i, (long long)t->n_vocab);
    if (!buf) cap = 0;
    size_t total = 0;
    int lstrip = t->add_space_prefix;  /* undo the space the encoder put in front */
    for (int64_t i = 0; i < n; i++) {
        size_t room = total < cap ? cap - total : 0;
        size_t k = piece(t, ids[i], special, lstrip, buf ? buf + (total < cap ? total : 0) : NULL, room);
        /* a piece that did not fit was not written; later ones must not be either */
        if (k > room) cap = total;
        total += k;
        lstrip = 0;
    }
    *n_out = total;
    if (buf && total > cap)
        return pg_fail(PG_ERR_ARG, "pg_detokenize: room for %zu bytes, %zu needed", cap, total);
    return PG_OK;
}
