"""Quadrature rules: nodes, weights and what they integrate exactly."""

import numpy as np
import pytest

from lig_jax.errors import LIGError
from lig_jax.quadrature import RULES, make_rule, resolve_rule


@pytest.mark.parametrize("n", [2, 5, 32])
def test_captum_trapezoid_matches_spec(n: int) -> None:
    r = make_rule("captum_trapezoid", n)
    np.testing.assert_array_equal(r.alphas, np.linspace(0, 1, n, dtype=np.float32))
    want = np.full(n, 1.0 / n)
    want[[0, -1]] = 0.5 / n
    np.testing.assert_allclose(r.weights, want, rtol=1e-7)
    assert r.weight_sum == pytest.approx(1 - 1 / n, rel=1e-6)


def test_gauss_legendre_is_numpy_leggauss_on_unit_interval() -> None:
    xi, w = np.polynomial.legendre.leggauss(7)
    r = make_rule("gauss_legendre", 7)
    np.testing.assert_allclose(r.alphas, (1 + xi) / 2, rtol=1e-6)
    np.testing.assert_allclose(r.weights, w / 2, rtol=1e-6)
    assert r.alphas[0] > 0 and r.alphas[-1] < 1


@pytest.mark.parametrize(
    "name,degree", [("trapezoid", 1), ("gauss_legendre", 2 * 6 - 1), ("midpoint", 1)]
)
def test_rules_integrate_polynomials_exactly(name: str, degree: int) -> None:
    r = make_rule(name, 6)
    for p in range(degree + 1):
        got = float(np.sum(r.weights.astype(np.float64) * r.alphas.astype(np.float64) ** p))
        assert got == pytest.approx(1 / (p + 1), rel=1e-5), (name, p)


def test_zero_node_is_dropped_only_where_present() -> None:
    a, w = make_rule("captum_trapezoid", 8).without_zero_node()
    assert len(a) == 7 and a.min() > 0
    a, w = make_rule("gauss_legendre", 8).without_zero_node()
    assert len(a) == 8


@pytest.mark.parametrize("name", ["captum_trapezoid", "trapezoid"])
def test_trapezoid_rules_need_two_steps(name: str) -> None:
    with pytest.raises(LIGError, match=">= 2"):
        make_rule(name, 1)


def test_unknown_rule_lists_allowed() -> None:
    with pytest.raises(LIGError) as e:
        make_rule("simpson", 8)
    for name in RULES:
        assert name in str(e.value)
    assert resolve_rule("reference", "captum_trapezoid") == "captum_trapezoid"
    assert resolve_rule("midpoint", "captum_trapezoid") == "midpoint"
