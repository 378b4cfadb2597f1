/* tokenizer.h -- the tokenizer's shared state (internal to tokenizer*.c).
 *
 *   tokenizer.c         vocabulary: create/free, piece -> id hash, queries
 *   tokenizer_encode.c  text -> ids (special-token partition + SPM merges)
 *   tokenizer_decode.c  ids -> text (token_to_piece, detokenize)
 */
#ifndef PG_TOKENIZER_H
#define PG_TOKENIZER_H

#include "internal.h"

/* Token attributes as llama.cpp derives them from the GGUF token types (one
 * bit each, so a token may be e.g. control and unused at once). */
enum {
    PG_ATTR_UNDEFINED = 0,
    PG_ATTR_UNKNOWN = 1 << 0,
    PG_ATTR_UNUSED = 1 << 1,
    PG_ATTR_NORMAL = 1 << 2,
    PG_ATTR_CONTROL = 1 << 3,
    PG_ATTR_USER_DEFINED = 1 << 4,
    PG_ATTR_BYTE = 1 << 5
};

/* A trie over the texts of the special (control, user-defined, unknown)
 * tokens, used to find which of them occur in a text in one pass. */
typedef struct {
    int32_t first_child;   /* node index, -1 if none */
    int32_t next_sibling;  /* node index, -1 if none */
    int32_t special;       /* index into special_ids of the token ending here, -1 if none */
    uint8_t byte;          /* the edge byte from the parent */
} pg_trie_node;

struct pg_tokenizer {
    int64_t n_vocab;
    char *text;            /* (text_bytes) every token's text, each followed by a NUL */
    uint64_t *offs;        /* (n_vocab) start of token i in `text` */
    uint32_t *lens;        /* (n_vocab) bytes of token i */
    float *scores;         /* (n_vocab) */
    int32_t *types;        /* (n_vocab) GGUF token type, as given */
    uint32_t *attrs;       /* (n_vocab) PG_ATTR_* bits */

    /* piece -> id: open addressing, linear probing; empty slots hold UINT32_MAX */
    uint32_t *slots;       /* (slot_mask + 1) token ids */
    uint64_t slot_mask;

    int32_t byte_ids[256]; /* token of each byte for the fallback (<0xXX>); -1 if none */
    int32_t bos, eos, unk, pad, eot;
    int add_bos, add_eos, add_space_prefix;
    uint32_t max_token_len;

    /* Special tokens (control | user-defined | unknown) in the order llama.cpp
     * matches them: longer texts first, then lower ids. */
    int32_t *special_ids;  /* (n_special) */
    int64_t n_special;
    pg_trie_node *trie;    /* (n_trie) node 0 is the root */
    int64_t n_trie;

    int32_t *eog_ids;      /* (n_eog) end-of-generation tokens, sorted */
    int64_t n_eog;
};

static inline const char *pg_tok_text(const pg_tokenizer *t, int32_t id) {
    return t->text + t->offs[id];
}

/* Id of the token with text s[0..n), -1 if none. */
int32_t pg_tok_lookup(const pg_tokenizer *t, const char *s, size_t n);

/* A growable array of token ids (the encoder's output). */
typedef struct {
    int32_t *ids;
    int64_t n, cap;
} pg_idvec;

pg_status pg_idvec_push(pg_idvec *v, int32_t id);

#endif
