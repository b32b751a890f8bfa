/* A tiny main for the cross-build figures and the host/ARM agreement check: reset from a fixed seed,
 * HQ_BENCH_TICKS ticks on observations drawn from PCG32 in [-1, 1), then one line: the last action's
 * bits and an FNV-1a hash of the whole state, in hex. Integer and float32 arithmetic only, so every
 * IEEE-754 build prints the same line. On ARM it runs under qemu-arm (Linux user mode) with no C
 * library start-up: _start and two system calls below. */
#include <stdint.h>
#include <string.h>

#include "hq_pcg32.h"
#include "hq_plastic.h"

#ifndef HQ_BENCH_TICKS
#define HQ_BENCH_TICKS 100
#endif

static hq_plastic net;

static void hq_write(const char *text, unsigned length);

static char *hq_hex(char *at, uint32_t value)
{
    for (int shift = 28; shift >= 0; shift -= 4) {
        *at++ = "0123456789abcdef"[(value >> shift) & 15u];
    }
    return at;
}

static int bench(void)
{
    hq_pcg32 rng;
    float observation[HQ_OBS_SIZE];
    const float *action = net.activations;
    hq_plastic_reset(&net, UINT64_C(0x5eed));
    hq_pcg32_seed(&rng, 1u, 2u);
    for (unsigned tick = 0; tick < HQ_BENCH_TICKS; ++tick) {
        for (unsigned i = 0; i < HQ_OBS_SIZE; ++i) {
            observation[i] = 10.0f * hq_pcg32_uniform_weight(&rng);
        }
        action = hq_plastic_tick(&net, observation);
    }
    char line[9 * (HQ_ACTION_SIZE + 1) + 1];
    char *at = line;
    for (unsigned j = 0; j < HQ_ACTION_SIZE; ++j) {
        uint32_t bits;
        memcpy(&bits, &action[j], sizeof bits);
        at = hq_hex(at, bits);
        *at++ = ' ';
    }
    uint32_t hash = 2166136261u;
    const unsigned char *byte = (const unsigned char *)&net;
    for (unsigned k = 0; k < sizeof net; ++k) {
        hash = (hash ^ byte[k]) * 16777619u;
    }
    at = hq_hex(at, hash);
    *at++ = '\n';
    hq_write(line, (unsigned)(at - line));
    return 0;
}

#ifdef __arm__
/* Linux system calls (EABI: number in r7, svc 0), which qemu-arm serves. */
static long hq_syscall(long number, long a, long b, long c)
{
    register long r0 __asm__("r0") = a;
    register long r1 __asm__("r1") = b;
    register long r2 __asm__("r2") = c;
    register long r7 __asm__("r7") = number;
    __asm__ volatile("svc 0" : "+r"(r0) : "r"(r1), "r"(r2), "r"(r7) : "memory");
    return r0;
}

static void hq_write(const char *text, unsigned length)
{
    (void)hq_syscall(4, 1, (long)text, (long)length);
}

void _start(void);
void _start(void)
{
    (void)hq_syscall(1, bench(), 0, 0);
    for (;;) {
    }
}
#else
#include <stdio.h>

static void hq_write(const char *text, unsigned length)
{
    fwrite(text, 1, length, stdout);
}

int main(void)
{
    return bench();
}
#endif
