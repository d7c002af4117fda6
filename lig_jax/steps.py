"""How many integration steps: a fixed count, or `auto` (raise until complete enough).

`StepPlan.run(compute)` calls `compute(rule)` with a `Rule`, which returns arrays whose
first axis indexes independent columns (one IG problem each: a target, or a
(target, head) pair) and the relative completeness error of every column. A fixed plan
calls it once. An auto plan walks its schedule (e.g. 16, 32, …, 512 steps), keeping each
column's values from the first step count at which its error is below `tol`; columns that
never get there keep the largest count and are reported as not converged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import LIGError
from .quadrature import Rule, make_rule

AUTO_SCHEDULE = (16, 32, 64, 128, 256, 512)  # then `max_steps` (`LIGConfig`) if larger

Compute = Callable[[Rule], tuple[tuple[np.ndarray, ...], np.ndarray]]


@dataclass(frozen=True)
class StepResult:
    arrays: tuple[np.ndarray, ...]
    steps: np.ndarray  # [C] steps used per column
    weight_sum: np.ndarray  # [C] Σw of the rule at those steps
    converged: np.ndarray | None  # [C] bool, auto plans only
    rule: str


@dataclass(frozen=True)
class StepPlan:
    """A rule with either one step count or an auto schedule and tolerance."""

    rule: str
    schedule: tuple[int, ...]
    tol: float | None = None

    @property
    def auto(self) -> bool:
        return self.tol is not None

    def describe(self) -> dict:
        if not self.auto:
            r = make_rule(self.rule, self.schedule[0])
            return {"rule": self.rule, "num_steps": r.num_steps, "weight_sum": r.weight_sum}
        return {"rule": self.rule, "num_steps": "auto", "schedule": list(self.schedule),
                "tolerance": self.tol}

    def run(self, compute: Compute) -> StepResult:
        result: list[np.ndarray] | None = None
        steps = wsum = done = None
        for n in self.schedule:
            rule = make_rule(self.rule, n)
            arrays, err = compute(rule)
            ok = np.asarray(err) < (self.tol if self.auto else np.inf)
            if result is None:  # copied only when later step counts may overwrite it
                result = [np.array(a, copy=True) if self.auto else a for a in arrays]
                steps = np.full(len(err), n)
                wsum = np.full(len(err), rule.weight_sum)
                done = ok
            else:
                todo = ~done
                for k, a in enumerate(arrays):
                    result[k][todo] = a[todo]
                steps[todo], wsum[todo] = n, rule.weight_sum
                done = done | ok
            if done.all():
                break
        return StepResult(tuple(result), steps, wsum, done if self.auto else None, self.rule)


def step_plan(rule: str, num_steps: int | str, tol: float | None = None,
             max_steps: int | None = None) -> StepPlan:
    """`num_steps` an int, or "auto" (schedule from 16 doubling up to `max_steps`, each
    column until its relative completeness error is below `tol`; both are then needed,
    as `config.validate` checked them)."""
    if num_steps == "auto":
        if tol is None or max_steps is None:
            raise LIGError("--steps auto needs a tolerance and a largest step count")
        schedule = tuple(n for n in AUTO_SCHEDULE if n <= max_steps) or (max_steps,)
        if schedule[-1] != max_steps:
            schedule = (*schedule, max_steps)
        make_rule(rule, schedule[0])  # validates the rule
        return StepPlan(rule, schedule, tol)
    make_rule(rule, num_steps)  # validates rule and count
    return StepPlan(rule, (int(num_steps),))


def relative_error(sums: np.ndarray, change: np.ndarray, weight_sum: float | np.ndarray
                   ) -> np.ndarray:
    """|Σ IG − Σw·Δf| / |Σw·Δf| per column (absolute where |Σw·Δf| ≤ 1e-8)."""
    expected = np.asarray(change, np.float64) * weight_sum
    err = np.abs(np.asarray(sums, np.float64) - expected)
    return np.where(np.abs(expected) > 1e-8, err / np.maximum(np.abs(expected), 1e-30), err)
