"""The structured (fast) integrands equal the straightforward jacrev/grad ones: BERT
(tiny and MiniLM) and the other encoder families.

float32: ≤ 1e-5 relative to the largest magnitude; float64: ≤ 1e-12. Every baseline the
fast path serves, several layers, uneven rules (Gauss–Legendre has no α = 0 node). The
decoder families: test_fast_path_decoders.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from fast_path_helpers import (
    ENCODER_FAMILIES,
    check_family,
    check_family_float64,
    compare,
    float64_cases,
)

FAMILIES = ENCODER_FAMILIES
BLOCKED = ["modernbert", "mpnet"]
FLOAT64_CASES = float64_cases(FAMILIES, BLOCKED)


@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("rule,steps", [("captum_trapezoid", 12), ("gauss_legendre", 11)])
def test_fast_equals_direct_float32(tiny_bert, layer, rule, steps) -> None:
    """Both rules have 11 nodes once the trapezoid's α = 0 node is dropped: one compiled
    program serves all four cases (the α values and weights are arguments)."""
    compare(tiny_bert, layer, jnp.float32, rule, steps, 1e-5)


def test_fast_equals_direct_minilm_float32(minilm) -> None:
    compare(minilm, 3, jnp.float32, "captum_trapezoid", 8, 1e-5)


def test_fast_equals_direct_float64(tiny_bert) -> None:
    with jax.enable_x64(True):
        compare(tiny_bert, 1, jnp.float64, "captum_trapezoid", 12, 1e-12)


@pytest.fixture(scope="module")
def family_folders():
    return {}


@pytest.mark.parametrize("name", FAMILIES)
def test_fast_equals_direct_every_family(family_folders, tmp_path_factory, name) -> None:
    check_family(family_folders, tmp_path_factory, name)


@pytest.mark.parametrize("name", FLOAT64_CASES)
def test_fast_equals_direct_every_family_float64(family_folders, tmp_path_factory, monkeypatch,
                                                 name) -> None:
    """Sources in blocks of 4 for the BLOCKED families (see check_family_float64)."""
    check_family_float64(family_folders, tmp_path_factory, monkeypatch, name,
                         blocked=name in BLOCKED)
