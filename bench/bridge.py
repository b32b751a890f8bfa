"""Benchmark of the serial bridge: codec cost, latency over a pty, and the highest control rate.

    PYTHONPATH=. python bench/bridge.py [--ticks 1000] [--repeats 3] [--rates 20,50,100,200,500]

1. Codec: µs per frame to encode and decode the Ant's STATE and COMMAND (median of 5 repeats).
2. Over a pty to the firmware emulator (a separate process, physics and STATE at 1 kHz):
   HEARTBEAT round trip, and COMMAND -> STATE latency (until a STATE reports the command applied).
3. The deploy loop (``controller.deploy.Deployment``: the fixed-rate loop over a robot env) with the
   shipped Ant genome at rising rates, ``--ticks`` ticks each, ``--repeats`` times (a fresh emulator
   each, after the ramp): the median share of missed deadlines; the highest rate below which every rate
   tried kept under 0.1% is reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import firmware_bridge
from controller import app
from controller.deploy import Deployment
from controller.genome import load_genome
from firmware_bridge.link import Link, clock_us
from firmware_bridge.protocol import BaseEstimate, Command, State, decode, encode
from firmware_bridge.robot import load_robot

ROOT = Path(firmware_bridge.__file__).resolve().parents[1]
REPEATS = 5
FAST = ("--physics-hz", "1000", "--state-rate", "1000")  # emulator: physics and STATE at 1 kHz


def per_call_us(fn: Callable[[], object], calls: int = 2000) -> float:
    """Median over REPEATS of the mean time of one call (µs)."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def codec() -> None:
    rng = np.random.default_rng(0)
    state = State(
        123456, 42, 0, 0, tuple(rng.uniform(-1, 1, 8)), tuple(rng.uniform(-5, 5, 8)), (1.0, 0.0, 0.0, 0.0),
        (0.1, 0.2, 0.3), 4, 0b1011, BaseEstimate(0.55, (1.0, 0.1, 0.0)),
    )  # fmt: skip
    command = Command(123, tuple(rng.uniform(-1, 1, 8)))
    print("codec (pure Python), median of 5 repeats:")
    for name, message in (("STATE", state), ("COMMAND", command)):
        wire = encode(message, 7)
        enc = per_call_us(lambda m=message: encode(m, 7))
        dec = per_call_us(lambda w=wire[:-1]: decode(w))
        print(f"  {name:<8s} {len(wire):4d} B on the wire: encode {enc:6.1f} us, decode {dec:6.1f} us")


class Emulator:
    """``firmware-bridge emulate`` in its own process; ``port`` is its pty."""

    def __init__(self, *extra: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "firmware_bridge.cli", "emulate", "--robot", "ant", *extra],
            stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        lines = iter(self.proc.stdout.readline, "")  # its first lines may say what it built first
        self.port = next(m.group(1) for line in lines if (m := re.search(r"on (/dev/\S+)", line)))

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=30)


def percentiles(values: list[float]) -> str:
    p50, p99 = np.percentile(np.asarray(values) * 1e3, [50, 99])
    return f"p50 {p50:.3f} ms, p99 {p99:.3f} ms"


def latency(samples: int) -> None:
    with Emulator(*FAST) as emu, Link.open(emu.port) as link:
        link.handshake()
        rtts = link.ping(samples)
        print(f"over a pty to the emulator (physics and STATE at 1 kHz), {samples} samples each:")
        print(f"  HEARTBEAT round trip: {percentiles(rtts)} ({samples - len(rtts)} lost)")
        delays = []
        for _ in range(samples):
            sent = time.perf_counter()
            seq = link.send(Command(clock_us(), (0.0,) * 8))
            while time.perf_counter() - sent < 0.5:
                link.wait(0.01)
                if any(
                    isinstance(r.message, State) and r.message.last_command_seq == seq for r in link.poll()
                ):
                    delays.append(time.perf_counter() - sent)
                    break
        print(f"  COMMAND -> STATE saying it was applied: {percentiles(delays)} (STATE comes every 1 ms)")


def rates(rate_list: list[float], ticks: int, repeats: int) -> None:
    genome = load_genome("ant")
    network = genome.build("auto")
    network.tick(np.zeros(genome.obs_size))
    shipped = load_robot("ant")  # without the orientation guard: a fall must not end a timing run
    robot = dataclasses.replace(shipped, safety=dataclasses.replace(shipped.safety, max_tilt_deg=180.0))
    print(
        f"deploy loop, shipped Ant genome (backend {network.backend}), {ticks} ticks per run, "
        f"median of {repeats} runs:"
    )
    best = previous = None
    for rate in rate_list:
        runs = []
        for _ in range(repeats):
            with Emulator(*FAST) as emu, Link.open(emu.port, late_s=1 / rate) as link:
                link.handshake()
                # the ramp to the first pose comes first: ``ticks`` network ticks after it
                runs.append(Deployment(link, robot, network, rate).run(robot.safety.ramp_s + ticks / rate))
        shares = [100.0 * r.pacer.misses / max(1, r.pacer.ticks) for r in runs]
        share = statistics.median(shares)
        work = [t for r in runs for t in r.pacer.work_s]
        net = [t for r in runs for t in r.life.compute_s]
        each = ", ".join(f"{v:.2f}" for v in shares)
        skipped = statistics.median([r.pacer.skipped for r in runs])
        print(
            f"  {rate:6.0f} Hz: deadline misses {share:.2f}% (runs: {each}), skipped deadlines {skipped:g}; "
            f"whole tick {app.percentiles(work, 1e6, 'us')}, network {app.percentiles(net, 1e6, 'us')}"
        )
        if share < 0.1 and best == previous:  # every rate up to this one kept its deadlines
            best = rate
        previous = rate
    print(f"highest rate with < 0.1% deadline misses: {f'{best:g} Hz' if best else 'none of those tried'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=1000, help="control ticks per run (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per rate (default 3)")
    parser.add_argument(
        "--rates", default="20,50,100,200,500", help="rates to try, Hz (default 20,50,100,200,500)"
    )
    parser.add_argument("--samples", type=int, default=500, help="latency samples (default 500)")
    args = parser.parse_args()
    load, version = os.getloadavg()[0], sys.version.split()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.2f} at the start; python {version}")
    codec()
    latency(args.samples)
    rates([float(r) for r in args.rates.split(",")], args.ticks, args.repeats)


if __name__ == "__main__":
    main()
