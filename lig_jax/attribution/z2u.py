"""z→u per head (spec §4, intended definition, §13-B1/B2).

x = z^(l) goes straight into layer l's attention; the target is head h's context at
token j before W_O, u_{j,h} ∈ R^{d_h}; f = ‖u_{j,h}(x) − u_{j,h}(x′)‖₂. The per-source
score of the encoder family is ‖IG_{i,:}‖₂ over hidden dims (≥ 0); the signed sum
Σ_{i,c} IG_{i,c} is returned as well for the completeness check.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from ..ig import node_chunk, path_sum, safe_norm
from . import structured


def chunk_for(method: str, seq_len: int, hidden: int, targets: int, heads: int,
              num_nodes: int, budget: int | None = None) -> int:
    """Nodes per vmapped batch. direct: Jacobians [T, Hs, S, d] per node; fast: a few
    attention arrays [Hs, T, S] and head-space vectors [T, Hs, d_h] per node.
    budget: bytes per chunk (default: from the free memory)."""
    s, d, t = seq_len, hidden, targets
    if method == "direct":
        per_node = 16 * t * heads * s * d
    else:
        per_node = 4 * (12 * t * heads * s + 8 * t * d + 8 * s * d)
    return node_chunk(num_nodes, per_node, budget)


@partial(jax.jit, static_argnames=("graphdef", "baseline", "chunk", "method"))
def z2u(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    z: jax.Array,
    targets: jax.Array,
    heads: jax.Array,
    alphas: jax.Array,
    weights: jax.Array,
    *,
    baseline: str,
    chunk: int,
    method: str = "fast",
    key_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """z [S, d], targets [T], heads [Hs] → (scores [T, Hs, S], ig_sum [T, Hs], f [T, Hs]).

    scores[t, h, i] for target targets[t], head heads[h], source i: ‖IG_{i,:}‖₂ for
    encoders, Σ_c IG_{i,c} for decoders (`block.z2u_score`).
    baseline: "zero" or "self_input_token" (rows of x′ = z_j, per target).
    method: "fast" (structured integrands, `structured.py`) or "direct" (below).
    """
    block = nnx.merge(graphdef, state)
    fast = fast_integrand(block, baseline) if method == "fast" else None
    if fast is not None:
        return fast(block, z, targets, heads, alphas, weights, chunk, key_mask)
    signed = block.z2u_score == "signed"

    def scores_of(ig: jax.Array) -> jax.Array:  # [..., S, d] → per-source scores [..., S]
        return jnp.sum(ig, axis=-1) if signed else jnp.linalg.norm(ig, axis=-1)

    def heads_of(x: jax.Array) -> jax.Array:
        return block.attention_context(x, key_mask)[:, heads]  # [S, Hs, d_h]

    if baseline == "zero":
        x_base = jnp.zeros_like(z)
        u_base = heads_of(x_base)[targets]

        def scalars(x: jax.Array) -> jax.Array:
            return safe_norm(heads_of(x)[targets] - u_base)  # [T, Hs]

        jac = path_sum(jax.jacrev(scalars), z, x_base, alphas, weights, chunk)  # [T,Hs,S,d]
        ig = jac * (z - x_base)
        return scores_of(ig), jnp.sum(ig, axis=(-1, -2)), scalars(z)

    def column(j: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        x_base = jnp.broadcast_to(z[j], z.shape)
        u_base = heads_of(x_base)[j]

        def scalars(x: jax.Array) -> jax.Array:
            return safe_norm(heads_of(x)[j] - u_base)  # [Hs]

        jac = path_sum(jax.jacrev(scalars), z, x_base, alphas, weights, chunk)  # [Hs, S, d]
        ig = jac * (z - x_base)
        return scores_of(ig), jnp.sum(ig, axis=(-1, -2)), scalars(z)

    return jax.vmap(column)(targets)


def fast_integrand(block, baseline: str):
    """The structured z→u integrand for this block and baseline, or None where only the
    direct path exists (per-source L2 scores behind a non-affine premap: the L2 of the
    per-source gradient needs a reverse pass per (target, head) there anyway)."""
    if block.z2u_score == "signed":
        return structured.z2u_zero_signed if baseline == "zero" else structured.z2u_itb_signed
    if block.affine_premap:
        return structured.z2u_zero if baseline == "zero" else structured.z2u_itb
    return None


@partial(jax.jit, static_argnames=("graphdef",))
def self_attention_probs(graphdef: nnx.GraphDef, state: nnx.State, z: jax.Array,
                         key_mask: jax.Array | None = None) -> jax.Array:
    """A^h_{j,j} for every head and token: [H, S] (used by the mapRatio fix)."""
    probs = nnx.merge(graphdef, state).attention_probs(z, key_mask)  # [H, S, S]
    return jnp.diagonal(probs, axis1=-2, axis2=-1)
