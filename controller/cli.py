"""The ``controller`` command: run, evaluate and inspect Hebbian controllers.

controller --sim ant|ant-bullet|carracing|servo-quad|servo-quad-opencat [--genome G] [--cut-leg N]
           [--damage SPEC]... [--steps N] [--seed S] [--realtime] [--video out.mp4] [--log run.csv]
           [--backend auto|numba|numpy|onnx]
controller --serial PORT --robot CONFIG | --config PROFILE [--duration S] [--rate HZ --allow-rate-change]
controller --serial PORT --robot CONFIG --on-board [--duration S] [--seed S] [--log telemetry.csv]
controller evaluate GENOME --sim ant [--damage SPEC]... [--lifetimes 20] [--steps 1000]
controller analyse GENOME --sim ant [--damage SPEC]... [--lifetimes 20] [--out DIR]
controller plot run.csv -o run.png
controller import-reference FILE --rule ABCD_lr --task ant-bullet [--conv FILE] -o genome.npz
controller export GENOME -o tick.onnx [--opset N] | --format c -o genome.h
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from controller.app import StatusLine, Telemetry, build_network, run_command, summary, tick_callbacks
from controller.deploy import DeploySettings, deploy
from controller.errors import UserError
from controller.genome import Genome, load_genome
from controller.loop import Pacer, median_recovery, run_lifetime
from controller.network import AUTO_BACKEND, BACKENDS
from controller.plotting import pyplot
from firmware_bridge.errors import BridgeError
from firmware_bridge.profile import load_profile
from firmware_bridge.robot import shipped_robots

DEFAULT_STEPS = 1000
LEG_HELP = "legs: 1 front-left, 2 back-left, 3 back-right, 4 front-right (the Ant walks towards +x)"
DAMAGE_HELP = (
    "damage spec, repeatable, e.g. cut-leg:2, weaken:hip_1:0.3, slope:5; append @SECONDS for a mid-run onset "
    "(cut-leg:2@15); every kind: README, 'Damage and faults'"
)


def _user_errors() -> tuple[type[Exception], ...]:
    """Bad input beyond UserError: a damage spec, and the robot link's (port, config, firmware)."""
    from sim.damage import SpecError

    return (SpecError, BridgeError)


def _add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sim",
        metavar="TASK",
        help="simulated task: ant (MuJoCo), ant-bullet (PyBullet), carracing (pixels), "
        "servo-quad (8 hobby servos, docs/robots.md), servo-quad-opencat (the same, stock Petoi firmware)",
    )
    parser.add_argument("--cut-leg", metavar="N", action="append", default=[], help=f"cut leg N; {LEG_HELP}")
    parser.add_argument("--damage", metavar="SPEC", action="append", default=[], help=DAMAGE_HELP)
    parser.add_argument(
        "--steps",
        type=_count(1, 1_000_000),
        help=f"control ticks per lifetime (default {DEFAULT_STEPS}; with --suite, the suite's)",
    )
    parser.add_argument(
        "--seed", type=_count(0, 2**31 - 1), default=0, help="seed of the environment and initial weights"
    )
    parser.add_argument(
        "--settle",
        type=_count(0, 100_000),
        help="zero-action ticks before control (default: as the genome was evolved, else the task's: "
        "40 for the Ants, 50 for servo-quad, 0 for CarRacing)",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=("auto", *BACKENDS),
        help=f"network backend: auto (= {AUTO_BACKEND}, on every install), " + ", ".join(BACKENDS),
    )
    parser.add_argument(
        "--randomise",
        metavar="FILE",
        help="domain randomisation config (YAML), drawn afresh every lifetime, e.g. "
        "launch/randomisation/servo_quad.yaml (docs/robots.md)",
    )


