/* gguf.c -- GGUF v2/v3 reader: open and map a file (or a llamafile's embedded
 * .gguf), parse and validate the header, metadata and tensor infos, and answer
 * queries by index.
 *
 * Layout of a GGUF (all little-endian):
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv
 *   n_kv x      { string key, u32 value type, value }
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset }
 *   padding to `general.alignment` (default 32), then the data section; each
 *   tensor's offset is relative to the data section and a multiple of the alignment.
 * A string is a u64 byte length and the bytes (no NUL; NULs inside are legal).
 *
 * Validation follows ggml's gguf.cpp and gguf-py's GGUFReader, and is stricter
 * where they would crash or read out of bounds: every read is bounds-checked,
 * counts are capped by the bytes left, dims must be >= 1, and tensor data must
 * lie inside the file without overlapping. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf_internal.h"
#include "types.h"
#include "zipfile.h"

#define QUOTE(buf, s, len) pg_gguf_quote(buf, sizeof buf, s, len)

/* ---- name hash tables (open addressing, keys live in the arena) ------------ */

static uint64_t hash_bytes(const char *s, uint64_t n) {
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static pg_status hash_alloc(int64_t n, int64_t **table, uint64_t *mask) {
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2) cap *= 2;
    *table = malloc(cap * sizeof **table);
    if (!*table) return pg_fail(PG_ERR_NOMEM, "out of memory for a table of %lld names", (long long)n);
    memset(*table, 0xff, cap * sizeof **table);   /* all -1 */
    *mask = cap - 1;
    return PG_OK;
}

/* Slot of name in the table: holding its index, or the empty slot where it goes.
 * at/len_of give the arena offset and length of entry i (kv or tensor). */
static uint64_t hash_slot(const pg_gguf *g, const int64_t *table, uint64_t mask, int tensors,
                          const char *name, uint64_t len) {
    uint64_t h = hash_bytes(name, len) & mask;
    for (;; h = (h + 1) & mask) {
        int64_t i = table[h];
        if (i < 0) return h;
        uint64_t at = tensors ? g->tensors[i].name : g->kv[i].key;
        uint64_t n = tensors ? g->tensors[i].name_len : g->kv[i].key_len;
        if (n == len && memcmp(g->arena + at, name, (size_t)len) == 0) return h;
    }
}

/* ---- header and metadata ---------------------------------------------------- */

