"""Regenerate the damage tables and figures of docs/results.md.

    python docs/results.py [--task ant] [--lifetimes 20] [--workers 2]
    python docs/results.py --task servo-quad --lifetimes 50
    python docs/results.py --task ant-bullet   # the paper's three Ants, its lifetime and units too
    python docs/results.py --gait --hebbian runs/NAME/best.npz   # which joints each genome moves
    python docs/results.py --task servo-quad --sensitivity [--out PATH]   # each randomisation edge

Each cell is ``controller evaluate GENOME --sim TASK [--damage SPEC] [--randomise FILE] --lifetimes N``
(1000 ticks after the task's settle ticks, fresh random initial weights and seed 0..N-1 per lifetime); the
lifetimes run in parallel. Writes docs/results_table.md (Ant) or docs/results_table_servo_quad.md, and
for the Ant docs/fig_midrun_cut.png, docs/fig_weight_pca.png (printing the distances between lifetimes'
mean weights) and docs/results_gait.md (which joints move).

``--sensitivity`` (servo-quad, issue 27): would the fault-trained genomes walk on any real Bittle the wide
randomisation holds? Each row pins one range of launch/randomisation/servo_quad_wide.yaml at one end
(servo speed, stall torque, friction, latency) or holds every tick at the longest its jitter allows, the
rest drawn as in training; it counts the lifetimes walked forward and writes
docs/results_sensitivity_servo_quad.md (or ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import gymnasium
import numpy as np

import sim
from controller.genome import Genome, load_genome
from controller.loop import median_recovery, run_lifetime
from evolve.config import load_config
from sim.randomise import Randomisation, load_randomisation
from sim.servo_quad import SERVO

DOCS = Path(__file__).parent
TICKS = 1000
FORWARD_M = 1.0  # a lifetime "walked forward" when it ends this far ahead (controller evaluate --forward)
CUT_TICK = 300  # the mid-run cuts: after this many ticks of control
FIGURE_LEG = 4  # the speed figure's mid-run cut: a held-out front leg
GAIT_FROM = 200  # the gait table ignores the first ticks, while the Hebbian weights self-organise
RANDOMISE = "launch/randomisation/servo_quad.yaml"
WIDE = "launch/randomisation/servo_quad_wide.yaml"  # what the fault-trained servo-quad genomes saw
SENSITIVITY = ("servo-quad-faults", "servo-quad-faults-static")  # --sensitivity's default genomes
SENSITIVITY_TABLE = "results_sensitivity_servo_quad.md"

Job = TypeVar("Job")
Result = TypeVar("Result")


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
    ticks: int = TICKS  # controlled ticks per lifetime, after the settle
    progress_units: bool = False  # also the paper's score: summed progress, m walked / control period


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
    # The paper's table (issue 24): its three morphologies, in AntBulletEnv-v0's lifetime (1000 steps, the
    # first 40 the settle) and its unit, the summed progress term: (m nearer the target) / the control period.
    "ant-bullet": Task(
        (Row("standard"), *[Row(f"leg {n} lower part at 25%", (f"shorten-leg:{n}:0.25",)) for n in (4, 1)]),
        ("launch/genomes/ant_bullet_hebbian.yaml",),
        "ant-bullet",
        "ant-bullet-static",
        "results_table_ant_bullet.md",
        ticks=1000 - 40,
        progress_units=True,
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
    life = run_lifetime(loaded.build(), env, TASKS[task].ticks, seed, settle_ticks=settle)
    return life.distance, life.terminated, life.recovery_ticks()


def _training_damages(configs: tuple[str, ...]) -> set[str]:
    """Damage specs the genome was evolved on in any of its stages (from their launch configs)."""
    bodies = (body for c in configs for body in load_config(DOCS.parent / c).training.train_damages)
    return {spec for body in bodies for spec in body}


def _recovery(ticks: list[int | None]) -> str:
    median, recovered = median_recovery(ticks)
    return f"{'never' if median is None else f'{median:.0f}'} ({recovered}/{len(ticks)})"


def _run(work: Callable[[Job], Result], jobs: Sequence[Job], workers: int) -> list[Result]:
    """The lifetimes in parallel, results in the jobs' order."""
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(work, jobs, chunksize=4))


