"""``controller evaluate --suite``: one or two genomes on every condition of a fault suite.

Each (genome, condition) cell runs the same lifetimes (seeds ``seed .. seed + lifetimes - 1``: the same
robot draws, initial weights and noise for both genomes), in worker processes that keep one simulator
per condition. A cell depends only on its genome, condition and seeds, so the table is the same for any
number of workers. What is reported per condition and per split is defined in :class:`Cell` and
:func:`split_summary`; the comparison of two genomes in :func:`compare`.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from controller.genome import Genome, load_genome
from controller.loop import median_recovery, run_lifetime

RECOVERY_TICKS = 100  # a mid-run fault "recovered quickly" within this many ticks


@dataclass(frozen=True)
class Cell:
    """One genome's lifetimes on one condition."""

    distance: tuple[float, ...]
    fell: tuple[bool, ...]
    recovery: tuple[int | None, ...] | None  # ticks to recover per lifetime, for a mid-run onset

    @property
    def mean(self) -> float:
        return float(np.mean(self.distance))

    @property
    def std(self) -> float:
        return float(np.std(self.distance))

    @property
    def falls(self) -> int:
        return int(sum(self.fell))

    def forward(self, metres: float) -> int:
        """Lifetimes that ended at least ``metres`` ahead of where control started."""
        return int(sum(d >= metres for d in self.distance))

    def recovered_within(self, ticks: int) -> int:
        return sum(t is not None and t <= ticks for t in self.recovery or ())

    def as_dict(self, intact_mean: float, forward: float) -> dict[str, Any]:
        median, recovered = median_recovery(self.recovery) if self.recovery else (None, None)
        return {
            "distance_mean": self.mean,
            "distance_std": self.std,
            "percent_of_intact": percent(self.mean, intact_mean),
            "falls": self.falls,
            "walked_forward": self.forward(forward),
            "recovered": recovered,
            "recovery_ticks_median": median,
            f"recovered_within_{RECOVERY_TICKS}": self.recovered_within(RECOVERY_TICKS)
            if self.recovery
            else None,
            "distance": list(self.distance),
            "recovery_ticks": None if self.recovery is None else list(self.recovery),
        }


def percent(value: float, reference: float) -> float | None:
    """``value`` as a percentage of the genome's own intact mean (None if that is not positive)."""
    return 100.0 * value / reference if reference > 0 else None


# --- the workers -------------------------------------------------------------------------------
_state: dict[str, Any] = {}