static pg_status read_header(pg_gguf *g, pg_reader *r, uint64_t *n_tensors, uint64_t *n_kv) {
    PG_TRY(pg_reader_need(r, 4, "magic"));
    if (memcmp(r->p, "GGUF", 4) != 0) {
        char q[32];
        return pg_fail(PG_ERR_FORMAT, "bad magic %s, expected 'GGUF'", QUOTE(q, (const char *)r->p, 4));
    }
    r->pos = 4;
    PG_TRY(pg_reader_u32(r, "version", &g->version));
    if (g->version != 0 && (g->version & 0xffff) == 0)
        return pg_fail(PG_ERR_FORMAT, "version field 0x%08x looks byte-swapped: big-endian GGUF files "
                       "are not supported", g->version);
    if (g->version == 1)
        return pg_fail(PG_ERR_FORMAT, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (g->version != 2 && g->version != 3)
        return pg_fail(PG_ERR_FORMAT, "unsupported GGUF version %u (only versions 2 and 3)", g->version);
    PG_TRY(pg_reader_u64(r, "tensor count", n_tensors));
    PG_TRY(pg_reader_u64(r, "metadata count", n_kv));
    /* Smallest encodings: a kv is a key length, a type and a 1-byte value (13);
     * a tensor info a name length, n_dims, type and offset (24). */
    uint64_t left = r->size - r->pos;
    if (*n_kv > left / 13)
        return pg_fail(PG_ERR_FORMAT, "metadata count %llu cannot fit in the %llu bytes left",
                       (unsigned long long)*n_kv, (unsigned long long)left);
    if (*n_tensors > left / 24 || *n_kv * 13 + *n_tensors * 24 > left)
        return pg_fail(PG_ERR_FORMAT, "tensor count %llu cannot fit in the %llu bytes left",
                       (unsigned long long)*n_tensors, (unsigned long long)left);
    return PG_OK;
}

static pg_status read_kvs(pg_gguf *g, pg_reader *r) {
    char q[96];
    PG_TRY(hash_alloc(g->n_kv, &g->kv_hash, &g->kv_hash_mask));
    for (int64_t i = 0; i < g->n_kv; i++) {
        pg_gguf_kv *kv = &g->kv[i];
        uint64_t key_at = r->pos;
        pg_status s = pg_gguf_read_string(g, r, PG_GGUF_MAX_NAME, "key", &kv->key, &kv->key_len);
        if (s != PG_OK) return pg_fail_prefix(s, "metadata entry %lld", (long long)i);
        const char *key = g->arena + kv->key;
        uint64_t slot = hash_slot(g, g->kv_hash, g->kv_hash_mask, 0, key, kv->key_len);
        if (g->kv_hash[slot] >= 0)
            return pg_fail(PG_ERR_FORMAT, "duplicate key %s at offset %llu (entries %lld and %lld)",
                           QUOTE(q, key, kv->key_len), (unsigned long long)key_at,
                           (long long)g->kv_hash[slot], (long long)i);
        g->kv_hash[slot] = i;
        uint32_t type;
        kv->raw_at = r->pos;
        s = pg_reader_u32(r, "value type", &type);
        if (s == PG_OK) s = pg_gguf_read_value(g, r, (int)type, 0, &kv->node);
        /* the arena may have moved while reading the value */
        if (s != PG_OK) return pg_fail_prefix(s, "key %s", QUOTE(q, g->arena + kv->key, kv->key_len));
        kv->raw_len = r->pos - kv->raw_at;
    }
    return PG_OK;
}

static pg_status read_alignment(pg_gguf *g) {
    g->alignment = PG_GGUF_DEFAULT_ALIGNMENT;
    int64_t i = pg_gguf_find_key(g, "general.alignment");
    if (i < 0) return PG_OK;
    int type = pg_gguf_kv_type(g, i);
    if (type != PG_GGUF_UINT32)   /* as ggml and gguf-py require */
        return pg_fail(PG_ERR_FORMAT, "general.alignment must be a UINT32, found %s%s",
                       pg_gguf_value_type_name(type),
                       type == PG_GGUF_ARRAY ? " (an array)" : "");
    uint32_t a = pg_le32(pg_gguf_val_data(g, g->kv[i].node));
    if (a == 0 || (a & (a - 1)) != 0)
        return pg_fail(PG_ERR_FORMAT, "general.alignment %u is not a power of two", a);
    g->alignment = a;
    return PG_OK;
}

/* ---- tensor infos ----------------------------------------------------------- */

static pg_status read_tensor_info(pg_gguf *g, pg_reader *r, int64_t i) {
    char q[96];
    pg_gguf_tensor *t = &g->tensors[i];
    uint64_t at = r->pos;
    pg_status s = pg_gguf_read_string(g, r, PG_GGUF_MAX_NAME, "tensor name", &t->name, &t->name_len);
    if (s != PG_OK) return pg_fail_prefix(s, "tensor %lld", (long long)i);
    const char *name = QUOTE(q, g->arena + t->name, t->name_len);
    uint64_t slot = hash_slot(g, g->tensor_hash, g->tensor_hash_mask, 1, g->arena + t->name, t->name_len);
    if (g->tensor_hash[slot] >= 0)
        return pg_fail(PG_ERR_FORMAT, "duplicate tensor name %s at offset %llu (tensors %lld and %lld)",
                       name, (unsigned long long)at, (long long)g->tensor_hash[slot], (long long)i);
    g->tensor_hash[slot] = i;

    uint32_t ndim;
    s = pg_reader_u32(r, "number of dimensions", &ndim);
    if (s != PG_OK) return pg_fail_prefix(s, "tensor %s", name);
    if (ndim > PG_GGUF_MAX_DIMS)
        return pg_fail(PG_ERR_FORMAT, "tensor %s has %u dimensions, more than %d (offset %llu)", name,
                       ndim, PG_GGUF_MAX_DIMS, (unsigned long long)(r->pos - 4));
    t->ndim = (int32_t)ndim;
    uint64_t nelem = 1;
    for (int d = 0; d < PG_GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if ((uint32_t)d < ndim) {
            s = pg_reader_u64(r, "dimension", &ne);
            if (s != PG_OK) return pg_fail_prefix(s, "tensor %s", name);
            /* ggml tolerates 0 in ne[0] only (its overflow check divides by the
             * others); an empty weight is useless, so every dim must be >= 1. */
            if (ne == 0 || ne > (uint64_t)INT64_MAX)
                return pg_fail(PG_ERR_FORMAT, "tensor %s: dimension %d is %llu (offset %llu)", name, d,
                               (unsigned long long)ne, (unsigned long long)(r->pos - 8));
        }
        if (pg_mul_overflow(nelem, ne, &nelem) || nelem > (uint64_t)INT64_MAX)
            return pg_fail(PG_ERR_FORMAT, "tensor %s: the number of elements overflows", name);
        t->ne[d] = (int64_t)ne;
    }

    uint32_t type;
    s = pg_reader_u32(r, "tensor type", &type);
    if (s != PG_OK) return pg_fail_prefix(s, "tensor %s", name);
    const pg_type_traits *tr = pg_type_traits_get(type > 0x7fffffff ? -1 : (int)type);
    if (!tr)
        return pg_fail(PG_ERR_FORMAT, "tensor %s has unknown type number %u (offset %llu)", name, type,
                       (unsigned long long)(r->pos - 4));
    t->type = (int32_t)type;
    if (t->ne[0] % tr->block_size != 0)
        return pg_fail(PG_ERR_FORMAT, "tensor %s: row length %lld is not a multiple of the %s block size %lld",
                       name, (long long)t->ne[0], tr->name, (long long)tr->block_size);
    /* nbytes = row bytes * rows, both products checked (F64 rows take 8 bytes an element). */
    uint64_t row_bytes;
    if (pg_mul_overflow((uint64_t)(t->ne[0] / tr->block_size), (uint64_t)tr->block_bytes, &row_bytes) ||
        pg_mul_overflow(row_bytes, nelem / (uint64_t)t->ne[0], &t->nbytes))
        return pg_fail(PG_ERR_FORMAT, "tensor %s: the size in bytes overflows", name);

    s = pg_reader_u64(r, "tensor data offset", &t->offset);
    if (s != PG_OK) return pg_fail_prefix(s, "tensor %s", name);
    return PG_OK;
}

typedef struct { uint64_t begin, end; int64_t index; } span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->index > y->index) - (x->index < y->index);
}