def _distance(metres: np.ndarray, unit: float) -> str:
    """Mean ± std in m, and in the paper's unit when the task has one."""
    text = f"{metres.mean():.2f} ± {metres.std():.2f}"
    return f"{text} ({metres.mean() / unit:.0f} ± {metres.std() / unit:.0f})" if unit else text


def table(task: str, genomes: dict[str, str], lifetimes: int, workers: int) -> str:
    rows = TASKS[task].rows
    unit = _task_timing(task)[1] if TASKS[task].progress_units else 0.0  # m per unit: the control period
    jobs = [(task, g, row, seed) for row in rows for g in genomes.values() for seed in range(lifetimes)]
    results = _run(_lifetime, jobs, workers)
    seen = _training_damages(TASKS[task].configs)
    distance = f"distance (m{', and the paper units' if unit else ''})"
    header = (
        f"| body | in training | Hebbian {distance} | static {distance} | Hebbian better by > spread | "
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
            f"| {row.label} | {trained} | {_distance(hebb, unit)} | {_distance(stat, unit)} | {better} | "
            f"{(hebb >= FORWARD_M).sum()}/{lifetimes} / {(stat >= FORWARD_M).sum()}/{lifetimes} | "
            f"{fell[0]}/{lifetimes} / {fell[1]}/{lifetimes} | {recovery} |"
        )
    return header + "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Edge:
    """A row of the sensitivity table: one range of the wide randomisation pinned at its low (side 0) or
    high (side 1) end, or (``longest_tick``) every tick as long as the jitter allows; the rest drawn."""

    key: str | None = None  # the Randomisation range pinned; None: none
    side: int = 0
    longest_tick: bool = False


EDGES = (
    Edge(),
    Edge("servo_speed", 0),
    Edge("servo_speed", 1),
    Edge("servo_strength", 0),
    Edge("servo_strength", 1),
    Edge("friction", 0),
    Edge("friction", 1),
    Edge("latency", 1),
    Edge(longest_tick=True),
)


@cache
def _wide() -> Randomisation:
    return load_randomisation(DOCS.parent / WIDE)


@cache
def _longest_tick(task: str, jitter: float) -> tuple[int, int, float, float]:
    """Physics steps of a nominal tick and of the longest tick ``jitter`` allows (the robot's own rounding),
    the physics step (s) and the gait clock (Hz): read once from the robot, not per lifetime."""
    robot = sim.make(task, randomise=Randomisation(tick_jitter=jitter)).unwrapped
    timestep = float(robot.model.opt.timestep)
    return robot.frame_skip, robot.frame_skip + round(jitter / timestep), timestep, robot.clock_hz


def edge_randomisation(edge: Edge) -> Randomisation:
    """The wide randomisation with the edge's range pinned as ``[x, x]`` (the longest tick: no jitter, the
    tick itself is lengthened by :func:`edge_env`)."""
    wide = _wide()
    if edge.longest_tick:
        return dataclasses.replace(wide, tick_jitter=0.0)
    if edge.key is None:
        return wide
    value = getattr(wide, edge.key)[edge.side]
    return dataclasses.replace(wide, **{edge.key: (value, value)})


def edge_env(task: str, edge: Edge) -> gymnasium.Env:
    """The task's environment at the edge. The longest tick lasts the jitter's longest every tick while the
    gait clock still advances by one nominal tick's phase, as the deployed loop counts its ticks."""
    kwargs: dict[str, Any] = {}
    if edge.longest_tick:
        nominal, longest, _, clock_hz = _longest_tick(task, _wide().tick_jitter)
        kwargs = {"frame_skip": longest, "clock_hz": clock_hz * nominal / longest}
    return sim.make(task, randomise=edge_randomisation(edge), **kwargs)


