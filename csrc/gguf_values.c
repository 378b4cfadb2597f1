/* gguf_values.c -- GGUF metadata values: parsing them out of the image and the
 * typed getters on value handles.
 *
 * A value handle is a node index (see gguf_internal.h).  Every key's value has
 * one, and so has every element of an array of arrays, so nested arrays of any
 * depth (up to PG_GGUF_MAX_DEPTH) can be walked from C. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_internal.h"

/* Bytes of one scalar of each value type; 0 for STRING and ARRAY. */
static const uint8_t g_value_size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const g_value_name[13] = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
    "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};

static int is_value_type(uint32_t t) { return t <= PG_GGUF_FLOAT64; }
static int is_numeric(int t) { return t >= 0 && t <= PG_GGUF_FLOAT64 && g_value_size[t] != 0; }

const char *pg_gguf_value_type_name(int type) {
    return type >= 0 && type <= PG_GGUF_FLOAT64 ? g_value_name[type] : "unknown";
}

PG_API const char *pg_gguf_type_name(int type) {
    return type >= 0 && type <= PG_GGUF_FLOAT64 ? g_value_name[type] : NULL;
}

PG_API int pg_gguf_type_size(int type) {
    return type >= 0 && type <= PG_GGUF_FLOAT64 ? g_value_size[type] : 0;
}

const char *pg_gguf_quote(char *buf, size_t bufsize, const char *s, uint64_t len) {
    /* buf: (bufsize >= 16) chars.  Non-printable bytes become \xNN; long names end in "...". */
    size_t o = 0;
    buf[o++] = '\'';
    for (uint64_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o + 9 >= bufsize) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') buf[o++] = (char)c;
        else o += (size_t)snprintf(buf + o, bufsize - o, "\\x%02x", c);
    }
    buf[o++] = '\'';
    buf[o] = '\0';
    return buf;
}

/* ---- pools (grow by doubling; addressed by index) ---------------------- */

static pg_status grow(void **p, uint64_t *cap, uint64_t need, size_t elem) {
    if (need <= *cap) return PG_OK;
    uint64_t cap2 = *cap ? *cap : 64;
    while (cap2 < need) cap2 *= 2;
    if (cap2 > SIZE_MAX / elem) return pg_fail(PG_ERR_NOMEM, "GGUF metadata too large");
    void *q = realloc(*p, (size_t)(cap2 * elem));
    if (!q) return pg_fail(PG_ERR_NOMEM, "out of memory for %llu bytes of GGUF metadata",
                           (unsigned long long)(cap2 * elem));
    *p = q;
    *cap = cap2;
    return PG_OK;
}

static pg_status reserve_nodes(pg_gguf *g, uint64_t n, int64_t *first) {
    uint64_t cap = (uint64_t)g->cap_nodes;
    PG_TRY(grow((void **)&g->nodes, &cap, (uint64_t)g->n_nodes + n, sizeof *g->nodes));
    g->cap_nodes = (int64_t)cap;
    *first = g->n_nodes;
    memset(g->nodes + g->n_nodes, 0, (size_t)n * sizeof *g->nodes);
    g->n_nodes += (int64_t)n;
    return PG_OK;
}

pg_status pg_gguf_read_string(pg_gguf *g, pg_reader *r, uint64_t max_len, const char *what,
                              uint64_t *arena_at, uint64_t *len) {
    uint64_t n;
    PG_TRY(pg_reader_u64(r, what, &n));
    if (n > max_len)
        return pg_fail(PG_ERR_FORMAT, "%s at offset %llu has length %llu, more than the limit %llu",
                       what, (unsigned long long)(r->pos - 8), (unsigned long long)n,
                       (unsigned long long)max_len);
    if (n > r->size - r->pos)
        return pg_fail(PG_ERR_FORMAT, "%s at offset %llu has length %llu, past the end of the file "
                       "(%llu bytes left)", what, (unsigned long long)(r->pos - 8),
                       (unsigned long long)n, (unsigned long long)(r->size - r->pos));
    PG_TRY(grow((void **)&g->arena, &g->arena_cap, g->arena_len + n + 1, 1));
    memcpy(g->arena + g->arena_len, r->p + r->pos, (size_t)n);
    g->arena[g->arena_len + n] = '\0';
    *arena_at = g->arena_len;
    *len = n;
    g->arena_len += n + 1;
    r->pos += n;
    return PG_OK;
}