/* Every tensor's data: aligned, inside the image, not overlapping another's. */
static pg_status check_tensor_data(pg_gguf *g) {
    char q[96], q2[96];
    if (g->n_tensors == 0) return PG_OK;
    span *spans = malloc((size_t)g->n_tensors * sizeof *spans);
    if (!spans) return pg_fail(PG_ERR_NOMEM, "out of memory");
    pg_status s = PG_OK;
    uint64_t data_size = g->size > g->data_offset ? g->size - g->data_offset : 0;
    for (int64_t i = 0; i < g->n_tensors && s == PG_OK; i++) {
        const pg_gguf_tensor *t = &g->tensors[i];
        const char *name = QUOTE(q, g->arena + t->name, t->name_len);
        if (t->offset % g->alignment != 0)
            s = pg_fail(PG_ERR_FORMAT, "tensor %s: data offset %llu is not a multiple of the alignment %llu",
                        name, (unsigned long long)t->offset, (unsigned long long)g->alignment);
        else if (t->offset > data_size || t->nbytes > data_size - t->offset)
            s = pg_fail(PG_ERR_FORMAT, "tensor %s: data [%llu, +%llu) runs past the end of the file "
                        "(data section of %llu bytes at offset %llu)", name, (unsigned long long)t->offset,
                        (unsigned long long)t->nbytes, (unsigned long long)data_size,
                        (unsigned long long)g->data_offset);
        spans[i] = (span){t->offset, t->offset + t->nbytes, i};
    }
    if (s == PG_OK) {
        qsort(spans, (size_t)g->n_tensors, sizeof *spans, span_cmp);
        for (int64_t k = 1; k < g->n_tensors && s == PG_OK; k++) {
            if (spans[k].begin >= spans[k - 1].end) continue;
            const pg_gguf_tensor *a = &g->tensors[spans[k - 1].index], *b = &g->tensors[spans[k].index];
            s = pg_fail(PG_ERR_FORMAT, "tensors %s [%llu, %llu) and %s [%llu, %llu) overlap",
                        QUOTE(q, g->arena + a->name, a->name_len), (unsigned long long)spans[k - 1].begin,
                        (unsigned long long)spans[k - 1].end, QUOTE(q2, g->arena + b->name, b->name_len),
                        (unsigned long long)spans[k].begin, (unsigned long long)spans[k].end);
        }
    }
    free(spans);
    return s;
}

