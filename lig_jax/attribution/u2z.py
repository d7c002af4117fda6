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
) -> tuple[jax.Array, jax.Array]:
    """z [S, d], targets [T] → (contributions [T, d], l2_total [T]).

    baseline: "zero" (u′ = 0) or "att_itb_a0" (u′ = the ATT output at j when every row
    of the input is z_j, the α = 0 end of the ATT ITB path).
    """
    block = nnx.merge(graphdef, state)
    u_all = block.att(z, key_mask)

    def h(u: jax.Array) -> jax.Array:
        return block.mlp_out(u[None], residual)[0]

    def one(j: jax.Array) -> tuple[jax.Array, jax.Array]:
        u = u_all[j]
        if baseline == "zero":
            u_base = jnp.zeros_like(u)
        else:
            u_base = block.att(jnp.broadcast_to(z[j], z.shape), key_mask)[j]
        h_base = h(u_base)

        def scalar(v: jax.Array) -> jax.Array:
            return safe_norm(h(v) - h_base)

        grad = path_sum(jax.grad(scalar), u, u_base, alphas, weights, alphas.shape[0])
        return grad * (u - u_base), scalar(u)

    return jax.vmap(one)(targets)
