"""Composed z→z (docs/spec.md §7): IG_prod[i, j] = Σ_h IG_ATT[h, i, j] · IG_MLP[j, h]."""

from __future__ import annotations

import numpy as np


def head_slices(contributions: np.ndarray, num_heads: int) -> np.ndarray:
    """u→z contributions [T, width] → per-slice sums [T, H] over contiguous width/H slices.

    For post-LN encoders u is the residual-space ATT output, so "head h" is the slice
    [h·d_h, (h+1)·d_h) of that vector, not an attention head (docs/spec.md §13-B7).
    """
    t, width = contributions.shape
    return contributions.reshape(t, num_heads, width // num_heads).sum(-1)


def compose(att: np.ndarray, mlp: np.ndarray) -> np.ndarray:
    """att [H, S_src, T] (z→u scores), mlp [T, H] (per-slice u→z) → [S_src, T].

    Accumulated in float32 over heads in ascending order, as the reference does.
    """
    att = np.asarray(att, np.float32)
    mlp = np.asarray(mlp, np.float32)
    out = np.zeros(att.shape[1:], np.float32)
    for h in range(att.shape[0]):
        out += att[h] * mlp[None, :, h]
    return out


def composed(z2u_scores: np.ndarray, u2z_contributions: np.ndarray) -> np.ndarray:
    """Composed z→z [S_src, T] of one layer as results store its parts: z→u scores
    [T, H, S_src] (every head) and u→z contributions [T, width]."""
    z2u_scores = np.asarray(z2u_scores)
    return compose(np.transpose(z2u_scores, (1, 2, 0)),
                   head_slices(np.asarray(u2z_contributions), z2u_scores.shape[1]))
