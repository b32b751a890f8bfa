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