def _count(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high] (argparse turns the ValueError into a usage line)."""

    def read(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: give {low} to {high}")
        return value

    read.__name__ = "count"
    return read


def _steps(args: argparse.Namespace) -> int:
    return DEFAULT_STEPS if args.steps is None else args.steps


def _damages(args: argparse.Namespace) -> list[str]:
    return [f"cut-leg:{leg}" for leg in args.cut_leg] + list(args.damage)


def _make_env(args: argparse.Namespace, genome: Genome, **kwargs: Any):
    import sim

    if args.sim is None:
        raise UserError("no robot given: add --sim ant (or --serial PORT for a real robot)")
    env = sim.make(args.sim, _damages(args), randomise=args.randomise, **kwargs)
    obs_shape = env.observation_space.shape
    if obs_shape != genome.spec.obs_shape or env.action_space.shape[0] != genome.action_size:
        raise UserError(
            f"genome expects observations of shape {genome.spec.obs_shape} and {genome.action_size} actions, "
            f"task {args.sim!r} has {obs_shape} and {env.action_space.shape[0]}; use a genome for {args.sim}"
        )
    return env


def _settle(args: argparse.Namespace, env: Any, genome: Genome) -> int:
    return genome.settle_ticks(env.unwrapped.settle_ticks) if args.settle is None else args.settle


def _genome(name: str | None, task: str | None) -> Genome:
    """The named genome, or the task's shipped one, checked against the task."""
    from sim import TASKS

    if task is not None and task not in TASKS:
        raise UserError(f"unknown task {task!r} for --sim; choose one of {', '.join(TASKS)}")
    return load_genome(name or task or "ant", task=task)


def _describe(genome: Genome, source: str) -> str:
    note = genome.provenance.get("note")
    label = f"{source} ({genome.kind}"
    if genome.kind == "hebbian":
        label += f", rule {genome.spec.rule}"
    return label + (f"; {note})" if note else ")")


class _Video:
    """Offscreen frames from MuJoCo's renderer into a video file (needs the ``video`` extra)."""

    def __init__(self, path: Path, env: Any) -> None:
        try:
            import imageio.v2 as imageio
        except ImportError:
            raise UserError("--video needs imageio: pip install 'hebbian-quadruped[video]'") from None
        self.env = env
        self.writer = imageio.get_writer(str(path), fps=round(1.0 / env.unwrapped.dt), macro_block_size=1)

    def __call__(self, tick: int, obs: np.ndarray, action: np.ndarray, info: dict[str, Any]) -> None:
        self.writer.append_data(self.env.render())

    def close(self) -> None:
        self.writer.close()


def run(args: argparse.Namespace) -> int:
    if args.on_board and not args.serial:
        raise UserError("--on-board needs --serial PORT: it starts the network built into a robot's firmware")
    if args.serial:
        return deploy(_deploy_settings(args))
    genome = _genome(args.genome, args.sim)
    for path in (args.log, args.video):
        _check_folder(path)
    env = _make_env(args, genome, render_mode="rgb_array" if args.video else None)
    network = build_network(genome, args.backend)
    network.tick(np.zeros(genome.spec.obs_shape))  # compile/warm the backend outside the timed loop
    print(f"genome: {_describe(genome, args.genome or args.sim)}; backend {network.backend}")
    damage = ", ".join(_damages(args)) or "none"
    randomised = f", randomised by {args.randomise}" if args.randomise else ""
    dt = env.unwrapped.dt
    print(f"task: {args.sim}, control period {dt * 1e3:.0f} ms, damage: {damage}{randomised}")
    pacer = Pacer(dt) if args.realtime else None
    callbacks: list[Any] = []
    if args.log:
        callbacks.append(Telemetry(Path(args.log), network, dt))
    if args.video:
        callbacks.append(_Video(Path(args.video), env))
    if sys.stderr.isatty():
        callbacks.append(StatusLine(_steps(args), pacer))
    try:
        with tick_callbacks(*callbacks) as on_tick:
            life = run_lifetime(
                network,
                env,
                _steps(args),
                args.seed,
                settle_ticks=_settle(args, env, genome),
                pacer=pacer,
                on_tick=on_tick,
            )
    finally:
        env.close()
    print("\n".join(summary(life, pacer)))
    if args.log:
        print(f"telemetry: {args.log} (plot it with: controller plot {args.log} -o run.png)")
    if args.video:
        print(f"video: {args.video}")
    return 0


def _deploy_settings(args: argparse.Namespace) -> DeploySettings:
    """The deploy's settings: the flags, and a deploy profile's values for those not given."""
    profile = load_profile(args.config).values() if args.config else {}

    def given(key: str) -> Any:
        value = getattr(args, key)
        return profile.get(key) if value is None else value

    if not given("robot"):
        raise UserError(
            f"--serial needs --robot CONFIG (a YAML path or one of {', '.join(shipped_robots())}) "
            "or --config PROFILE"
        )
    rate, duration = given("rate"), args.duration
    if any(v is not None and not 0 < v < math.inf for v in (rate, duration)):
        raise UserError("--rate and --duration must be positive")
    _check_folder(args.log)
    return DeploySettings(
        port=args.serial,
        robot=given("robot"),
        genome=given("genome"),
        calibration=given("calibration"),
        rate=rate,
        allow_rate_change=args.allow_rate_change,
        duration=duration,
        baud=given("baud"),
        connect_timeout=args.connect_timeout,
        seed=args.seed,
        backend=args.backend,
        log=args.log,
        onboard=args.on_board,
    )


