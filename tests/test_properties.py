"""Properties of the attributions (docs/spec.md §13, testable properties), on a tiny random BERT."""

from __future__ import annotations

import numpy as np
import pytest

from lig_jax import explain
from lig_jax.attribution import compose, ratio

TEXT = "The quick brown fox jumps."


@pytest.fixture(scope="module")
def result_itb(tiny_bert) -> dict:
    return explain(TEXT, model=str(tiny_bert), num_steps=16)


@pytest.fixture(scope="module")
def result_zero(tiny_bert) -> dict:
    return explain(TEXT, model=str(tiny_bert), num_steps=16, baseline_layer="zero",
                   baseline_att="zero", granularity="layer,att")


def _all_values(obj) -> list[float]:
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _all_values(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in _all_values(x)]
    return [obj] if isinstance(obj, float) else []


def test_no_nan_anywhere(result_itb: dict, result_zero: dict) -> None:
    for r in (result_itb, result_zero):
        vals = np.array(_all_values(r["layers"]))
        assert vals.size > 100 and np.all(np.isfinite(vals))


def test_itb_self_term_exactly_zero(result_itb: dict) -> None:
    for entry in result_itb["layers"].values():
        m = np.array(entry["z2z"]["matrix"])
        assert np.all(np.diag(m) == 0.0)
        for j, t in entry["targets"].items():
            for head in t["z2u"]["heads"].values():
                assert head["contributions"][int(j)] == 0.0


def test_z2z_columns_are_complete(tiny_bert) -> None:
    """Column sums approach Σw · L_j: within a few % at 64 Gauss–Legendre steps."""
    r = explain(TEXT, model=str(tiny_bert), num_steps=64, granularity="layer",
                baseline_layer="zero", rule="gauss_legendre")
    for entry in r["layers"].values():
        c = entry["z2z"]["completeness"]
        sums = np.array(entry["z2z"]["matrix"]).sum(axis=0)
        np.testing.assert_allclose(sums, c["ig_sum"], rtol=1e-6)
        np.testing.assert_allclose(sums, np.array(c["scalar_change"]) * c["weight_sum"],
                                   rtol=0.05)


def test_captum_trapezoid_completeness_reports_weight_sum(result_zero: dict) -> None:
    c = result_zero["layers"]["0"]["z2z"]["completeness"]
    assert c["weight_sum"] == pytest.approx(1 - 1 / 16, rel=1e-6)
    # docs/spec.md §13 (5): TRAP z→z completeness within 25 % at n = 32 (we use 16 here: 40 %)
    assert c["max_relative_error"] < 0.4


def test_z2u_signed_completeness_gauss_legendre(tiny_bert) -> None:
    r = explain(TEXT, model=str(tiny_bert), num_steps=32, granularity="att",
                baseline_att="zero", rule="gauss_legendre", layers=[1])
    errs = [h["completeness"]["relative_error"]
            for t in r["layers"]["1"]["targets"].values() for h in t["z2u"]["heads"].values()]
    assert max(errs) < 0.02


def test_u2z_completeness_converges(tiny_bert) -> None:
    r = explain(TEXT, model=str(tiny_bert), num_steps=64, granularity="mlp",
                rule="gauss_legendre", layers=[0])
    for t in r["layers"]["0"]["targets"].values():
        u = t["u2z"]
        assert u["completeness"]["relative_error"] < 0.01
        assert sum(u["contributions"]) == pytest.approx(u["l2_total"], rel=0.01)


def test_zero_ratio_preserves_column_sums_and_fills_self(tiny_bert, result_itb, result_zero
                                                         ) -> None:
    r = explain(TEXT, model=str(tiny_bert), num_steps=16, granularity="layer",
                baseline_layer="itb_zero_ratio")
    for l, entry in r["layers"].items():
        fixed = np.array(entry["z2z"]["matrix"])
        itb = np.array(result_itb["layers"][l]["z2z"]["matrix"])
        np.testing.assert_allclose(fixed.sum(axis=0), itb.sum(axis=0), rtol=1e-9, atol=1e-12)
        assert np.all(np.diag(fixed) != 0.0)


def test_ratio_fix_formulas_on_small_columns() -> None:
    c = np.array([[0.5, 0.0, 1.5]])
    z = np.array([[1.0, 2.0, 1.0]])
    j = np.array([1])
    out = ratio.zero_ratio(c, z, j)
    est = 2.0 * (2.0 - 0.0) / (2.0)  # z_j * O_c / O_z
    p = np.array([0.5, est, 1.5])
    np.testing.assert_allclose(out[0], p * 2.0 / p.sum())
    out = ratio.map_ratio(c, np.array([0.25]), j)
    est = 2.0 * 0.25 / 0.75
    p = np.array([0.5, est, 1.5])
    np.testing.assert_allclose(out[0], p * 2.0 / p.sum())
    assert ratio.map_ratio(c, np.array([1.0]), j)[0, 1] == 0.0


def test_map_ratio_in_explain(tiny_bert, result_itb) -> None:
    r = explain(TEXT, model=str(tiny_bert), num_steps=16, granularity="att",
                baseline_att="itb_map_ratio", layers=[0])
    for j, t in r["layers"]["0"]["targets"].items():
        for h, head in t["z2u"]["heads"].items():
            raw = result_itb["layers"]["0"]["targets"][j]["z2u"]["heads"][h]["contributions"]
            assert sum(head["contributions"]) == pytest.approx(sum(raw), rel=1e-9)
            assert head["contributions"][int(j)] != 0.0


def test_composition_identity(result_itb: dict) -> None:
    entry = result_itb["layers"]["1"]
    targets = entry["z2z_composed"]["target_token_idx"]
    heads = sorted(entry["targets"][str(targets[0])]["z2u"]["heads"], key=int)
    att = np.array([[entry["targets"][str(j)]["z2u"]["heads"][h]["contributions"]
                     for j in targets] for h in heads])  # [H, T, S]
    mlp = np.array([entry["targets"][str(j)]["u2z"]["contributions"] for j in targets])
    per_head = mlp.reshape(len(targets), len(heads), -1).sum(-1)  # [T, H]
    want = np.einsum("hts,th->st", att, per_head)
    np.testing.assert_allclose(entry["z2z_composed"]["matrix"], want, rtol=1e-5, atol=1e-6)
    # invariant to permuting heads consistently, zero if either side is zero
    perm = np.random.default_rng(0).permutation(len(heads))
    att_sth = np.transpose(att, (0, 2, 1))
    np.testing.assert_allclose(compose.compose(att_sth[perm], per_head[:, perm]),
                               compose.compose(att_sth, per_head), rtol=1e-5)
    assert not compose.compose(att_sth, np.zeros_like(per_head)).any()
