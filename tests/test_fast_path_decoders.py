"""The structured (fast) integrands equal the straightforward jacrev/grad ones on every
decoder family (GPT-2, Llama with GQA, Mistral with a sliding window, Qwen2 with MQA,
Gemma3): float32 to 1e-5, float64 to 1e-12, sources in blocks too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from fast_path_helpers import DECODER_FAMILIES, compare, family_folder

FAMILIES = DECODER_FAMILIES
BLOCKED = ["llama-gqa", "mistral-sliding", "gemma3"]


@pytest.fixture(scope="module")
def family_folders():
    return {}


@pytest.mark.parametrize("name", FAMILIES)
def test_fast_equals_direct_every_family(family_folders, tmp_path_factory, name) -> None:
    """Both shared and per-target baselines, z→z and z→u, two layers (the same node count,
    so layers of one structure share their compiled programs)."""
    folder = family_folder(family_folders, tmp_path_factory, name)
    for layer, rule, steps in [(0, "captum_trapezoid", 8), (1, "gauss_legendre", 7)]:
        compare(folder, layer, jnp.float32, rule, steps, 1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_fast_equals_direct_every_family_float64(family_folders, tmp_path_factory, name) -> None:
    folder = family_folder(family_folders, tmp_path_factory, name)
    with jax.enable_x64(True):
        compare(folder, 1, jnp.float64, "captum_trapezoid", 8, 1e-12)


@pytest.mark.parametrize("name", BLOCKED)
def test_blocked_sources_equal_direct_float64(family_folders, tmp_path_factory, monkeypatch,
                                              name) -> None:
    """Sources in blocks of 4 (the two-pass online softmax, causal and window masks
    skipping blocks, a padded last block) give the direct numbers too."""
    import lig_jax.attribution.itb as itb

    monkeypatch.setattr(itb, "BLOCK", 4)
    folder = family_folder(family_folders, tmp_path_factory, name)
    with jax.enable_x64(True):
        compare(folder, 1, jnp.float64, "gauss_legendre", 6, 1e-12)