/* ---- whole file ---------------------------------------------------------------- */

static pg_status parse(pg_gguf *g) {
    pg_reader r = {g->image, g->size, 0};
    uint64_t n_tensors = 0, n_kv = 0;
    PG_TRY(read_header(g, &r, &n_tensors, &n_kv));
    g->n_kv = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_tensors;
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    /* The arena needs at most the rest of the header plus a NUL per string;
     * start with a guess so the big vocabularies rarely reallocate. */
    g->arena_cap = PG_MIN(r.size, (uint64_t)1 << 20) + 64;
    g->arena = malloc((size_t)g->arena_cap);
    if (!g->kv || !g->tensors || !g->arena) return pg_fail(PG_ERR_NOMEM, "out of memory");
    PG_TRY(read_kvs(g, &r));
    PG_TRY(read_alignment(g));
    PG_TRY(hash_alloc(g->n_tensors, &g->tensor_hash, &g->tensor_hash_mask));
    for (int64_t i = 0; i < g->n_tensors; i++) PG_TRY(read_tensor_info(g, &r, i));
    /* r.pos <= size < 2^63, so the padding cannot overflow. */
    g->data_offset = (r.pos + g->alignment - 1) / g->alignment * g->alignment;
    return check_tensor_data(g);
}

/* Find the GGUF in the buffer (directly, or as a llamafile's member) and parse it. */
static pg_status open_image(const uint8_t *data, uint64_t size, void *map, size_t map_size, pg_gguf **out) {
    *out = NULL;
    pg_gguf *g = calloc(1, sizeof *g);
    if (!g) return pg_fail(PG_ERR_NOMEM, "out of memory");
    g->map = map;
    g->map_size = map_size;
    pg_status s = PG_OK;
    if (size >= 4 && memcmp(data, "GGUF", 4) == 0) {
        g->image = data;
        g->size = size;
    } else {
        uint64_t off = 0, len = 0;
        int is_zip = 0;
        s = pg_zip_find_gguf(data, size, &off, &len, &is_zip);
        if (s != PG_OK && !is_zip) {
            char q[32];
            s = size < 4 ? pg_fail(PG_ERR_FORMAT, "not a GGUF file: only %llu bytes", (unsigned long long)size)
                         : pg_fail(PG_ERR_FORMAT, "not a GGUF file (bad magic %s, expected 'GGUF') "
                                   "and not a llamafile (no ZIP end of central directory record)",
                                   QUOTE(q, (const char *)data, 4));
        }
        if (s == PG_OK) {
            g->image = data + off;
            g->size = len;
            g->image_offset = off;
        }
    }
    if (s == PG_OK) {
        s = parse(g);
        if (s != PG_OK && g->image_offset)
            s = pg_fail_prefix(s, "GGUF member at file offset %llu", (unsigned long long)g->image_offset);
    }
    if (s != PG_OK) {
        g->map = NULL;   /* the caller unmaps */
        pg_gguf_close(g);
        return s;
    }
    *out = g;
    return PG_OK;
}

PG_API pg_status pg_gguf_open_memory(const void *data, size_t size, pg_gguf **out) {
    if (!out) return pg_fail(PG_ERR_ARG, "pg_gguf_open_memory: out is NULL");
    *out = NULL;
    if (!data && size) return pg_fail(PG_ERR_ARG, "pg_gguf_open_memory: data is NULL");
    return open_image(data ? data : "", size, NULL, 0, out);
}