def _init(genomes: Sequence[str], task: str, randomise: str | None, backend: str) -> None:
    """A worker: its genomes' networks built once; simulators made per condition on first use."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    loaded = [load_genome(name, task=task) for name in genomes]
    _state.update(
        genomes=loaded,
        networks=[g.build(backend) for g in loaded],
        task=task,
        randomise=randomise,
        envs={},
    )


def _run_cell(job: tuple[int, int, tuple[str, ...], Sequence[int], int, int | None]) -> tuple[int, int, Cell]:
    import sim

    g, c, damage, seeds, steps, settle = job
    env = _state["envs"].get(damage)
    if env is None:
        env = _state["envs"][damage] = sim.make(_state["task"], damage, randomise=_state["randomise"])
    genome: Genome = _state["genomes"][g]
    settle_ticks = genome.settle_ticks(env.unwrapped.settle_ticks) if settle is None else settle
    lives = [
        run_lifetime(_state["networks"][g], env, steps, seed, settle_ticks=settle_ticks) for seed in seeds
    ]
    mid_run = any(life.damage_onset for life in lives)
    cell = Cell(
        tuple(life.distance for life in lives),
        tuple(life.terminated for life in lives),
        tuple(life.recovery_ticks() for life in lives) if mid_run else None,
    )
    return g, c, cell


def run_suite(
    genomes: Sequence[str],
    suite: Any,
    lifetimes: int,
    seed: int,
    steps: int,
    settle: int | None,
    backend: str,
    workers: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[Cell]]:
    """Every genome on every condition of ``suite`` (a :class:`sim.suite.Suite`): ``cells[g][c]``."""
    randomise = None if suite.randomise is None else str(suite.randomise)
    seeds = tuple(range(seed, seed + lifetimes))
    jobs = [
        (g, c, condition.damage, seeds, steps, settle)
        for c, condition in enumerate(suite.conditions)
        for g in range(len(genomes))
    ]
    cells: list[list[Cell | None]] = [[None] * len(suite.conditions) for _ in genomes]
    if workers <= 1:
        _init(genomes, suite.task, randomise, backend)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # _init ignores it: this is the main process
        results = map(_run_cell, jobs)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(
            min(workers, len(jobs)),
            initializer=_init,
            initargs=(list(genomes), suite.task, randomise, backend),
        )
        results = pool.imap_unordered(_run_cell, jobs)
    try:
        for done, (g, c, cell) in enumerate(results, 1):
            cells[g][c] = cell
            if progress is not None:
                progress(done, len(jobs))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return cells  # type: ignore[return-value]  # every cell is filled


def progress_bar(done: int, total: int) -> None:
    """A one-line bar on stderr (a terminal only)."""
    width = 30
    filled = round(width * done / total)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} cells")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


# --- the report --------------------------------------------------------------------------------
def split_summary(cells: Sequence[Cell], intact_mean: float, forward: float) -> dict[str, Any]:
    """One split's conditions together: the worst and the median share of the intact walk, the share of
    all its lifetimes that fell, walked forward, and (mid-run onsets) recovered within RECOVERY_TICKS."""
    shares = [percent(cell.mean, intact_mean) for cell in cells]
    shares = [s for s in shares if s is not None]
    lives = sum(len(cell.distance) for cell in cells)
    onsets = [cell for cell in cells if cell.recovery is not None]
    onset_lives = sum(len(cell.distance) for cell in onsets)
    return {
        "conditions": len(cells),
        "min_percent": min(shares) if shares else None,
        "median_percent": float(np.median(shares)) if shares else None,
        "falls_percent": 100.0 * sum(cell.falls for cell in cells) / lives,
        "walked_forward_min_percent": min(
            100.0 * cell.forward(forward) / len(cell.distance) for cell in cells
        ),
        f"recovered_within_{RECOVERY_TICKS}_percent": (
            100.0 * sum(cell.recovered_within(RECOVERY_TICKS) for cell in onsets) / onset_lives
            if onset_lives
            else None
        ),
    }


def compare(a: Cell, b: Cell) -> str:
    """Which genome is ahead on a condition by more than the spread: ``a``, ``b``, ``split`` (each on one
    measure) or ``level``.

    Distance: the difference of the means exceeds the larger of the two standard deviations. Falls: the
    counts differ by more than twice the binomial spread of the pooled fall rate, sqrt(n p (1 - p))."""
    n = len(a.distance)
    spread = max(a.std, b.std)
    by_distance = 0 if abs(a.mean - b.mean) <= spread else (1 if a.mean > b.mean else -1)
    rate = (a.falls + b.falls) / (2 * n)
    fall_spread = 2 * math.sqrt(n * rate * (1 - rate))
    by_falls = 0 if abs(a.falls - b.falls) <= fall_spread else (1 if a.falls < b.falls else -1)
    if by_distance * by_falls < 0:
        return "split"
    ahead = by_distance or by_falls
    return {1: "a", -1: "b", 0: "level"}[ahead]


def _fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def report(
    suite: Any, labels: Sequence[str], cells: list[list[Cell]], lifetimes: int
) -> tuple[list[str], dict[str, Any]]:
    """The table as Markdown lines and everything as a JSON-able dict."""
    names = [c.name for c in suite.conditions]
    intact = [row[names.index("intact")].mean for row in cells]
    header = ["condition", "split"]
    for label in labels:
        header += [f"{label} m", "%", "falls", "fwd", "recovery"]
    if len(labels) == 2:
        header.append("ahead")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    data: dict[str, Any] = {
        "suite": suite.name,
        "task": suite.task,
        "lifetimes": lifetimes,
        "steps": suite.steps,
        "genomes": list(labels),
        "conditions": [],
    }
    counts = {split: {"a": 0, "b": 0, "level": 0, "split": 0} for split in ("train", "held_out")}
    for c, condition in enumerate(suite.conditions):
        row = [condition.name, condition.split]
        entry: dict[str, Any] = {
            "name": condition.name,
            "damage": list(condition.damage),
            "split": condition.split,
        }
        for g, label in enumerate(labels):
            cell = cells[g][c]
            median, recovered = median_recovery(cell.recovery) if cell.recovery else (None, 0)
            recovery = (
                "-"
                if cell.recovery is None
                else f"{recovered}/{lifetimes}, median {'never' if median is None else f'{median:.0f} t'}"
            )
            row += [
                f"{cell.mean:.2f} ± {cell.std:.2f}",
                _fmt(percent(cell.mean, intact[g])),
                str(cell.falls),
                str(cell.forward(suite.forward)),
                recovery,
            ]
            entry[label] = cell.as_dict(intact[g], suite.forward)
        if len(labels) == 2:
            ahead = compare(cells[0][c], cells[1][c])
            counts[condition.split][ahead] += 1
            row.append({"a": labels[0], "b": labels[1]}.get(ahead, ahead))
            entry["ahead"] = {"a": labels[0], "b": labels[1]}.get(ahead, ahead)
        lines.append("| " + " | ".join(row) + " |")
        data["conditions"].append(entry)
    lines.append("")
    data["summary"] = {}
    for split in ("train", "held_out"):
        members = [c for c, condition in enumerate(suite.conditions) if condition.split == split]
        if not members:
            continue
        data["summary"][split] = {}
        for g, label in enumerate(labels):
            s = split_summary([cells[g][c] for c in members], intact[g], suite.forward)
            data["summary"][split][label] = s
            recovery = s[f"recovered_within_{RECOVERY_TICKS}_percent"]
            lines.append(
                f"{split} ({s['conditions']} conditions), {label}: min {_fmt(s['min_percent'])}%, median "
                f"{_fmt(s['median_percent'])}% of intact; falls {s['falls_percent']:.1f}% of lifetimes; "
                f"walked forward (>= {suite.forward:g} m) in >= {s['walked_forward_min_percent']:.0f}% on "
                f"every condition"
                + (
                    f"; mid-run onsets recovered within {RECOVERY_TICKS} ticks: {recovery:.0f}%"
                    if recovery is not None
                    else ""
                )
            )
        if len(labels) == 2:
            n = counts[split]
            data["summary"][split]["ahead"] = {
                labels[0]: n["a"],
                labels[1]: n["b"],
                "level": n["level"],
                "split": n["split"],
            }
            lines.append(
                f"{split}: {labels[0]} ahead by more than the spread on {n['a']}, {labels[1]} on {n['b']}, "
                f"level on {n['level']}, split (one ahead on distance, the other on falls) on {n['split']}"
            )
    return lines, data
