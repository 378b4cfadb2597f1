/* gguf_internal.h -- the parsed form of a GGUF file, shared by gguf.c (header,
 * tensor infos, accessors) and gguf_values.c (metadata values).  Internal.
 *
 * Parsing copies nothing but names and strings: numbers and tensor data stay in
 * the image (the mapping or the caller's buffer) and are found by offset.
 * Every string (keys, tensor names, string values) is copied once into one
 * growing arena, NUL-terminated, so that C consumers get C strings without an
 * allocation per string (the Gemma vocabulary alone has 262144 of them).
 * Arena, node and offset pools are addressed by index, never by pointer,
 * because they move when they grow. */
#ifndef PG_GGUF_INTERNAL_H
#define PG_GGUF_INTERNAL_H

#include "internal.h"

#define PG_GGUF_MAX_DIMS 4
#define PG_GGUF_MAX_NAME ((uint64_t)64 << 10)     /* keys and tensor names */
#define PG_GGUF_MAX_STRING ((uint64_t)1 << 30)    /* string values */
#define PG_GGUF_MAX_DEPTH 16                      /* arrays of arrays of ... */
#define PG_GGUF_DEFAULT_ALIGNMENT 32

/* A bounds-checked cursor over the image. */
typedef struct {
    const uint8_t *p;   /* (size) bytes */
    uint64_t size;
    uint64_t pos;       /* next byte to read; always <= size */
} pg_reader;

/* One metadata value.  `at` depends on the type:
 *   numeric scalar or array : offset of the raw little-endian bytes in the image
 *   string                  : arena offset of the NUL-terminated copy (n = length)
 *   array of strings        : index in g->offs of n+1 arena offsets; string j is
 *                             arena[offs[at+j] .. offs[at+j+1]-1), NUL at the end
 *   array of arrays         : node index of the first of n consecutive children */
typedef struct {
    uint8_t type;       /* pg_gguf_type */
    uint8_t elem;       /* arrays: element type */
    uint64_t n;         /* strings: byte length; arrays: element count */
    uint64_t at;
} pg_gguf_node;

typedef struct {
    uint64_t key, key_len;      /* arena offset, length without the NUL */
    int64_t node;               /* the value */
    uint64_t raw_at, raw_len;   /* the encoded value (u32 type tag + payload) in the image */
} pg_gguf_kv;

typedef struct {
    uint64_t name, name_len;    /* arena offset, length without the NUL */
    int32_t type;               /* GGML type number */
    int32_t ndim;
    int64_t ne[PG_GGUF_MAX_DIMS];   /* GGUF order: ne[0] contiguous; 1 past ndim */
    uint64_t offset;            /* relative to the data section */
    uint64_t nbytes;
} pg_gguf_tensor;

struct pg_gguf {
    const uint8_t *image;       /* (size) bytes of the GGUF (inside the mapping for a llamafile) */
    uint64_t size;
    uint64_t image_offset;      /* where the GGUF starts in the file (0 unless llamafile) */
    void *map;                  /* (map_size) whole-file read-only mapping; NULL for open_memory */
    size_t map_size;

    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;       /* data section start, from image */

    int64_t n_kv;
    pg_gguf_kv *kv;             /* (n_kv) */
    int64_t n_tensors;
    pg_gguf_tensor *tensors;    /* (n_tensors) */

    pg_gguf_node *nodes;        /* (n_nodes) of (cap_nodes) */
    int64_t n_nodes, cap_nodes;
    char *arena;                /* (arena_len) of (arena_cap) */
    uint64_t arena_len, arena_cap;
    uint64_t *offs;             /* (n_offs) of (cap_offs) */
    uint64_t n_offs, cap_offs;

    int64_t *kv_hash;           /* (kv_hash_mask+1) kv indices, -1 = empty */
    uint64_t kv_hash_mask;
    int64_t *tensor_hash;       /* (tensor_hash_mask+1) tensor indices, -1 = empty */
    uint64_t tensor_hash_mask;
};

/* gguf_values.c */
const char *pg_gguf_value_type_name(int type);
/* Read a string header (u64 length + bytes) at r and copy it into the arena. */
pg_status pg_gguf_read_string(pg_gguf *g, pg_reader *r, uint64_t max_len, const char *what,
                              uint64_t *arena_at, uint64_t *len);
/* Read the payload of a value of `type` (its tag already read) into a new node. */
pg_status pg_gguf_read_value(pg_gguf *g, pg_reader *r, int type, int depth, int64_t *node);
/* Printable, shortened, quoted form of (len) bytes for error messages. */
const char *pg_gguf_quote(char *buf, size_t bufsize, const char *s, uint64_t len);

static inline uint32_t pg_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t pg_le64(const uint8_t *p) {
    return (uint64_t)pg_le32(p) | (uint64_t)pg_le32(p + 4) << 32;
}

static inline uint16_t pg_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Fail unless n more bytes can be read at r. */
static inline pg_status pg_reader_need(const pg_reader *r, uint64_t n, const char *what) {
    if (r->size - r->pos >= n) return PG_OK;
    return pg_fail(PG_ERR_FORMAT, "truncated file: %s at offset %llu needs %llu bytes, %llu left",
                   what, (unsigned long long)r->pos, (unsigned long long)n,
                   (unsigned long long)(r->size - r->pos));
}

static inline pg_status pg_reader_u32(pg_reader *r, const char *what, uint32_t *out) {
    PG_TRY(pg_reader_need(r, 4, what));
    *out = pg_le32(r->p + r->pos);
    r->pos += 4;
    return PG_OK;
}

static inline pg_status pg_reader_u64(pg_reader *r, const char *what, uint64_t *out) {
    PG_TRY(pg_reader_need(r, 8, what));
    *out = pg_le64(r->p + r->pos);
    r->pos += 8;
    return PG_OK;
}

#endif