def edge_label(task: str, edge: Edge) -> tuple[str, str]:
    """The edge's name and its value in the robot's units."""
    if edge.longest_tick:
        nominal, longest, timestep, _ = _longest_tick(task, _wide().tick_jitter)
        ms = timestep * 1e3
        return "control period, longest", f"{longest * ms:g} ms every tick (nominal {nominal * ms:g})"
    if edge.key is None:
        return "none (all drawn)", "-"
    value = getattr(_wide(), edge.key)[edge.side]
    end = ("low", "high")[edge.side]
    values = {
        "servo_speed": ("servo speed", f"{value * SERVO.no_load_speed:g} rad/s (x{value:g})"),
        "servo_strength": ("stall torque", f"{value * SERVO.stall_torque:.2f} N m (x{value:g})"),
        "friction": ("friction", f"{value:g}"),
        "latency": ("latency", f"{value * 1e3:g} ms"),
    }
    name, shown = values[edge.key]
    return f"{name}, {end}", shown


def _edge_lifetime(job: tuple[str, str, Edge, int]) -> tuple[float, bool]:
    task, genome, edge, seed = job
    loaded, settle, _ = _setup(task, genome, (), 0)
    life = run_lifetime(loaded.build(), edge_env(task, edge), TICKS, seed, settle_ticks=settle)
    return life.distance, life.terminated


def sensitivity(task: str, genomes: dict[str, str], lifetimes: int, workers: int) -> str:
    """Lifetimes walked forward, mean distance and falls per genome at each edge of EDGES."""
    jobs = [(task, g, edge, seed) for edge in EDGES for g in genomes.values() for seed in range(lifetimes)]
    results = iter(_run(_edge_lifetime, jobs, workers))
    names = " | ".join(f"{n} forward (>= {FORWARD_M:g} m) | {n} mean (m)" for n in genomes)
    lines = [
        f"Genomes: {', '.join(f'{n} `{g}`' for n, g in genomes.items())}; {lifetimes} lifetimes (seeds 0-"
        f"{lifetimes - 1}) of {TICKS} ticks after the settle per cell, on {WIDE} with one range pinned.",
        "",
        f"| edge | value | {names} | fell, {' / '.join(genomes)} |",
        "|---|---|" + "---|---|" * len(genomes) + "---|",
    ]
    for edge in EDGES:
        cells, fell = [], []
        for _ in genomes:
            cell = [next(results) for _ in range(lifetimes)]
            distance = np.array([d for d, _ in cell])
            cells.append(f"{(distance >= FORWARD_M).sum()}/{lifetimes} | {distance.mean():.2f}")
            fell.append(f"{sum(f for _, f in cell)}/{lifetimes}")
        name, value = edge_label(task, edge)
        lines.append(f"| {name} | {value} | {' | '.join(cells)} | {' / '.join(fell)} |")
    return "\n".join(lines) + "\n"


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
    parser.add_argument(
        "--sensitivity", action="store_true", help="servo-quad: walked forward at each randomisation edge"
    )
    parser.add_argument("--out", type=Path, help=f"--sensitivity's table (default docs/{SENSITIVITY_TABLE})")
    args = parser.parse_args()
    task = TASKS[args.task]
    if args.sensitivity:
        if args.task != "servo-quad":
            parser.error("--sensitivity needs --task servo-quad (the wide randomisation is the servo-quad's)")
        genomes = {"Hebbian": args.hebbian or SENSITIVITY[0], "static": args.static or SENSITIVITY[1]}
        text = sensitivity(args.task, genomes, args.lifetimes, args.workers)
        (args.out or DOCS / SENSITIVITY_TABLE).write_text(text)
        print(text)
        return
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
