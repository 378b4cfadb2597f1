/* tokenizer.c -- the vocabulary: creation, the piece -> id hash, queries.
 *
 * Token attributes follow llama.cpp's llama_vocab::impl::load for "llama"
 * (SPM) vocabularies, including its fix-ups by token text: end-of-turn and
 * fill-in-the-middle tokens become control tokens, and tokens that end
 * generation ("<end_of_turn>", "</s>", ...) are control tokens too.  These
 * matter for encoding: control tokens are only cut out of the text with
 * parse_special, user-defined ones always. */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

/* ---------------------------------------------------------------------- */
/* piece -> id hash                                                        */
/* ---------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;  /* FNV-1a, then a final mix so the low bits spread */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

int32_t pg_tok_lookup(const pg_tokenizer *t, const char *s, size_t n) {
    uint64_t i = hash_bytes(s, n) & t->slot_mask;
    for (;;) {
        uint32_t id = t->slots[i];
        if (id == UINT32_MAX) return -1;
        if (t->lens[id] == n && memcmp(pg_tok_text(t, (int32_t)id), s, n) == 0) return (int32_t)id;
        i = (i + 1) & t->slot_mask;
    }
}

/* Insert every token; a text seen twice is an error, as in llama.cpp. */
static pg_status build_hash(pg_tokenizer *t) {
    uint64_t nslots = 1;
    while (nslots < (uint64_t)t->n_vocab * 2) nslots <<= 1;
    t->slots = malloc(nslots * sizeof *t->slots);
    if (!t->slots) return pg_fail(PG_ERR_NOMEM, "tokenizer: no memory for the piece table");
    memset(t->slots, 0xff, nslots * sizeof *t->slots);
    t->slot_mask = nslots - 1;
    for (int64_t id = 0; id < t->n_vocab; id++) {
        const char *s = pg_tok_text(t, (int32_t)id);
        uint64_t i = hash_bytes(s, t->lens[id]) & t->slot_mask;
        while (t->slots[i] != UINT32_MAX) {
            uint32_t other = t->slots[i];
            if (t->lens[other] == t->lens[id] && memcmp(pg_tok_text(t, (int32_t)other), s, t->lens[id]) == 0)
                return pg_fail(PG_ERR_ARG, "tokenizer: duplicate token '%.64s' has ids %u and %lld",
                               s, other, (long long)id);
            i = (i + 1) & t->slot_mask;
        }
        t->slots[i] = (uint32_t)id;
    }
    return PG_OK;
}

static int32_t find_cstr(const pg_tokenizer *t, const char *s) { return pg_tok_lookup(t, s, strlen(s)); }

/* ---------------------------------------------------------------------- */
/* attributes fixed up by token text (llama.cpp's load)                    */
/* ---------------------------------------------------------------------- */

/* Each list: the texts llama.cpp recognises for one role; the first present wins. */
static const char *const EOT_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
    "<end_of_utterance>", NULL};