PG_API pg_status pg_gguf_open(const char *path, pg_gguf **out) {
    if (!out || !path) return pg_fail(PG_ERR_ARG, "pg_gguf_open: NULL argument");
    *out = NULL;
    /* O_NONBLOCK: opening a FIFO must not hang; it is refused below anyway. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return pg_fail(PG_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return pg_fail(PG_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pg_fail(PG_ERR_IO, "'%s' is not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return pg_fail(PG_ERR_FORMAT, "'%s': empty file, not a GGUF", path);
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);   /* the mapping stays valid */
    if (map == MAP_FAILED) return pg_fail(PG_ERR_IO, "cannot map '%s': %s", path, strerror(e));
    pg_status s = open_image(map, size, map, size, out);
    if (s != PG_OK) {
        munmap(map, size);
        return pg_fail_prefix(s, "'%s'", path);
    }
    return PG_OK;
}

PG_API void pg_gguf_close(pg_gguf *g) {
    if (!g) return;
    if (g->map) munmap(g->map, g->map_size);
    free(g->kv);
    free(g->tensors);
    free(g->nodes);
    free(g->arena);
    free(g->offs);
    free(g->kv_hash);
    free(g->tensor_hash);
    free(g);
}

/* ---- queries ------------------------------------------------------------------- */

PG_API uint32_t pg_gguf_version(const pg_gguf *g) { return g ? g->version : 0; }
PG_API uint64_t pg_gguf_alignment(const pg_gguf *g) { return g ? g->alignment : 0; }
PG_API uint64_t pg_gguf_data_offset(const pg_gguf *g) { return g ? g->data_offset : 0; }
PG_API uint64_t pg_gguf_image_offset(const pg_gguf *g) { return g ? g->image_offset : 0; }
PG_API uint64_t pg_gguf_image_size(const pg_gguf *g) { return g ? g->size : 0; }
PG_API int64_t pg_gguf_n_kv(const pg_gguf *g) { return g ? g->n_kv : 0; }
PG_API int64_t pg_gguf_n_tensors(const pg_gguf *g) { return g ? g->n_tensors : 0; }

static const pg_gguf_kv *kv_at(const pg_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_kv ? &g->kv[i] : NULL;
}

static const pg_gguf_tensor *tensor_at(const pg_gguf *g, int64_t t) {
    return g && t >= 0 && t < g->n_tensors ? &g->tensors[t] : NULL;
}

PG_API const char *pg_gguf_kv_key(const pg_gguf *g, int64_t i) {
    const pg_gguf_kv *kv = kv_at(g, i);
    return kv ? g->arena + kv->key : NULL;
}

PG_API uint64_t pg_gguf_kv_key_len(const pg_gguf *g, int64_t i) {
    const pg_gguf_kv *kv = kv_at(g, i);
    return kv ? kv->key_len : 0;
}

PG_API int64_t pg_gguf_find_key(const pg_gguf *g, const char *key) {
    if (!g || !key || !g->kv_hash) return -1;
    return g->kv_hash[hash_slot(g, g->kv_hash, g->kv_hash_mask, 0, key, strlen(key))];
}

PG_API int64_t pg_gguf_kv_value(const pg_gguf *g, int64_t i) {
    const pg_gguf_kv *kv = kv_at(g, i);
    return kv ? kv->node : -1;
}

PG_API pg_status pg_gguf_kv_raw(const pg_gguf *g, int64_t i, const void **data, uint64_t *nbytes) {
    const pg_gguf_kv *kv = kv_at(g, i);
    if (!kv) return pg_fail(PG_ERR_ARG, "metadata index %lld out of range", (long long)i);
    *data = g->image + kv->raw_at;
    *nbytes = kv->raw_len;
    return PG_OK;
}

PG_API int pg_gguf_kv_type(const pg_gguf *g, int64_t i) { return pg_gguf_val_type(g, pg_gguf_kv_value(g, i)); }
PG_API int pg_gguf_kv_arr_type(const pg_gguf *g, int64_t i) { return pg_gguf_val_arr_type(g, pg_gguf_kv_value(g, i)); }
PG_API int64_t pg_gguf_kv_arr_len(const pg_gguf *g, int64_t i) { return pg_gguf_val_arr_len(g, pg_gguf_kv_value(g, i)); }

