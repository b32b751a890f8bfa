"""Cost of one control tick of the Ant-sized plastic network, per backend, against a memory floor.

    PYTHONPATH=. python bench/tick.py [--rounds 61] [--normalise off|on|off,on] [--rules A,...] [--period K]

For the Ant network (27 -> 128 -> 64 -> 8, tanh after every layer) and each of the nine rules, one line:
the median µs of one ``network.tick(obs)`` (forward pass and plasticity update, as the control loop
calls it: a new observation in, action copied out) for every backend installed (numpy always; numba and
onnxruntime with their extras), and as the floor, timed in the same rounds, one ``np.multiply(c, c,
out=o)`` over the genome's coefficient array (float32, synapses x coefficients per synapse: 12,160 x 5 =
60,800 for ABCD_lr). Each rule's line ends with ``ratio``: the fastest backend's tick over the floor. By
default the rule runs as the paper defines it; ``--normalise off,on`` adds a second table with the
per-layer max-|w| normalisation the shipped genomes use, which costs one more pass over the weights (a
division of every weight, rounded as numpy rounds it). ``--period K`` times a slower plasticity clock
(the weights change every K-th tick, on mean activations): the mean cost of a tick over K ticks.

The genome is random (coefficients N(0, 0.1)), as are the observations (N(0, 0.5), a new one each
tick). Under rule A with normalisation most weights end up subnormal (the largest synapse wins every
update and the division shrinks the rest), and subnormal arithmetic is slow: its row shows that.

Method: each callable is warmed up first (numba's compile or cache load, onnxruntime's first runs)
and given a block of calls lasting about 0.5 ms; then every round times one block of each backend
and of the floor in turn, so a busy machine slows them alike; the figure is the median over the
rounds. Each callable has five instances (networks, or coefficient and output arrays) allocated
apart, used in turn by the rounds: on the machine this was written on, the floor of one allocation
could be 40% slower than another's (likely where their physical pages fall in the cache), so the
median over rounds is also a median over allocations.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np

from controller.genome import Genome
from controller.network import MAX_PLASTICITY_PERIOD, NetworkSpec
from controller.rules import RULES

LAYERS = (27, 128, 64, 8)
BLOCK_S = 5e-4  # short blocks: most fit between the scheduler's switches to other processes
INSTANCES = 5  # where arrays land in physical memory moves the floor by up to 40% here


def installed_backends() -> list[str]:
    """numpy and numba (a core dependency), and onnx when its extra is installed."""
    backends = ["numpy", "numba"]
    if all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime")):
        backends.append("onnx")
    return backends


def block_size(instances: list[Callable[[], object]]) -> int:
    """Warm every instance up, then the number of calls that lasts about BLOCK_S."""
    for fn in instances:
        for _ in range(100):
            fn()
    start = time.perf_counter()
    for _ in range(100):
        instances[0]()
    per_call = (time.perf_counter() - start) / 100
    return max(10, round(BLOCK_S / per_call))


def measure(calls: dict[str, list[Callable[[], object]]], rounds: int) -> dict[str, float]:
    """Median over rounds of the µs per call of each callable. The callables take turns within a
    round, and each round uses the next of a callable's instances (separately allocated copies)."""
    blocks = {name: block_size(instances) for name, instances in calls.items()}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(rounds):
        for name, instances in calls.items():
            fn, n = instances[r % len(instances)], blocks[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            times[name].append((time.perf_counter() - start) / n * 1e6)
    return {name: statistics.median(t) for name, t in times.items()}


def _tick(tick: Callable[[np.ndarray], np.ndarray], observations: Iterator[np.ndarray]) -> np.ndarray:
    return tick(next(observations))


def _ticking(genome: Genome, backend: str, observations: list[np.ndarray]) -> Callable[[], np.ndarray]:
    """One tick of a fresh network per call, a new observation each time."""
    network = genome.build(backend)
    network.reset(np.random.default_rng(2))
    return partial(_tick, network.tick, itertools.cycle(observations))


def bench_rule(
    rule: str, normalise: bool, backends: list[str], rounds: int, period: int = 1
) -> dict[str, float]:
    spec = NetworkSpec(LAYERS, ("tanh",) * 3, rule, normalise=normalise, plasticity_period=period)
    vector = np.random.default_rng(0).normal(0.0, 0.1, Genome.parameter_count("hebbian", spec))
    genome = Genome.from_vector("hebbian", spec, "ant", vector)
    # A fresh observation every tick (float64, as the simulator gives them): fed one observation
    # for ever, some rules settle into weights that are mostly subnormal floats, which are slow.
    observations = list(np.random.default_rng(1).normal(0.0, 0.5, (256, spec.obs_size)))
    calls = {b: [_ticking(genome, b, observations) for _ in range(INSTANCES)] for b in backends}
    coefficients = [genome.to_vector() for _ in range(INSTANCES)]
    calls["floor"] = [partial(np.multiply, c, c, out=np.empty_like(c)) for c in coefficients]
    return measure(calls, rounds)


def machine() -> str:
    model = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model
            )
    versions = [f"numpy {np.__version__}"]
    for name in ("numba", "onnxruntime"):
        if importlib.util.find_spec(name):
            versions.append(f"{name} {__import__(name).__version__}")
    return f"{model}, {os.cpu_count()} CPUs; {', '.join(versions)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=61, help="timed rounds per rule (default 61)")
    parser.add_argument("--normalise", default="off", help="off (default), on, or off,on for both tables")
    parser.add_argument("--rules", default=",".join(RULES), help="comma-separated rules (default all nine)")
    parser.add_argument("--period", type=int, default=1, help="plasticity period, ticks per weight change")
    args = parser.parse_args()
    settings = args.normalise.split(",")
    if not set(settings) <= {"off", "on"}:
        parser.error(f"--normalise takes off, on or off,on, got {args.normalise!r}")
    if not 1 <= args.period <= MAX_PLASTICITY_PERIOD:
        parser.error(f"--period takes 1-{MAX_PLASTICITY_PERIOD} ticks, got {args.period}")
    backends = installed_backends()
    synapses = NetworkSpec(LAYERS, ("tanh",) * 3).synapses
    print(
        f"Ant network {' -> '.join(map(str, LAYERS))}, tanh after every layer, {synapses} synapses; "
        f"µs per network.tick(obs) (forward + update, the weights changed every {args.period} tick(s)), "
        f"median of {args.rounds} rounds after warm-up"
    )
    print(f"machine: {machine()}")
    print("floor: np.multiply(c, c, out=o) over the rule's float32 coefficient array (length below)")
    for setting in settings:
        what = " (per-layer max-|w| after every update)" if setting == "on" else ""
        print(f"\nnormalisation {setting}{what}")
        print(f"{'rule':22s}{'length':>8s}" + "".join(f"{b:>9s}" for b in [*backends, "floor"]) + "  fastest")
        for rule in args.rules.split(","):
            times = bench_rule(rule, setting == "on", backends, args.rounds, args.period)
            fastest = min(backends, key=times.__getitem__)
            print(
                f"{rule:22s}{synapses * RULES[rule].size:8d}"
                + "".join(f"{times[b]:9.2f}" for b in [*backends, "floor"])
                + f"  {fastest:7s}  ratio {times[fastest] / times['floor']:.2f}"
            )


if __name__ == "__main__":
    main()