/* ---- parsing ------------------------------------------------------------- */

static pg_status fill_value(pg_gguf *g, pg_reader *r, int type, int depth, int64_t node);

/* Array payload: u32 element type, u64 count, elements. */
static pg_status fill_array(pg_gguf *g, pg_reader *r, int depth, int64_t node) {
    uint32_t elem;
    uint64_t n;
    PG_TRY(pg_reader_u32(r, "array element type", &elem));
    if (!is_value_type(elem))
        return pg_fail(PG_ERR_FORMAT, "unknown array element type %u at offset %llu", elem,
                       (unsigned long long)(r->pos - 4));
    if (elem == PG_GGUF_ARRAY && depth + 1 >= PG_GGUF_MAX_DEPTH)
        return pg_fail(PG_ERR_FORMAT, "arrays nested more than %d deep at offset %llu",
                       PG_GGUF_MAX_DEPTH, (unsigned long long)(r->pos - 4));
    PG_TRY(pg_reader_u64(r, "array length", &n));
    /* Smallest encoding of one element: a string is at least its u64 length,
     * an inner array its u32 type and u64 count. */
    uint64_t min_elem = elem == PG_GGUF_STRING ? 8 : elem == PG_GGUF_ARRAY ? 12 : g_value_size[elem];
    if (n > (r->size - r->pos) / min_elem)
        return pg_fail(PG_ERR_FORMAT, "array of %llu %s at offset %llu cannot fit in the %llu bytes left",
                       (unsigned long long)n, g_value_name[elem], (unsigned long long)(r->pos - 8),
                       (unsigned long long)(r->size - r->pos));
    g->nodes[node].type = PG_GGUF_ARRAY;
    g->nodes[node].elem = (uint8_t)elem;
    g->nodes[node].n = n;

    if (elem == PG_GGUF_STRING) {
        PG_TRY(grow((void **)&g->offs, &g->cap_offs, g->n_offs + n + 1, sizeof *g->offs));
        uint64_t base = g->n_offs;
        g->n_offs += n + 1;
        g->nodes[node].at = base;
        for (uint64_t j = 0; j < n; j++) {
            uint64_t at, len;
            pg_status s = pg_gguf_read_string(g, r, PG_GGUF_MAX_STRING, "string", &at, &len);
            if (s != PG_OK) return pg_fail_prefix(s, "element %llu of %llu", (unsigned long long)j,
                                                  (unsigned long long)n);
            g->offs[base + j] = at;
        }
        g->offs[base + n] = g->arena_len;
    } else if (elem == PG_GGUF_ARRAY) {
        int64_t first;
        PG_TRY(reserve_nodes(g, n, &first));
        g->nodes[node].at = (uint64_t)first;
        for (uint64_t j = 0; j < n; j++) {
            pg_status s = fill_value(g, r, PG_GGUF_ARRAY, depth + 1, first + (int64_t)j);
            if (s != PG_OK) return pg_fail_prefix(s, "element %llu of %llu", (unsigned long long)j,
                                                  (unsigned long long)n);
        }
    } else {
        g->nodes[node].at = r->pos;
        r->pos += n * g_value_size[elem];   /* fits: checked against the bytes left */
    }
    return PG_OK;
}

