/* neon_check.c -- cross-check of the NEON tier against the scalar tier, for
 * machines without arm64 hardware: tests/test_kernels.py builds it with
 * aarch64-linux-gnu-gcc (statically, with and without +dotprod) and runs it
 * under qemu-aarch64 on CPU models with and without dotprod.
 *   1. Quantized types equal the scalar tier bit for bit (the canonical order
 *      of kernels.h), float types within summation-order tolerance; both the
 *      best variant (SDOT where the CPU has it) and the generic one.
 *   2. Batch invariance: each token's outputs of one batched pg_matmul equal
 *      that token alone (ntok = 1) bit for bit, every type, batch sizes on
 *      both sides of every kernel switch.
 * Random GGUF blocks with sane scales, ragged shapes.  Prints the kernels'
 * names ("kernels neon-dotprod" when the CPU has SDOT); exit status 1 on any
 * mismatch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "quants.h"
#include "kernels.h"
#include "types.h"
#include "cpu.h"

static uint64_t rs = 88172645463325252ull;
static uint32_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (uint32_t)rs; }
static float frand(void) { return ((rnd() & 0xFFFFFF) / 16777216.0f) * 2.0f - 1.0f; }

/* Each type and the byte offsets of its f16 scale fields within a block. */
static const struct { int type; int half[2]; int nh; } T[] = {
    {PG_TYPE_Q4_0, {0}, 1}, {PG_TYPE_Q4_1, {0, 2}, 2}, {PG_TYPE_Q5_0, {0}, 1}, {PG_TYPE_Q5_1, {0, 2}, 2},
    {PG_TYPE_Q8_0, {0}, 1}, {PG_TYPE_Q2_K, {80, 82}, 2}, {PG_TYPE_Q3_K, {108}, 1}, {PG_TYPE_Q4_K, {0, 2}, 2},
    {PG_TYPE_Q5_K, {0, 2}, 2}, {PG_TYPE_Q6_K, {208}, 1}, {PG_TYPE_F32, {0}, 0}, {PG_TYPE_F16, {0}, 0}, {PG_TYPE_BF16, {0}, 0},
};
#define NTYPES ((int)(sizeof T / sizeof T[0]))

static int is_float(int t) { return t == PG_TYPE_F32 || t == PG_TYPE_F16 || t == PG_TYPE_BF16; }

/* Random weights of type T[ti]: (rows, cols) elements, returned malloc'd. */
static uint8_t *rand_weights(int ti, int rows, int64_t cols) {
    int t = T[ti].type;
    int64_t bs = pg_type_block_size(t), bb = pg_type_block_bytes(t), nbytes = rows * cols / bs * bb;
    uint8_t *w = malloc(nbytes);   /* (rows, cols / bs * bb) */
    if (t == PG_TYPE_F32) for (int64_t i = 0; i < rows * cols; i++) ((float *)w)[i] = frand();
    else if (t == PG_TYPE_F16) for (int64_t i = 0; i < rows * cols; i++) ((uint16_t *)w)[i] = pg_f32_to_half(frand());
    else if (t == PG_TYPE_BF16) for (int64_t i = 0; i < rows * cols; i++) ((uint16_t *)w)[i] = pg_f32_to_bf16(frand());
    else {
        for (int64_t i = 0; i < nbytes; i++) w[i] = rnd() & 0xFF;
        for (int64_t b = 0; b < rows * cols / bs; b++)
            for (int h = 0; h < T[ti].nh; h++) {
                pg_half v = pg_f32_to_half(0.002f + 0.02f * fabsf(frand()) * (rnd() & 1 ? 1 : -1));
                memcpy(w + b * bb + T[ti].half[h], &v, 2);
            }
    }
    return w;
}

static int run(pg_pool *pool, int tier, int generic, int t, const uint8_t *w, int rows, int64_t cols,
               const float *x, int ntok, float *y) {
    pg_cpu_tier_set(tier);
    pg_kernels_set_generic(generic);
    if (pg_matmul(pool, t, w, rows, cols, x, ntok, y)) { printf("%s\n", pg_last_error()); return 1; }
    return 0;
}

/* 1. NEON (best or generic variant) against the scalar tier. */
static int check_vs_scalar(pg_pool *pool, int ti, int *fails) {
    int t = T[ti].type;
    int64_t bs = pg_type_block_size(t);
    int rows_l[] = {1, 3, 7, 17}, ntok_l[] = {1, 2, 3, 4, 5, 16, 33};
    for (int ri = 0; ri < 4; ri++) for (int ni = 0; ni < 7; ni++) {
        int rows = rows_l[ri], ntok = ntok_l[ni];
        int64_t cols = bs == 256 ? 256 * (1 + (ri + ni) % 3) : (bs == 32 ? 32 * (1 + (ri * 5 + ni) % 7) : 7 + 13 * (ri + ni));
        uint8_t *w = rand_weights(ti, rows, cols);
        float *x = malloc(ntok * cols * 4), *y0 = malloc(ntok * rows * 4), *y1 = malloc(ntok * rows * 4);
        for (int64_t i = 0; i < ntok * cols; i++) x[i] = frand() * 3;
        if (run(pool, PG_CPU_SCALAR, 0, t, w, rows, cols, x, ntok, y0)) return 1;
        for (int generic = 0; generic < 2; generic++) {
            if (run(pool, PG_CPU_NEON, generic, t, w, rows, cols, x, ntok, y1)) return 1;
            if (!is_float(t)) {   /* the canonical order: bit for bit */
                if (memcmp(y0, y1, (size_t)ntok * rows * 4)) {
                    (*fails)++;
                    int i = 0;
                    while (memcmp(&y0[i], &y1[i], 4) == 0) i++;
                    printf("FAIL %s%s rows=%d cols=%lld ntok=%d: y[%d] scalar %.9g neon %.9g\n", pg_type_name(t),
                           generic ? " (generic)" : "", rows, (long long)cols, ntok, i, y0[i], y1[i]);
                }
                continue;
            }
            /* float types: summation order only, errors ~1e-7 of the output scale; bugs ~1e-1 */
            double maxerr = 0, scale = 1e-30;
            for (int i = 0; i < ntok * rows; i++) {
                if (fabs(y0[i] - y1[i]) > maxerr) maxerr = fabs(y0[i] - y1[i]);
                if (fabs(y0[i]) > scale) scale = fabs(y0[i]);
            }
            if (!(maxerr / scale <= 1e-5)) {
                (*fails)++;
                printf("FAIL %s%s rows=%d cols=%lld ntok=%d rel=%g\n", pg_type_name(t), generic ? " (generic)" : "",
                       rows, (long long)cols, ntok, maxerr / scale);
            }
        }
        free(w); free(x); free(y0); free(y1);
    }
    return 0;
}

