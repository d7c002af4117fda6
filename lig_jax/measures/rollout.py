"""Rollouts: a per-layer map composed through the blocks 0 … l (Abnar & Zuidema 2020, as
the ALTI authors compute it).

With maps m_k [S_src, S_tgt] whose columns are a target's shares of its sources,

    R_0 = m_0,   R_l = R_{l−1} · m_l          [S_input, S_tgt]

(the papers' joint attention J_l = M_l · J_{l−1} in their [tgt, src] orientation,
transposed). Attention enters as 0.5·A + 0.5·I (A plus the identity, columns renormalised);
ALTI and value zeroing as they are (they include the residual path); LIG's z→z as
|z→z| with each target's column summing to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def with_residual(a: np.ndarray) -> np.ndarray:
    """Attention [S_src, S_tgt] → (A + I) with each column summing to 1 (= 0.5·A + 0.5·I
    where A's columns sum to 1)."""
    m = np.asarray(a, np.float64) + np.eye(a.shape[0])
    return m / m.sum(axis=0, keepdims=True)


def lig_shares(z2z: np.ndarray) -> np.ndarray:
    """LIG z→z [S_src, S_tgt] → |z→z| with each target's column summing to 1."""
    m = np.abs(np.asarray(z2z, np.float64))
    total = m.sum(axis=0, keepdims=True)
    return np.divide(m, total, out=np.zeros_like(m), where=total > 0)


def lig_flow_shares(z2z: np.ndarray) -> np.ndarray:
    """LIG z→z [S_src, S_tgt] → 0.5·|z→z| shares + 0.5·I, columns summing to 1: the map
    `lig_flow` composes. Under LIG's default z→z baseline (ITB) a target's own row is in
    the baseline, so its own path is never attributed (the diagonal is 0); as attention
    rollout does for attention, the residual path gets half of each column. A column
    with no other source (a decoder's first token) is then the token itself."""
    return with_residual(lig_shares(z2z))


def rollout(maps: Sequence[np.ndarray]) -> list[np.ndarray]:
    """[m_0, …, m_l] → [R_0, …, R_l] (float64)."""
    out: list[np.ndarray] = []
    for m in maps:
        m = np.asarray(m, np.float64)
        out.append(m if not out else out[-1] @ m)
    return out