def _add_serial_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the serial deploy path (``--genome``, ``--log``, ``--seed``, ``--backend`` are the
    main parser's and are read too)."""
    group = parser.add_argument_group("robot over serial (instead of --sim)")
    group.add_argument("--serial", metavar="PORT", help="serial port of the robot (or of the emulator's pty)")
    group.add_argument(
        "--robot",
        metavar="CONFIG",
        help=f"robot config: YAML path or shipped name ({', '.join(shipped_robots())})",
    )
    group.add_argument(
        "--config",
        metavar="FILE",
        help="deploy profile (YAML): robot, rate, genome, calibration, baud "
        "(e.g. launch/deploy/servo_quad.yaml); flags given here win",
    )
    group.add_argument(
        "--rate",
        type=float,
        metavar="HZ",
        help="control rate (default: the rate the genome was evolved at; another needs --allow-rate-change)",
    )
    group.add_argument(
        "--allow-rate-change",
        action="store_true",
        help="run at a --rate other than the genome's, with a warning (a plastic network learns per tick)",
    )
    group.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    group.add_argument("--baud", type=int, help="baud rate (default: the robot config's)")
    group.add_argument(
        "--connect-timeout", type=float, default=5.0, metavar="S", help="wait this long for the robot's INFO"
    )
    group.add_argument("--calibration", metavar="FILE", help="calibration YAML (default: the config's)")
    group.add_argument(
        "--on-board",
        action="store_true",
        help="the robot runs the network built into its firmware; the host starts, stops and prints its "
        "telemetry (docs/protocol.md, On-board mode)",
    )


def evaluate(args: argparse.Namespace) -> int:
    """Mean and spread of the task's fitness (distance, or CarRacing's reward) over independent
    lifetimes (fresh weights and seed each), on one body or on every condition of a fault suite."""
    if args.suite is not None:
        return evaluate_suite(args)
    if args.against or args.markdown:
        raise UserError("--against and --markdown compare genomes over a fault suite: add --suite NAME")
    _check_folder(args.json)
    genome = _genome(args.genome, args.sim)
    env = _make_env(args, genome)
    network = build_network(genome, args.backend)
    lives = [
        run_lifetime(network, env, _steps(args), args.seed + k, settle_ticks=_settle(args, env, genome))
        for k in range(args.lifetimes)
    ]
    kind = lives[0].fitness_kind
    scores = np.array([life.fitness for life in lives])
    damaged = any(life.damage_onset for life in lives)
    recovery = [life.recovery_ticks() for life in lives]
    median, recovered = median_recovery(recovery)
    result = {
        "genome": args.genome,
        "task": args.sim,
        "damage": _damages(args),
        "randomise": args.randomise,
        "lifetimes": args.lifetimes,
        "steps": _steps(args),
        f"{kind}_mean": float(scores.mean()),
        f"{kind}_std": float(scores.std()),
        f"{kind}_min": float(scores.min()),
        "fell": int(sum(life.terminated for life in lives)),
        "walked_forward": int((scores >= args.forward).sum()) if kind == "distance" else None,
        "recovered": recovered if damaged else None,
        "recovery_ticks_median": median if damaged else None,  # None: never (or no damage onset)
        # per lifetime, in seed order: a median over 20 hides how the rest are spread
        kind: scores.tolist(),
        "recovery_ticks": recovery if damaged else None,
    }
    print(
        f"{kind}: {scores.mean():.2f} ± {scores.std():.2f}{' m' if kind == 'distance' else ''} over "
        f"{args.lifetimes} lifetimes of {_steps(args)} ticks (min {scores.min():.2f}); fell: {result['fell']}"
    )
    if kind == "distance":
        print(
            f"walked forward: {result['walked_forward']}/{args.lifetimes} lifetimes "
            f"({args.forward:g} m or more)"
        )
    if result["recovered"] is not None:
        print(
            f"recovered: {result['recovered']}/{args.lifetimes}, median ticks to recover (over all "
            f"lifetimes): {'never' if median is None else f'{median:.0f}'}"
        )
    if args.json:
        _write(args.json, json.dumps(result, indent=2) + "\n")
    return 0


def evaluate_suite(args: argparse.Namespace) -> int:
    """Every condition of a fault suite, one genome or two side by side (controller/suite_eval.py)."""
    from controller.suite_eval import progress_bar, report, run_suite
    from sim.suite import load_suite

    suite = load_suite(args.suite)
    if _damages(args) or args.randomise:
        raise UserError(
            f"suite {suite.name!r} names its damages and randomisation; drop --damage/--cut-leg/--randomise"
        )
    if args.sim not in (None, suite.task):
        raise UserError(
            f"suite {suite.name!r} is for task {suite.task!r}, not --sim {args.sim}; use --sim {suite.task}"
        )
    names = [args.genome] + ([args.against] if args.against else [])
    for name in names:  # a bad genome or backend is an error here, not in a worker
        build_network(_genome(name, suite.task), args.backend)
    for path in (args.json, args.markdown):
        _check_folder(path)
    labels = list(dict.fromkeys(names))
    if len(labels) < len(names):
        raise UserError("--against names the same genome; give a different one to compare with")
    steps = suite.steps if args.steps is None else args.steps
    print(
        f"suite {suite.name}: {len(suite.conditions)} conditions ({len(suite.split('train'))} train, "
        f"{len(suite.split('held_out'))} held out), task {suite.task}, {args.lifetimes} lifetimes of {steps} "
        f"ticks from seed {args.seed}"
        + (f", randomised by {suite.randomise.name}" if suite.randomise else ""),
        flush=True,
    )
    cells = run_suite(
        names,
        suite,
        args.lifetimes,
        args.seed,
        steps,
        args.settle,
        args.backend,
        args.workers,
        progress_bar if sys.stderr.isatty() else None,
    )
    lines, data = report(suite, labels, cells, args.lifetimes)
    print("\n".join(lines))
    if args.markdown:
        _write(args.markdown, "\n".join(lines) + "\n")
    if args.json:
        _write(args.json, json.dumps(data, indent=2) + "\n")
    return 0


def _check_folder(path: str | None) -> None:
    """An output file's folder must exist: say so before the work, not with a traceback after it."""
    if path is not None and not Path(path).parent.is_dir():
        raise UserError(f"cannot write {path}: folder {Path(path).parent} does not exist; create it first")


def _write(path: str, text: str) -> None:
    _check_folder(path)
    Path(path).write_text(text)


def plot(args: argparse.Namespace) -> int:
    """Speed over time (1-second moving average) with the damage onset marked, and weight norms."""
    _check_folder(args.output)
    plt = pyplot()
    path = Path(args.log)
    if not path.is_file():
        raise UserError(f"telemetry file {path} not found; write one with controller --sim ant --log {path}")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows or "speed" not in rows[0]:
        raise UserError(f"{path} is not a telemetry log written by controller --log")
    t = np.array([float(r["time_s"]) for r in rows])
    speed = np.array([float(r["speed"]) for r in rows])
    dt = t[1] - t[0] if t.size > 1 else 0.05
    window = min(len(t), max(1, round(1.0 / dt)))
    smooth = np.convolve(speed, np.ones(window) / window, mode="same")
    norms = [k for k in rows[0] if k.startswith("weight_norm_")]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ax1.plot(t, speed, color="0.8", lw=0.8, label="speed")
    ax1.plot(t, smooth, color="C0", label="1 s moving average")
    ax1.set_ylabel("forward speed (m/s)")
    for i, row in enumerate(rows):
        if i and row["damage"] != rows[i - 1]["damage"]:
            for ax in (ax1, ax2):
                ax.axvline(t[i], color="C3", ls="--")
            ax1.annotate(row["damage"], (t[i], ax1.get_ylim()[1]), color="C3", va="top", fontsize=8)
    for k, name in enumerate(norms):
        ax2.plot(t, [float(r[name]) for r in rows], label=f"layer {k + 1}")
    ax2.set_ylabel("weight norm")
    ax2.set_xlabel("time (s)")
    ax1.legend(loc="lower right")
    ax2.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")
    return 0


def analyse(args: argparse.Namespace) -> int:
    """What a genome's rules are and what they learn: coefficients, rule clusters, weight trajectories
    from random starts, and how a damage moves them (controller/analyse.py)."""
    from controller import analyse as analysis

    genome = _genome(args.genome, args.sim)
    out = Path(args.out or f"analysis-{Path(args.genome).stem}")
    analysis.check_out(out)
    damages = tuple(_damages(args))
    intact_env = _make_env(argparse.Namespace(**{**vars(args), "cut_leg": [], "damage": []}), genome)
    damaged_env = _make_env(args, genome) if damages else None
    settings = analysis.Settings(
        genome=args.genome,
        task=args.sim,
        damages=damages,
        lifetimes=args.lifetimes,
        steps=_steps(args),
        seed=args.seed,
        settle=_settle(args, intact_env, genome),
        backend=args.backend,
    )
    try:
        result = analysis.analyse(genome, intact_env, damaged_env, settings)
    finally:
        for env in (intact_env, damaged_env):
            if env is not None:
                env.close()
    out.mkdir(exist_ok=True)
    paths = [analysis.write(result, out)]
    if not args.no_plots:
        paths += analysis.plot(result, genome, out)
    print(result["verdict"])
    for layer in result.get("rule_clusters", []):
        fewest = ", ".join(f"{n} explain {share}" for share, n in layer["fewest_clusters"].items())
        print(f"layer {layer['layer']}: {layer['synapses']} synapses; rule clusters: {fewest}")
    if "damage" in result:
        d = result["damage"]
        print(
            f"damage {' '.join(d['specs'])}: the attractor (late mean weights) moves "
            f"{d['attractor_shift']:.3f} from the same lifetime's intact one, {d['shift_over_gap']:.1f} x "
            "the gap between two intact lifetimes' attractors"
        )
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def import_reference(args: argparse.Namespace) -> int:
    """Convert a coefficient file saved by the paper's reference code into a genome."""
    from controller.genome import save_genome
    from controller.reference import import_reference as convert

    genome = convert(args.file, args.rule, args.task, conv=args.conv, init=args.init)
    path = save_genome(genome, args.output)
    spec = genome.spec
    print(
        f"wrote {path}: {genome.kind} genome for {args.task}, rule {spec.rule}, "
        f"layers {' -> '.join(map(str, spec.layer_sizes))}, {spec.synapses} synapses"
        + (f", conv front end {spec.frontend}" if spec.frontend else "")
    )
    return 0


def export(args: argparse.Namespace) -> int:
    """Write one whole control tick of a genome's network as an ONNX graph (docs/deploy.md)."""
    from controller.onnx_export import ACTION, OBSERVATION, export_onnx, weight_input, weight_output

    _check_folder(args.output)
    genome = load_genome(args.genome)
    if args.format == "c":
        from controller.c_export import export_c

        path = export_c(genome, args.output, args.robot)
        print(f"wrote {path}: {_describe(genome, args.genome)}, a header for the C tick")
        return 0
    path = export_onnx(genome, args.output, args.opset)
    layers = range(1, len(genome.spec.layer_shapes) + 1) if genome.kind == "hebbian" else ()
    inputs = [OBSERVATION, *map(weight_input, layers)]
    outputs = [ACTION, *map(weight_output, layers)]
    print(
        f"wrote {path}: {_describe(genome, args.genome)}, opset {args.opset}; "
        f"inputs {', '.join(inputs)}; outputs {', '.join(outputs)}"
    )
    return 0


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="controller",
        description="Run a Hebbian controller: every lifetime starts from random weights and the "
        "evolved plasticity rules organise them tick by tick. "
        "Subcommands: evaluate, analyse, plot, import-reference, export.",
        epilog=LEG_HELP,
    )
    _add_sim_arguments(parser)
    parser.add_argument("--genome", help="genome file or shipped name (ant, ant-static); default: the task's")
    parser.add_argument("--realtime", action="store_true", help="pace ticks to the wall clock")
    parser.add_argument("--video", metavar="FILE", help="write an offscreen-rendered video (mp4)")
    parser.add_argument("--log", metavar="FILE", help="write per-tick telemetry (CSV)")
    _add_serial_arguments(parser)
    return parser