static pg_status fill_value(pg_gguf *g, pg_reader *r, int type, int depth, int64_t node) {
    if (type == PG_GGUF_ARRAY) return fill_array(g, r, depth, node);
    if (type == PG_GGUF_STRING) {
        uint64_t at, len;
        PG_TRY(pg_gguf_read_string(g, r, PG_GGUF_MAX_STRING, "string", &at, &len));
        g->nodes[node].type = PG_GGUF_STRING;
        g->nodes[node].n = len;
        g->nodes[node].at = at;
        return PG_OK;
    }
    if (!is_numeric(type))
        return pg_fail(PG_ERR_FORMAT, "unknown value type %u at offset %llu", (unsigned)type,
                       (unsigned long long)(r->pos - 4));
    PG_TRY(pg_reader_need(r, g_value_size[type], g_value_name[type]));
    g->nodes[node].type = (uint8_t)type;
    g->nodes[node].n = 1;
    g->nodes[node].at = r->pos;
    r->pos += g_value_size[type];
    return PG_OK;
}

pg_status pg_gguf_read_value(pg_gguf *g, pg_reader *r, int type, int depth, int64_t *node) {
    PG_TRY(reserve_nodes(g, 1, node));
    return fill_value(g, r, type, depth, *node);
}

/* ---- getters on value handles ------------------------------------------- */

static const pg_gguf_node *node_at(const pg_gguf *g, int64_t v) {
    return g && v >= 0 && v < g->n_nodes ? &g->nodes[v] : NULL;
}

PG_API int pg_gguf_val_type(const pg_gguf *g, int64_t v) {
    const pg_gguf_node *n = node_at(g, v);
    return n ? n->type : -1;
}

PG_API int pg_gguf_val_arr_type(const pg_gguf *g, int64_t v) {
    const pg_gguf_node *n = node_at(g, v);
    return n && n->type == PG_GGUF_ARRAY ? n->elem : -1;
}

PG_API int64_t pg_gguf_val_arr_len(const pg_gguf *g, int64_t v) {
    const pg_gguf_node *n = node_at(g, v);
    return n && n->type == PG_GGUF_ARRAY ? (int64_t)n->n : -1;
}

PG_API const void *pg_gguf_val_data(const pg_gguf *g, int64_t v) {
    const pg_gguf_node *n = node_at(g, v);
    if (!n) return NULL;
    if (is_numeric(n->type) || (n->type == PG_GGUF_ARRAY && is_numeric(n->elem))) return g->image + n->at;
    return NULL;
}

PG_API int64_t pg_gguf_val_arr_elem(const pg_gguf *g, int64_t v, int64_t j) {
    const pg_gguf_node *n = node_at(g, v);
    if (!n || n->type != PG_GGUF_ARRAY || n->elem != PG_GGUF_ARRAY || j < 0 || (uint64_t)j >= n->n) return -1;
    return (int64_t)n->at + j;
}

PG_API pg_status pg_gguf_val_get_int(const pg_gguf *g, int64_t v, int64_t *out) {
    const pg_gguf_node *n = node_at(g, v);
    if (!n) return pg_fail(PG_ERR_ARG, "invalid GGUF value handle %lld", (long long)v);
    const uint8_t *p = g->image + n->at;
    switch (n->type) {
    case PG_GGUF_UINT8: *out = p[0]; return PG_OK;
    case PG_GGUF_INT8: *out = (int8_t)p[0]; return PG_OK;
    case PG_GGUF_BOOL: *out = p[0] != 0; return PG_OK;
    case PG_GGUF_UINT16: *out = pg_le16(p); return PG_OK;
    case PG_GGUF_INT16: *out = (int16_t)pg_le16(p); return PG_OK;
    case PG_GGUF_UINT32: *out = pg_le32(p); return PG_OK;
    case PG_GGUF_INT32: *out = (int32_t)pg_le32(p); return PG_OK;
    case PG_GGUF_INT64: *out = (int64_t)pg_le64(p); return PG_OK;
    case PG_GGUF_UINT64:
        if (pg_le64(p) > (uint64_t)INT64_MAX)
            return pg_fail(PG_ERR_FORMAT, "UINT64 value %llu does not fit in int64",
                           (unsigned long long)pg_le64(p));
        *out = (int64_t)pg_le64(p);
        return PG_OK;
    default:
        return pg_fail(PG_ERR_FORMAT, "expected an integer, found a %s value", g_value_name[n->type]);
    }
}

