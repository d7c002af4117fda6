"""Layer-direct z→z (spec §3): M[i, j] = Σ_c IG_{i,c} of L_j(x) = ‖B(x)_j − B(x′)_j‖₂.

The straightforward path: per integration node, the Jacobian of all targets' scalars
(`jax.jacrev`, shared `zero` baseline) or one gradient per target (`jax.grad` under
`vmap`, per-target ITB baseline).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from ..ig import memory_budget, node_chunk, path_sum, safe_norm
from . import structured

FAST_CHUNK_BYTES = 128 * 2**20


def chunk_for(method: str, seq_len: int, hidden: int, heads: int, num_nodes: int,
              budget: int | None = None) -> int:
    """Nodes per vmapped batch, from an estimate of one node's memory (float32 bytes).

    budget: bytes per chunk; default from the free memory (`ig.memory_budget`). A fixed
    budget gives the same chunks, so bit-identical sums, on every machine.

    direct: the Jacobian of all S targets, S × S × d floats, plus activations;
    fast: a few H × S × S attention arrays and S × 4d MLP activations per node
    (per target under ITB, which also holds q/k/v tangents S × d per target).
    """
    s, d, h = seq_len, hidden, heads
    if method == "direct":
        return node_chunk(num_nodes, 16 * s * s * d, budget)
    # Wider batches of nodes stop paying off once a chunk leaves the caches (measured on
    # a 2-core CPU: 4–8 nodes at S = 128 beat 31), so the fast path caps its budget.
    per_node = 4 * (12 * h * s * s + 24 * s * d)
    budget = memory_budget() if budget is None else budget
    return node_chunk(num_nodes, per_node, min(budget, FAST_CHUNK_BYTES))


@partial(jax.jit, static_argnames=("graphdef", "baseline", "chunk", "method"))
def z2z(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    z: jax.Array,
    alphas: jax.Array,
    weights: jax.Array,
    *,
    baseline: str,
    chunk: int,
    method: str = "fast",
    key_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """z [S, d] → (M [S_src, S_tgt], L [S_tgt]) with L_j = L_j(z), the scalar's change.

    baseline: "zero" (x′ = 0) or "self_input_token" (for target j every row of x′ = z_j).
    method: "fast" (structured integrands, `structured.py`) or "direct" (below).
    key_mask: [S] bool, False for padding (padded sources get exactly 0; padded target
    columns are meaningless and dropped by the caller).
    """
    block = nnx.merge(graphdef, state)
    if method == "fast":
        fast = structured.z2z_zero if baseline == "zero" else structured.z2z_itb
        return fast(block, z, alphas, weights, chunk, key_mask)
    if baseline == "zero":
        x_base = jnp.zeros_like(z)
        y_base = block(x_base, key_mask)

        def scalars(x: jax.Array) -> jax.Array:
            return safe_norm(block(x, key_mask) - y_base)

        jac = path_sum(jax.jacrev(scalars), z, x_base, alphas, weights, chunk)  # [T, S, d]
        return jnp.einsum("jic,ic->ij", jac, z - x_base), scalars(z)

    def column(j: jax.Array) -> tuple[jax.Array, jax.Array]:
        x_base = jnp.broadcast_to(z[j], z.shape)
        y_base = block(x_base, key_mask)[j]

        def scalar(x: jax.Array) -> jax.Array:
            return safe_norm(block(x, key_mask)[j] - y_base)

        grad = path_sum(jax.grad(scalar), z, x_base, alphas, weights, chunk)  # [S, d]
        return jnp.sum(grad * (z - x_base), axis=-1), scalar(z)

    cols, totals = jax.vmap(column)(jnp.arange(z.shape[0]))
    return cols.T, totals
