/* neon_check.c -- cross-check of the NEON tier against the scalar tier, for
 * machines without arm64 hardware: tests/test_kernels.py builds it with
 * aarch64-linux-gnu-gcc (statically, with and without +dotprod) and runs it
 * under qemu-aarch64 when both are installed.  Random GGUF blocks with sane
 * scales, ragged shapes; exit status 1 on any mismatch. */
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

static const struct { int type; int half[2]; int nh; } T[] = {
    {PG_TYPE_Q4_0, {0}, 1}, {PG_TYPE_Q4_1, {0, 2}, 2}, {PG_TYPE_Q5_0, {0}, 1}, {PG_TYPE_Q5_1, {0, 2}, 2},
    {PG_TYPE_Q8_0, {0}, 1}, {PG_TYPE_Q2_K, {80, 82}, 2}, {PG_TYPE_Q3_K, {108}, 1}, {PG_TYPE_Q4_K, {0, 2}, 2},
    {PG_TYPE_Q5_K, {0, 2}, 2}, {PG_TYPE_Q6_K, {208}, 1}, {PG_TYPE_F32, {0}, 0}, {PG_TYPE_F16, {0}, 0}, {PG_TYPE_BF16, {0}, 0},
};

int main(void) {
    pg_pool *pool;
    if (pg_pool_create(3, &pool)) { printf("pool: %s\n", pg_last_error()); return 1; }
    printf("tier %s kernels %s\n", pg_cpu_tier_name(pg_cpu_tier_get()), pg_kernels_name());
    int fails = 0;
    int rows_l[] = {1, 3, 7, 17}, ntok_l[] = {1, 2, 5, 16, 33};
    for (size_t ti = 0; ti < sizeof T / sizeof T[0]; ti++) {
        int t = T[ti].type;
        int64_t bs = pg_type_block_size(t), bb = pg_type_block_bytes(t);
        for (int ri = 0; ri < 4; ri++) for (int ni = 0; ni < 5; ni++) {
            int rows = rows_l[ri], ntok = ntok_l[ni];
            int64_t cols = bs == 256 ? 256 * (1 + (ri + ni) % 3) : (bs == 32 ? 32 * (1 + (ri * 5 + ni) % 7) : 7 + 13 * (ri + ni));
            int64_t nbytes = rows * cols / bs * bb;
            uint8_t *w = malloc(nbytes);
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
            float *x = malloc(ntok * cols * 4), *y0 = malloc(ntok * rows * 4), *y1 = malloc(ntok * rows * 4);
            for (int64_t i = 0; i < ntok * cols; i++) x[i] = frand() * 3;
            pg_cpu_tier_set(PG_CPU_SCALAR);
            if (pg_matmul(pool, t, w, rows, cols, x, ntok, y0)) { printf("%s\n", pg_last_error()); return 1; }
            pg_cpu_tier_set(PG_CPU_NEON);
            if (pg_matmul(pool, t, w, rows, cols, x, ntok, y1)) { printf("%s\n", pg_last_error()); return 1; }
            /* float summation order only: errors ~1e-7 of the output scale; bugs ~1e-1 */
            double maxerr = 0, scale = 1e-30;
            for (int i = 0; i < ntok * rows; i++) {
                if (fabs(y0[i] - y1[i]) > maxerr) maxerr = fabs(y0[i] - y1[i]);
                if (fabs(y0[i]) > scale) scale = fabs(y0[i]);
            }
            double maxrel = maxerr / scale;
            if (!(maxrel <= 1e-5)) { fails++; printf("FAIL %s rows=%d cols=%lld ntok=%d rel=%g\n", pg_type_name(t), rows, (long long)cols, ntok, maxrel); }
            free(w); free(x); free(y0); free(y1);
        }
        printf("%s done\n", pg_type_name(t));
    }
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
