"""ITB column fixes (docs/spec.md §6): zeroRatio and mapRatio, in float64.

An ITB column c ∈ R^S for target j has c_j = 0 exactly (the target's row does not
move). The fixes estimate a self term from a second quantity, then rescale the column
so its sum (the anchor A = Σ_i c_i) is preserved.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

EPS = 1e-8


def _rescale(c: np.ndarray, j: np.ndarray, est: np.ndarray) -> np.ndarray:
    """c [..., S] with c[..., j] replaced by est, rescaled to keep the column sum."""
    anchor = c.sum(axis=-1)
    p = c.copy()
    np.put_along_axis(p, j[..., None], est[..., None], axis=-1)
    total = p.sum(axis=-1)
    gamma = np.where(np.abs(total) > EPS, anchor / np.where(np.abs(total) > EPS, total, 1.0), 1.0)
    return gamma[..., None] * p


def zero_ratio(itb: np.ndarray, zero: np.ndarray, j: np.ndarray) -> np.ndarray:
    """zeroRatio fix. itb, zero: [..., S] columns; j: [...] target index per column.

    est = z_j · O_c / O_z with O_c = Σc − c_j, O_z = Σz − z_j (0 if |O_z| ≤ eps).
    """
    c = np.asarray(itb, np.float64)
    z = np.asarray(zero, np.float64)
    j = np.asarray(j)
    c_j = np.take_along_axis(c, j[..., None], -1)[..., 0]
    z_j = np.take_along_axis(z, j[..., None], -1)[..., 0]
    o_c = c.sum(-1) - c_j
    o_z = z.sum(-1) - z_j
    big = np.abs(o_z) > EPS
    est = np.where(big, z_j * o_c / np.where(big, o_z, 1.0), 0.0)
    return _rescale(c, j, est)


def map_ratio(itb: np.ndarray, alpha: np.ndarray, j: np.ndarray) -> np.ndarray:
    """mapRatio fix with α = A^h_{j,j}: est = O_c · α / (1 − α) (0 if |1 − α| ≤ eps)."""
    c = np.asarray(itb, np.float64)
    a = np.asarray(alpha, np.float64)
    j = np.asarray(j)
    c_j = np.take_along_axis(c, j[..., None], -1)[..., 0]
    o_c = c.sum(-1) - c_j
    ok = np.abs(1.0 - a) > EPS
    est = np.where(ok, o_c * a / np.where(ok, 1.0 - a, 1.0), 0.0)
    return _rescale(c, j, est)


def z2z_zero_ratio(itb: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """zeroRatio of layer-stacked z→z columns [L, T, S] whose column t targets token t."""
    j = np.broadcast_to(np.arange(itb.shape[1]), itb.shape[:2])
    return zero_ratio(itb, zero, j)


def z2u_fixed(itb: np.ndarray, targets: np.ndarray, fix: str | None,
              zero: np.ndarray | None = None, alpha: np.ndarray | None = None) -> np.ndarray:
    """Raw ITB z→u scores [L, T, H, S] (column (t, h) targets token targets[t]) → the
    scores after `fix` (a baseline's, `baselines.TABLE`): None (s_j := 0), "zero_ratio"
    (with the zero-baseline scores `zero` [L, T, H, S]) or "map_ratio" (with
    α = A^h_{j,j} [L, T, H]). float64, a new array."""
    t = np.asarray(targets)
    scores = np.array(itb, np.float64)
    scores[:, np.arange(t.size), :, t] = 0.0  # s_j := 0 (exactly 0 already)
    j = np.broadcast_to(t[None, :, None], scores.shape[:3])
    if fix == "zero_ratio":
        return zero_ratio(scores, zero, j)
    if fix == "map_ratio":
        return map_ratio(scores, alpha, j)
    return scores


def self_attention_probs(block, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
    """A^h_{j,j}, the mapRatio fix's α, for every head and token: [H, S]."""
    probs = block.attention_probs(z, key_mask)  # [H, S, S]
    return jnp.diagonal(probs, axis1=-2, axis2=-1)
