"""The IG core: a safe L2 norm and the weighted path sum Σ_k w_k ∇f(x′ + α_k Δ).

Everything here is shape-agnostic and jittable; the attribution modules build the
scalar functions and call `path_sum` with the gradient transform they need
(`jax.grad` for one scalar, `jax.jacrev` for a vector of scalars).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

# Per-evaluation memory the node chunking aims for (activations of one vmapped chunk).
DEFAULT_CHUNK_BYTES = 256 * 2**20


def safe_norm(v: jax.Array, axis: int | tuple[int, ...] = -1) -> jax.Array:
    """‖v‖₂ along `axis` whose forward- and reverse-mode derivatives are 0 at v = 0.

    `jnp.linalg.norm` gives NaN gradients there; the L2 scalar of IG sits exactly at 0
    when the interpolated input equals the baseline.
    """
    sq = jnp.sum(v * v, axis=axis)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def node_chunk(num_nodes: int, bytes_per_node: int, budget: int = DEFAULT_CHUNK_BYTES) -> int:
    """How many nodes to evaluate in one vmapped batch so a chunk stays near `budget`."""
    return max(1, min(num_nodes, budget // max(1, bytes_per_node)))


def path_sum(
    grad_fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    x_base: jax.Array,
    alphas: jax.Array,
    weights: jax.Array,
    chunk: int,
) -> jax.Array:
    """Σ_k w_k · grad_fn(x′ + α_k (x − x′)).

    x, x_base: same shape X. alphas, weights: [n]. grad_fn: X → Y (any array shape).
    Nodes are evaluated `chunk` at a time (a `lax.scan` over chunks, `vmap` inside), so
    memory is bounded by the chunk, not by n. Returns Y.
    """
    n = alphas.shape[0]
    n_chunks = math.ceil(n / chunk)
    pad = n_chunks * chunk - n
    # Padding nodes get weight 0 (α = 1 keeps them away from the norm's kink).
    alphas = jnp.concatenate([alphas, jnp.ones((pad,), alphas.dtype)]).reshape(n_chunks, chunk)
    weights = jnp.concatenate([weights, jnp.zeros((pad,), weights.dtype)]).reshape(n_chunks, chunk)
    delta = x - x_base
    expand = (slice(None),) + (None,) * x.ndim

    def body(acc: jax.Array, aw: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        a, w = aw
        points = x_base[None] + a[expand] * delta[None]
        grads = jax.vmap(grad_fn)(points)
        return acc + jnp.tensordot(w, grads, axes=1), None

    out = jax.eval_shape(grad_fn, x)
    acc, _ = jax.lax.scan(body, jnp.zeros(out.shape, out.dtype), (alphas, weights))
    return acc
