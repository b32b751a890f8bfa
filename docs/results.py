"""Regenerate the damage tables and figures of docs/results.md.

    python docs/results.py [--task ant] [--lifetimes 20] [--workers 2]
    python docs/results.py --task servo-quad --lifetimes 50
    python docs/results.py --gait --hebbian runs/NAME/best.npz   # which joints each genome moves

Each cell is ``controller evaluate GENOME --sim TASK [--damage SPEC] [--randomise FILE] --lifetimes N``
(1000 ticks after the task's settle ticks, fresh random initial weights and seed 0..N-1 per lifetime); the
lifetimes run in parallel. Writes docs/results_table.md (Ant) or docs/results_table_servo_quad.md, and
for the Ant docs/fig_midrun_cut.png, docs/fig_weight_pca.png (printing the distances between lifetimes'
mean weights) and docs/results_gait.md (which joints move).
"""

from __future__ import annotations

import argparse
import itertools
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

import sim
from controller.genome import Genome, load_genome
from controller.loop import median_recovery, run_lifetime
from evolve.config import load_config

DOCS = Path(__file__).parent
TICKS = 1000
FORWARD_M = 1.0  # a lifetime "walked forward" when it ends this far ahead (controller evaluate --forward)
CUT_TICK = 300  # the mid-run cuts: after this many ticks of control
FIGURE_LEG = 4  # the speed figure's mid-run cut: a held-out front leg
GAIT_FROM = 200  # the gait table ignores the first ticks, while the Hebbian weights self-organise
RANDOMISE = "launch/randomisation/servo_quad.yaml"


@dataclass(frozen=True)
class Row:
    label: str
    damages: tuple[str, ...] = ()
    randomised: bool = False
    midrun_leg: int = 0  # this leg cut after CUT_TICK ticks of control (onset in s after reset); 0: none

    def trained_on(self, seen: set[str]) -> bool:
        """Whether every body damage of the row, wherever it starts, was among the training damages."""
        specs = (*self.damages, f"cut-leg:{self.midrun_leg}") if self.midrun_leg else self.damages
        return {s.split("@")[0] for s in specs} <= seen


@dataclass(frozen=True)
class Task:
    rows: tuple[Row, ...]
    configs: tuple[str, ...]  # the Hebbian genome's launch configs, one per stage: the damages it trained on
    hebbian: str
    static: str
    table: str


TASKS = {
    "ant": Task(
        (
            Row("intact"),
            *[Row(f"cut leg {n}", (f"cut-leg:{n}",)) for n in (1, 2, 3, 4)],
            *[Row(f"leg {n} shortened to 25%", (f"shorten-leg:{n}:0.25",)) for n in (1, 2, 3, 4)],
            Row("ankle_1 locked", ("lock:ankle_1",)),
            Row("hip_2 motor at 30%", ("weaken:hip_2:0.3",)),
            *[Row(f"leg {n} cut at tick {CUT_TICK}", midrun_leg=n) for n in (2, 1, 4)],
        ),
        ("launch/genomes/ant_hebbian_stage1.yaml", "launch/genomes/ant_hebbian_stage2.yaml"),
        "ant",
        "ant-static",
        "results_table.md",
    ),
    "servo-quad": Task(
        (
            Row("nominal"),
            Row("randomised", (), True),
            Row("nominal, cut leg 2", ("cut-leg:2",)),
            Row("randomised, cut leg 2", ("cut-leg:2",), True),
            Row("randomised, cut leg 1", ("cut-leg:1",), True),
            Row(f"randomised, leg 2 cut at tick {CUT_TICK}", (), True, midrun_leg=2),
            Row("randomised, heading input zeroed (ablation)", ("dropout:6",), True),
        ),
        ("launch/genomes/servo_quad_hebbian.yaml",),
        "servo-quad",
        "servo-quad-static",
        "results_table_servo_quad.md",
    ),
}


@cache
def _task_timing(task: str) -> tuple[int, float]:
    """The task's own settle ticks and control period (one environment built per process)."""
    robot = sim.make(task).unwrapped
    return robot.settle_ticks, robot.dt


def _setup(
    task: str, genome: str, damages: tuple[str, ...], midrun_leg: int
) -> tuple[Genome, int, tuple[str, ...]]:
    """The genome, the settle it was evolved with, and the damages, with the mid-run cut of leg ``midrun_leg``
    placed CUT_TICK ticks after that settle (an onset in seconds after reset)."""
    loaded = load_genome(genome, task=task)
    task_settle, dt = _task_timing(task)
    settle = loaded.settle_ticks(task_settle)
    if midrun_leg:
        damages = (*damages, f"cut-leg:{midrun_leg}@{(settle + CUT_TICK) * dt:g}")
    return loaded, settle, damages


