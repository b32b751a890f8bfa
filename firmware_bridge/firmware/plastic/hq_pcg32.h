/* PCG32 (O'Neill, pcg-random.org: 64-bit LCG state, XSH RR output): a small portable generator the
 * robot draws each lifetime's initial weights from. controller/network.py (init "uniform_pcg32")
 * runs the same generator, so a seed gives the same float32 weights on the host and the robot. */
#ifndef HQ_PCG32_H
#define HQ_PCG32_H

#include <stdint.h>

/* The stream initial weights are drawn from (PCG's second seed: increment 2 * stream + 1). */
#define HQ_PCG32_WEIGHT_STREAM 0u

typedef struct {
    uint64_t state;
    uint64_t inc;
} hq_pcg32;

/* pcg32_srandom_r of the reference: the same seed and stream give the reference's sequence. */
void hq_pcg32_seed(hq_pcg32 *rng, uint64_t seed, uint64_t stream);

uint32_t hq_pcg32_next(hq_pcg32 *rng);

/* A weight uniform in [-0.1, 0.1): the draw's top 24 bits, centred, times 0.1 / 2^23 (one rounding,
 * the same on any IEEE-754 float32 unit). */
float hq_pcg32_uniform_weight(hq_pcg32 *rng);

#endif
