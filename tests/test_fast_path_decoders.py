"""The structured (fast) integrands equal the straightforward jacrev/grad ones on every
decoder family (GPT-2, Llama with GQA, Mistral with a sliding window, Qwen2 with MQA,
Gemma3): float32 to 1e-5, float64 to 1e-12, sources in blocks too.
"""

from __future__ import annotations

import pytest
from fast_path_helpers import (
    DECODER_FAMILIES,
    check_family,
    check_family_float64,
    float64_cases,
)

FAMILIES = DECODER_FAMILIES
BLOCKED = ["llama-gqa", "mistral-sliding", "gemma3"]
FLOAT64_CASES = float64_cases(FAMILIES, BLOCKED)


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
