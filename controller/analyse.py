"""``controller analyse``: what a genome's rules are, and what they learn over a lifetime.

The paper's reviewers asked whether the evolved rules only encode a weight matrix (every lifetime relaxes
to the same fixed weights, whatever its random start) or keep the weights moving with the gait. This
command measures it, on the task's simulator:

- the rules: per layer, each coefficient's distribution, and how many distinct rules the genome really
  uses (k-means over the synapses' effective rules, :func:`controller.rules.cluster_rules`: the fewest
  clusters that explain 90% and 95% of their variance);
- the weights over ``--lifetimes`` lifetimes from random starts (seeds ``seed`` onwards): the RMS
  difference per synapse between every two lifetimes' weights over time (one attractor, if it falls to
  near zero), each lifetime's late wandering around its own mean (a fixed point, if near zero) and its
  period against the gait's (a cycle with the gait, if they match);
- with ``--damage``: the same lifetimes on the damaged body (same seeds, so with an onset they are the
  intact ones until it), and how far each lifetime's late weights move from the intact run's, against
  how far two lifetimes' weights lie apart.

The numbers go to ``analysis.json``, the figures to PNGs, in ``--out``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.errors import UserError
from controller.genome import Genome
from controller.loop import run_lifetime
from controller.network import FeedForward
from controller.rules import cluster_rules, effective_coefficients, get_rule

SNAPSHOTS = 50  # weight matrices kept per lifetime (evenly spaced), for the distances between lifetimes
PROJECTIONS = 8  # random directions the weights are followed along every tick, for their period
LATE = 0.5  # the last half of a lifetime is where its weights have settled (or not)
CLUSTER_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CLUSTER_SAMPLE = (
    4096  # synapses per layer clustered (a seeded sample of a larger layer): seconds, not minutes
)
EXPLAINED = (0.9, 0.95)


@dataclass(frozen=True)
class Settings:
    """What the command was asked: the genome (as named), the task, damages, lifetimes and seeds."""

    genome: str
    task: str
    damages: tuple[str, ...]
    lifetimes: int
    steps: int
    seed: int
    settle: int
    backend: str


# --- the rules --------------------------------------------------------------------------------------
def coefficient_stats(genome: Genome) -> list[dict[str, Any]]:
    """Per layer and coefficient (the rule's, or the weights of a static genome): quantiles and the
    share of synapses where it is near zero."""
    if genome.kind == "static":
        named = [{"w": w} for w in genome.weights]
    else:
        names = get_rule(genome.spec.rule).coefficients
        named = [{n: c[..., k] for k, n in enumerate(names)} for c in genome.coefficients]
    layers = []
    for k, arrays in enumerate(named):
        stats = {}
        for name, values in arrays.items():
            v = np.asarray(values, dtype=np.float64).ravel()
            q = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95])
            stats[name] = {
                "mean": float(v.mean()),
                "std": float(v.std()),
                "quantiles_5_25_50_75_95": [float(x) for x in q],
                "near_zero": float(np.mean(np.abs(v) < 0.01)),
            }
        layers.append({"layer": k, "shape": list(genome.spec.layer_shapes[k]), "coefficients": stats})
    return layers


def rule_clusters(genome: Genome, seed: int) -> list[dict[str, Any]]:
    """Per layer: the share of the variance of the synapses' effective rules (eta folded into A-D, what
    a tick applies; each term scaled to unit spread over the layer, so that no term's size alone
    decides the grouping) that k clusters explain, and the fewest k that reach each of ``EXPLAINED``."""
    rule = get_rule(genome.spec.rule)
    layers = []
    for k, c in enumerate(genome.coefficients):
        folded, present = effective_coefficients(rule, c)
        points = folded[list(np.flatnonzero(present))].reshape(int(sum(present)), -1).T.astype(np.float64)
        points = points / np.where(points.std(axis=0) > 0, points.std(axis=0), 1.0)
        if len(points) > CLUSTER_SAMPLE:
            points = points[
                np.random.default_rng([seed, k]).choice(len(points), CLUSTER_SAMPLE, replace=False)
            ]
        total = float(((points - points.mean(axis=0)) ** 2).sum())
        explained = {}
        for count in (n for n in CLUSTER_COUNTS if n <= len(points)):
            _, _, inertia = cluster_rules(points, count, seed)
            explained[count] = 1.0 - inertia / total if total > 0 else 1.0
        fewest = {
            f"{share:.0%}": next((n for n, e in explained.items() if e >= share), None) for share in EXPLAINED
        }
        layers.append(
            {
                "layer": k,
                "synapses": int(c.shape[0] * c.shape[1]),
                "clustered": len(points),
                "explained_by_k": {str(n): e for n, e in explained.items()},
                "fewest_clusters": fewest,
            }
        )
    return layers


# --- the weights over lifetimes ---------------------------------------------------------------------
class WeightRecorder:
    """An ``on_tick`` callback that keeps a lifetime's weights: all of them at ``SNAPSHOTS`` ticks, and
    every tick their projection on fixed random directions and the action (for periods)."""

    def __init__(self, network: FeedForward, steps: int, directions: np.ndarray) -> None:
        self.network, self.directions = network, directions
        self.at = set(np.linspace(0, steps - 1, SNAPSHOTS).round().astype(int).tolist())
        self.snapshots: dict[int, np.ndarray] = {}
        self.projected: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []

    def __call__(self, tick: int, obs: np.ndarray, action: np.ndarray, info: dict[str, Any]) -> None:
        flat = np.concatenate([w.ravel() for w in self.network.weights])
        if tick in self.at:
            self.snapshots[tick] = flat.astype(np.float16)
        self.projected.append(self.directions @ flat)
        self.actions.append(np.asarray(action, dtype=np.float64))


@dataclass(frozen=True)
class Lives:
    """The recorders of one body's lifetimes, in seed order."""

    recorders: list[WeightRecorder]
    distances: list[float]
    onset: int | None  # the tick a mid-run damage began (the loop's ``damage_onset``), in the first lifetime
    starts_gap: float  # :func:`gap` of as many random starts

    def common_ticks(self) -> list[int]:
        """Snapshot ticks every lifetime reached (a fall ends one early)."""
        return sorted(set.intersection(*(set(r.snapshots) for r in self.recorders)))

    def stack(self, tick: int) -> np.ndarray:
        return np.stack([r.snapshots[tick].astype(np.float64) for r in self.recorders])

    def late_means(self) -> np.ndarray:
        """Each lifetime's weights averaged over its late snapshots: where it settles, without the
        gait's cycle."""
        ticks = self.common_ticks()
        late = [t for t in ticks if t >= ticks[-1] * (1 - LATE)]
        return np.mean([self.stack(t) for t in late], axis=0)