static const char *const EOM_TEXTS[] = {"<|eom_id|>", NULL};
static const char *const FIM_PRE_TEXTS[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>",
    "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL};
static const char *const FIM_SUF_TEXTS[] = {
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>",
    "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL};
static const char *const FIM_MID_TEXTS[] = {
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>",
    "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL};
static const char *const FIM_PAD_TEXTS[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
static const char *const FIM_REP_TEXTS[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL};
static const char *const FIM_SEP_TEXTS[] = {"<|file_sep|>", NULL};
/* Tokens that end generation, all of them (each becomes a control token). */
static const char *const EOG_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[", NULL};
/* gpt-oss channel markers: always rendered, so user-defined. */
static const char *const ALWAYS_RENDERED[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};

/* First token of `texts` present in the vocabulary (made a control token), -1 if none. */
static int32_t detect_role(pg_tokenizer *t, const char *const *texts) {
    for (int i = 0; texts[i]; i++) {
        int32_t id = find_cstr(t, texts[i]);
        if (id >= 0) {
            t->attrs[id] |= PG_ATTR_CONTROL;
            return id;
        }
    }
    return -1;
}

static int eog_add(int32_t *eog, int64_t *n, int32_t id) {
    if (id < 0) return 0;
    for (int64_t i = 0; i < *n; i++)
        if (eog[i] == id) return 0;
    eog[(*n)++] = id;
    return 1;
}

static void eog_remove(int32_t *eog, int64_t *n, int32_t id) {
    for (int64_t i = 0; i < *n; i++)
        if (eog[i] == id) { eog[i] = eog[--*n]; return; }
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static pg_status fix_attrs_by_text(pg_tokenizer *t) {
    t->eot = detect_role(t, EOT_TEXTS);
    int32_t eom = detect_role(t, EOM_TEXTS);
    detect_role(t, FIM_PRE_TEXTS);
    detect_role(t, FIM_SUF_TEXTS);
    detect_role(t, FIM_MID_TEXTS);
    int32_t fim_pad = detect_role(t, FIM_PAD_TEXTS);
    int32_t fim_rep = detect_role(t, FIM_REP_TEXTS);
    int32_t fim_sep = detect_role(t, FIM_SEP_TEXTS);

    /* control tokens named "unused..." are unused ones as well */
    for (int64_t id = 0; id < t->n_vocab; id++)
        if ((t->attrs[id] & PG_ATTR_CONTROL) && memmem(pg_tok_text(t, (int32_t)id), t->lens[id], "unused", 6))
            t->attrs[id] |= PG_ATTR_UNUSED;

    size_t cap = sizeof EOG_TEXTS / sizeof EOG_TEXTS[0] + 8;
    int32_t *eog = malloc(cap * sizeof *eog);
    if (!eog) return pg_fail(PG_ERR_NOMEM, "tokenizer: no memory");
    int64_t n = 0;
    eog_add(eog, &n, fim_pad);
    eog_add(eog, &n, fim_rep);
    eog_add(eog, &n, fim_sep);
    for (int i = 0; EOG_TEXTS[i]; i++) {
        int32_t id = find_cstr(t, EOG_TEXTS[i]);
        if (id >= 0) {
            eog_add(eog, &n, id);
            t->attrs[id] |= PG_ATTR_CONTROL;
        }
    }
    for (int i = 0; ALWAYS_RENDERED[i]; i++) {
        int32_t id = find_cstr(t, ALWAYS_RENDERED[i]);
        if (id >= 0) t->attrs[id] = PG_ATTR_USER_DEFINED;
    }
    eog_add(eog, &n, t->eos);
    eog_add(eog, &n, t->eot);
    eog_add(eog, &n, eom);

    /* o200k_harmony / solar-open: with "<|return|>" and "<|call|>" (or "<|calls|>"
     * and "<|flush|>"), "<|end|>" does not end generation and is user-defined. */
    int32_t ret = find_cstr(t, "<|return|>"), call = find_cstr(t, "<|call|>");
    int32_t calls = find_cstr(t, "<|calls|>"), flush = find_cstr(t, "<|flush|>"), end = find_cstr(t, "<|end|>");
    if (end >= 0 && ((ret >= 0 && (call >= 0 || calls >= 0)) || ((call >= 0 || calls >= 0) && flush >= 0))) {
        eog_remove(eog, &n, end);
        t->attrs[end] = PG_ATTR_USER_DEFINED;
    }
    /* gemma4 / paddleocr: with "<|tool_response>", "</s>" is an ordinary token. */
    int32_t tool = find_cstr(t, "<|tool_response>"), s_end = find_cstr(t, "</s>");
    if (tool >= 0 && s_end >= 0) {
        eog_remove(eog, &n, s_end);
        t->attrs[s_end] = PG_ATTR_NORMAL;
    }
    qsort(eog, (size_t)n, sizeof *eog, cmp_i32);
    t->eog_ids = eog;
    t->n_eog = n;
    return PG_OK;
}

/* ---------------------------------------------------------------------- */
/* special tokens: match order and trie                                    */
/* ---------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static pg_status build_specials(pg_tokenizer *t) {
    const uint32_t SPECIAL = PG_ATTR_CONTROL | PG_ATTR_USER_DEFINED | PG_ATTR_UNKNOWN;
    int64_t n = 0, trie_cap = 1;
    for (int64_t id = 0; id < t->n_vocab; id++)
        if (t->attrs[id] & SPECIAL) { n++; trie_cap += t->lens[id]; }
    t->special_ids = malloc((size_t)(n ? n : 1) * sizeof *t->special_ids);
    t->trie = malloc((size_t)trie_cap * sizeof *t->trie);
    uint64_t *keys = malloc((size_t)(n ? n : 1) * sizeof *keys);  /* (n) (~len << 32 | id) */
    if (!t->special_ids || !t->trie || !keys) {
        free(keys);
        return pg_fail(PG_ERR_NOMEM, "tokenizer: no memory for special tokens");
    }
    n = 0;
    for (int64_t id = 0; id < t->n_vocab; id++)
        if (t->attrs[id] & SPECIAL) keys[n++] = (uint64_t)(UINT32_MAX - t->lens[id]) << 32 | (uint64_t)id;
    /* Longer texts first.  llama.cpp sorts by length only (std::sort, not
     * stable), so the order of equal-length special tokens that overlap in a
     * text is unspecified there; we break such ties by id. */
    qsort(keys, (size_t)n, sizeof *keys, cmp_u64);
    for (int64_t k = 0; k < n; k++) t->special_ids[k] = (int32_t)(keys[k] & 0xffffffffu);
    free(keys);
    t->n_special = n;

    t->trie[0] = (pg_trie_node){-1, -1, -1, 0};
    t->n_trie = 1;
    for (int64_t k = 0; k < n; k++) {
        int32_t id = t->special_ids[k];
        const uint8_t *s = (const uint8_t *)pg_tok_text(t, id);
        int32_t node = 0;
        for (uint32_t i = 0; i < t->lens[id]; i++) {
            int32_t c = t->trie[node].first_child;
            while (c >= 0 && t->trie[c].byte != s[i]) c = t->trie[c].next_sibling;
            if (c < 0) {
                c = (int32_t)t->n_trie++;
                t->trie[c] = (pg_trie_node){-1, t->trie[node].first_child, -1, s[i]};
                t->trie[node].first_child = c;
            }
            node = c;
        }
        t->trie[node].special = (int32_t)k;  /* texts are unique, so one token per node */
    }
    return PG_OK;
}

/* ---------------------------------------------------------------------- */
/* create / free                                                           */
/* ---------------------------------------------------------------------- */

PG_API void pg_tokenizer_config_init(pg_tokenizer_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->bos_id = 1;
    cfg->eos_id = 2;
    cfg->unk_id = 0;
    cfg->pad_id = -1;
    cfg->add_bos = 1;
    cfg->add_eos = 0;
    cfg->add_space_prefix = 1;
}

static uint32_t attr_of_type(int32_t type) {
    switch (type) {
    case PG_TOKEN_NORMAL: return PG_ATTR_NORMAL;
    case PG_TOKEN_UNKNOWN: return PG_ATTR_UNKNOWN;
    case PG_TOKEN_CONTROL: return PG_ATTR_CONTROL;
    case PG_TOKEN_USER_DEFINED: return PG_ATTR_USER_DEFINED;
    case PG_TOKEN_UNUSED: return PG_ATTR_UNUSED;
    case PG_TOKEN_BYTE: return PG_ATTR_BYTE;
    default: return PG_ATTR_UNDEFINED;
    }
}

static pg_status check_id(const pg_tokenizer_config *cfg, int32_t id, const char *what) {
    if (id < -1 || id >= cfg->n_vocab)
        return pg_fail(PG_ERR_ARG, "tokenizer: %s id %d is outside the vocabulary of %lld tokens",
                       what, id, (long long)cfg->n_vocab);
    return PG_OK;
}

/* Copy the texts into one block; empty texts become "[EMPTY_<id>]" as in llama.cpp. */
static pg_status copy_texts(pg_tokenizer *t, const pg_tokenizer_config *cfg) {
    int64_t nv = cfg->n_vocab;
    uint64_t total = 0;
    char empty[32];
    for (int64_t i = 0; i < nv; i++) {
        if (!cfg->tokens[i]) return pg_fail(PG_ERR_ARG, "tokenizer: token %lld has no text", (long long)i);
        uint64_t n = cfg->token_lens ? cfg->token_lens[i] : strlen(cfg->tokens[i]);
        if (n > (1u << 30)) return pg_fail(PG_ERR_ARG, "tokenizer: token %lld is %llu bytes long", (long long)i,
                                           (unsigned long long)n);
        if (n == 0) n = (uint64_t)snprintf(empty, sizeof empty, "[EMPTY_%lld]", (long long)i);
        t->lens[i] = (uint32_t)n;
        t->offs[i] = total;
        total += n + 1;
        if (n > t->max_token_len) t->max_token_len = (uint32_t)n;
    }
    t->text = malloc(total ? total : 1);
    if (!t->text) return pg_fail(PG_ERR_NOMEM, "tokenizer: no memory for %llu bytes of token text",
                                 (unsigned long long)total);
    for (int64_t i = 0; i < nv; i++) {
        char *dst = t->text + t->offs[i];
        uint64_t given = cfg->token_lens ? cfg->token_lens[i] : strlen(cfg->tokens[i]);
        if (given == 0) snprintf(dst, t->lens[i] + 1, "[EMPTY_%lld]", (long long)i);
        else memcpy(dst, cfg->tokens[i], t->lens[i]);
        dst[t->lens[i]] = '\0';
    }
    return PG_OK;
}

/* The token for byte b in the fallback: "<0xXX>", else the one-byte text. */
static int32_t byte_token(const pg_tokenizer *t, int b) {
    static const char HEX[] = "0123456789ABCDEF";
    char s[6] = {'<', '0', 'x', HEX[b >> 4], HEX[b & 15], '>'};
    int32_t id = pg_tok_lookup(t, s, 6);
    if (id >= 0) return id;
    char c = (char)b;
    return pg_tok_lookup(t, &c, 1);
}

static pg_status create(const pg_tokenizer_config *cfg, pg_tokenizer *t) {
    int64_t nv = cfg->n_vocab;
    t->n_vocab = nv;
    t->offs = malloc((size_t)nv * sizeof *t->offs);
    t->lens = malloc((size_t)nv * sizeof *t->lens);
    t->scores = malloc((size_t)nv * sizeof *t->scores);
    t->types = malloc((size_t)nv * sizeof *t->types);
    t->attrs = malloc((size_t)nv * sizeof *t->attrs);
    if (!t->offs || !t->lens || !t->scores || !t->types || !t->attrs)
        return pg_fail(PG_ERR_NOMEM, "tokenizer: no memory for %lld tokens", (long long)nv);
    PG_TRY(copy_texts(t, cfg));
    for (int64_t i = 0; i < nv; i++) {
        t->scores[i] = cfg->scores ? cfg->scores[i] : 0.0f;
        t->types[i] = cfg->types ? cfg->types[i] : PG_TOKEN_NORMAL;
        t->attrs[i] = attr_of_type(t->types[i]);
    }
    PG_TRY(build_hash(t));
    t->bos = cfg->bos_id;
    t->eos = cfg->eos_id;
    t->unk = cfg->unk_id;
    t->pad = cfg->pad_id;
    t->add_bos = cfg->add_bos != 0;
    t->add_eos = cfg->add_eos != 0;
    t->add_space_prefix = cfg->add_space_prefix != 0;
    for (int b = 0; b < 256; b++) t->byte_ids[b] = byte_token(t, b);
    PG_TRY(fix_attrs_by_text(t));
    return build_specials(t);
}

PG_API pg_status pg_tokenizer_create(const pg_tokenizer_config *cfg, pg_tokenizer **out) {
    if (!out) return pg_fail(PG_ERR_ARG, "pg_tokenizer_create: out is NULL");
    *out = NULL;
    if (!cfg) return pg_fail(PG_ERR_ARG, "pg_tokenizer_create: cfg is NULL");
    if (cfg->n_vocab <= 0 || cfg->n_vocab >= INT32_MAX)
        return pg_fail(PG_ERR_ARG, "tokenizer: n_vocab %lld is not a usable vocabulary size", (long long)cfg->n_vocab);
    if (!cfg->tokens) return pg_fail(PG_ERR_ARG, "tokenizer: the token texts are missing");
    PG_TRY(check_id(cfg, cfg->bos_id, "bos"));
    PG_TRY(check_id(cfg, cfg->eos_id, "eos"));
    PG_TRY(check_id(cfg, cfg->unk_id, "unk"));
    PG_TRY(check_id(cfg, cfg->pad_id, "pad"));
    if (cfg->add_bos && cfg->bos_id < 0)
        return pg_fail(PG_ERR_ARG, "tokenizer: add_bos is set but there is no bos token");
    if (cfg->add_eos && cfg->eos_id < 0)
        return pg_fail(PG_ERR_ARG, "tokenizer: add_eos is set but there is no eos token");
    pg_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return pg_fail(PG_ERR_NOMEM, "tokenizer: no memory");
    pg_status s = create(cfg, t);
    if (s != PG_OK) {
        pg_tokenizer_free(t);
        return s;
    }
    *out = t;
    return PG_OK;
}

PG_API void pg_tokenizer_free(pg_tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->offs);
    free(t->lens);
    free(t->scores);
    free(t->types);
    free(t->attrs);
    free(t->slots);
    free(t->special_ids);
    free(t->trie);
    free(t->eog_ids);
    free(t);
}

/* ---------------------------------------------------------------------- */
/* queries                                                                 */
/* ---------------------------------------------------------------------- */

PG_API int64_t pg_tokenizer_n_vocab(const pg_tokenizer *t) { return t ? t->n_vocab : 0; }
PG_API int32_t pg_tokenizer_bos(const pg_tokenizer *t) { return t ? t->bos : -1; }
PG_API int32_t pg_tokenizer_eos(const pg_tokenizer *t) { return t ? t->eos : -1; }
PG_API int32_t pg_tokenizer_unk(const pg_tokenizer *t) { return t ? t->unk : -1; }
PG_API int32_t pg_tokenizer_pad(const pg_tokenizer *t) { return t ? t->pad : -1; }
PG_API int32_t pg_tokenizer_eot(const pg_tokenizer *t) { return t ? t->eot : -1; }
PG_API int pg_tokenizer_add_bos(const pg_tokenizer *t) { return t ? t->add_bos : 0; }
PG_API int pg_tokenizer_add_eos(const pg_tokenizer *t) { return t ? t->add_eos : 0; }
PG_API int pg_tokenizer_add_space_prefix(const pg_tokenizer *t) { return t ? t->add_space_prefix : 0; }

PG_API int pg_tokenizer_is_eog(const pg_tokenizer *t, int32_t id) {
    if (!t || id < 0) return 0;
    return bsearch(&id, t->eog_ids, (size_t)t->n_eog, sizeof id, cmp_i32) != NULL;
}

PG_API int32_t pg_tokenizer_find(const pg_tokenizer *t, const char *piece, size_t len) {
    if (!t || (!piece && len)) return -1;
    return pg_tok_lookup(t, piece ? piece : "", len);
}

PG_API int pg_tokenizer_token_type(const pg_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_vocab) return -1;
    return t->types[id];
}

PG_API float pg_tokenizer_token_score(const pg_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_vocab) return 0.0f;
    return t->scores[id];
}

PG_API const char *pg_tokenizer_token_text(const pg_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    if (len) *len = t->lens[id];
    return pg_tok_text(t, id);
}

pg_status pg_idvec_push(pg_idvec *v, int32_t id) {
    if (v->n == v->cap) {
        int64_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *ids = realloc(v->ids, (size_t)cap * sizeof *ids);
        if (!ids) return pg_fail(PG_ERR_NOMEM, "tokenizer: no memory for %lld token ids", (long long)cap);
        v->ids = ids;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return PG_OK;
}
