/* tokenizer_encode.c -- text -> token ids, as llama.cpp's SPM tokenizer.
 *
 * Two stages, both as in llama.cpp (src/llama-vocab.cpp):
 *  1. partition: special tokens are cut out of the raw text, one token text at
 *     a time in match order (longest first), each at its leftmost
 *     non-overlapping occurrences in the still-raw fragments.  User-defined
 *     tokens (Gemma's "\n\n", "    ", "<table>") always take part; control
 *     and unknown tokens only with parse_special.
 *  2. each raw fragment: spaces become U+2581 (plus one leading space when
 *     add_space_prefix and the fragment follows a special token or starts the
 *     text), the bytes are split into UTF-8 characters, and adjacent symbols
 *     are merged greedily -- highest score first, leftmost on ties -- while
 *     their concatenation is a token.  A final symbol that is no token is
 *     emitted as byte tokens <0xXX>.
 */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

/* ---------------------------------------------------------------------- */
/* stage 1: special-token partition                                        */
/* ---------------------------------------------------------------------- */

typedef struct {
    int64_t off, len;  /* raw text text[off .. off+len) when tok < 0 */
    int32_t tok;       /* a special token, or -1 for raw text */
} fragment;

typedef struct {
    fragment *v;
    int64_t n, cap;
} fragvec;

