/* zipfile.c -- just enough of the ZIP format to map the .gguf stored inside a
 * llamafile in place.
 *
 * A ZIP is read from its end: the End Of Central Directory record (EOCD, 22
 * bytes + comment) gives the central directory (CD) size and offset; ZIP64
 * archives put a locator (20 bytes) right before the EOCD pointing at a ZIP64
 * EOCD record (56+ bytes) with 64-bit counts, size and offset.  Each CD entry
 * (46 bytes + name + extra + comment) names a member and the offset of its
 * local header (30 bytes + name + extra), after which the member's bytes start.
 * Sizes and offsets that do not fit 32 bits are 0xffffffff in the CD entry and
 * come from its ZIP64 extra field (id 1) instead.
 *
 * Offsets in the records are relative to the start of the archive.  A
 * llamafile records absolute offsets, but archives appended to an executable
 * by other tools record offsets from their own start; as Info-ZIP and Python
 * do, the difference ("concat") is taken from where the CD really ends. */
#include <string.h>
#include <strings.h>

#include "gguf_internal.h"
#include "zipfile.h"

#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_LOCAL 0x04034b50u
#define EOCD_SIZE 22
#define EOCD64_SIZE 56
#define LOCATOR64_SIZE 20
#define CENTRAL_SIZE 46
#define LOCAL_SIZE 30

static const char *method_name(unsigned m) {
    switch (m) {
    case 8: return "deflate";
    case 9: return "deflate64";
    case 12: return "bzip2";
    case 14: return "lzma";
    case 93: return "zstd";
    case 95: return "xz";
    default: return "unknown";
    }
}

/* Position of the EOCD: the last signature whose comment ends exactly at the
 * end of the file, else the last one whose comment fits (trailing junk). */
static int64_t find_eocd(const uint8_t *data, uint64_t size) {
    if (size < EOCD_SIZE) return -1;
    uint64_t lowest = size - EOCD_SIZE > 0xffff ? size - EOCD_SIZE - 0xffff : 0;
    for (int exact = 1; exact >= 0; exact--) {
        for (uint64_t pos = size - EOCD_SIZE + 1; pos-- > lowest;) {
            if (pg_le32(data + pos) != SIG_EOCD) continue;
            uint64_t end = pos + EOCD_SIZE + pg_le16(data + pos + 20);
            if (exact ? end == size : end <= size) return (int64_t)pos;
        }
    }
    return -1;
}

typedef struct {
    uint64_t entries;      /* members in the CD */
    uint64_t cd_size, cd_off;
    uint64_t cd_end;       /* where the CD really ends in data: the (ZIP64) EOCD record */
} zip_dir;

static pg_status read_directory(const uint8_t *data, uint64_t size, uint64_t eocd, zip_dir *z) {
    const uint8_t *e = data + eocd;
    unsigned disk = pg_le16(e + 4), cd_disk = pg_le16(e + 6);
    z->entries = pg_le16(e + 10);
    z->cd_size = pg_le32(e + 12);
    z->cd_off = pg_le32(e + 16);
    z->cd_end = eocd;
    if (eocd >= LOCATOR64_SIZE && pg_le32(e - LOCATOR64_SIZE) == SIG_LOCATOR64) {
        const uint8_t *loc = e - LOCATOR64_SIZE;
        uint64_t loc_pos = eocd - LOCATOR64_SIZE, rec = pg_le64(loc + 8);
        /* The record normally sits right before the locator; else trust its offset. */
        if (loc_pos >= EOCD64_SIZE && pg_le32(data + loc_pos - EOCD64_SIZE) == SIG_EOCD64)
            rec = loc_pos - EOCD64_SIZE;
        if (rec > loc_pos || loc_pos - rec < EOCD64_SIZE || pg_le32(data + rec) != SIG_EOCD64)
            return pg_fail(PG_ERR_FORMAT, "ZIP64 end of central directory record not found "
                           "(locator at offset %llu)", (unsigned long long)loc_pos);
        const uint8_t *r = data + rec;
        disk = pg_le32(r + 16) ? 1 : 0;
        cd_disk = pg_le32(r + 20) ? 1 : 0;
        z->entries = pg_le64(r + 32);
        z->cd_size = pg_le64(r + 40);
        z->cd_off = pg_le64(r + 48);
        z->cd_end = rec;
    }
    if (disk != 0 || cd_disk != 0)
        return pg_fail(PG_ERR_FORMAT, "multi-disk ZIP archives are not supported");
    if (z->cd_size > z->cd_end || z->cd_off > z->cd_end - z->cd_size)
        return pg_fail(PG_ERR_FORMAT, "ZIP central directory (%llu bytes at offset %llu) does not fit "
                       "before its end record at offset %llu", (unsigned long long)z->cd_size,
                       (unsigned long long)z->cd_off, (unsigned long long)z->cd_end);
    if (z->entries > z->cd_size / CENTRAL_SIZE)
        return pg_fail(PG_ERR_FORMAT, "ZIP central directory of %llu bytes cannot hold %llu entries",
                       (unsigned long long)z->cd_size, (unsigned long long)z->entries);
    (void)size;
    return PG_OK;
}

