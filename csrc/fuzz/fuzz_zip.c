/* fuzz_zip.c -- libFuzzer harness: the input is a llamafile (anything, then a ZIP archive
 * with a stored .gguf member).
 *
 * pg_zip_find_gguf must either fail with PG_ERR_FORMAT or name a member that lies inside
 * the input (its first and last bytes are read, so ASan checks the bounds); then the whole
 * input goes through pg_gguf_open_memory, which takes the same ZIP path and parses the
 * member as a GGUF, whose every query must work. */
#include "fuzz_common.h"
#include "zipfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t off = 0, len = 0;
    int is_zip = 0;
    pg_status st = pg_zip_find_gguf(data, size, &off, &len, &is_zip);
    if (st == PG_OK) {
        FUZZ_CHECK(is_zip == 1);
        FUZZ_CHECK(off <= size && len <= size - off);
        fuzz_touch(data + off, len);
    } else {
        FUZZ_CHECK(st == PG_ERR_FORMAT && pg_last_error()[0] != '\0');
    }

    pg_gguf *g = NULL;
    st = pg_gguf_open_memory(data, size, &g);
    if (st != PG_OK) {
        FUZZ_CHECK(g == NULL && (st == PG_ERR_FORMAT || st == PG_ERR_UNSUPPORTED || st == PG_ERR_NOMEM));
        return 0;
    }
    FUZZ_CHECK(pg_gguf_image_offset(g) + pg_gguf_image_size(g) <= size);
    fuzz_walk_gguf(g);
    pg_gguf_close(g);
    return 0;
}
