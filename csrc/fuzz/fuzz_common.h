/* fuzz_common.h -- helpers shared by the libFuzzer harnesses in this folder.
 *
 * The harnesses are built by csrc/fuzz/Makefile (ci/fuzz.sh drives it) with
 * clang -fsanitize=fuzzer,address,undefined: any out-of-bounds access, leak or
 * undefined behaviour in the C core aborts the run.  FUZZ_CHECK adds the API's
 * own promises (size protocols, ids in range, ...) as findings too. */
#ifndef PG_FUZZ_COMMON_H
#define PG_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "pygemma.h"

void fuzz_check_failed(const char *file, int line, const char *cond);

/* A broken promise of the API: print it and crash, so libFuzzer saves the input. */
#define FUZZ_CHECK(cond) do { if (!(cond)) fuzz_check_failed(__FILE__, __LINE__, #cond); } while (0)

/* Read the first and the last of n bytes at p, so ASan checks the bounds a query returned. */
void fuzz_touch(const void *p, uint64_t n);

/* Every query of an open GGUF: metadata (nested arrays too), tensor infos, tensor data bounds. */
void fuzz_walk_gguf(const pg_gguf *g);

/* text -> ids with the size protocol checked (count query, exact buffer and, with
 * check_small, a buffer one too small); ids all in [0, n_vocab).  Returns malloc'd ids
 * (free them), *n = their count; NULL when the vocabulary has no byte token for some byte
 * of the text (PG_ERR_UNSUPPORTED: fuzzed vocabularies). */
int32_t *fuzz_tokenize(const pg_tokenizer *t, const char *text, size_t len, int add_special,
                       int parse_special, int check_small, int64_t *n);

/* ids -> bytes with the size protocol checked (as fuzz_tokenize); NULL when an id is
 * invalid (PG_ERR_ARG).  Returns malloc'd bytes (free them), *len = their count. */
char *fuzz_detokenize(const pg_tokenizer *t, const int32_t *ids, int64_t n, int special, int check_small,
                      size_t *len);

/* The tokenizer of the GGUF file named by $PYGEMMA_FUZZ_VOCAB (the default model: ci/fuzz.sh
 * sets it); exits with a message when it is not set or does not load. */
pg_tokenizer *fuzz_load_vocab(void);

#endif
