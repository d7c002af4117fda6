"""The IG core: a safe L2 norm and the weighted path sum Σ_k w_k ∇f(x′ + α_k Δ).

Everything here is shape-agnostic and jittable; the attribution modules build the
scalar functions and call `path_sum` with the gradient transform they need
(`jax.grad` for one scalar, `jax.jacrev` for a vector of scalars).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

# Bounds of the memory one vmapped chunk of nodes may use (see `memory_budget`).
MIN_CHUNK_BYTES = 64 * 2**20
MAX_CHUNK_BYTES = 384 * 2**20


def safe_norm(v: jax.Array, axis: int | tuple[int, ...] = -1) -> jax.Array:
    """‖v‖₂ along `axis` whose forward- and reverse-mode derivatives are 0 at v = 0.

    `jnp.linalg.norm` gives NaN gradients there; the L2 scalar of IG sits exactly at 0
    when the interpolated input equals the baseline.
    """
    sq = jnp.sum(v * v, axis=axis)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def memory_budget() -> int:
    """Bytes one chunk of nodes may use: 1/16 of the default device's free memory.

    Accelerators report it through `memory_stats()`; on the CPU it is the machine's
    available memory. Clamped to [64 MiB, 384 MiB].
    """
    free = None
    try:
        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    except Exception:  # backends without memory stats
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = 16 * MIN_CHUNK_BYTES
    return int(min(MAX_CHUNK_BYTES, max(MIN_CHUNK_BYTES, free // 16)))


def node_chunk(num_nodes: int, bytes_per_node: int, budget: int | None = None) -> int:
    """How many nodes to evaluate in one vmapped batch so a chunk stays near `budget`."""
    budget = memory_budget() if budget is None else budget
    return max(1, min(num_nodes, budget // max(1, bytes_per_node)))


def node_sum(
    fn: Callable[[jax.Array], Any], alphas: jax.Array, weights: jax.Array, chunk: int
) -> Any:
    """Σ_k w_k · fn(α_k) for a function of the node α returning a pytree of arrays.

    Nodes are evaluated `chunk` at a time (a `lax.scan` over chunks, `vmap` inside), so
    memory is bounded by the chunk, not by the number of nodes n.
    """
    n = alphas.shape[0]
    n_chunks = math.ceil(n / chunk)
    pad = n_chunks * chunk - n
    # Padding nodes get weight 0 (α = 1 keeps them away from the norm's kink).
    alphas = jnp.concatenate([alphas, jnp.ones((pad,), alphas.dtype)]).reshape(n_chunks, chunk)
    weights = jnp.concatenate([weights, jnp.zeros((pad,), weights.dtype)]).reshape(n_chunks, chunk)

    def body(acc: Any, aw: tuple[jax.Array, jax.Array]) -> tuple[Any, None]:
        a, w = aw
        values = jax.vmap(fn)(a)
        return jax.tree.map(lambda s, v: s + jnp.tensordot(w, v, axes=1), acc, values), None

    out = jax.eval_shape(fn, alphas[0, 0])
    zeros = jax.tree.map(lambda o: jnp.zeros(o.shape, o.dtype), out)
    acc, _ = jax.lax.scan(body, zeros, (alphas, weights))
    return acc


def node_stack(
    fn: Callable[[jax.Array], Any], alphas: jax.Array, chunk: int
) -> Any:
    """fn(α_k) for every node, stacked along a leading axis [n, ...] (`lax.map` in chunks).

    For integrands that are products of per-node factors: stacking the small factors and
    contracting them with the weights afterwards (one matmul) is far cheaper than
    materialising and summing their large per-node outer products.
    """
    return jax.lax.map(fn, alphas, batch_size=chunk)


def path_sum(
    grad_fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    x_base: jax.Array,
    alphas: jax.Array,
    weights: jax.Array,
    chunk: int,
) -> jax.Array:
    """Σ_k w_k · grad_fn(x′ + α_k (x − x′)); x, x_base: same shape X; grad_fn: X → Y."""
    delta = x - x_base
    return node_sum(lambda a: grad_fn(x_base + a * delta), alphas, weights, chunk)
