"""The flow methods: a per-layer map composed through the blocks, read at the target.

With R_l [S_input, S_tgt] the rollout of a map over blocks 0 … l (`lig_jax.measures.
rollout`: for lig_flow LIG's z→z as 0.5·|z→z| shares + 0.5·I, `lig_flow_shares`, since
its default baseline leaves a token's own path unattributed; for the others the
context-mixing measures' rollouts), the influence of input token s on the hidden state z^(l+1) at
position p is R_l[s, p]. A target column reads its position p (pooled and similarity
targets: the mean over all positions, as the pooled embedding is the rows' mean):

    layers[0]     = e_p                 (z^(0) at p is the token itself)
    layers[l+1]   = R_l[:, p]           [S, T] per hidden state
    scores        = layers[L]

Every column of a rollout sums to 1, so the scores are shares, not signed contributions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..measures.rollout import lig_flow_shares, rollout
from .names import FLOW_METHODS
from .targets import Target


def read_columns(m: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """A map [S_src, S_tgt] → [S_src, T] at the target positions (−1: the mean column)."""
    return np.stack([m.mean(axis=1) if p < 0 else m[:, p] for p in positions], axis=1)


def flow_scores(lm, model: str | None, target: Target, methods: list[str],
                lig_steps: int | str, budget, say: Callable[[str], None],
                bucket: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{method: (scores [S, T], layers [L+1, S, T])} for the flow methods asked for."""
    from ..api import explain_arrays

    maps = [FLOW_METHODS[m] for m in methods]
    measures = [name for name in maps if name is not None]
    lig = "lig_flow" in methods
    say("per-layer maps (" + ", ".join((["LIG z→z"] if lig else []) + measures) + ")")
    res = explain_arrays(input_ids=list(target.ids), model=model if model else "default",
                         granularity="layer" if lig else "none", measures=measures or None,
                         num_steps=lig_steps, memory_budget=budget, bucket=bucket)
    s, n = len(target.ids), lm.config.num_layers
    first = read_columns(np.eye(s), target.positions)
    composed = {}
    if lig:
        composed["lig_flow"] = rollout([lig_flow_shares(res.layers[l]["z2z"])
                                        for l in range(n)])
    out = {}
    for m, name in zip(methods, maps, strict=True):
        rolled = composed[m] if name is None else [res.layers[l][name] for l in range(n)]
        layers = [first] + [read_columns(np.asarray(rolled[l], np.float64), target.positions)
                            for l in range(n)]
        stacked = np.stack(layers)
        out[m] = (stacked[-1], stacked)
    return out
