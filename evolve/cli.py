"""The ``evolve`` command.

evolve --config launch/smoke/ant.yaml [--set key=value]... [--out runs/NAME] [--backend local|ray]
       [--workers N] [--ray-address ADDR]
evolve --resume runs/NAME             # continue after Ctrl-C, SIGTERM or kill -9
evolve plot runs/NAME [-o curve.png]  # learning curve: train and held-out validation (or a log.jsonl[.gz])
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from controller.app import run_command
from controller.errors import UserError
from controller.plotting import pyplot
from evolve.config import ConfigError, flat_values, load_config, parse_overrides, read_mapping
from sim.damage import SpecError

# What --resume may change (by flat key name): where it runs, and how long (the trajectory does not depend
# on either).
RESUME_KEYS = ("backend", "workers", "ray_address", "generations")


def _overrides(args: argparse.Namespace) -> list[str]:
    sets = list(args.set)
    if args.backend:
        sets.append(f"backend={args.backend}")
    if args.workers is not None:
        sets.append(f"workers={args.workers}")
    return sets


def run(args: argparse.Namespace) -> int:
    from evolve.run import evolve, load_run_config  # imports the simulator: not needed for errors

    if args.resume and (args.config or args.out):
        raise ConfigError("--resume RUN continues that run with its own config; drop --config and --out")
    if args.resume:
        out = Path(args.resume)
        overrides = parse_overrides(_overrides(args))
        bad = sorted(set(overrides) - set(RESUME_KEYS))
        if bad:
            raise ConfigError(
                f"--resume keeps the run's config; only {', '.join(RESUME_KEYS)} may change, not {bad}"
            )
        config = load_run_config(out, overrides)
        evolve(config, out, resume=True, ray_address=args.ray_address)
        return 0
    if not args.config:
        raise ConfigError("give --config launch/NAME.yaml (or --resume runs/NAME)")
    config = load_config(args.config, _overrides(args))
    out = Path(args.out or f"runs/{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    args.out = str(out)
    if (out / "checkpoint.npz").exists():
        raise ConfigError(f"{out} already holds a run; continue it with --resume {out} or pick another --out")
    evolve(config, out, ray_address=args.ray_address)
    return 0


def plot(args: argparse.Namespace) -> int:
    """Fitness of the population and of the mean genome (train and held-out) per generation."""
    from evolve.run import read_log  # imports the simulator: only when plotting

    plt = pyplot()
    run = Path(args.run)
    log = run if run.is_file() else run / "log.jsonl"  # a run folder, or a log (docs/logs/*.jsonl.gz)
    if not log.is_file():
        raise UserError(f"{log} not found; is {args.run} a run directory written by evolve?")
    records = read_log(log)  # a running evolution may be halfway through appending the last line
    if not records:
        raise UserError(f"{log} holds no finished generation yet")
    gens = [r["generation"] + 1 for r in records]
    config = Path(args.config) if args.config else log.parent / "config.yaml"
    randomised = config.is_file() and flat_values(read_mapping(config)).get("randomise")
    drawn = ", held-out randomisations" if randomised else ""  # validation seeds never train
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(gens, [r["mean"] for r in records], color="0.7", label="population mean")
    ax.plot(gens, [r["best"] for r in records], color="0.4", lw=0.8, label="population best")
    checked = [r for r in records if "train_score" in r]
    ax.plot(
        [r["generation"] + 1 for r in checked],
        [r["train_score"] for r in checked],
        "o-",
        label=f"mean genome: train bodies{drawn}",
    )
    held = [r for r in checked if r["validation_score"] is not None]
    if held:
        ax.plot(
            [r["generation"] + 1 for r in held],
            [r["validation_score"] for r in held],
            "s-",
            label=f"mean genome: held-out damage{drawn}",
        )
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness (distance walked, m; CarRacing: reward)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    output = args.output or str(log.parent / "curve.png")
    fig.savefig(output, dpi=120)
    print(f"wrote {output}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evolve", description="Evolve Hebbian rules (or static weights) with OpenAI-ES."
    )
    parser.add_argument("--config", help="YAML run configuration (see launch/)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    parser.add_argument("--out", help="run directory (default runs/<config>-<time>)")
    parser.add_argument("--resume", metavar="RUN", help="continue the run in this directory")
    parser.add_argument("--backend", choices=("local", "ray"), help="where fitness is evaluated")
    parser.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    parser.add_argument(
        "--ray-address",
        help="join a running Ray cluster ('auto': the one on this machine); implies --backend ray",
    )
    return parser


def _plot_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evolve plot")
    parser.add_argument("run", help="run directory, or a run's log.jsonl (gzipped: .jsonl.gz)")
    parser.add_argument("--config", help="the run's config, for the labels (default: config.yaml beside it)")
    parser.add_argument("-o", "--output", help="PNG to write (default RUN/curve.png)")
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (a scheduler, ``kill``) and SIGINT stop the run like Ctrl-C: the last generation is saved.
    SIGINT is set too because a shell starts a background job (``evolve ... &``) with it ignored."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    is_plot = bool(argv) and argv[0] == "plot"
    args = (_plot_parser() if is_plot else _parser()).parse_args(argv[1:] if is_plot else argv)
    previous = {s: signal.signal(s, _terminate) for s in (signal.SIGTERM, signal.SIGINT)}

    def interrupted() -> str:
        target = getattr(args, "resume", None) or getattr(args, "out", None) or "runs/NAME"
        return f"interrupted; the last finished generation is saved: evolve --resume {target}"

    try:
        return run_command(lambda: plot(args) if is_plot else run(args), lambda: (SpecError,), interrupted)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