def gap(stack: np.ndarray) -> float:
    """How far apart the lifetimes' weight matrices (rows of ``stack``) lie: the mean RMS difference
    per synapse over pairs, over what two independent matrices of the same RMS would show (sqrt 2 times
    it). 0: one matrix; about 1: as unrelated as independent draws."""
    n = len(stack)
    diffs = [np.sqrt(np.mean((stack[a] - stack[b]) ** 2)) for a in range(n) for b in range(a + 1, n)]
    scale = math.sqrt(2) * float(np.sqrt(np.mean(stack**2)))
    return float(np.mean(diffs)) / scale if diffs and scale > 0 else math.nan


def random_starts_gap(network: FeedForward, count: int, seed: int) -> float:
    """:func:`gap` of ``count`` random starts of the network's weights, as lifetimes begin."""
    starts = []
    for k in range(count):
        network.reset(np.random.default_rng([seed, 0xB0, k]))
        starts.append(np.concatenate([w.ravel() for w in network.weights]).astype(np.float64))
    return gap(np.stack(starts))


def period(signal: np.ndarray, threshold: float = 0.5) -> int | None:
    """The lag (ticks) of the first autocorrelation peak above ``threshold`` of a (ticks, channels)
    signal, its channels' autocorrelations averaged; None when it does not repeat."""
    x = signal - signal.mean(axis=0)
    power = (x**2).sum()
    if len(x) < 8 or power <= 1e-12 * x.size:
        return None
    lags = np.arange(1, len(x) // 2)
    auto = np.array([(x[:-lag] * x[lag:]).sum() / power for lag in lags])
    for i in range(1, len(auto) - 1):
        if auto[i] >= threshold and auto[i] >= auto[i - 1] and auto[i] >= auto[i + 1]:
            return int(lags[i])
    return None


def settling(recorder: WeightRecorder, scale: float) -> dict[str, Any]:
    """One lifetime's late weights: how far they wander around their own mean (relative to ``scale``,
    the weights' RMS) and the period of that wandering against the gait's."""
    projected = np.array(recorder.projected)
    late = projected[int(len(projected) * (1 - LATE)) :]
    actions = np.array(recorder.actions)[int(len(projected) * (1 - LATE)) :]
    ticks = sorted(recorder.snapshots)
    late_snaps = np.stack(
        [recorder.snapshots[t].astype(np.float64) for t in ticks if t >= ticks[-1] * (1 - LATE)]
    )
    wander = float(np.sqrt(np.mean((late_snaps - late_snaps.mean(axis=0)) ** 2)))
    return {
        "late_wander_rms": wander,
        "late_wander_relative": wander / scale if scale > 0 else math.nan,
        "weight_period_ticks": period(late),
        "gait_period_ticks": period(actions),
    }


def verdict(late_gap: float, wander_relative: float, cycling: float) -> str:
    """A sentence on what the numbers say, with the thresholds in it."""
    if late_gap < 0.25:
        attractor = f"the lifetimes' weights converge to one attractor (late gap {late_gap:.2f} < 0.25"
    else:
        attractor = f"each lifetime keeps weights of its own (late gap {late_gap:.2f} >= 0.25"
    attractor += " of independent matrices')"
    if wander_relative < 0.01:
        motion = "and hold still late in life (a fixed point: wander under 1% of the weights' RMS)"
    elif cycling >= 0.5:
        motion = (
            f"and keep cycling with the gait (weight period = gait period in {cycling:.0%} of lifetimes; "
            f"wander {wander_relative:.0%} of the weights' RMS)"
        )
    else:
        motion = (
            f"and keep moving without the gait's period (wander {wander_relative:.0%} of the weights' RMS)"
        )
    return f"{attractor}, {motion}"


def run_lives(genome: Genome, env: Any, settings: Settings) -> Lives:
    s = settings
    network = genome.build(s.backend)
    size = sum(w.size for w in network.weights)
    directions = np.random.default_rng([s.seed, 0xA7]).normal(size=(PROJECTIONS, size)) / math.sqrt(size)
    starts = random_starts_gap(network, s.lifetimes, s.seed)
    recorders, distances, onsets = [], [], []
    for k in range(s.lifetimes):
        recorder = WeightRecorder(network, s.steps, directions)
        life = run_lifetime(network, env, s.steps, s.seed + k, settle_ticks=s.settle, on_tick=recorder)
        recorders.append(recorder)
        distances.append(life.fitness)
        onsets.append(life.damage_onset)
    return Lives(recorders, distances, onsets[0], starts)


def trajectories(intact: Lives, dt: float) -> dict[str, Any]:
    """The gap between lifetimes over time and each lifetime's late settling."""
    ticks = intact.common_ticks()
    gaps = [gap(intact.stack(t)) for t in ticks]
    final = intact.stack(ticks[-1])
    scale = float(np.sqrt(np.mean(final**2)))
    each = [settling(r, scale) for r in intact.recorders]
    matched = [
        s["weight_period_ticks"] is not None
        and s["gait_period_ticks"] is not None
        and abs(s["weight_period_ticks"] - s["gait_period_ticks"]) <= 1
        for s in each
    ]
    wander = float(np.median([s["late_wander_relative"] for s in each]))
    late_gap = float(np.mean([g for t, g in zip(ticks, gaps, strict=True) if t >= ticks[-1] * (1 - LATE)]))
    gait = [s["gait_period_ticks"] for s in each if s["gait_period_ticks"] is not None]
    return {
        "tick_seconds": dt,
        "random_starts_gap": intact.starts_gap,
        "ticks": ticks,
        "gap_between_lifetimes": gaps,
        "late_gap": late_gap,
        "weights_rms": scale,
        "lifetimes": each,
        "median_late_wander_relative": wander,
        "median_gait_period_ticks": float(np.median(gait)) if gait else None,
        "lifetimes_cycling_with_gait": int(sum(matched)),
        "verdict": verdict(late_gap, wander, float(np.mean(matched))),
    }


def damage_shift(intact: Lives, damaged: Lives, onset: int | None) -> dict[str, Any]:
    """How far each lifetime's weights move when the damage is there (paired by seed with the intact
    lifetime: :func:`gap` of the two), over time, against the gap between intact lifetimes."""
    ticks = sorted(set(intact.common_ticks()) & set(damaged.common_ticks()))
    paired = [
        float(
            np.mean([gap(np.stack([a, b])) for a, b in zip(intact.stack(t), damaged.stack(t), strict=True)])
        )
        for t in ticks
    ]
    late = [k for k, t in enumerate(ticks) if t >= ticks[-1] * (1 - LATE)]
    before, after = intact.late_means(), damaged.late_means()
    shift = float(np.mean([gap(np.stack(pair)) for pair in zip(before, after, strict=True)]))
    spread = gap(before)
    return {
        "onset_tick": onset,
        "ticks": ticks,
        "gap_intact_to_damaged": paired,
        "late_gap_intact_to_damaged": float(np.mean([paired[k] for k in late])),
        # the attractors: each lifetime's late mean weights, damaged against intact (same seed), and
        # intact lifetime against intact lifetime
        "attractor_shift": shift,
        "attractor_gap_between_intact_lifetimes": spread,
        "shift_over_gap": shift / spread if spread > 0 else math.nan,
    }


def analyse(genome: Genome, intact_env: Any, damaged_env: Any | None, settings: Settings) -> dict[str, Any]:
    """Everything the command reports, as one mapping (keys starting with ``_`` hold the recordings for
    the figures and stay out of the JSON)."""
    s = settings
    result: dict[str, Any] = {
        "genome": s.genome,
        "task": s.task,
        "kind": genome.kind,
        "rule": genome.spec.rule if genome.kind == "hebbian" else None,
        "lifetimes": s.lifetimes,
        "steps": s.steps,
        "seed": s.seed,
        "layers": coefficient_stats(genome),
    }
    if genome.kind == "static":
        result["verdict"] = "a static genome: its weights are evolved and never change in a lifetime"
        return result
    result["rule_clusters"] = rule_clusters(genome, s.seed)
    intact = run_lives(genome, intact_env, s)
    result["intact"] = {"distance": intact.distances, **trajectories(intact, float(intact_env.unwrapped.dt))}
    result["verdict"] = result["intact"]["verdict"]
    if damaged_env is not None:
        damaged = run_lives(genome, damaged_env, s)
        result["damage"] = {"specs": list(s.damages), "distance": damaged.distances}
        result["damage"].update(damage_shift(intact, damaged, damaged.onset))
        result["_lives"] = (intact, damaged)
    else:
        result["_lives"] = (intact, None)
    return result


# --- figures ----------------------------------------------------------------------------------------
def plot(result: dict[str, Any], genome: Genome, out: Path) -> list[Path]:
    """The coefficient histograms and, for a plastic genome, the weight trajectories."""
    from controller.plotting import pyplot

    plt = pyplot()
    paths = []
    layers = result["layers"]
    names = list(layers[0]["coefficients"])
    fig, axes = plt.subplots(
        len(layers), len(names), figsize=(3 * len(names), 2.4 * len(layers)), squeeze=False
    )
    arrays = genome.weights if genome.kind == "static" else genome.coefficients
    for k, layer in enumerate(arrays):
        for c, name in enumerate(names):
            values = layer if genome.kind == "static" else layer[..., c]
            axes[k][c].hist(np.asarray(values).ravel(), bins=60, color="tab:blue")
            axes[k][c].set_title(f"layer {k}: {name}", fontsize=9)
    fig.tight_layout()
    paths.append(out / "coefficients.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    if genome.kind == "static":
        return paths
    intact, damaged = result["_lives"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(
        result["intact"]["ticks"], result["intact"]["gap_between_lifetimes"], label="intact lifetimes"
    )
    axes[0].axhline(result["intact"]["random_starts_gap"], color="grey", ls=":", label="random starts")
    if damaged is not None:
        d = result["damage"]
        axes[0].plot(d["ticks"], d["gap_intact_to_damaged"], label="same seed, intact against damaged")
        if d["onset_tick"] is not None:
            axes[0].axvline(d["onset_tick"], color="k", ls="--", lw=0.8)
    axes[0].set(
        xlabel="tick", ylabel="gap (1: independent matrices)", title="weights: lifetime against lifetime"
    )
    axes[0].legend(fontsize=8)
    first = np.array(intact.recorders[0].projected)
    axes[1].plot(first[:, :3])
    axes[1].set(xlabel="tick", ylabel="projection", title="weights along 3 random directions (lifetime 1)")
    late = int(len(first) * (1 - LATE))
    actions = np.array(intact.recorders[0].actions)
    window = slice(late, min(late + 100, len(first)))
    axes[2].plot(np.arange(len(first))[window], first[window, 0] - first[window, 0].mean(), label="weights")
    axes[2].plot(
        np.arange(len(first))[window], actions[window, 0] * np.std(first[window, 0]), label="action 0"
    )
    axes[2].set(xlabel="tick", title="late weights against the gait (lifetime 1, scaled)")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "trajectories.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def write(result: dict[str, Any], out: Path) -> Path:
    path = out / "analysis.json"
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    path.write_text(json.dumps(public, indent=1) + "\n")
    return path


def check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; name a folder")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: folder {out.parent} does not exist; create it or pick another")
