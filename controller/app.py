"""What the three commands share (``controller``, ``evolve``, ``firmware-bridge``): how a command ends
on bad input, an interrupt or a closed pipe, and what a run of a controller shows and writes, the same
for a simulated robot and a real one: the per-tick telemetry CSV, the live status line and the summary.

One module rather than a package: it is small, and the commands keep their module paths
(``python -m controller.cli``, the entry points). It imports no simulator and no robot link, so each
command passes in the errors that are its user's to fix.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from controller.errors import UserError
from controller.genome import Genome
from controller.loop import Lifetime, Pacer
from controller.network import FeedForward

OnTick = Callable[[int, np.ndarray, np.ndarray, dict[str, Any]], None]
STATUS_INTERVAL_S = 0.2


def run_command(
    command: Callable[[], int],
    user_errors: Callable[[], tuple[type[Exception], ...]] = tuple,
    interrupted: Callable[[], str] = lambda: "interrupted",
) -> int:
    """Run a command's body: bad input (:class:`UserError` and ``user_errors()``, asked only when
    something was raised, so naming them imports nothing up front) is one line ``error: ...`` and exit
    2, Ctrl-C exit 130 with the ``interrupted()`` line, a closed stdout (``| head -1``) a quiet exit 1,
    as a Unix tool does."""
    try:
        return command()
    except (UserError, *user_errors()) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{interrupted()}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail too
        return 1


class Telemetry:
    """Per-tick CSV: tick, time, distance, speed, damage, what the body adds (``info["telemetry"]``: a
    robot's phase, STATE age, faults and joint command), the observation the network acted on, its
    action, per-layer weight norms.
    ``controller plot`` reads it, from a simulator or a robot alike."""

    def __init__(self, path: Path, network: Any, dt: float) -> None:
        self.file = path.open("w", newline="")
        self.writer = csv.writer(self.file)
        self.network, self.dt, self.last_x = network, dt, 0.0
        self.header_written = False

    def __call__(self, tick: int, obs: np.ndarray, action: np.ndarray, info: dict[str, Any]) -> None:
        norms = [float(np.linalg.norm(w)) for w in self.network.weights]
        extra = info.get("telemetry", {})
        if not self.header_written:
            self.writer.writerow(
                ["tick", "time_s", "x_distance", "speed", "damage", *extra]
                + [f"obs_{i}" for i in range(obs.size)]
                + [f"action_{i}" for i in range(action.size)]
                + [f"weight_norm_{k}" for k in range(len(norms))]
            )
            self.header_written = True
        x = info.get("x_distance", math.nan)
        self.writer.writerow(
            [tick, f"{tick * self.dt:.3f}", f"{x:.4f}", f"{(x - self.last_x) / self.dt:.4f}"]
            + [";".join(info.get("damage", []))]
            + list(extra.values())
            + [f"{v:.5g}" for v in obs]
            + [f"{v:.5g}" for v in action]
            + [f"{v:.5g}" for v in norms]
        )
        self.last_x = x

    def close(self) -> None:
        self.file.close()


class StatusLine:
    """A live one-line status on a terminal, five times a second: phase, tick, missed deadlines and what
    the body reports (``info["status"]``; a simulator: distance and damage)."""

    def __init__(self, steps: int | None, pacer: Pacer | None) -> None:
        self.steps, self.pacer = steps, pacer
        self.next = 0.0

    def __call__(self, tick: int, obs: np.ndarray, action: np.ndarray, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if now < self.next and tick + 1 != self.steps:
            return
        self.next = now + STATUS_INTERVAL_S
        of = f"/{self.steps}" if self.steps else ""
        misses = f"  misses {self.pacer.misses}" if self.pacer else ""
        damage = ",".join(info.get("damage", [])) or "none"
        body = info.get("status") or f"x {info['x_distance']:7.2f} m  damage {damage:<24s}"
        sys.stderr.write(f"\r{info.get('phase', 'run'):<5s} tick {tick + 1:6d}{of}{misses}  {body}")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


@contextlib.contextmanager
def tick_callbacks(*callbacks: OnTick) -> Iterator[OnTick | None]:
    """The callbacks as one ``on_tick`` for the loop (None when there are none), each closed afterwards
    whatever happened (files flushed, the status line ended)."""

    def call(tick: int, obs: np.ndarray, action: np.ndarray, info: dict[str, Any]) -> None:
        for callback in callbacks:
            callback(tick, obs, action, info)

    try:
        yield call if callbacks else None
    finally:
        for callback in callbacks:
            if hasattr(callback, "close"):
                callback.close()


def build_network(genome: Genome, backend: str) -> FeedForward:
    """The genome's network on the chosen backend; a backend this install lacks is a one-line error."""
    try:
        return genome.build(backend)
    except (ValueError, ImportError) as exc:
        raise UserError(f"--backend {backend}: {exc}") from None


def percentiles(values: list[float], scale: float, unit: str) -> str:
    """p50 and p99 of ``values`` times ``scale``, in ``unit``."""
    if not values:
        return "none"
    p50, p99 = np.percentile(np.asarray(values) * scale, [50, 99])
    return f"p50 {p50:.1f} {unit}, p99 {p99:.1f} {unit}"


def summary(life: Lifetime, pacer: Pacer | None, seconds: float | None = None) -> list[str]:
    """The lifetime's report, the same for a simulator and a robot: distance (or reward) and speed around
    the damage, recovery, network compute per tick, and with a wall clock, the ticks it held."""
    lines = []
    if life.measured:
        by_reward = life.fitness_kind == "reward"
        score = f"reward: {life.reward:.1f}" if by_reward else f"distance walked: {life.distance:.2f} m"
        ended = " - episode over" if by_reward else " - fell over"
        lines.append(
            f"{score} in {life.ticks} ticks ({life.ticks * life.dt:.1f} s)"
            + (ended if life.terminated else "")
        )
        if life.damage_onset is not None:
            onset, recovery = life.damage_onset, life.recovery_ticks()
            lines += [
                f"damage onset: tick {onset} ({onset * life.dt:.1f} s)",
                f"mean speed before damage: {life.mean_speed(0, onset):.2f} m/s, "
                f"after: {life.mean_speed(onset):.2f} m/s",
                "ticks to recover (1 s mean speed >= 50% of before, held 5 s): "
                + (f"{recovery}" if recovery is not None else "not recovered"),
            ]
        else:
            lines.append(f"mean speed: {life.mean_speed():.2f} m/s")
    us = np.asarray(life.compute_s) * 1e6
    if pacer is None:
        lines.append(
            f"tick compute: p50 {np.percentile(us, 50):.1f} us, p99 {np.percentile(us, 99):.1f} us, "
            f"max {us.max():.1f} us"
            if us.size
            else "no ticks ran"
        )
        return lines
    share = 100.0 * pacer.misses / max(1, pacer.ticks)
    took = pacer.seconds if seconds is None else seconds
    lines += [
        f"ticks: {pacer.ticks} at {1.0 / pacer.period:g} Hz in {took:.2f} s; deadline misses {pacer.misses} "
        f"({share:.2f}%), deadlines passed without a tick {pacer.skipped}",
        f"tick compute (network): {percentiles(life.compute_s, 1e6, 'us')}; "
        f"whole tick: {percentiles(pacer.work_s, 1e6, 'us')}",
    ]
    return lines