def _genome_on_sim_parser(prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand that takes a genome and runs it on a simulated task."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=LEG_HELP)
    parser.add_argument("genome", help="genome file or shipped name (ant, ant-static)")
    _add_sim_arguments(parser)
    return parser


def _evaluate_parser() -> argparse.ArgumentParser:
    parser = _genome_on_sim_parser("controller evaluate")
    parser.add_argument(
        "--lifetimes", type=_count(1, 100_000), default=20, help="independent lifetimes (default 20)"
    )
    parser.add_argument(
        "--forward",
        type=float,
        default=1.0,
        metavar="M",
        help="a lifetime 'walked forward' when it ends at least M metres ahead (default 1)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    parser.add_argument(
        "--suite",
        metavar="NAME",
        help="a fault suite: a name from launch/suites/ (ant, servo-quad, servo-quad-opencat) or a file; "
        "every condition is evaluated and each split summarised",
    )
    parser.add_argument("--against", metavar="GENOME", help="with --suite: a second genome's columns beside")
    parser.add_argument(
        "--workers",
        type=_count(1, 256),
        default=os.cpu_count() or 1,
        help="with --suite: worker processes (default: all cores); the table is the same for any number",
    )
    parser.add_argument("--markdown", metavar="FILE", help="with --suite: also write the table as Markdown")
    return parser


def _analyse_parser() -> argparse.ArgumentParser:
    parser = _genome_on_sim_parser(
        "controller analyse",
        "What a genome's rules are and what they learn: per-layer coefficient distributions, how many "
        "distinct rules it uses, weight trajectories from random starts (one attractor? a fixed point or a "
        "cycle with the gait?) and, with --damage, how a damage moves them.",
    )
    parser.add_argument(
        "--lifetimes", type=_count(2, 1000), default=20, help="lifetimes from random starts (default 20)"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="folder for analysis.json and the PNGs (default analysis-GENOME)"
    )
    parser.add_argument("--no-plots", action="store_true", help="write the JSON only (no matplotlib needed)")
    return parser


def _import_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="controller import-reference",
        description="Convert Hebbian coefficients saved with torch.save by the paper's reference code "
        "(float array (synapses, coefficients per synapse), input-major rows, layers in order) as a genome.",
    )
    parser.add_argument("file", help="coefficient file written by torch.save")
    parser.add_argument("--rule", required=True, help="the rule the coefficients are for, e.g. ABCD_lr")
    parser.add_argument(
        "--task", required=True, help="task the coefficients were evolved on (ant-bullet, carracing)"
    )
    parser.add_argument(
        "--conv", metavar="FILE", help="CarRacing: the evolved conv kernels (torch.save, 1362 values)"
    )
    parser.add_argument(
        "--init",
        default="uniform",
        help="initial weights of each lifetime (default uniform, the reference's 'uni')",
    )
    parser.add_argument("-o", "--output", required=True, help="genome file to write (.npz)")
    return parser


