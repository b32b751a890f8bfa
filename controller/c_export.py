"""Export a Hebbian genome as a C header for the on-robot plastic tick (firmware_bridge/firmware/plastic).

The C tick fixes every size at compile time, so everything it needs is written as macros and tables:
sizes, rule, activations, normalisation, the rule's coefficients folded into effective A, B, C, D
(as the Python network folds them once per lifetime), the co-evolved initial weights where the genome
has them, the task's control period, and the observation layout the genome expects, from the robot
config. Tables are defined only where ``HQ_GENOME_DATA`` is defined (hq_plastic.c), so any file may
include the header for its macros. Floats are written as C99 hex literals: exact, whatever the
compiler's decimal conversion.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from controller.errors import UserError
from controller.files import atomic_write
from controller.genome import Genome, code_version
from controller.rules import TERMS, effective_coefficients, get_rule
from firmware_bridge.protocol import POSITION

# initial weights the C tick can start a lifetime from: PCG32's uniform(-0.1, 0.1) (the distribution of
# "uniform", the generator of "uniform_pcg32") or the genome's own co-evolved weights
C_INITS = ("uniform", "uniform_pcg32", "coevolve")
PER_LINE = 6


def _c_float(value: float) -> str:
    """An exact C99 float literal (hex mantissa, trailing zeros dropped)."""
    text = float(value).hex()  # a float32 widened to double: exact
    mantissa, exponent = text.split("p")
    return f"{mantissa.rstrip('0').rstrip('.')}p{exponent}f"


def _table(ctype: str, name: str, size: str, values: np.ndarray) -> list[str]:
    literals = [_c_float(v) for v in np.asarray(values, dtype=np.float32).reshape(-1)]
    rows = [", ".join(literals[k : k + PER_LINE]) for k in range(0, len(literals), PER_LINE)]
    return [f"static const {ctype} {name}[{size}] = {{", *(f"    {row}," for row in rows), "};"]


def _macro(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def _check(genome: Genome) -> None:
    if genome.kind != "hebbian":
        raise UserError(f"the C tick is the plastic one; a {genome.kind} genome has no rule to export")
    if genome.spec.frontend:
        raise UserError(f"the C tick has no conv front end ({genome.spec.frontend}); export a vector genome")
    if genome.spec.init not in C_INITS:
        raise UserError(
            f"initial weights {genome.spec.init!r} are not drawn by the C tick; it draws {', '.join(C_INITS)}"
        )


def _robot_for(genome: Genome, robot: str | None):
    """The robot config (shipped name or YAML path; default the one named after the genome's task),
    checked against the genome."""
    from firmware_bridge.errors import ConfigError
    from firmware_bridge.robot import load_robot, shipped_robots

    if robot is None and genome.task not in shipped_robots():
        raise UserError(f"no shipped robot config for task {genome.task!r}; name the robot config to use")
    try:
        config = load_robot(robot or genome.task)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    if config.task != genome.task or config.obs_size != genome.obs_size:
        raise UserError(
            f"robot {config.name} runs task {config.task!r} with {config.obs_size} observations; the genome "
            f"is for {genome.task!r} with {genome.obs_size}"
        )
    return config


def task_timing(task: str) -> tuple[float, int]:
    """A task's control period (s) and settle ticks, from its simulator, which defines both (the Ant
    50 ms, the servo-quad 20 ms): for a genome whose provenance does not record them."""
    import sim

    env = sim.make(task)
    try:
        return float(env.unwrapped.dt), int(env.unwrapped.settle_ticks)
    finally:
        env.close()


def _timing(genome: Genome) -> tuple[int, int]:
    """The control period (us) the genome was evolved at and its settle ticks."""
    period, settle_ticks = task_timing(genome.task)
    return round((genome.control_period() or period) * 1e6), genome.settle_ticks(settle_ticks)


def _observation_lines(config) -> list[str]:
    lines = [f"/* Observation layout (robot config {Path(config.source).name}): block, first index, size */"]
    at = 0
    for block, number in config.observation:
        size, name = config.block_size(block), f"HQ_OBS_{_macro(block)}"
        lines += [f"#define {name}_AT {at}", f"#define {name}_SIZE {size}"]
        if block == "clock":
            lines.append(f"#define {name}_CYCLES_PER_TICK {number!r}f /* sine, cosine of its phase */")
        else:
            lines.append(f"#define {name}_SCALE {number!r}f /* the block times this */")
        at += size
    joints = ", ".join(config.joints)
    lines.append(f"/* joints, in observation and action order: {joints} */")
    return lines


def export_c(genome: Genome, path: str | os.PathLike, robot: str | None = None) -> Path:
    """Write ``genome`` as the C tick's header (``robot``: a robot config name or path for the
    observation layout; default the shipped robot named after the genome's task)."""
    _check(genome)
    config = _robot_for(genome, robot)
    spec = genome.spec
    period_us, settle_ticks = _timing(genome)
    position = int(config.control_mode == POSITION)
    folded = [effective_coefficients(get_rule(spec.rule), c) for c in genome.coefficients]
    present = folded[0][1]
    sizes = ", ".join(map(str, spec.layer_sizes))
    tanh = ", ".join(str(int(name == "tanh")) for name in spec.activations)
    lines = [
        f"/* Written by controller.c_export (hebbian-quadruped {code_version()}) from a genome",
        f" * for task {genome.task}: rule {spec.rule}, layers {sizes},",
        f" * activations {', '.join(spec.activations)}, init {spec.init}, normalise {int(spec.normalise)}.",
        " * Do not edit; re-export. */",
        "#ifndef HQ_GENOME_H",
        "#define HQ_GENOME_H",
        "",
        f'#define HQ_TASK "{genome.task}"',
        f'#define HQ_RULE "{spec.rule}"',
        f"#define HQ_LAYERS {len(spec.layer_shapes)}",
        f"#define HQ_OBS_SIZE {spec.obs_size}",
        f"#define HQ_ACTION_SIZE {spec.action_size}",
        f"#define HQ_SYNAPSES {spec.synapses}",
        f"#define HQ_NEURONS {sum(spec.layer_sizes)}",
        *(f"#define HQ_HAS_{term} {int(on)}" for term, on in zip(TERMS[1:], present[1:], strict=True)),
        f"#define HQ_NORMALISE {int(spec.normalise)} /* each layer's weights / max|w| after its update */",
        f"#define HQ_COEVOLVED {int(genome.coevolved)} /* 1: lifetimes start from the genome's weights */",
        f"#define HQ_PLASTICITY_PERIOD {spec.plasticity_period} /* ticks per weight change */",
        f"#define HQ_PERIOD_US {period_us} /* the control period it was evolved at */",
        f"#define HQ_SETTLE_TICKS {settle_ticks} /* ticks of zero action before the network's first */",
        f"#define HQ_POSITION_CONTROL {position} /* 1: actions are joint angles, rad */",
        *_observation_lines(config),
        "",
        "#ifdef HQ_GENOME_DATA",
        f"static const unsigned hq_layer_sizes[HQ_LAYERS + 1] = {{{sizes}}};",
        f"static const unsigned char hq_layer_tanh[HQ_LAYERS] = {{{tanh}}};",
        "/* effective coefficients (learning rate folded in, D_out added to D), input-major, by layer */",
    ]
    for t, term in enumerate(TERMS):
        if present[t]:
            values = np.concatenate([terms[t].reshape(-1) for terms, _ in folded])
            lines += _table("float", f"hq_term_{term.lower()}", "HQ_SYNAPSES", values)
    if genome.coevolved:
        weights = np.concatenate([w.reshape(-1) for w in genome.weights])
        lines += _table("float", "hq_initial_weights", "HQ_SYNAPSES", weights)
    lines += ["#endif", "", "#endif", ""]
    return atomic_write(path, "\n".join(lines).encode())
