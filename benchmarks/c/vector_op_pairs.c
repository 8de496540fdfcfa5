/* vector_op_pairs.c -- throughput of zmm instruction pairs on this core (why the normal's lookups
 * use vpermps where they can).  x86-64 with AVX-512 only; no PMU needed.
 *
 *   gcc -O2 -mavx512f benchmarks/c/vector_op_pairs.c -o build/vector_op_pairs && build/vector_op_pairs
 *
 * Each loop iteration issues 12 independent instructions (two kinds alternating, or one kind);
 * the time per instruction is converted to core cycles with a dependent vpaddd chain (latency 1).
 * A "2-source permute" is vmovaps (table copy, eliminated at rename) + vpermt2ps, as the
 * compiler emits it for a 32-entry in-register lookup.
 */
#include <stdint.h>
#include <stdio.h>
#include <x86intrin.h>

#define N 10000000L
#define S_(x) #x
#define S(x) S_(x)
#define PERM2(i) "vmovaps %%zmm22, %%zmm" S(i) "\n vpermt2ps %%zmm24, %%zmm23, %%zmm" S(i) "\n"
#define PERM1(i) "vpermps %%zmm22, %%zmm23, %%zmm" S(i) "\n"
#define FMA(i) "vfmadd231ps %%zmm20, %%zmm21, %%zmm" S(i) "\n"
#define TERN(i) "vpternlogq $0x96, %%zmm20, %%zmm21, %%zmm" S(i) "\n"
#define MUL(i) "vpmuludq %%zmm20, %%zmm21, %%zmm" S(i) "\n"
#define SRL(i) "vpsrlq $32, %%zmm21, %%zmm" S(i) "\n"
#define ONE(a) a(0) a(1) a(2) a(3) a(4) a(5) a(6) a(7) a(8) a(9) a(10) a(11)
#define TWO(a, b) a(0) b(1) a(2) b(3) a(4) b(5) a(6) b(7) a(8) b(9) a(10) b(11)
#define ADD1 "vpaddd %%zmm0, %%zmm0, %%zmm0\n"
#define CHAIN ADD1 ADD1 ADD1 ADD1 ADD1 ADD1 ADD1 ADD1 ADD1 ADD1 ADD1 ADD1

static double per_op(uint64_t ticks, double cycles_per_tick) { return (double)ticks / N / 12 * cycles_per_tick; }

#define RUN(name, body)                                                                             \
    do {                                                                                            \
        uint64_t t0 = __rdtsc();                                                                    \
        for (long i = 0; i < N; i++) __asm__ volatile(body ::: "memory");                          \
        printf("%-26s %.2f cycles per instruction\n", name, per_op(__rdtsc() - t0, cpt));           \
    } while (0)

int main(void)
{
    uint64_t t0 = __rdtsc();
    for (long i = 0; i < N; i++) __asm__ volatile(CHAIN ::: "memory");
    double cpt = 12.0 * N / (double)(__rdtsc() - t0);
    printf("core cycles per TSC tick: %.3f\n", cpt);
    RUN("2-source permute", ONE(PERM2));
    RUN("1-source permute", ONE(PERM1));
    RUN("fma", ONE(FMA));
    RUN("ternlog", ONE(TERN));
    RUN("2-source permute + fma", TWO(PERM2, FMA));
    RUN("1-source permute + fma", TWO(PERM1, FMA));
    RUN("2-source permute + ternlog", TWO(PERM2, TERN));
    RUN("1-source permute + ternlog", TWO(PERM1, TERN));
    RUN("fma + vpmuludq", TWO(FMA, MUL));
    RUN("vpmuludq + shift", TWO(MUL, SRL));
    RUN("vpmuludq + ternlog", TWO(MUL, TERN));
    return 0;
}