/* 2. Every token of a batch equals that token alone, bit for bit. */
static int check_batch_invariance(pg_pool *pool, int ti, int *fails) {
    int t = T[ti].type;
    int batch_l[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33}, nbatch = 11, maxtok = 33;
    struct { int rows; int64_t cols; } shape[] = {{37, 512}, {66, 1024}};   /* the larger splits mat-vec too */
    for (int si = 0; si < 2; si++) {
        int rows = shape[si].rows;
        int64_t cols = is_float(t) ? shape[si].cols - 3 : shape[si].cols;   /* ragged tails for floats */
        uint8_t *w = rand_weights(ti, rows, cols);
        float *x = malloc(maxtok * cols * 4), *alone = malloc(maxtok * rows * 4), *y = malloc(maxtok * rows * 4);
        for (int64_t i = 0; i < maxtok * cols; i++) x[i] = frand() * 3;
        for (int generic = 0; generic < 2; generic++) {
            for (int c = 0; c < maxtok; c++)
                if (run(pool, PG_CPU_NEON, generic, t, w, rows, cols, x + c * cols, 1, alone + c * rows)) return 1;
            for (int bi = 0; bi < nbatch; bi++) {
                int ntok = batch_l[bi];
                if (run(pool, PG_CPU_NEON, generic, t, w, rows, cols, x, ntok, y)) return 1;
                for (int c = 0; c < ntok; c++)
                    if (memcmp(y + c * rows, alone + c * rows, (size_t)rows * 4)) {
                        (*fails)++;
                        printf("FAIL batch invariance %s%s rows=%d cols=%lld ntok=%d: token %d differs from ntok=1\n",
                               pg_type_name(t), generic ? " (generic)" : "", rows, (long long)cols, ntok, c);
                        break;
                    }
            }
        }
        free(w); free(x); free(alone); free(y);
    }
    return 0;
}

int main(void) {
    pg_pool *pool;
    if (pg_pool_create(3, &pool)) { printf("pool: %s\n", pg_last_error()); return 1; }
    pg_cpu_tier_set(PG_CPU_NEON);
    printf("tier %s kernels %s", pg_cpu_tier_name(pg_cpu_tier_get()), pg_kernels_name());
    pg_kernels_set_generic(1);
    printf(" (generic: %s), cpu features: %s\n", pg_kernels_name(), pg_cpu_features());
    pg_kernels_set_generic(0);
    int fails = 0;
    for (int ti = 0; ti < NTYPES; ti++) {
        if (check_vs_scalar(pool, ti, &fails) || check_batch_invariance(pool, ti, &fails)) return 1;
        printf("%s done\n", pg_type_name(T[ti].type));
    }
    pg_kernels_set_generic(0);
    /* helpers */
    for (int n = 0; n < 70; n += 7) {
        float a[80], b[80], y0[80], y1[80]; uint16_t h[80], h0[80], h1[80];
        for (int i = 0; i < n; i++) { a[i] = frand(); b[i] = frand(); h[i] = pg_f32_to_half(frand()); y0[i] = y1[i] = frand(); }
        pg_cpu_tier_set(PG_CPU_SCALAR);
        float d0 = pg_dot_f32(n, a, b), s0 = pg_sum_sq_f32(n, a), e0 = pg_dot_f32_f16(n, a, h);
        pg_axpy_f16(n, 0.5f, h, y0); pg_f32_to_f16_row(n, a, h0);
        pg_cpu_tier_set(PG_CPU_NEON);
        float d1 = pg_dot_f32(n, a, b), s1 = pg_sum_sq_f32(n, a), e1 = pg_dot_f32_f16(n, a, h);
        pg_axpy_f16(n, 0.5f, h, y1); pg_f32_to_f16_row(n, a, h1);
        if (fabsf(d0 - d1) > 1e-5f * (1 + n) || fabsf(s0 - s1) > 1e-5f * (1 + n) || fabsf(e0 - e1) > 1e-5f * (1 + n) ||
            memcmp(h0, h1, 2 * n)) { fails++; printf("FAIL helpers n=%d\n", n); }
        for (int i = 0; i < n; i++) if (fabsf(y0[i] - y1[i]) > 1e-6f) { fails++; printf("FAIL axpy n=%d\n", n); break; }
    }
    pg_pool_free(pool);
    printf("%s (%d failures)\n", fails ? "FAILED" : "OK", fails);
    return fails != 0;
}