/* Replace 0xffffffff sizes/offset with the values of the ZIP64 extra field. */
static pg_status zip64_extra(const uint8_t *x, uint64_t xlen, const char *name, uint64_t *usize,
                             uint64_t *csize, uint64_t *lho) {
    uint64_t *fields[3] = {usize, csize, lho};
    for (uint64_t p = 0; p + 4 <= xlen;) {
        unsigned id = pg_le16(x + p), len = pg_le16(x + p + 2);
        if (len > xlen - p - 4) break;   /* malformed tail: ignore, as unzip does */
        if (id == 1) {
            uint64_t q = p + 4, end = p + 4 + len;
            for (int k = 0; k < 3; k++) {
                if (*fields[k] != 0xffffffffu) continue;
                if (end - q < 8)
                    return pg_fail(PG_ERR_FORMAT, "ZIP member %s: ZIP64 extra field too short", name);
                *fields[k] = pg_le64(x + q);
                q += 8;
            }
            return PG_OK;
        }
        p += 4 + (uint64_t)len;
    }
    if (*usize == 0xffffffffu || *csize == 0xffffffffu || *lho == 0xffffffffu)
        return pg_fail(PG_ERR_FORMAT, "ZIP member %s: 32-bit size or offset field is 0xffffffff "
                       "but there is no ZIP64 extra field", name);
    return PG_OK;
}

/* The member's data range, from its CD entry (at c) and local header. */
static pg_status member_data(const uint8_t *data, uint64_t size, uint64_t concat, const uint8_t *c,
                             const char *name, uint64_t *offset, uint64_t *length) {
    unsigned flags = pg_le16(c + 8), method = pg_le16(c + 10);
    uint64_t csize = pg_le32(c + 20), usize = pg_le32(c + 24), lho = pg_le32(c + 42);
    unsigned nlen = pg_le16(c + 28), xlen = pg_le16(c + 30);
    if (method != 0)
        return pg_fail(PG_ERR_FORMAT, "ZIP member %s is compressed (method %u, %s); a llamafile must "
                       "store its GGUF uncompressed", name, method, method_name(method));
    if (flags & 1) return pg_fail(PG_ERR_FORMAT, "ZIP member %s is encrypted", name);
    PG_TRY(zip64_extra(c + CENTRAL_SIZE + nlen, xlen, name, &usize, &csize, &lho));
    if (csize != usize)
        return pg_fail(PG_ERR_FORMAT, "ZIP member %s is stored but its sizes differ (%llu vs %llu)", name,
                       (unsigned long long)csize, (unsigned long long)usize);
    if (lho > size - concat || size - concat - lho < LOCAL_SIZE)
        return pg_fail(PG_ERR_FORMAT, "ZIP member %s: local header offset %llu is past the end of the file",
                       name, (unsigned long long)lho);
    const uint8_t *l = data + concat + lho;
    if (pg_le32(l) != SIG_LOCAL)
        return pg_fail(PG_ERR_FORMAT, "ZIP member %s: no local header at offset %llu", name,
                       (unsigned long long)(concat + lho));
    if (pg_le16(l + 8) != 0)
        return pg_fail(PG_ERR_FORMAT, "ZIP member %s is compressed (method %u, %s) in its local header",
                       name, pg_le16(l + 8), method_name(pg_le16(l + 8)));
    uint64_t start = concat + lho + LOCAL_SIZE + pg_le16(l + 26) + pg_le16(l + 28);
    if (start > size || usize > size - start)
        return pg_fail(PG_ERR_FORMAT, "ZIP member %s: %llu bytes at offset %llu run past the end of the file",
                       name, (unsigned long long)usize, (unsigned long long)start);
    *offset = start;
    *length = usize;
    return PG_OK;
}

pg_status pg_zip_find_gguf(const uint8_t *data, uint64_t size, uint64_t *offset, uint64_t *length,
                           int *is_zip) {
    *is_zip = 0;
    int64_t eocd = find_eocd(data, size);
    if (eocd < 0) return pg_fail(PG_ERR_FORMAT, "no ZIP end of central directory record");
    *is_zip = 1;
    zip_dir z;
    PG_TRY(read_directory(data, size, (uint64_t)eocd, &z));
    uint64_t cd_start = z.cd_end - z.cd_size;
    uint64_t concat = cd_start - z.cd_off;   /* bytes before the archive that its offsets ignore */
    uint64_t p = cd_start;
    for (uint64_t k = 0; k < z.entries; k++) {
        if (z.cd_end - p < CENTRAL_SIZE || pg_le32(data + p) != SIG_CENTRAL)
            return pg_fail(PG_ERR_FORMAT, "ZIP central directory entry %llu at offset %llu is malformed",
                           (unsigned long long)k, (unsigned long long)p);
        const uint8_t *c = data + p;
        uint64_t nlen = pg_le16(c + 28), len = CENTRAL_SIZE + nlen + pg_le16(c + 30) + pg_le16(c + 32);
        if (z.cd_end - p < len)
            return pg_fail(PG_ERR_FORMAT, "ZIP central directory entry %llu at offset %llu runs past "
                           "the directory", (unsigned long long)k, (unsigned long long)p);
        const char *name = (const char *)c + CENTRAL_SIZE;
        if (nlen >= 5 && strncasecmp(name + nlen - 5, ".gguf", 5) == 0) {
            char q[96];
            pg_gguf_quote(q, sizeof q, name, nlen);
            return member_data(data, size, concat, c, q, offset, length);
        }
        p += len;
    }
    return pg_fail(PG_ERR_FORMAT, "ZIP archive (llamafile) has no member whose name ends in .gguf "
                   "(%llu members)", (unsigned long long)z.entries);
}
