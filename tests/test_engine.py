"""Length buckets, padding masks and batches: same numbers, no recompilation per length."""

from __future__ import annotations

import numpy as np
import pytest

from lig_jax import explain, explain_batch
from lig_jax.api import bucket_length
from lig_jax.attribution.u2z import u2z
from lig_jax.attribution.z2u import z2u
from lig_jax.attribution.z2z import z2z

TEXTS = ["The cat sat on the mat.", "A dog barked at the mailman twice.", "Hi."]


def _leaves(r: dict, key: str) -> np.ndarray:
    out = []
    for entry in r["layers"].values():
        if key == "z2z":
            out.append(np.ravel(entry["z2z"]["matrix"]))
        for t in entry.get("targets", {}).values():
            if key == "z2u":
                out += [np.ravel(h["contributions"]) for h in t["z2u"]["heads"].values()]
            if key == "u2z":
                out.append(np.ravel(t["u2z"]["contributions"]))
    return np.concatenate(out)


@pytest.mark.parametrize("baselines", [
    dict(baseline_layer="self_input_token", baseline_att="itb_map_ratio", baseline_mlp="zero"),
    dict(baseline_layer="zero", baseline_att="zero", baseline_mlp="att_itb_a0"),
    dict(baseline_layer="itb_zero_ratio", baseline_att="itb_zero_ratio", baseline_mlp="zero"),
])
@pytest.mark.parametrize("method", ["fast", "direct"])
def test_padding_to_a_bucket_changes_nothing(tiny_bert, baselines, method) -> None:
    kw = dict(model=str(tiny_bert), num_steps=8, method=method, **baselines)
    padded = explain(TEXTS[0], bucket=True, **kw)
    exact = explain(TEXTS[0], bucket=False, **kw)
    assert len(padded["tokens"]) == 9 and bucket_length(9, 64) == 16
    for key in ("z2z", "z2u", "u2z"):
        a, b = _leaves(padded, key), _leaves(exact, key)
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max(), key


def test_same_bucket_does_not_recompile(tiny_bert) -> None:
    kw = dict(model=str(tiny_bert), num_steps=4)
    explain("one two three four five six", **kw)  # 8 tokens → bucket 8
    explain("one two three four five six seven eight nine ten", **kw)  # 12 → bucket 16
    sizes = [f._cache_size() for f in (z2z, z2u, u2z)]
    explain("one two three four five six seven eight nine ten eleven twelve", **kw)  # 14 → 16
    assert [f._cache_size() for f in (z2z, z2u, u2z)] == sizes


def test_explain_batch_equals_single_runs(tiny_bert) -> None:
    kw = dict(model=str(tiny_bert), num_steps=4, layers=[1])
    seen = []
    results = explain_batch(TEXTS, on_result=lambda i, r: seen.append(i), **kw)
    assert sorted(seen) == [0, 1, 2] and seen[0] == 2  # shortest bucket first
    for text, r in zip(TEXTS, results, strict=True):
        single = explain(text, **kw)
        assert r["tokens"] == single["tokens"]
        for key in ("z2z", "z2u", "u2z"):
            np.testing.assert_allclose(_leaves(r, key), _leaves(single, key), rtol=1e-6,
                                       atol=1e-7)


def test_bucket_lengths() -> None:
    assert [bucket_length(n, 512) for n in (1, 8, 9, 29, 33, 100, 129, 512)] == \
        [8, 8, 16, 32, 48, 128, 192, 512]
    assert bucket_length(60, 50) == 60  # never below the sentence; capped by the limit
    assert bucket_length(45, 50) == 48


def test_per_layer_mode_equals_stacked(tiny_bert, monkeypatch) -> None:
    """Models too large to stack run one call per layer; the numbers are the same."""
    from lig_jax import engine

    kw = dict(model=str(tiny_bert), num_steps=4, baseline_att="itb_map_ratio")
    stacked = explain(TEXTS[1], **kw)
    monkeypatch.setattr(engine, "STACK_BYTES", 0)
    per_layer = explain(TEXTS[1], **kw)
    for key in ("z2z", "z2u", "u2z"):
        np.testing.assert_allclose(_leaves(per_layer, key), _leaves(stacked, key), rtol=1e-5,
                                   atol=1e-6)
