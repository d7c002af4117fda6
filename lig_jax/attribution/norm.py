"""The safe L2 norm every LIG scalar is built from."""

from __future__ import annotations

import jax
import optax


def safe_norm(v: jax.Array, axis: int | tuple[int, ...] = -1) -> jax.Array:
    """‖v‖₂ along `axis` whose forward- and reverse-mode derivatives are 0 at v = 0.

    `jnp.linalg.norm` gives NaN gradients there; the L2 scalar of IG sits exactly at 0
    when the interpolated input equals the baseline. `optax.safe_norm` with a floor of 0
    is exactly that (the norm where it is positive, else 0 with a zero derivative).
    """
    return optax.safe_norm(v, 0.0, axis=axis)
