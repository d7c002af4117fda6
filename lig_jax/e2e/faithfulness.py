"""Faithfulness of input attributions: comprehensiveness, sufficiency, AOPC, normalised AOPC
and leave-one-out rank correlation, per sentence and method.

For one sentence, its target value f(x) (one column: `next`, `token:`, `contrast:`, the
encoder targets) and a method's scores over the *candidate* rows — every row but the
special tokens, a decoder's first row where it has no start token, and a `hidden:` target's
own row, which always stay — with n candidates ordered by score (highest first, ties by
position), at k = 10 %, 20 %, …, 100 % the top m_k = ⌈k·n⌉ candidates are

    comprehensiveness(k) = f(x) − f(x without them)          (ERASER; higher = better)
    sufficiency(k)       = f(x) − f(x with only them)         (lower = better)

(the rows that always stay are in both), AOPC = their mean over the ten k. Normalised AOPC
(Edin et al. 2024) rescales a method's AOPC between the worst and the best AOPC any
ordering of the candidates reaches, so 1 = the best ordering, 0 = the worst, for both:

    norm_comp = (AOPC_comp − min) / (max − min),   norm_suff = (max − AOPC_suff) / (max − min)

The exact bounds need all n! orderings; lig-jax approximates each by a greedy search (add
the candidate that moves f the most — or the least — at each step, n(n+1)/2 evaluations)
that is exact for n ≤ 1 and a bound from inside otherwise, so a method can land slightly
outside [0, 1]. Leave-one-out: Kendall τ between the scores and f(x) − f(x without row i)
over the candidates. Every perturbation of a sentence runs in batched jitted calls
(`perturb.Evaluator`); the greedy searches take one call per step for all four bounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

LEVELS = tuple(range(10, 101, 10))  # percent of the candidates
METRICS = ("aopc_comp", "aopc_suff", "norm_comp", "norm_suff", "loo_tau")


def candidates(lm, target, decoder: bool) -> np.ndarray:
    """bool [S]: the rows a perturbation may remove."""
    ids = list(target.ids)
    special = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
    out = np.array([i not in special for i in ids])
    if decoder:
        out[0] = False  # a start token, or the first token of a decoder without one
    if target.kind in ("hidden", "hidden_sum"):
        out[int(target.positions[0])] = False
    if out.all():  # no special token: the first row stays, so no perturbation is empty
        out[0] = False
    return out


def level_sizes(n: int) -> list[int]:
    """m_k = ⌈k·n/100⌉ for k in LEVELS."""
    return [min(n, math.ceil(k * n / 100)) for k in LEVELS]


def ordering(scores: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Candidate rows by score, highest first (ties: lower position first)."""
    rows = np.flatnonzero(cand)
    return rows[np.lexsort((rows, -scores[rows]))]


def _keeps(order: np.ndarray, sizes: list[int], cand: np.ndarray, kind: str
           ) -> list[np.ndarray]:
    """Keep masks after removing the top m (comp) or keeping only the top m (suff)."""
    out = []
    for m in sizes:
        top = np.zeros_like(cand)
        top[order[:m]] = True
        out.append(~top if kind == "comp" else (~cand | top))
    return out


@dataclass
class SentenceScores:
    """Per method: comp [10], suff [10], the metrics; the bounds; the value f(x)."""

    value: float
    curves: dict[str, dict[str, list[float]]]
    metrics: dict[str, dict[str, float]]
    bounds: dict[str, float]
    candidates: int


def greedy_bounds(evaluate: Callable[[list[np.ndarray]], np.ndarray], value: float,
                  cand: np.ndarray) -> dict[str, float]:
    """AOPC bounds by greedy search: comp_max / comp_min / suff_max / suff_min."""
    rows = list(np.flatnonzero(cand))
    sizes = level_sizes(len(rows))
    searches = {"comp_max": ("comp", 1), "comp_min": ("comp", -1),
                "suff_max": ("suff", 1), "suff_min": ("suff", -1)}
    chosen = {k: [] for k in searches}
    curve = {k: {} for k in searches}
    for step in range(1, len(rows) + 1):
        keeps, owners = [], []
        for k, (kind, _) in searches.items():
            for r in rows:
                if r in chosen[k]:
                    continue
                top = np.zeros_like(cand)
                top[chosen[k] + [r]] = True
                keeps.append(~top if kind == "comp" else (~cand | top))
                owners.append((k, r))
        vals = value - evaluate(keeps)[:, 0]
        for k, (_, sign) in searches.items():
            mine = [(v, r) for v, (kk, r) in zip(vals, owners, strict=True) if kk == k]
            best_v, best_r = max(mine, key=lambda t: (sign * t[0], -t[1]))
            chosen[k].append(best_r)
            curve[k][step] = best_v
    return {k: float(np.mean([curve[k][m] for m in sizes])) for k in searches}


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's τ-b (NaN for fewer than two rows or a constant side)."""
    from scipy.stats import kendalltau

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(kendalltau(a, b).statistic)


def score_sentence(evaluate: Callable[[list[np.ndarray]], np.ndarray], value: float,
                   scores: dict[str, np.ndarray], cand: np.ndarray) -> SentenceScores:
    """Every metric of every method for one sentence (`scores`: method → [S])."""
    n = int(cand.sum())
    sizes = level_sizes(n)
    rows = np.flatnonzero(cand)
    keeps: list[np.ndarray] = []
    spans = {}
    for m, s in scores.items():
        order = ordering(np.asarray(s, np.float64), cand)
        start = len(keeps)
        keeps += _keeps(order, sizes, cand, "comp") + _keeps(order, sizes, cand, "suff")
        spans[m] = start
    loo_start = len(keeps)
    for r in rows:
        keep = np.ones_like(cand)
        keep[r] = False
        keeps.append(keep)
    vals = value - evaluate(keeps)[:, 0] if keeps else np.zeros(0)
    bounds = greedy_bounds(evaluate, value, cand) if n else {}
    curves, metrics = {}, {}
    drop = vals[loo_start:loo_start + n]
    for m, start in spans.items():
        comp = vals[start:start + len(LEVELS)]
        suff = vals[start + len(LEVELS):start + 2 * len(LEVELS)]
        curves[m] = {"comp": comp.tolist(), "suff": suff.tolist()}
        a_c, a_s = float(comp.mean()), float(suff.mean())
        c_span = bounds["comp_max"] - bounds["comp_min"]
        s_span = bounds["suff_max"] - bounds["suff_min"]
        metrics[m] = {
            "aopc_comp": a_c, "aopc_suff": a_s,
            "norm_comp": (a_c - bounds["comp_min"]) / c_span if c_span > 0 else float("nan"),
            "norm_suff": (bounds["suff_max"] - a_s) / s_span if s_span > 0 else float("nan"),
            "loo_tau": kendall_tau(np.asarray(scores[m], np.float64)[rows], drop)}
    return SentenceScores(value, curves, metrics, bounds, n)


def bootstrap(values: np.ndarray, resamples: int = 1000, seed: int = 0
              ) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its 95 % percentile bootstrap interval (NaNs
    left out)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (resamples, len(v)))].mean(axis=1)
    return float(v.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))
