"""One IG quantity of one block as a data flow: prepare → Σ over nodes → finish.

Every attribution (z→z, z→u, u→z; structured or direct; any baseline) is an `Integrand`:

    lay = layer_context(block, z, heads, key_mask)          once per layer
    ctx = prepare(block, lay, targets, heads)               once per chunk of targets
    acc = Σ_steps step(ctx, α_step, w_step)                 `nodes_per_step` nodes a step
    out = finish(block, ctx, acc)                           the chunk's outputs

`step` defaults to the weighted sum Σ_k w_k · node(α_k) of `node` vmapped over the step's
nodes (`reduce`); integrands whose per-node values are factors of a larger product (the
per-source L2 accumulators) contract them in `reduce`, and the ITB integrands lay the
node axis out themselves in `step`. Memory is that of one chunk of targets and
`nodes_per_step` nodes, whatever the number of nodes; `memory()` estimates it so a planner
can pick both sizes for a budget. Outputs, per chunk of T targets:

    z2z: (columns [T, S] with columns[t, i] = M[i, targets[t]], L [T])
    z2u: (scores [T, Hs, S], signed Σ_i IG [T, Hs], f(z) − f(x′) [T, Hs])
    u2z: (contributions [T, w], l2_total [T])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


@dataclass(frozen=True)
class Dims:
    """The sizes a memory estimate needs (bytes = elements × itemsize)."""

    seq: int  # S (padded length)
    hidden: int  # d
    heads: int  # H query heads
    kv_heads: int  # G kv groups
    head_dim: int  # e
    ffn: int  # MLP hidden width
    width: int  # u_MLP width w
    l2: bool  # per-source L2 z→u scores (encoders)
    itemsize: int = 4

    @classmethod
    def of(cls, block: Any, ffn: int, seq: int, itemsize: int) -> Dims:
        pm = block.premap_parts()
        d, h, e = pm.wq.shape
        width = jax.eval_shape(block.att_from, jnp.zeros((1, d)), jnp.zeros((1, h, e))).shape[-1]
        return cls(seq, d, h, pm.num_groups, e, ffn, width, block.z2u_score == "l2", itemsize)


def traced(graphdef: Any, state: Any, fn: Any) -> Any:
    """`fn(block)` for a block whose `state` may be abstract (ShapeDtypeStructs): run
    under `jax.eval_shape`, so array methods work on tracers; fn returns static values."""
    box = []

    def call(st: Any) -> int:
        box.append(fn(nnx.merge(graphdef, st)))
        return 0

    jax.eval_shape(call, state)
    return box[0]


class Integrand:
    """Base class: subclasses are frozen dataclasses (hashable: they are static arguments
    of the jitted runners) implementing `prepare`, `node`, `finish` and `memory`."""

    quantity: str = ""  # "z2z", "z2u" or "u2z"
    # The α = 0 term is zero by definition (x(0) = x′ and f = ‖G(x) − G(x′)‖ sits at its
    # kink), so the rule's α = 0 node is dropped; integrands whose scalar is not zero at
    # the baseline (the reference's Gemma3 ‖u‖) keep it.
    keeps_zero_node: bool = False
    nodes_per_step: int = 8  # nodes evaluated together (vmapped, or laid out) per step

    def layer_context(self, block, z, heads, key_mask) -> dict:
        """What every chunk of targets of one layer shares, computed once per layer
        (always holds `z` [S, d] and `key_mask`)."""
        return {"z": z, "key_mask": key_mask}

    def prepare(self, block, lay: dict, targets, heads, extra=None) -> dict:
        """The chunk's context from the layer's `lay`; extra: per-target inputs of the chunk
        (u→z's given baselines), or None."""
        raise NotImplementedError

    def node(self, block, ctx: dict, alpha: jax.Array) -> Any:
        """The integrand's value at one node α (see `step`)."""
        raise NotImplementedError

    def reduce(self, block, ctx: dict, weights: jax.Array, values: Any) -> Any:
        """Σ_k w_k values_k over the leading (node) axis."""
        return jax.tree.map(lambda v: jnp.tensordot(weights, v, axes=1), values)

    def step(self, block, ctx: dict, alphas: jax.Array, weights: jax.Array) -> Any:
        """The weighted contribution of k nodes at once (alphas, weights: [k]). By default
        `reduce` of `node` vmapped over them; integrands that lay the node axis out
        themselves (head-major, for batched matmuls) override this instead."""
        values = jax.vmap(lambda al: self.node(block, ctx, al))(alphas)
        return self.reduce(block, ctx, weights, values)

    def update(self, block, ctx: dict, acc: Any, alphas: jax.Array, weights: jax.Array
               ) -> Any:
        """acc plus the step's contribution (integrands that add into `acc` block by block
        override this and skip the step-sized temporary)."""
        return jax.tree.map(jnp.add, acc, self.step(block, ctx, alphas, weights))

    def finish(self, block, ctx: dict, acc: Any) -> tuple:
        raise NotImplementedError

    def memory(self, dims: Dims, targets: int, heads: int, nodes: int) -> int:
        """Bytes of one chunk's working set: `targets` targets, `nodes` nodes at a time."""
        raise NotImplementedError

    def preferred_targets(self, dims: Dims, nodes: int) -> int | None:
        """How many targets a chunk should hold for speed with `nodes` nodes per step
        (None: as many as the budget allows, e.g. when targets share work per node)."""
        return None


def phase(integrand: Integrand, name: str) -> Any:
    """A `jax.named_scope` for one phase of `integrand` ("layer", "prepare", "nodes",
    "finish"), so profiler traces and HLO read `lig/Z2uItb/nodes` and the like."""
    return jax.named_scope(f"lig/{type(integrand).__name__}/{name}")


def pad_nodes(alphas: jax.Array, weights: jax.Array, per_step: int
              ) -> tuple[jax.Array, jax.Array]:
    """Nodes as [steps, per_step]; padding nodes get α = 1 (away from any kink) and w = 0."""
    n = alphas.shape[0]
    steps = max(1, math.ceil(n / per_step))
    pad = steps * per_step - n
    alphas = jnp.concatenate([alphas, jnp.ones((pad,), alphas.dtype)])
    weights = jnp.concatenate([weights, jnp.zeros((pad,), weights.dtype)])
    return alphas.reshape(steps, per_step), weights.reshape(steps, per_step)


def zero_acc(integrand: Integrand, block, ctx: dict, per_step: int, dtype) -> Any:
    """Zeros shaped like the accumulator (no node is evaluated)."""
    a = jnp.ones((per_step,), dtype)
    inc = jax.eval_shape(lambda al: integrand.step(block, ctx, al, al), a)
    # (integrands overriding only `update` give `step` as the update of zeros)
    return jax.tree.map(lambda o: jnp.zeros(o.shape, o.dtype), inc)


def accumulate(integrand: Integrand, block, ctx: dict, acc: Any, alphas: jax.Array,
               weights: jax.Array, per_step: int) -> Any:
    """acc + Σ over the nodes, `per_step` of them vmapped at a time (a `lax.scan`);
    acc None starts from zeros."""
    a, w = pad_nodes(alphas, weights, per_step)

    def body(total, aw):
        return integrand.update(block, ctx, total, aw[0], aw[1]), None

    if acc is None:
        acc = zero_acc(integrand, block, ctx, per_step, alphas.dtype)
    with phase(integrand, "nodes"):
        acc, _ = jax.lax.scan(body, acc, (a, w))
    return acc


def integrate(integrand: Integrand, block, z, targets, heads, alphas, weights, per_step: int,
              key_mask=None, extra=None, lay: dict | None = None) -> tuple:
    """The whole quantity for one chunk of targets, inside any jitted program (`lay`: the
    layer's shared part, if already computed)."""
    if lay is None:
        with phase(integrand, "layer"):
            lay = integrand.layer_context(block, z, heads, key_mask)
    with phase(integrand, "prepare"):
        ctx = integrand.prepare(block, lay, targets, heads, extra)
    acc = accumulate(integrand, block, ctx, None, alphas, weights, per_step)
    with phase(integrand, "finish"):
        return integrand.finish(block, ctx, acc)
