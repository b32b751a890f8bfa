"""Cost of one control tick of the Ant-sized plastic network, per backend, against a memory floor.

    PYTHONPATH=. python bench/tick.py [--rounds 21] [--normalise off,on] [--rules ABCD_lr,...]

For the Ant network (27 -> 128 -> 64 -> 8, tanh after every layer), with normalisation off and then
on, and for each of the nine rules: the median µs of one ``network.tick(obs)`` (forward pass and
plasticity update, as the control loop calls it: a new observation in, action copied out) for every
backend installed (numpy always; numba and onnxruntime with their extras), and as the floor, timed
in the same rounds, one ``np.multiply(c, c, out=o)`` over the genome's coefficient array (float32,
synapses x coefficients per synapse: 12,160 x 5 = 60,800 for ABCD_lr). Each rule's line ends with
``ratio``: the fastest backend's tick over the floor.

The genome is random (coefficients N(0, 0.1)), as are the observations (N(0, 0.5), a new one each
tick). Under rule A with normalisation most weights end up subnormal (the largest synapse wins every
update and the division shrinks the rest), and subnormal arithmetic is slow: its row shows that.

Method: each callable is warmed up first (numba's compile or cache load, onnxruntime's first runs)
and given a block of calls lasting about 2 ms; then every round times one block of each backend and
of the floor in turn, so a busy machine slows them alike; the figure is the median over the rounds.
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
from controller.network import NetworkSpec, numba_available
from controller.rules import RULES

LAYERS = (27, 128, 64, 8)
BLOCK_S = 2e-3


def installed_backends() -> list[str]:
    """numpy, and numba / onnx when their extras are installed."""
    backends = ["numpy"]
    if numba_available():
        backends.append("numba")
    if all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime")):
        backends.append("onnx")
    return backends


def block_size(fn: Callable[[], object]) -> int:
    """Warm ``fn`` up, then the number of calls that lasts about BLOCK_S."""
    for _ in range(100):
        fn()
    start = time.perf_counter()
    for _ in range(100):
        fn()
    per_call = (time.perf_counter() - start) / 100
    return max(10, round(BLOCK_S / per_call))


def measure(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median over rounds of the µs per call of each callable, the callables taking turns."""
    blocks = {name: block_size(fn) for name, fn in calls.items()}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            n = blocks[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            times[name].append((time.perf_counter() - start) / n * 1e6)
    return {name: statistics.median(t) for name, t in times.items()}


def _tick(tick: Callable[[np.ndarray], np.ndarray], observations: Iterator[np.ndarray]) -> np.ndarray:
    return tick(next(observations))


def bench_rule(rule: str, normalise: bool, backends: list[str], rounds: int) -> dict[str, float]:
    spec = NetworkSpec(LAYERS, ("tanh",) * 3, rule, normalise=normalise)
    vector = np.random.default_rng(0).normal(0.0, 0.1, Genome.parameter_count("hebbian", spec))
    genome = Genome.from_vector("hebbian", spec, "ant", vector)
    # A fresh observation every tick (float64, as the simulator gives them): fed one observation
    # for ever, some rules settle into weights that are mostly subnormal floats, which are slow.
    observations = list(np.random.default_rng(1).normal(0.0, 0.5, (256, spec.obs_size)))
    calls: dict[str, Callable[[], object]] = {}
    for backend in backends:
        network = genome.build(backend)
        network.reset(np.random.default_rng(2))
        calls[backend] = partial(_tick, network.tick, itertools.cycle(observations))
    coefficients = genome.to_vector()
    calls["floor"] = partial(np.multiply, coefficients, coefficients, out=np.empty_like(coefficients))
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
    parser.add_argument("--rounds", type=int, default=21, help="timed rounds per rule (default 21)")
    parser.add_argument("--normalise", default="off,on", help="off, on or off,on (default)")
    parser.add_argument("--rules", default=",".join(RULES), help="comma-separated rules (default all nine)")
    args = parser.parse_args()
    backends = installed_backends()
    synapses = NetworkSpec(LAYERS, ("tanh",) * 3).synapses
    print(
        f"Ant network {' -> '.join(map(str, LAYERS))}, tanh after every layer, {synapses} synapses; "
        f"µs per network.tick(obs) (forward + update), median of {args.rounds} rounds after warm-up"
    )
    print(f"machine: {machine()}")
    print("floor: np.multiply(c, c, out=o) over the rule's float32 coefficient array (length below)")
    for setting in args.normalise.split(","):
        print(f"\nnormalisation {setting} (per-layer max-|w| after every update)")
        print(f"{'rule':22s}{'length':>8s}" + "".join(f"{b:>9s}" for b in [*backends, "floor"]) + "  fastest")
        for rule in args.rules.split(","):
            times = bench_rule(rule, setting == "on", backends, args.rounds)
            fastest = min(backends, key=times.__getitem__)
            print(
                f"{rule:22s}{synapses * RULES[rule].size:8d}"
                + "".join(f"{times[b]:9.2f}" for b in [*backends, "floor"])
                + f"  {fastest:7s}  ratio {times[fastest] / times['floor']:.2f}"
            )


if __name__ == "__main__":
    main()
