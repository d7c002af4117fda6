"""The reference's Gemma3 z→u (spec §4, §6, §13-B3), kept behind `reference_quirks`.

There x = E, the scaled token embeddings (hidden_states[0]), not z^(l): blocks 0..l−1
are replayed on x(α), then layer l's attention core gives u_{j,h}, and the scalar is
f = ‖u_{j,h}(x)‖₂ with no baseline subtraction. Scores are signed sums over hidden
dimensions. The replay is many blocks, not one, so only the direct (jacrev) path exists.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from ..ig import path_sum, safe_norm


def _heads_after_replay(model, x, layer: int, key_mask):
    """Blocks 0..layer−1 on x [S, d], then layer's per-head context [S, H, d_h]."""
    for block in model.layers[:layer]:
        x = block(x, key_mask)
    return model.layers[layer].attention_context(x, key_mask)


@partial(jax.jit, static_argnames=("graphdef", "layer", "baseline", "chunk"))
def z2u_replay(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    e: jax.Array,
    targets: jax.Array,
    heads: jax.Array,
    alphas: jax.Array,
    weights: jax.Array,
    *,
    layer: int,
    baseline: str,
    chunk: int,
    key_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """e [S, d] → (signed scores [T, Hs, S], Σ IG [T, Hs], f(x) − f(x′) [T, Hs]).

    baseline: "zero" (x′ = 0) or "self_input_token" (every row of x′ = E_j).
    """
    model = nnx.merge(graphdef, state)

    def norms(x: jax.Array, rows: jax.Array) -> jax.Array:
        return safe_norm(_heads_after_replay(model, x, layer, key_mask)[rows][..., heads, :])

    def run(x_base: jax.Array, rows: jax.Array):
        jac = path_sum(jax.jacrev(lambda x: norms(x, rows)), e, x_base, alphas, weights, chunk)
        ig = jac * (e - x_base)
        return ig.sum(-1), ig.sum((-1, -2)), norms(e, rows) - norms(x_base, rows)

    if baseline == "zero":
        return run(jnp.zeros_like(e), targets)
    return jax.lax.map(lambda j: run(jnp.broadcast_to(e[j], e.shape), j), targets)


@partial(jax.jit, static_argnames=("graphdef", "layer"))
def itb_u_base(graphdef: nnx.GraphDef, state: nnx.State, e: jax.Array, targets: jax.Array,
               *, layer: int, key_mask: jax.Array | None = None) -> jax.Array:
    """The reference's Gemma3 `att_itb_a0` u′ [T, H·d_h]: layer's heads at j after
    replaying blocks 0..layer−1 on rows that all equal E_j."""
    model = nnx.merge(graphdef, state)

    def one(j: jax.Array) -> jax.Array:
        x = jnp.broadcast_to(e[j], e.shape)
        return _heads_after_replay(model, x, layer, key_mask)[j].reshape(-1)

    return jax.lax.map(one, targets)