def _lifetime(job: tuple[str, str, Row, int]) -> tuple[float, bool, int | None]:
    task, genome, row, seed = job
    loaded, settle, damages = _setup(task, genome, row.damages, row.midrun_leg)
    env = sim.make(task, damages, randomise=DOCS.parent / RANDOMISE if row.randomised else None)
    life = run_lifetime(loaded.build(), env, TICKS, seed, settle_ticks=settle)
    return life.distance, life.terminated, life.recovery_ticks()


def _training_damages(configs: tuple[str, ...]) -> set[str]:
    """Damage specs the genome was evolved on in any of its stages (from their launch configs)."""
    return {spec for c in configs for body in load_config(DOCS.parent / c).train_damages for spec in body}


def _recovery(ticks: list[int | None]) -> str:
    median, recovered = median_recovery(ticks)
    return f"{'never' if median is None else f'{median:.0f}'} ({recovered}/{len(ticks)})"


def table(task: str, genomes: dict[str, str], lifetimes: int, workers: int) -> str:
    rows = TASKS[task].rows
    jobs = [(task, g, row, seed) for row in rows for g in genomes.values() for seed in range(lifetimes)]
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(_lifetime, jobs, chunksize=4))
    seen = _training_damages(TASKS[task].configs)
    header = (
        "| body | in training | Hebbian distance (m) | static distance (m) | Hebbian better by > spread | "
        f"walked forward (>= {FORWARD_M:g} m), Hebbian / static | fell, Hebbian / static | "
        "median recovery (ticks), Hebbian / static |\n|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r, row in enumerate(rows):
        cells = {}
        for g, name in enumerate(genomes):
            start = (r * len(genomes) + g) * lifetimes
            cells[name] = results[start : start + lifetimes]
        hebb = np.array([d for d, _, _ in cells["Hebbian"]])
        stat = np.array([d for d, _, _ in cells["static"]])
        spread = max(hebb.std(), stat.std())
        better = (
            "yes"
            if hebb.mean() - stat.mean() > spread
            else ("no (static better)" if stat.mean() - hebb.mean() > spread else "no (within spread)")
        )
        recovery = "-"
        if row.midrun_leg:
            recovery = " / ".join(_recovery([t for _, _, t in cells[name]]) for name in ("Hebbian", "static"))
        fell = [sum(f for _, f, _ in cells[name]) for name in ("Hebbian", "static")]
        trained = "yes" if row.trained_on(seen) else "no (held out)"
        lines.append(
            f"| {row.label} | {trained} | {hebb.mean():.2f} ± {hebb.std():.2f} | "
            f"{stat.mean():.2f} ± {stat.std():.2f} | {better} | "
            f"{(hebb >= FORWARD_M).sum()}/{lifetimes} / {(stat >= FORWARD_M).sum()}/{lifetimes} | "
            f"{fell[0]}/{lifetimes} / {fell[1]}/{lifetimes} | {recovery} |"
        )
    return header + "\n".join(lines) + "\n"


def _speeds(
    genome: str, seed: int, damages: tuple[str, ...], midrun_leg: int = 0, weights: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Speed per tick, and (if asked) every weight at every tick, one row per tick."""
    loaded, settle, damages = _setup("ant", genome, damages, midrun_leg)
    network = loaded.build()
    rows: list[np.ndarray] = []

    def record(tick: int, *_: object) -> None:
        rows.append(np.concatenate([w.ravel() for w in network.weights]))

    env = sim.make("ant", damages)
    life = run_lifetime(network, env, TICKS, seed, settle_ticks=settle, on_tick=record if weights else None)
    return np.asarray(life.speeds), np.asarray(rows)


def _joint_trace(genome: str, env: object, lifetimes: int) -> tuple[np.ndarray, np.ndarray]:
    """Commands, and which joints sit at a limit, on the intact Ant after GAIT_FROM ticks, over seeds
    0..lifetimes-1."""
    loaded, settle, _ = _setup("ant", genome, (), False)
    actions, pinned = [], []

    def record(tick: int, _obs: object, action: np.ndarray, _info: object) -> None:
        if tick >= GAIT_FROM:
            actions.append(action.copy())
            pinned.append(env.unwrapped.at_limit())

    for seed in range(lifetimes):
        run_lifetime(loaded.build(), env, TICKS, seed, settle_ticks=settle, on_tick=record)
    return np.asarray(actions), np.asarray(pinned)


def gait(genomes: dict[str, str], lifetimes: int) -> str:
    """Which joints each genome moves on the intact Ant: the spread of each joint's command after the
    first GAIT_FROM ticks, and the share of those ticks the joint sits at a limit of its range."""
    env = sim.make("ant")
    model = env.unwrapped.model
    columns = {name: _joint_trace(genome, env, lifetimes) for name, genome in genomes.items()}
    header = "| joint | " + " | ".join(f"{n} command std | {n} ticks at a limit" for n in genomes)
    lines = [header + " |", "|---|" + "---|---|" * len(genomes)]
    for j in range(model.nu):
        cells = " | ".join(
            f"{actions[:, j].std():.2f} | {pinned[:, j].mean():.0%}" for actions, pinned in columns.values()
        )
        lines.append(f"| {model.actuator(j).name} | {cells} |")
    return "\n".join(lines) + "\n"


def _pca_panel(ax: object, groups: dict[str, list[np.ndarray]], title: str) -> None:
    """Each group's arrays (a path of rows, or a single row) on the first two principal components of all."""
    stacked = np.concatenate([rows for group in groups.values() for rows in group])
    centre = stacked.mean(axis=0)
    axes = np.linalg.svd(stacked - centre, full_matrices=False)[2][:2]
    for colour, (label, group) in enumerate(groups.items()):
        for k, rows in enumerate(group):
            xy = (rows - centre) @ axes.T
            style = {"lw": 0.8} if len(xy) > 1 else {"marker": "o", "ls": ""}
            ax.plot(xy[:, 0], xy[:, 1], color=f"C{colour}", label=None if k else label, **style)
            if len(xy) > 1:
                ax.plot(*xy[0], "ko")
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.legend()


def figures(genomes: dict[str, str], lifetimes: int) -> None:
    """Speed around a mid-run cut (Hebbian vs static); the Hebbian weights on their principal components."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dt, window = _task_timing("ant")[1], 20
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, genome in genomes.items():
        runs = [_speeds(genome, seed, (), midrun_leg=FIGURE_LEG)[0] for seed in range(lifetimes)]
        runs = [np.pad(r, (0, TICKS - r.size)) for r in runs]
        smooth = np.convolve(np.mean(runs, axis=0), np.ones(window) / window, mode="valid")
        ax.plot((np.arange(smooth.size) + window - 1) * dt, smooth, label=f"{name} (mean of {lifetimes})")
    ax.axvline(CUT_TICK * dt, color="C3", ls="--", label=f"leg {FIGURE_LEG} cut (tick {CUT_TICK}, held out)")
    ax.set_xlabel("time since control started (s)")
    ax.set_ylabel("forward speed, 1 s average (m/s)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(DOCS / "fig_midrun_cut.png", dpi=120)

    # Left: one lifetime per body, the weights every 5th tick. Right: each lifetime's mean weights from
    # GAIT_FROM on (the step cycle averaged out), 2 x `lifetimes` lifetimes per body: does where the weights
    # settle depend on the body more than on the random start?
    bodies = {"intact": (), "leg 2 cut": ("cut-leg:2",)}
    hebbian = genomes["Hebbian"]
    paths: dict[str, list[np.ndarray]] = {}
    means: dict[str, list[np.ndarray]] = {label: [] for label in bodies}
    for label, damages in bodies.items():
        for seed in range(2 * lifetimes):
            rows = _speeds(hebbian, seed, damages, weights=True)[1]
            if seed == 0:  # the left panel's lifetime is the right panel's first
                paths[label] = [rows[::5]]
            means[label].append(rows[GAIT_FROM:].mean(axis=0, keepdims=True))
    fig, panels = plt.subplots(1, 2, figsize=(11, 5))
    _pca_panel(panels[0], paths, "one lifetime each, every 5th tick (dot: random start)")
    _pca_panel(panels[1], means, f"mean from tick {GAIT_FROM} on, {2 * lifetimes} lifetimes each")
    fig.suptitle("Hebbian weights, intact and with leg 2 cut, on their first two principal components")
    fig.tight_layout()
    within = [np.linalg.norm(a - b) for group in means.values() for a, b in itertools.combinations(group, 2)]
    across = [np.linalg.norm(a - b) for a, b in itertools.product(*means.values())]
    print(
        f"distance between lifetimes' mean weights: same body {np.mean(within):.3f}, other body "
        f"{np.mean(across):.3f} (weight vector norm {np.linalg.norm(means['intact'][0]):.2f})"
    )
    fig.savefig(DOCS / "fig_weight_pca.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=TASKS, default="ant")
    parser.add_argument("--hebbian", help="Hebbian genome (default: the task's shipped one)")
    parser.add_argument("--static", help="static genome (default: the task's shipped one)")
    parser.add_argument("--lifetimes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gait", action="store_true", help="only print the Ant gait table (5 lifetimes)")
    args = parser.parse_args()
    task = TASKS[args.task]
    genomes = {"Hebbian": args.hebbian or task.hebbian, "static": args.static or task.static}
    if args.gait:
        print(gait(genomes, min(args.lifetimes, 5)))
        return
    text = table(args.task, genomes, args.lifetimes, args.workers)
    (DOCS / task.table).write_text(text)
    print(text)
    if args.task == "ant":
        figures(genomes, min(args.lifetimes, 5))
        text = gait(genomes, min(args.lifetimes, 5))
        (DOCS / "results_gait.md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
