"""The nine Hebbian rules of Najarro & Risi (NeurIPS 2020) as one parameterised update.

Every rule of the reference code is a special case of

    dw_ij = eta_ij * (A_ij*o_i*o_j + B_ij*o_i + C_ij*o_j + D_ij) + Dout_ij

with absent terms zero and an absent learning rate equal to one. Because a genome's coefficients
are fixed for a whole lifetime, eta is folded into the four terms once per lifetime
(:func:`effective_coefficients`), and every tick runs the same four-term update whatever the rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TERMS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Rule:
    """A rule's name and the order of its per-synapse coefficients (the reference code's order)."""

    name: str
    coefficients: tuple[str, ...]

    @property
    def size(self) -> int:
        """Coefficients per synapse."""
        return len(self.coefficients)


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule("A", ("A",)),
        Rule("AD", ("A", "D")),
        Rule("AD_lr", ("A", "D", "eta")),
        Rule("ABC", ("A", "B", "C")),
        Rule("ABC_lr", ("A", "B", "C", "eta")),
        Rule("ABCD", ("A", "B", "C", "D")),
        Rule("ABCD_lr", ("A", "B", "C", "eta", "D")),
        Rule("ABCD_lr_D_out", ("A", "B", "C", "eta", "Dout")),
        Rule("ABCD_lr_D_in_and_out", ("A", "B", "C", "eta", "D", "Dout")),
    )
}


def get_rule(name: str) -> Rule:
    """Look a rule up by name, with an error that lists the valid names."""
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown rule {name!r}; choose one of {', '.join(RULES)}") from None


def effective_coefficients(rule: Rule, coefficients: np.ndarray) -> tuple[np.ndarray, tuple[bool, ...]]:
    """Fold a rule's coefficients (..., k) into the four-term form (4, ...) used every tick.

    Returns the float32 array of effective A, B, C, D and which of them are present, so the update
    can skip the terms a rule does not have.
    """
    if coefficients.shape[-1] != rule.size:
        raise ValueError(
            f"rule {rule.name} has {rule.size} coefficients per synapse, got {coefficients.shape[-1]}"
        )
    named = {name: coefficients[..., k].astype(np.float64) for k, name in enumerate(rule.coefficients)}
    eta = named.get("eta", 1.0)
    shape = coefficients.shape[:-1]
    out = np.zeros((4, *shape), dtype=np.float64)
    for t, term in enumerate(TERMS):
        if term in named:
            out[t] = eta * named[term]
    if "Dout" in named:
        out[3] += named["Dout"]
    present = tuple(term in named or (term == "D" and "Dout" in named) for term in TERMS)
    return out.astype(np.float32), present


def cluster_rules(
    rules: np.ndarray, k: int, seed: int, iterations: int = 50
) -> tuple[np.ndarray, np.ndarray, float]:
    """k-means over synapses' rules (rows of ``rules``): the ``k`` centres, each row's cluster and the
    sum of squared distances to the centres. Why here: how many distinct rules a genome really uses, and
    evolving shared rules (Pedersen & Risi, GECCO 2021), both need the same grouping. k-means++ starts
    (Arthur & Vassilvitskii, 2007) from ``seed``, then Lloyd's steps until the clusters hold still."""
    rules = np.asarray(rules, dtype=np.float64)
    if not 1 <= k <= len(rules):
        raise ValueError(f"cannot make {k} clusters of {len(rules)} rules")
    rng = np.random.default_rng(seed)
    centres = [rules[rng.integers(len(rules))]]
    nearest = ((rules - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = nearest.sum()
        pick = rng.choice(len(rules), p=nearest / total) if total > 0 else rng.integers(len(rules))
        centres.append(rules[pick])
        nearest = np.minimum(nearest, ((rules - rules[pick]) ** 2).sum(axis=1))
    centre = np.array(centres)
    labels = np.full(len(rules), -1)
    for _ in range(iterations):
        gaps = (rules**2).sum(axis=1)[:, None] - 2 * rules @ centre.T + (centre**2).sum(axis=1)[None, :]
        new = gaps.argmin(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        sums = np.stack(
            [np.bincount(labels, weights=rules[:, d], minlength=k) for d in range(rules.shape[1])], 1
        )
        kept = counts > 0  # an emptied cluster keeps its centre
        centre[kept] = sums[kept] / counts[kept, None]
    inertia = float(((rules - centre[labels]) ** 2).sum())
    return centre, labels, inertia
