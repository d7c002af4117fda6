"""`--steps auto` and the bfloat16 option."""

from __future__ import annotations

import numpy as np
import pytest

from lig_jax import LIGError, explain
from lig_jax.steps import StepPlan, step_plan

TEXT = "The cat sat on the mat."


def test_plan_keeps_first_converged_value_per_column() -> None:
    calls = []

    def compute(rule):
        calls.append(rule.num_steps)
        n = rule.num_steps
        err = np.array([0.5, 0.005, 4.0 / n])  # col 1 converged at once, col 2 at n = 512
        return (np.array([[n], [n], [n]], float), np.full(3, float(n))), err

    res = StepPlan("gauss_legendre", (16, 32, 64, 128, 256, 512), 0.01).run(compute)
    assert calls == [16, 32, 64, 128, 256, 512]
    assert res.steps.tolist() == [512, 16, 512]
    assert res.converged.tolist() == [False, True, True]
    assert res.arrays[0][:, 0].tolist() == [512, 16, 512]


def test_fixed_plan_runs_once() -> None:
    plan = step_plan("captum_trapezoid", 8)
    res = plan.run(lambda rule: ((np.zeros((2, 1)),), np.array([9.0, 9.0])))
    assert res.steps.tolist() == [8, 8] and res.converged is None
    assert res.weight_sum[0] == pytest.approx(7 / 8)


def test_auto_steps_reach_tolerance_and_report_steps(tiny_bert) -> None:
    r = explain(TEXT, model=str(tiny_bert), num_steps="auto", rule="gauss_legendre",
                granularity="layer,mlp", layers=[1], max_steps=128, auto_tol=0.01)
    assert r["config"]["num_steps"] == "auto"
    assert r["quadrature"]["z2z"]["schedule"] == [16, 32, 64, 128]
    c = r["layers"]["1"]["z2z"]["completeness"]
    for steps, ok, err in zip(c["steps_used"], c["converged"], c["relative_error"], strict=True):
        assert steps in (16, 32, 64, 128)
        assert (err < 0.01) == ok
    # a converged column's values equal a fixed-step run at its step count
    j = next(i for i, s in enumerate(c["steps_used"]) if s == 16 and c["converged"][i])
    fixed = explain(TEXT, model=str(tiny_bert), num_steps=16, rule="gauss_legendre",
                    granularity="layer", layers=[1])
    np.testing.assert_allclose(np.array(r["layers"]["1"]["z2z"]["matrix"])[:, j],
                               np.array(fixed["layers"]["1"]["z2z"]["matrix"])[:, j], rtol=1e-6)
    for t in r["layers"]["1"]["targets"].values():
        u = t["u2z"]["completeness"]
        assert u["converged"] == (u["relative_error"] < 0.01)


def test_bfloat16_runs_and_stays_close(tiny_bert) -> None:
    kw = dict(model=str(tiny_bert), num_steps=16, granularity="layer", layers=[0],
              baseline_layer="zero")
    f32 = np.array(explain(TEXT, **kw)["layers"]["0"]["z2z"]["matrix"])
    r = explain(TEXT, dtype="bfloat16", **kw)
    bf16 = np.array(r["layers"]["0"]["z2z"]["matrix"])
    assert r["config"]["dtype"] == "bfloat16"
    assert np.all(np.isfinite(bf16))
    assert np.abs(bf16 - f32).max() <= 0.1 * np.abs(f32).max()
    assert not np.array_equal(bf16, f32)


@pytest.mark.parametrize("kwargs,needle", [
    ({"num_steps": "many"}, "num_steps must be an integer or 'auto'"),
    ({"num_steps": "auto", "auto_tol": 2.0}, "auto_tol must be in (0, 1)"),
    ({"num_steps": "auto", "max_steps": 8}, "max_steps must be an integer >= 16"),
    ({"dtype": "float16"}, "Unknown dtype 'float16'. Allowed: bfloat16, float32"),
    ({"method": "slow"}, "Unknown method 'slow'. Allowed: direct, fast"),
])
def test_bad_step_options(tiny_bert, kwargs, needle) -> None:
    with pytest.raises(LIGError) as e:
        explain(TEXT, model=str(tiny_bert), **kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)