def _export_parser() -> argparse.ArgumentParser:
    from controller.onnx_export import DEFAULT_OPSET

    parser = argparse.ArgumentParser(
        prog="controller export",
        description="Write one control tick (forward pass and plasticity update, weights in and out) "
        "as an ONNX graph for ONNX Runtime; docs/deploy.md has its inputs, outputs and a consumer.",
    )
    parser.add_argument("genome", help="genome file or shipped name (ant, ant-static)")
    parser.add_argument("-o", "--output", default="tick.onnx", help="ONNX file to write (default tick.onnx)")
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    parser.add_argument(
        "--format",
        choices=("onnx", "c"),
        default="onnx",
        help="onnx: the tick as an ONNX graph; c: a header for the C tick (firmware_bridge/firmware/plastic)",
    )
    parser.add_argument("--robot", help="with --format c: robot config for the observation layout")
    return parser


def _plot_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="controller plot")
    parser.add_argument("log", help="telemetry CSV written by controller --log")
    parser.add_argument("-o", "--output", default="run.png", help="PNG to write")
    return parser


SUBCOMMANDS: dict[str, tuple[Callable[[], argparse.ArgumentParser], Callable[[argparse.Namespace], int]]] = {
    "evaluate": (_evaluate_parser, evaluate),
    "analyse": (_analyse_parser, analyse),
    "plot": (_plot_parser, plot),
    "import-reference": (_import_parser, import_reference),
    "export": (_export_parser, export),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    make_parser, command = SUBCOMMANDS.get(argv[0] if argv else "", (_run_parser, run))
    if command is not run:
        argv = argv[1:]
    args = make_parser().parse_args(argv)
    return run_command(lambda: command(args), _user_errors)


if __name__ == "__main__":
    sys.exit(main())