PG_API pg_status pg_gguf_val_get_float(const pg_gguf *g, int64_t v, double *out) {
    const pg_gguf_node *n = node_at(g, v);
    if (!n) return pg_fail(PG_ERR_ARG, "invalid GGUF value handle %lld", (long long)v);
    const uint8_t *p = g->image + n->at;
    if (n->type == PG_GGUF_FLOAT32) {
        uint32_t bits = pg_le32(p);
        float f;
        memcpy(&f, &bits, 4);
        *out = f;
        return PG_OK;
    }
    if (n->type == PG_GGUF_FLOAT64) {
        uint64_t bits = pg_le64(p);
        memcpy(out, &bits, 8);
        return PG_OK;
    }
    if (n->type == PG_GGUF_UINT64) {   /* all of its range converts (rounded) */
        *out = (double)pg_le64(p);
        return PG_OK;
    }
    if (n->type == PG_GGUF_BOOL || !is_numeric(n->type))
        return pg_fail(PG_ERR_FORMAT, "expected a number, found a %s value", g_value_name[n->type]);
    int64_t i;
    PG_TRY(pg_gguf_val_get_int(g, v, &i));
    *out = (double)i;
    return PG_OK;
}

PG_API pg_status pg_gguf_val_get_str(const pg_gguf *g, int64_t v, const char **s, uint64_t *len) {
    const pg_gguf_node *n = node_at(g, v);
    if (!n) return pg_fail(PG_ERR_ARG, "invalid GGUF value handle %lld", (long long)v);
    if (n->type != PG_GGUF_STRING)
        return pg_fail(PG_ERR_FORMAT, "expected a STRING, found a %s value", g_value_name[n->type]);
    *s = g->arena + n->at;
    if (len) *len = n->n;
    return PG_OK;
}

PG_API pg_status pg_gguf_val_arr_str(const pg_gguf *g, int64_t v, int64_t j, const char **s, uint64_t *len) {
    const pg_gguf_node *n = node_at(g, v);
    if (!n) return pg_fail(PG_ERR_ARG, "invalid GGUF value handle %lld", (long long)v);
    if (n->type != PG_GGUF_ARRAY || n->elem != PG_GGUF_STRING)
        return pg_fail(PG_ERR_FORMAT, "expected an array of STRING, found %s%s",
                       n->type == PG_GGUF_ARRAY ? "an array of " : "a ",
                       g_value_name[n->type == PG_GGUF_ARRAY ? n->elem : n->type]);
    if (j < 0 || (uint64_t)j >= n->n)
        return pg_fail(PG_ERR_ARG, "index %lld outside the array of %llu strings", (long long)j,
                       (unsigned long long)n->n);
    uint64_t a = g->offs[n->at + (uint64_t)j], b = g->offs[n->at + (uint64_t)j + 1];
    *s = g->arena + a;
    if (len) *len = b - a - 1;
    return PG_OK;
}

PG_API pg_status pg_gguf_val_arr_str_block(const pg_gguf *g, int64_t v, const char **block, uint64_t *nbytes) {
    const pg_gguf_node *n = node_at(g, v);
    if (!n) return pg_fail(PG_ERR_ARG, "invalid GGUF value handle %lld", (long long)v);
    if (n->type != PG_GGUF_ARRAY || n->elem != PG_GGUF_STRING)
        return pg_fail(PG_ERR_FORMAT, "expected an array of STRING");
    uint64_t a = g->offs[n->at], b = g->offs[n->at + n->n];
    *block = g->arena + a;
    *nbytes = b - a;
    return PG_OK;
}