static pg_status frag_push(fragvec *f, int64_t off, int64_t len, int32_t tok) {
    if (f->n == f->cap) {
        int64_t cap = f->cap ? f->cap * 2 : 16;
        fragment *v = realloc(f->v, (size_t)cap * sizeof *v);
        if (!v) return pg_fail(PG_ERR_NOMEM, "tokenize: no memory for %lld text fragments", (long long)cap);
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = (fragment){off, len, tok};
    return PG_OK;
}

static int special_allowed(const pg_tokenizer *t, int32_t id, int parse_special) {
    return parse_special || !(t->attrs[id] & (PG_ATTR_CONTROL | PG_ATTR_UNKNOWN));
}

/* seen (n_special) = 1 for each allowed special token occurring in text.
 * One pass with the trie instead of one search per special token (Gemma has
 * over 6000 of them). */
static void find_specials(const pg_tokenizer *t, const uint8_t *text, int64_t len, int parse_special,
                          uint8_t *seen) {
    int32_t root[256];  /* child of the root for each first byte, -1 if none */
    for (int b = 0; b < 256; b++) root[b] = -1;
    for (int32_t c = t->trie[0].first_child; c >= 0; c = t->trie[c].next_sibling) root[t->trie[c].byte] = c;
    for (int64_t i = 0; i < len; i++) {
        int32_t node = root[text[i]];
        for (int64_t j = i + 1; node >= 0; j++) {
            int32_t k = t->trie[node].special;
            if (k >= 0 && special_allowed(t, t->special_ids[k], parse_special)) seen[k] = 1;
            if (j >= len) break;
            int32_t c = t->trie[node].first_child;
            while (c >= 0 && t->trie[c].byte != text[j]) c = t->trie[c].next_sibling;
            node = c;
        }
    }
}

/* Split the raw fragments of `in` at every leftmost non-overlapping
 * occurrence of token `id`; the result goes to `out`. */
static pg_status split_by(const pg_tokenizer *t, const char *text, const fragvec *in, int32_t id, fragvec *out) {
    const char *pat = pg_tok_text(t, id);
    int64_t plen = t->lens[id];
    out->n = 0;
    for (int64_t i = 0; i < in->n; i++) {
        fragment f = in->v[i];
        if (f.tok >= 0) {
            PG_TRY(frag_push(out, 0, 0, f.tok));
            continue;
        }
        int64_t off = f.off, rem = f.len;
        while (rem > 0) {
            const char *p = memmem(text + off, (size_t)rem, pat, (size_t)plen);
            if (!p) {
                PG_TRY(frag_push(out, off, rem, -1));
                break;
            }
            int64_t at = p - text;
            if (at > off) PG_TRY(frag_push(out, off, at - off, -1));
            PG_TRY(frag_push(out, 0, 0, id));
            rem -= at - off + plen;
            off = at + plen;
        }
    }
    return PG_OK;
}

/* *out = the partition of text[0..len): raw fragments and special tokens. */
static pg_status partition(const pg_tokenizer *t, const char *text, int64_t len, int parse_special,
                           fragvec *out) {
    fragvec other = {0};
    uint8_t *seen = calloc((size_t)(t->n_special ? t->n_special : 1), 1);  /* (n_special) */
    pg_status s = seen ? PG_OK : pg_fail(PG_ERR_NOMEM, "tokenize: no memory");
    if (s == PG_OK && len > 0) s = frag_push(out, 0, len, -1);
    if (s == PG_OK && len > 0) find_specials(t, (const uint8_t *)text, len, parse_special, seen);
    for (int64_t k = 0; s == PG_OK && k < t->n_special; k++) {
        if (!seen[k]) continue;
        s = split_by(t, text, out, t->special_ids[k], &other);
        fragvec tmp = *out;
        *out = other;
        other = tmp;
    }
    free(other.v);
    free(seen);
    return s;
}

/* ---------------------------------------------------------------------- */
/* stage 2: score-ordered merges of one raw fragment                       */
/* ---------------------------------------------------------------------- */

typedef struct {
    int64_t start;     /* byte offset in the escaped text */
    int64_t n;         /* bytes; 0 once merged into its left neighbour */
    int32_t prev, next;
} symbol;

typedef struct {
    float score;
    int32_t left, right;
    int64_t size;      /* bytes of left + right when queued; stale if they changed */
} bigram;

typedef struct {
    const pg_tokenizer *t;
    char *buf;         /* (cap_buf) escaped text of the fragment */
    symbol *sym;       /* (cap_sym) */
    bigram *heap;      /* (cap_heap) binary max-heap */
    int64_t cap_buf, cap_sym, cap_heap, n_heap;
} spm_scratch;

/* a is merged before b: higher score first, then the leftmost pair. */
static int before(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static pg_status heap_push(spm_scratch *w, bigram g) {
    if (w->n_heap == w->cap_heap) {
        int64_t cap = w->cap_heap ? w->cap_heap * 2 : 64;
        bigram *h = realloc(w->heap, (size_t)cap * sizeof *h);
        if (!h) return pg_fail(PG_ERR_NOMEM, "tokenize: no memory for the merge queue");
        w->heap = h;
        w->cap_heap = cap;
    }
    int64_t i = w->n_heap++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!before(&g, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = g;
    return PG_OK;
}

static bigram heap_pop(spm_scratch *w) {
    bigram top = w->heap[0], last = w->heap[--w->n_heap];
    int64_t i = 0, n = w->n_heap;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n > 0) w->heap[i] = last;
    return top;
}

/* Queue the merge of symbols left and right if their text is a token. */
static pg_status try_bigram(spm_scratch *w, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return PG_OK;
    int64_t n = w->sym[left].n + w->sym[right].n;
    int32_t id = pg_tok_lookup(w->t, w->buf + w->sym[left].start, (size_t)n);
    if (id < 0) return PG_OK;
    return heap_push(w, (bigram){w->t->scores[id], left, right, n});
}

static pg_status reserve(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return PG_OK;
    void *q = realloc(*p, (size_t)need * elem);
    if (!q) return pg_fail(PG_ERR_NOMEM, "tokenize: no memory for %lld bytes", (long long)(need * (int64_t)elem));
    *p = q;
    *cap = need;
    return PG_OK;
}

static const int UTF8_LEN[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};

static pg_status spm_fragment(spm_scratch *w, const char *raw, int64_t len, int space_prefix, pg_idvec *out) {
    const pg_tokenizer *t = w->t;
    /* escape: ' ' -> U+2581 (3 bytes) */
    PG_TRY(reserve((void **)&w->buf, &w->cap_buf, 3 * (len + 1), 1));
    int64_t n = 0;
    if (space_prefix) { memcpy(w->buf, "\xe2\x96\x81", 3); n = 3; }
    for (int64_t i = 0; i < len; i++) {
        if (raw[i] == ' ') { memcpy(w->buf + n, "\xe2\x96\x81", 3); n += 3; }
        else w->buf[n++] = raw[i];
    }
    if (n > INT32_MAX) return pg_fail(PG_ERR_ARG, "tokenize: a text run of %lld bytes is too long", (long long)n);

    /* one symbol per UTF-8 character (by its lead byte; cut short at the end) */
    PG_TRY(reserve((void **)&w->sym, &w->cap_sym, n, sizeof *w->sym));
    int32_t ns = 0;
    for (int64_t off = 0; off < n; ns++) {
        int64_t cl = UTF8_LEN[(uint8_t)w->buf[off] >> 4];
        if (cl > n - off) cl = n - off;
        w->sym[ns] = (symbol){off, cl, ns - 1, off + cl == n ? -1 : ns + 1};
        off += cl;
    }

    w->n_heap = 0;
    for (int32_t i = 1; i < ns; i++) PG_TRY(try_bigram(w, i - 1, i));
    while (w->n_heap > 0) {
        bigram g = heap_pop(w);
        symbol *l = &w->sym[g.left], *r = &w->sym[g.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != g.size) continue;  /* a side merged since */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = g.left;
        PG_TRY(try_bigram(w, l->prev, g.left));
        PG_TRY(try_bigram(w, g.left, l->next));
    }

    for (int32_t i = ns ? 0 : -1; i >= 0; i = w->sym[i].next) {
        const char *s = w->buf + w->sym[i].start;
        int32_t id = pg_tok_lookup(t, s, (size_t)w->sym[i].n);
        if (id >= 0) {
            PG_TRY(pg_idvec_push(out, id));
            continue;
        }
        for (int64_t j = 0; j < w->sym[i].n; j++) {
            int32_t b = t->byte_ids[(uint8_t)s[j]];
            if (b < 0)
                return pg_fail(PG_ERR_UNSUPPORTED, "tokenize: the vocabulary has no token for byte 0x%02X",
                               (uint8_t)s[j]);
            PG_TRY(pg_idvec_push(out, b));
        }
    }
    return PG_OK;
}

/* ---------------------------------------------------------------------- */
/* public entry                                                            */
/* ---------------------------------------------------------------------- */

static pg_status encode(const pg_tokenizer *t, const char *text, int64_t len, int add_special,
                        int parse_special, pg_idvec *out) {
    fragvec frags = {0};
    spm_scratch w = {.t = t};
    pg_status s = partition(t, text, len, parse_special, &frags);
    if (s == PG_OK && add_special && t->add_bos) s = pg_idvec_push(out, t->bos);
    int prev_special = 1;  /* the text's start counts as following a special token */
    for (int64_t i = 0; s == PG_OK && i < frags.n; i++) {
        const fragment *f = &frags.v[i];
        if (f->tok >= 0) {
            s = pg_idvec_push(out, f->tok);
            prev_special = 1;
        } else {
            s = spm_fragment(&w, text + f->off, f->len, t->add_space_prefix && prev_special, out);
            prev_special = 0;
        }
    }
    if (s == PG_OK && add_special && t->add_eos) s = pg_idvec_push(out, t->eos);
    free(frags.v);
    free(w.buf);
    free(w.sym);
    free(w.heap);
    return s;
}

PG_API pg_status pg_tokenize(const pg_tokenizer *t, const char *text, size_t len, int add_special,
                             int parse_special, int32_t *out, int64_t cap, int64_t *n_out) {
    if (!t) return pg_fail(PG_ERR_ARG, "pg_tokenize: tokenizer is NULL");
    if (!n_out) return pg_fail(PG_ERR_ARG, "pg_tokenize: n_out is NULL");
    *n_out = 0;
    if (!text && len) return pg_fail(PG_ERR_ARG, "pg_tokenize: text is NULL");
    if (len > (size_t)INT64_MAX / 4) return pg_fail(PG_ERR_ARG, "pg_tokenize: text of %zu bytes is too long", len);
    pg_idvec ids = {0};
    pg_status s = encode(t, text ? text : "", (int64_t)len, add_special, parse_special, &ids);
    if (s == PG_OK) {
        *n_out = ids.n;
        if (out && cap < ids.n)
            s = pg_fail(PG_ERR_ARG, "pg_tokenize: room for %lld token ids, %lld needed", (long long)cap,
                        (long long)ids.n);
        else if (out && ids.n)
            memcpy(out, ids.ids, (size_t)ids.n * sizeof *out);
    }
    free(ids.ids);
    return s;
}
