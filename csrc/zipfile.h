/* zipfile.h -- find the GGUF inside a llamafile (an executable that is also a
 * ZIP archive).  Internal. */
#ifndef PG_ZIPFILE_H
#define PG_ZIPFILE_H

#include "internal.h"

/* Locate the first member, in central-directory order, whose name ends in
 * ".gguf" (any case), which must be stored uncompressed.
 *   data: (size) bytes of the whole file; anything may precede the archive
 *   *offset, *length: where that member's bytes lie in data
 *   *is_zip: set to 1 as soon as an end-of-central-directory record is found,
 *            so the caller can tell "not a ZIP at all" from "a broken ZIP".
 * Errors are PG_ERR_FORMAT with a message naming the member or the record. */
pg_status pg_zip_find_gguf(const uint8_t *data, uint64_t size, uint64_t *offset, uint64_t *length,
                           int *is_zip);

#endif
