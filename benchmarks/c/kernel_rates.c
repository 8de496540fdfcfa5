/* kernel_rates.c -- single-core, in-cache rates of the C fill kernels (no Numba, no memory traffic).
 *
 *   cmake -S . -B build && cmake --build build
 *   cc -O2 -Ikernels/include benchmarks/c/kernel_rates.c -Lfastinit -lfastinit \
 *      -Wl,-rpath,$PWD/fastinit -o build/kernel_rates && build/kernel_rates [level]
 *
 * level: 0 scalar, 1 avx2, 2 avx512 (default: the level chosen at load time).  Each kernel fills a
 * 64 KiB float32 buffer 20000 times from successive counters; the best of 5 repetitions is shown
 * in values (or 32-bit words) per second.  The truncated normal is the benchmark's
 * trunc_normal_(std=0.02, a=-0.04, b=0.04), i.e. +-2 sigma, in the quantile-table mode (4) that
 * it runs in, in the float32 polynomial mode (2) of wider intervals, and in the double-precision
 * mode (0) that float64 outputs and far tails use.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "fastinit.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define N (1 << 14)
#define REPS 20000

#define RATE(name, call)                                                                  \
    do {                                                                                  \
        double best = 1e30;                                                               \
        for (int k = 0; k < 5; k++) {                                                     \
            double t = now();                                                             \
            for (int r = 0; r < REPS; r++) { call; }                                     \
            t = now() - t;                                                                \
            if (t < best) best = t;                                                       \
        }                                                                                 \
        printf("%-24s %6.2f G values/s   %6.2f GiB/s of float32\n", name,                  \
               (double)N * REPS / best / 1e9, 4.0 * N * REPS / best / (1 << 30));         \
    } while (0)

int main(int argc, char **argv)
{
    static float out[N] __attribute__((aligned(64)));
    if (argc > 1 && fi_simd_set(atoi(argv[1])) < 0) {
        fprintf(stderr, "level %s cannot run here\n", argv[1]);
        return 2;
    }
    printf("SIMD level %d, one thread, %d float32 values per call\n", fi_simd_level(), N);
    const double pa = 0.022750131948179195;              /* Phi(-2) */
    RATE("raw words", fi_raw_u32(1, 0, (uint64_t)r * (N / 4), 0, N, (uint32_t *)out));
    RATE("uniform f32", fi_fill_uniform_f32(1, 0, (uint64_t)r * (N / 4), 0, N, out, FI_OUT_F32,
                                            -1.f, 1.f, -1.f, 0.99999994f));
    RATE("normal f32", fi_fill_normal_f32(1, 0, (uint64_t)r * (N / 4), 0, N, out, FI_OUT_F32, 0.f, 1.f));
    static float table[FI_TT_SIZE];
    fi_trunc_table(pa, 1 - 2 * pa, pa, 0.0, 0.02, table);
    RATE("trunc f32, table mode", fi_fill_trunc_table_f32(1, 0, (uint64_t)r * (N / 4), 0, N, out, FI_OUT_F32,
                                                          table, -0.04f, 0.04f));
    RATE("trunc f32, float32 mode", fi_fill_trunc_f32(1, 0, (uint64_t)r * (N / 4), 0, N, out, FI_OUT_F32, 2,
                                                      pa, 1 - 2 * pa, pa, 0.0, 0.02, -0.04f, 0.04f));
    RATE("trunc f32, double mode", fi_fill_trunc_f32(1, 0, (uint64_t)r * (N / 4), 0, N, out, FI_OUT_F32, 0,
                                                     pa, 1 - 2 * pa, 1.0, 0.0, 0.02, -0.04f, 0.04f));
    return 0;
}
