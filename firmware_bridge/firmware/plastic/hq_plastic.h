/* The plastic control tick in C99: forward pass and Hebbian update of a genome's network, float32,
 * no allocation, every size fixed at compile time by the header `controller export --format c`
 * writes (HQ_GENOME_HEADER, default "genome.h", found on the include path).
 *
 * Operation for operation the fused numba tick of controller/_fused.py (sums in input order, tanh in
 * double by the same series, the rule's terms added in its order, one division per weight to
 * normalise), so the two agree to the last bit on IEEE-754 hardware without FMA contraction
 * (build with -ffp-contract=off; -std=c99 implies it with gcc). */
#ifndef HQ_PLASTIC_H
#define HQ_PLASTIC_H

#include <stdint.h>

#ifndef HQ_GENOME_HEADER
#define HQ_GENOME_HEADER "genome.h"
#endif
#include HQ_GENOME_HEADER

#ifndef HQ_PLASTICITY_PERIOD /* headers exported before the slower plasticity clock: every tick */
#define HQ_PLASTICITY_PERIOD 1
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* A network's whole state (the caller owns it: static, on the stack, anywhere). Weights input-major
 * per layer, layers in order; then every layer's activations, the observation first and the action
 * last; with a plasticity period over one tick, each neuron's activation summed since the last weight
 * change and then the count of ticks summed. Float arrays only, so a foreign-function caller may
 * treat it as one float32 array. */
typedef struct {
    float weights[HQ_SYNAPSES];
    float activations[HQ_NEURONS];
#if HQ_PLASTICITY_PERIOD > 1
    float sums[HQ_NEURONS + 1];
#endif
} hq_plastic;

/* Start a lifetime: the genome's co-evolved initial weights, or weights uniform in [-0.1, 0.1) drawn
 * from PCG32 with this seed (the seed is then ignored for co-evolved ones); activations zero. */
void hq_plastic_reset(hq_plastic *net, uint64_t seed);

/* One control tick: load the observation (HQ_OBS_SIZE values, the layout of genome.h), forward pass,
 * plasticity update (every HQ_PLASTICITY_PERIOD-th tick, on the mean activations since the last). Returns the action, HQ_ACTION_SIZE values inside net, valid until the next call. */
const float *hq_plastic_tick(hq_plastic *net, const float *observation);

/* The sum of the squared weights of each layer (HQ_LAYERS values into sums): its square root, the
 * layer's norm, tells the host how far plasticity has taken a network it does not run. The caller takes
 * the root, so the kernel needs no math library. */
void hq_plastic_weight_squares(const hq_plastic *net, float *sums);

#ifdef __cplusplus
}
#endif

#endif
