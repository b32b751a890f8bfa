"""Fault suites: named sets of damage conditions, each trained on or held out, in one YAML file.

A suite is what "the robot keeps walking when it breaks" is measured against: every condition is a list
of damage specs (:mod:`sim.damage`, onsets included) and a split, ``train`` (evolution may see it) or
``held_out`` (only evaluation does). ``launch/suites/NAME.yaml``::

    task: ant                 # the simulated task (sim.TASKS)
    steps: 1000               # control ticks per lifetime
    randomise: null           # or a randomisation file, relative to the suite file
    forward: 1.0              # m: a lifetime that ends this far ahead "walked forward"
    conditions:
      - {name: intact, damage: [], split: train}
      - {name: cut-leg-1, damage: [cut-leg:1], split: held_out}

One condition named ``intact`` with no damage is required: every other is reported as a share of it.
``conditions`` may instead name another suite file (relative to this one) whose conditions this suite
takes, so one robot driven at another rate or through another firmware is measured on the same faults.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sim.damage import SpecError, parse

SPLITS = ("train", "held_out")
SUITES = Path(__file__).resolve().parent.parent / "launch" / "suites"  # the named suites of a checkout
KEYS = ("task", "steps", "randomise", "forward", "conditions")
NAME = re.compile(r"^[A-Za-z0-9_.@:+-]{1,64}$")


class SuiteError(SpecError):
    """A suite file that cannot be read, or a condition in it that is malformed."""


@dataclass(frozen=True)
class Condition:
    name: str
    damage: tuple[str, ...]
    split: str

    @property
    def mid_run(self) -> bool:
        """Whether a damage starts after reset (then recovery is measured)."""
        return any(parse(spec).onset > 0 for spec in self.damage)


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    task: str
    steps: int
    randomise: Path | None
    forward: float
    conditions: tuple[Condition, ...]

    def split(self, split: str) -> tuple[Condition, ...]:
        return tuple(c for c in self.conditions if c.split == split)

    def morphologies(self, split: str) -> tuple[tuple[str, ...], ...]:
        """The damage lists of one split: what evolution trains on (``train_suite``)."""
        return tuple(c.damage for c in self.split(split))


def suite_path(name: str | Path) -> Path:
    """A suite file given as a path, or by name from ``launch/suites/``."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return SUITES / f"{name}.yaml"


def _condition(source: str, index: int, entry: Any) -> Condition:
    where = f"suite {source}, condition {index + 1}"
    if not isinstance(entry, dict):
        raise SuiteError(f"{where}: must be a mapping with name, damage and split")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise SuiteError(f"{where}: 'name' must be 1-64 letters, digits or _.@:+- (got {name!r})")
    where = f"suite {source}, condition {name!r}"
    unknown = set(entry) - {"name", "damage", "split"}
    if unknown:
        raise SuiteError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; use name, damage, split"
        )
    damage = entry.get("damage", [])
    if not isinstance(damage, list) or not all(isinstance(s, str) for s in damage):
        raise SuiteError(f"{where}: 'damage' must be a list of damage specs like [cut-leg:2], got {damage!r}")
    for spec in damage:
        try:
            parse(spec)
        except SpecError as exc:
            raise SuiteError(f"{where}: {exc}") from None
    split = entry.get("split")
    if split not in SPLITS:
        raise SuiteError(f"{where}: 'split' must be train or held_out, got {split!r}")
    return Condition(name, tuple(damage), split)


def load_suite(name: str | Path, via: tuple[Path, ...] = ()) -> Suite:
    """Read and validate a suite; :class:`SuiteError` names the file, the condition and the fix. ``via``:
    the suite files that take their conditions from this one, so a loop of them is refused."""
    path = suite_path(name)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SUITES.glob("*.yaml"))) or "none found"
        raise SuiteError(f"suite {str(name)!r} not found: give a suite file or one of: {known}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"cannot read suite {path}: {exc}") from None
    except yaml.YAMLError:
        raise SuiteError(f"suite {path} is not valid YAML; fix the syntax") from None
    if not isinstance(values, dict):
        raise SuiteError(f"suite {path} must be a mapping with task, steps and conditions")
    unknown = set(values) - set(KEYS)
    if unknown:
        raise SuiteError(
            f"suite {path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; use {', '.join(KEYS)}"
        )
    task, steps, forward = values.get("task"), values.get("steps", 1000), values.get("forward", 1.0)
    if not isinstance(task, str):
        raise SuiteError(f"suite {path}: 'task' must name a task such as ant or servo-quad")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 1_000_000:
        raise SuiteError(
            f"suite {path}: 'steps' must be a whole number of ticks from 1 to 1000000, got {steps!r}"
        )
    if isinstance(forward, bool) or not isinstance(forward, int | float) or not math.isfinite(forward):
        raise SuiteError(f"suite {path}: 'forward' must be a finite number of metres, got {forward!r}")
    randomise = values.get("randomise")
    if randomise is not None:
        if not isinstance(randomise, str):
            raise SuiteError(f"suite {path}: 'randomise' must be a randomisation file, got {randomise!r}")
        randomise = (path.parent / randomise).resolve()
        if not randomise.is_file():
            raise SuiteError(f"suite {path}: randomisation file {randomise} not found")
    entries = values.get("conditions")
    if isinstance(entries, str):
        other, chain = (path.parent / entries).resolve(), (*via, path.resolve())
        if other in chain or not other.is_file():
            raise SuiteError(
                f"suite {path}: 'conditions' names {other}, which is not another suite file (or is one of "
                "those that take their conditions from it); name a suite with its own list"
            )
        conditions = load_suite(other, chain).conditions
        return Suite(path.stem, path, task, steps, randomise, float(forward), conditions)
    if not isinstance(entries, list) or not entries:
        raise SuiteError(f"suite {path}: 'conditions' must be a non-empty list or another suite file")
    conditions = tuple(_condition(str(path), i, entry) for i, entry in enumerate(entries))
    names = [c.name for c in conditions]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SuiteError(
            f"suite {path}: condition name(s) {', '.join(repeated)} used twice; names must differ"
        )
    if not any(c.name == "intact" and not c.damage for c in conditions):
        raise SuiteError(f"suite {path}: add a condition named 'intact' with damage [] (the reference)")
    return Suite(path.stem, path, task, steps, randomise, float(forward), conditions)