PG_API const void *pg_gguf_kv_arr_data(const pg_gguf *g, int64_t i) {
    int64_t v = pg_gguf_kv_value(g, i);
    return pg_gguf_val_arr_type(g, v) >= 0 ? pg_gguf_val_data(g, v) : NULL;
}

/* The kv getters: the value getter's message, prefixed with the key. */
static pg_status kv_fail(const pg_gguf *g, int64_t i, pg_status s) {
    char q[96];
    const pg_gguf_kv *kv = kv_at(g, i);
    if (!kv) return pg_fail(PG_ERR_ARG, "metadata index %lld out of range", (long long)i);
    return pg_fail_prefix(s, "key %s", QUOTE(q, g->arena + kv->key, kv->key_len));
}

PG_API pg_status pg_gguf_kv_get_int(const pg_gguf *g, int64_t i, int64_t *out) {
    pg_status s = pg_gguf_val_get_int(g, pg_gguf_kv_value(g, i), out);
    return s == PG_OK ? s : kv_fail(g, i, s);
}

PG_API pg_status pg_gguf_kv_get_float(const pg_gguf *g, int64_t i, double *out) {
    pg_status s = pg_gguf_val_get_float(g, pg_gguf_kv_value(g, i), out);
    return s == PG_OK ? s : kv_fail(g, i, s);
}

PG_API pg_status pg_gguf_kv_get_str(const pg_gguf *g, int64_t i, const char **str, uint64_t *len) {
    pg_status s = pg_gguf_val_get_str(g, pg_gguf_kv_value(g, i), str, len);
    return s == PG_OK ? s : kv_fail(g, i, s);
}

PG_API pg_status pg_gguf_kv_arr_str(const pg_gguf *g, int64_t i, int64_t j, const char **str, uint64_t *len) {
    pg_status s = pg_gguf_val_arr_str(g, pg_gguf_kv_value(g, i), j, str, len);
    return s == PG_OK ? s : kv_fail(g, i, s);
}

PG_API int64_t pg_gguf_find_tensor(const pg_gguf *g, const char *name) {
    if (!g || !name || !g->tensor_hash) return -1;
    return g->tensor_hash[hash_slot(g, g->tensor_hash, g->tensor_hash_mask, 1, name, strlen(name))];
}

PG_API const char *pg_gguf_tensor_name(const pg_gguf *g, int64_t t) {
    const pg_gguf_tensor *x = tensor_at(g, t);
    return x ? g->arena + x->name : NULL;
}

PG_API uint64_t pg_gguf_tensor_name_len(const pg_gguf *g, int64_t t) {
    const pg_gguf_tensor *x = tensor_at(g, t);
    return x ? x->name_len : 0;
}

PG_API int pg_gguf_tensor_type(const pg_gguf *g, int64_t t) {
    const pg_gguf_tensor *x = tensor_at(g, t);
    return x ? x->type : -1;
}

PG_API int pg_gguf_tensor_ndim(const pg_gguf *g, int64_t t) {
    const pg_gguf_tensor *x = tensor_at(g, t);
    return x ? x->ndim : -1;
}

PG_API int64_t pg_gguf_tensor_dim(const pg_gguf *g, int64_t t, int d) {
    const pg_gguf_tensor *x = tensor_at(g, t);
    if (!x || d < 0) return -1;
    return d < PG_GGUF_MAX_DIMS ? x->ne[d] : 1;
}

PG_API int64_t pg_gguf_tensor_nelements(const pg_gguf *g, int64_t t) {
    const pg_gguf_tensor *x = tensor_at(g, t);
    return x ? x->ne[0] * x->ne[1] * x->ne[2] * x->ne[3] : -1;   /* checked at parse time */
}

PG_API uint64_t pg_gguf_tensor_offset(const pg_gguf *g, int64_t t) {
    const pg_gguf_tensor *x = tensor_at(g, t);
    return x ? x->offset : 0;
}

PG_API uint64_t pg_gguf_tensor_nbytes(const pg_gguf *g, int64_t t) {
    const pg_gguf_tensor *x = tensor_at(g, t);
    return x ? x->nbytes : 0;
}

PG_API const void *pg_gguf_tensor_data(const pg_gguf *g, int64_t t) {
    const pg_gguf_tensor *x = tensor_at(g, t);
    return x ? g->image + g->data_offset + x->offset : NULL;
}
