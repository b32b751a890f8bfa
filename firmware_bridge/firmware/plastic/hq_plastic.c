#include <math.h>
#include <string.h>

#define HQ_GENOME_DATA /* the genome's tables are defined here, once */
#include "hq_pcg32.h"
#include "hq_plastic.h"

/* 1/11! ... 1/1!: expm1's Taylor series in Horner order, as controller/_fused.py sums it. */
static const double hq_expm1_taylor[11] = {
    1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0,
    1.0 / 120.0,      1.0 / 24.0,      1.0 / 6.0,      1.0 / 2.0,     1.0,
};

/* tanh(x) = u / (u + 2), u = expm1(2|x|) by the series of 2|x|/32 and five doublings, in double and
 * rounded once: the nearest float32 on every value tested, and the numba kernel's value bit for bit
 * (a libm tanhf would be up to an ulp off it, and such differences grow over a plastic lifetime). */
static float hq_tanh(float x)
{
    double a = fabs((double)x);
    a = a > 20.0 ? 20.0 : a; /* float32 tanh is +-1 from 9.01 on; NaN passes through */
    double r = a * (2.0 / 32.0);
    double u = 0.0;
    for (unsigned k = 0; k < 11u; ++k) {
        u = u * r + hq_expm1_taylor[k];
    }
    u *= r;
    for (unsigned k = 0; k < 5u; ++k) {
        u = u * (2.0 + u);
    }
    double t = u / (u + 2.0);
    return (float)(x < 0.0f ? -t : t);
}

/* y = x @ w, each sum in input order (the order numba's and numpy's sums round in), then tanh. */
static void hq_forward(const float *x, const float *w, float *y, unsigned n_in, unsigned n_out, int squash)
{
    for (unsigned j = 0; j < n_out; ++j) {
        float sum = 0.0f;
        for (unsigned i = 0; i < n_in; ++i) {
            sum += x[i] * w[i * n_out + j];
        }
        y[j] = squash ? hq_tanh(sum) : sum;
    }
}

#if HQ_NORMALISE
/* |w|'s bits: for non-negative floats their order is the values' order, and NaN's are above all,
 * so an integer max finds the peak as np.max(np.abs(w)) does, NaN included. */
static uint32_t hq_magnitude_bits(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits & 0x7fffffffu;
}

/* w / max|w| (its bits given), when that max is positive: one correctly rounded division per weight. */
static void hq_normalise(float *w, unsigned n, uint32_t peak_bits)
{
    float peak;
    memcpy(&peak, &peak_bits, sizeof peak);
    if (peak > 0.0f) {
        for (unsigned s = 0; s < n; ++s) {
            w[s] = w[s] / peak;
        }
    }
}
#endif

/* w += eta * (A*pre*post + B*pre + C*post + D) with eta folded in, summed in the numpy path's order;
 * terms the rule lacks are not stored (adding their exact zeros would change no value). `at` is the
 * layer's first synapse in the genome's term tables. Then, if the genome says so, w / max|w|. */
static void hq_update(float *w, const float *x, const float *y, unsigned n_in, unsigned n_out, unsigned at)
{
#if HQ_NORMALISE
    uint32_t peak_bits = 0u;
#endif
    for (unsigned i = 0; i < n_in; ++i) {
        const float pre = x[i];
        for (unsigned j = 0; j < n_out; ++j) {
            const unsigned s = i * n_out + j;
            const float post = y[j];
            float dw = hq_term_a[at + s] * (pre * post);
#if HQ_HAS_B
            dw = dw + hq_term_b[at + s] * pre;
#endif
#if HQ_HAS_C
            dw = dw + hq_term_c[at + s] * post;
#endif
#if HQ_HAS_D
            dw = dw + hq_term_d[at + s];
#endif
            w[s] = w[s] + dw;
#if HQ_NORMALISE
            const uint32_t bits = hq_magnitude_bits(w[s]);
            peak_bits = bits > peak_bits ? bits : peak_bits;
#endif
        }
    }
#if HQ_NORMALISE
    hq_normalise(w, n_in * n_out, peak_bits);
#endif
}

void hq_plastic_reset(hq_plastic *net, uint64_t seed)
{
#if HQ_COEVOLVED
    (void)seed;
    memcpy(net->weights, hq_initial_weights, sizeof net->weights);
#else
    hq_pcg32 rng;
    hq_pcg32_seed(&rng, seed, HQ_PCG32_WEIGHT_STREAM);
    for (unsigned s = 0; s < HQ_SYNAPSES; ++s) {
        net->weights[s] = hq_pcg32_uniform_weight(&rng);
    }
#endif
    memset(net->activations, 0, sizeof net->activations);
#if HQ_PLASTICITY_PERIOD > 1
    memset(net->sums, 0, sizeof net->sums);
#endif
}

const float *hq_plastic_tick(hq_plastic *net, const float *observation)
{
    float *x = net->activations;
    memcpy(x, observation, HQ_OBS_SIZE * sizeof *x);
    for (unsigned layer = 0, at = 0; layer < HQ_LAYERS; ++layer) {
        const unsigned n_in = hq_layer_sizes[layer];
        const unsigned n_out = hq_layer_sizes[layer + 1];
        hq_forward(x, net->weights + at, x + n_in, n_in, n_out, hq_layer_tanh[layer]);
        x += n_in;
        at += n_in * n_out;
    }
    /* A layer's update changes only its own weights, which no other layer's forward pass reads: all
     * the forward passes, then all the updates, is the same as layer by layer. */
    const float *pre = net->activations;
#if HQ_PLASTICITY_PERIOD > 1
    for (unsigned n = 0; n < HQ_NEURONS; ++n) {
        net->sums[n] = net->sums[n] + net->activations[n];
    }
    net->sums[HQ_NEURONS] = net->sums[HQ_NEURONS] + 1.0f;
    if (net->sums[HQ_NEURONS] < (float)HQ_PLASTICITY_PERIOD) {
        return x;
    }
    for (unsigned n = 0; n < HQ_NEURONS; ++n) {
        net->sums[n] = net->sums[n] / (float)HQ_PLASTICITY_PERIOD;
    }
    pre = net->sums;
#endif
    for (unsigned layer = 0, at = 0; layer < HQ_LAYERS; ++layer) {
        const unsigned n_in = hq_layer_sizes[layer];
        const unsigned n_out = hq_layer_sizes[layer + 1];
        hq_update(net->weights + at, pre, pre + n_in, n_in, n_out, at);
        pre += n_in;
        at += n_in * n_out;
    }
#if HQ_PLASTICITY_PERIOD > 1
    memset(net->sums, 0, sizeof net->sums);
#endif
    return x;
}

void hq_plastic_weight_squares(const hq_plastic *net, float *sums)
{
    unsigned at = 0;
    for (unsigned layer = 0; layer < HQ_LAYERS; ++layer) {
        const unsigned n = hq_layer_sizes[layer] * hq_layer_sizes[layer + 1];
        float sum = 0.0f;
        for (unsigned s = 0; s < n; ++s) {
            sum += net->weights[at + s] * net->weights[at + s];
        }
        sums[layer] = sum;
        at += n;
    }
}
