"""u→z through the MLP sub-block (spec §5), per target token.

Only u_j is interpolated; h(u) = mlp(u) (with or without the residual u +);
f(u) = ‖h(u) − h(u′)‖₂; contributions c = IG over the d input dims (signed).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from ..ig import path_sum, safe_norm


@partial(jax.jit, static_argnames=("graphdef", "baseline", "residual"))
def u2z(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    z: jax.Array,
    targets: jax.Array,
    alphas: jax.Array,
    weights: jax.Array,
    *,
    baseline: str,
    residual: bool,
    key_mask: jax.Array | None = None,
    u_base: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """z [S, d], targets [T] → (contributions [T, w], l2_total [T]); w = width of u_MLP.

    baseline: "zero" (u′ = 0) or "att_itb_a0" (u′ = the ATT output at j when every row
    of the input is z_j, the α = 0 end of the ATT ITB path). u_base [T, w], if given,
    replaces the baseline (the reference's Gemma3 replayed u′, `reference_quirks`).
    """
    block = nnx.merge(graphdef, state)
    u_all = block.att(z, key_mask)

    def one(j: jax.Array, given_base: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        def h(u: jax.Array) -> jax.Array:  # token j's MLP side (Gemma3 also reads z_j)
            return block.mlp_out(u[None], residual, z[j][None])[0]

        u = u_all[j]
        if given_base is not None:
            base = given_base
        elif baseline == "zero":
            base = jnp.zeros_like(u)
        else:
            # u and u′ from one batched evaluation: where they agree in exact arithmetic
            # (a causal first token) they agree in floating point, and the IG is exactly 0.
            ends = jax.vmap(lambda x: block.att(x, key_mask)[j])(
                jnp.stack([z, jnp.broadcast_to(z[j], z.shape)]))
            u, base = ends[0], ends[1]
        h_base = h(base)

        def scalar(v: jax.Array) -> jax.Array:
            return safe_norm(h(v) - h_base)

        grad = path_sum(jax.grad(scalar), u, base, alphas, weights, alphas.shape[0])
        return grad * (u - base), scalar(u)

    if u_base is None:
        return jax.vmap(lambda j: one(j, None))(targets)
    return jax.vmap(one)(targets, u_base)
