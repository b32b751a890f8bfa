#include "hq_pcg32.h"

#define HQ_PCG32_MULTIPLIER UINT64_C(6364136223846793005)

uint32_t hq_pcg32_next(hq_pcg32 *rng)
{
    uint64_t old = rng->state;
    rng->state = old * HQ_PCG32_MULTIPLIER + rng->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18) ^ old) >> 27);
    uint32_t rot = (uint32_t)(old >> 59);
    return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
}

void hq_pcg32_seed(hq_pcg32 *rng, uint64_t seed, uint64_t stream)
{
    rng->state = 0u;
    rng->inc = (stream << 1) | 1u;
    (void)hq_pcg32_next(rng);
    rng->state += seed;
    (void)hq_pcg32_next(rng);
}

float hq_pcg32_uniform_weight(hq_pcg32 *rng)
{
    int32_t centred = (int32_t)(hq_pcg32_next(rng) >> 8) - 8388608;
    return (float)centred * (0.1f / 8388608.0f);
}
