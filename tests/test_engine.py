"""Length buckets, padding masks and batches: same numbers, no recompilation per length."""

from __future__ import annotations

import numpy as np
import pytest

from lig_jax import engine, explain, explain_batch
from lig_jax.attribution import run
from lig_jax.engine import bucket_length

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
# the oracle's (direct) padding is the costly case: slow
@pytest.mark.parametrize("method", ["fast", pytest.param("direct", marks=pytest.mark.slow)])
def test_padding_to_a_bucket_changes_nothing(tiny_bert, baselines, method) -> None:
    kw = dict(model=str(tiny_bert), num_steps=8, method=method, **baselines)
    padded = explain(TEXTS[0], bucket=True, **kw)
    exact = explain(TEXTS[0], bucket=False, **kw)
    assert len(padded["tokens"]) == 9 and bucket_length(9, 64) == 16
    for key in ("z2z", "z2u", "u2z"):
        a, b = _leaves(padded, key), _leaves(exact, key)
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max(), key


@pytest.mark.parametrize("fused", [True, False])
def test_same_bucket_does_not_recompile(tiny_bert, fused, monkeypatch) -> None:
    if not fused:  # layer by layer, chunk by chunk (`Layers.run`)
        monkeypatch.setattr(engine.Layers, "fusable", lambda self: False)
    program = run._over_layers if fused else run._whole
    kw = dict(model=str(tiny_bert), num_steps=4)
    explain("one two three four five six", **kw)  # 8 tokens → bucket 8
    explain("one two three four five six seven eight nine ten", **kw)  # 12 → bucket 16
    size = program._cache_size()
    assert size > 0  # the path under test ran
    explain("one two three four five six seven eight nine ten eleven twelve", **kw)  # 14 → 16
    assert program._cache_size() == size


@pytest.mark.parametrize("baselines", [
    dict(baseline_layer="itb_zero_ratio", baseline_att="itb_map_ratio",
         baseline_mlp="att_itb_a0"),
    dict(baseline_layer="zero", baseline_att="itb_zero_ratio", baseline_mlp="zero"),
])
def test_one_program_over_layers_equals_layer_by_layer(tiny_bert, baselines,
                                                       monkeypatch) -> None:
    kw = dict(model=str(tiny_bert), num_steps=8, **baselines)
    done, prefetch = [], engine.Layers.prefetch
    monkeypatch.setattr(engine.Layers, "prefetch",
                        lambda self, *a, **k: done.append(prefetch(self, *a, **k)) or done[-1])
    fused = explain(TEXTS[1], **kw)
    assert done == [True]  # one program computed every raw run of every layer
    monkeypatch.setattr(engine.Layers, "fusable", lambda self: False)
    plain = explain(TEXTS[1], **kw)
    for key in ("z2z", "z2u", "u2z"):
        a, b = _leaves(fused, key), _leaves(plain, key)
        assert np.abs(a - b).max() <= 1e-6 * np.abs(b).max(), key


def test_explain_batch_equals_single_runs(tiny_bert) -> None:
    kw = dict(model=str(tiny_bert), num_steps=4, layers=[1])
    seen = []
    results = explain_batch(TEXTS, on_result=lambda i, r: seen.append(i), **kw)
    assert seen == [0, 1, 2]  # input order (compiled programs are shared whatever the order)
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


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_llama"])
def test_chunks_change_nothing(request, model, monkeypatch) -> None:
    """Many chunks of targets (a small budget) and many calls of nodes (a low
    `NODES_PER_CALL`, the path of very large step counts) give the one-chunk numbers."""
    folder = request.getfixturevalue(model)
    kw = dict(model=str(folder), num_steps=12, layers=[1], baseline_att="itb_map_ratio",
              baseline_mlp="att_itb_a0")
    whole = explain(TEXTS[1], **kw)
    plans = []
    real_plan = run.chunking

    def small_plan(integrand, dims, num_targets, num_heads, num_nodes, budget, *args, **kw):
        plan = real_plan(integrand, dims, num_targets, num_heads, num_nodes, budget, *args,
                         **kw)
        plan = run.Chunking(3, 2, plan.bytes)  # 3 targets per chunk, 2 nodes per step
        plans.append(plan)
        return plan

    monkeypatch.setattr(run, "chunking", small_plan)
    monkeypatch.setattr("lig_jax.engine.chunking", small_plan)
    monkeypatch.setattr(run, "NODES_PER_CALL", 4)
    chunked = explain(TEXTS[1], **kw)
    assert plans and all(p.calls(11) == 3 for p in plans)
    for key in ("z2z", "z2u", "u2z"):
        np.testing.assert_allclose(_leaves(chunked, key), _leaves(whole, key), rtol=1e-5,
                                   atol=1e-6 * np.abs(_leaves(whole, key)).max())
