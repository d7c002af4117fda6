"""Quadrature rules for the IG path integral, as data.

A rule turns a step count n into nodes α_k ∈ [0, 1] and weights w_k so that
IG ≈ Δ ⊙ Σ_k w_k ∇f(x′ + α_k Δ). Rules (docs/spec.md §2):

- ``captum_trapezoid``: Captum's "riemann_trapezoid". α = float32 linspace(0, 1, n);
  w = 1/n, halved at both ends, so Σw = 1 − 1/n (the reference's quirk, replicated).
- ``trapezoid``: the textbook composite trapezoid on the same nodes, Σw = 1.
- ``gauss_legendre``: Captum's default, numpy ``leggauss(n)`` mapped to [0, 1], Σw = 1.
- ``midpoint``: α = (k + ½)/n, w = 1/n.

``reference`` is not a rule but a policy: on each path use the rule the reference uses
there (for the encoder family that is ``captum_trapezoid`` on every path).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import LIGError, choice_error

RULES = ("captum_trapezoid", "trapezoid", "gauss_legendre", "midpoint")
RULE_CHOICES = ("reference", *RULES)
TRAPEZOID_RULES = ("captum_trapezoid", "trapezoid")


@dataclass(frozen=True)
class Rule:
    """Nodes and weights of one quadrature rule at one step count.

    alphas: [n] float32 nodes in [0, 1]; weights: [n] float32 weights.
    """

    name: str
    num_steps: int
    alphas: np.ndarray
    weights: np.ndarray

    @property
    def weight_sum(self) -> float:
        return float(np.sum(self.weights, dtype=np.float64))

    def without_zero_node(self) -> tuple[np.ndarray, np.ndarray]:
        """Nodes with α > 0 and their weights.

        At α = 0 the interpolated input equals the baseline, the L2 scalar sits at its
        kink and its (sub)gradient is 0 by definition, so that node contributes exactly
        nothing. Dropping it keeps rounding noise from a second evaluation of the
        baseline out of the result (docs/spec.md §13-B4).
        """
        keep = self.alphas > 0
        return self.alphas[keep], self.weights[keep]


def make_rule(name: str, num_steps: int) -> Rule:
    """Build rule ``name`` with ``num_steps`` nodes; errors are one line."""
    if name not in RULES:
        raise choice_error("quadrature rule", name, RULE_CHOICES)
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
        raise LIGError(f"num_steps must be an integer >= 1. Got: {num_steps!r}")
    n = int(num_steps)
    minimum = 2 if name in TRAPEZOID_RULES else 1
    if n < minimum:
        raise LIGError(f"num_steps must be >= {minimum} for rule '{name}'. Got: {n}")
    if name in TRAPEZOID_RULES:
        alphas = np.linspace(0.0, 1.0, n, dtype=np.float32)
        scale = n if name == "captum_trapezoid" else n - 1
        weights = np.full(n, 1.0 / scale, dtype=np.float64)
        weights[0] = weights[-1] = 0.5 / scale
    elif name == "gauss_legendre":
        xi, omega = np.polynomial.legendre.leggauss(n)
        alphas = ((1.0 + xi) / 2.0).astype(np.float32)
        weights = omega / 2.0
    else:  # midpoint
        alphas = ((np.arange(n) + 0.5) / n).astype(np.float32)
        weights = np.full(n, 1.0 / n)
    return Rule(name, n, alphas, weights.astype(np.float32))


def resolve_rule(rule: str, reference_rule: str) -> str:
    """Map the ``reference`` policy to the rule the reference uses on a path."""
    if rule not in RULE_CHOICES:
        raise choice_error("quadrature rule", rule, RULE_CHOICES)
    return reference_rule if rule == "reference" else rule
