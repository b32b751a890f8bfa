"""Settings declared once: a dataclass field's default together with what a valid value is.

``setting(default, valid)`` makes the field, and :func:`check` tests an instance's fields against their
declarations (every float also for finiteness: inf or NaN would run on and write NaN genomes). A value
is thus validated where it is declared, whoever builds the instance: the run config
(``evolve/config.py``) or the ES's own parameters (``evolve/openai_es.py``), which the config reuses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, get_type_hints


@dataclass(frozen=True)
class Valid:
    """What a value must be beyond its type: ``test`` and the words for a valid one ("between 0 and 1")."""

    test: Callable[[Any], bool]
    expected: str


def one_of(choices: Iterable[str]) -> Valid:
    options = tuple(choices)
    return Valid(lambda v: v in options, f"one of {', '.join(options)}")


def between(low: float, high: float) -> Valid:
    return Valid(lambda v: low <= v <= high, f"between {low} and {high}")


def at_least(low: float) -> Valid:
    return Valid(lambda v: v >= low, f">= {low}")


POSITIVE = Valid(lambda v: v > 0, "> 0")
FRACTION = Valid(lambda v: 0 < v <= 1, "in (0, 1]")


def setting(
    default: Any,
    valid: Valid | None = None,
    *,
    what: str | None = None,
    parse: Callable[[Any], object] | None = None,
) -> Any:
    """A field with its default and valid values; ``what`` names a valid value where the type's name would
    not (a config file's type error), ``parse`` reads the value further (a damage spec), raising SpecError."""
    return field(default=default, metadata={"valid": valid, "what": what, "parse": parse})


class Invalid(ValueError):
    """A field whose value is outside what its declaration allows."""

    def __init__(self, key: str, expected: str, value: Any) -> None:
        super().__init__(f"{key} must be {expected}, got {value!r}")
        self.key, self.expected, self.value = key, expected, value


@cache
def types(cls: type) -> dict[str, Any]:
    """The resolved type of each field of a dataclass (its annotations are strings)."""
    return get_type_hints(cls)


def check(instance: Any) -> None:
    """Raise :class:`Invalid` for the first field of ``instance`` outside its declaration."""
    kinds = types(type(instance))
    for f in fields(instance):
        value = getattr(instance, f.name)
        if kinds[f.name] is float and not math.isfinite(value):
            raise Invalid(f.name, "a finite number", value)
        valid = f.metadata.get("valid")
        if valid is not None and not valid.test(value):
            raise Invalid(f.name, valid.expected, value)
