"""Running the attribution functions over all requested layers of one sentence.

A `LayerStack` holds the selected blocks' parameters (in the compute dtype) and their
inputs z^(l) padded to the sentence's length bucket. Where memory allows (the stacked
copy of the block parameters fits `STACK_BYTES`), the blocks are stacked along a leading
layer axis and each quantity is one jitted computation over all layers (`lax.map`, so
activation memory is that of one layer); larger models run one jitted call per layer on
the blocks' own arrays, with no copy. The step plan (fixed or auto) sees every
(layer, target[, head]) as a column.
Everything returned here is cut back to the real tokens and is float64 numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .attribution import ratio, replay
from .attribution.u2z import u2z
from .attribution.z2u import chunk_for as z2u_chunk
from .attribution.z2u import self_attention_probs, z2u
from .attribution.z2z import chunk_for as z2z_chunk
from .attribution.z2z import z2z
from .quadrature import Rule
from .steps import StepPlan, StepResult, relative_error

STACK_BYTES = 128 * 2**20  # stack block parameters for one all-layer program up to this


@partial(jax.jit, static_argnames=("fn", "graphdef", "static"))
def _over_layers(fn: Callable, graphdef: nnx.GraphDef, states: nnx.State, zs: jax.Array,
                 args: tuple, dynamic: dict, per_layer: dict, static: tuple) -> Any:
    """fn(graphdef, state_l, z_l, *args, **dynamic, **per_layer_l, **static) for every l."""
    kw = {**dynamic, **dict(static)}
    return jax.lax.map(lambda x: fn(graphdef, x[0], x[1], *args, **x[2], **kw),
                       (states, zs, per_layer))


class LayerStack:
    """Blocks l ∈ layers and their padded inputs, ready for the attribution functions.

    zs [L, S_b, d] are padded to the length bucket S_b; the first `length` rows are the
    sentence (`key_mask` [S_b]). `pad_targets` are extra target columns computed only to
    keep shapes, and so compiled programs, fixed per bucket.
    """

    def __init__(self, graphdef: nnx.GraphDef | list[nnx.GraphDef],
                 states: nnx.State | list[nnx.State],
                 zs: jax.Array, key_mask: jax.Array, length: int, pad_targets: list[int],
                 num_heads: int):
        self.graphdef, self.states, self.zs = graphdef, states, zs
        self.key_mask, self.length, self.pad_targets = key_mask, length, pad_targets
        self.num_heads = num_heads

    @classmethod
    def build(cls, blocks: list[nnx.Module], zs: jax.Array, key_mask: jax.Array, length: int,
              pad_targets: list[int], dtype: Any) -> LayerStack:
        """Stack the blocks when they share one structure (blocks that differ statically,
        e.g. sliding-window vs. global layers, run one call per layer)."""
        graphdefs = [nnx.split(b)[0] for b in blocks]
        states = [jax.tree.map(lambda a: a.astype(dtype), nnx.split(b)[1]) for b in blocks]
        size = sum(a.nbytes for s in states for a in jax.tree.leaves(s))
        same = all(g == graphdefs[0] for g in graphdefs)
        if len(states) > 1 and same and size <= STACK_BYTES:
            return cls(graphdefs[0], jax.tree.map(lambda *xs: jnp.stack(xs), *states),
                       zs.astype(dtype), key_mask, length, pad_targets, blocks[0].num_heads)
        return cls(graphdefs, states, zs.astype(dtype), key_mask, length, pad_targets,
                   blocks[0].num_heads)

    @property
    def num_layers(self) -> int:
        return self.zs.shape[0]

    @property
    def padded_length(self) -> int:
        return self.zs.shape[1]

    @property
    def hidden(self) -> int:
        return self.zs.shape[2]

    def nodes(self, rule: Rule) -> tuple[jax.Array, jax.Array]:
        alphas, weights = rule.without_zero_node()
        return jnp.asarray(alphas, self.zs.dtype), jnp.asarray(weights, self.zs.dtype)

    def targets(self, targets: list[int]) -> jax.Array:
        return jnp.asarray(targets + self.pad_targets)

    def run(self, fn: Callable, *args: Any, per_layer: dict[str, jax.Array] | None = None,
            **static: Any) -> Any:
        """fn over every layer with the key mask; numpy float64 outputs [L, ...].

        per_layer: keyword arrays with a leading layer axis, sliced for each layer.
        """
        per_layer = per_layer or {}
        if isinstance(self.states, list):  # one call per layer, the blocks' own arrays
            outs = [fn(g, s, z, *args, key_mask=self.key_mask,
                       **{k: v[i] for k, v in per_layer.items()}, **static)
                    for i, (g, s, z) in enumerate(zip(self.graphdef, self.states, self.zs,
                                                      strict=True))]
            return jax.tree.map(lambda *a: np.stack([np.asarray(x, np.float64) for x in a]),
                                *outs)
        out = _over_layers(fn, self.graphdef, self.states, self.zs, args,
                           {"key_mask": self.key_mask}, per_layer,
                           tuple(sorted(static.items())))
        return jax.tree.map(lambda a: np.asarray(a, np.float64), out)


class Replay:
    """The whole model and the embeddings E, for the reference's Gemma3 z→u replay
    (`reference_quirks`): every selected layer l replays blocks 0..l−1 on E(α)."""

    def __init__(self, graphdef: nnx.GraphDef, state: nnx.State, e: jax.Array,
                 key_mask: jax.Array, layers: list[int]):
        self.graphdef, self.state, self.e = graphdef, state, e
        self.key_mask, self.layers = key_mask, layers

    @classmethod
    def build(cls, model: nnx.Module, e: jax.Array, key_mask: jax.Array, layers: list[int],
              pad_targets: list[int], dtype: Any) -> Replay:
        graphdef, state = nnx.split(model)
        state = jax.tree.map(lambda a: a.astype(dtype), state)
        return cls(graphdef, state, e.astype(dtype), key_mask, layers)

    def z2u(self, targets: jax.Array, heads: jax.Array, alphas: jax.Array, weights: jax.Array,
            baseline: str) -> tuple[np.ndarray, ...]:
        """(signed scores [L, T, Hs, S], Σ IG [L, T, Hs], f(x) − f(x′) [L, T, Hs])."""
        outs = [replay.z2u_replay(self.graphdef, self.state, self.e, targets, heads, alphas,
                                  weights, layer=l, baseline=baseline, chunk=1,
                                  key_mask=self.key_mask) for l in self.layers]
        return tuple(np.stack([np.asarray(o[k], np.float64) for o in outs]) for k in range(3))

    def u_bases(self, targets: jax.Array) -> jax.Array:
        """The replayed `att_itb_a0` baselines u′ [L, T, w]."""
        return jnp.stack([replay.itb_u_base(self.graphdef, self.state, self.e, targets,
                                            layer=l, key_mask=self.key_mask)
                          for l in self.layers])


def z2z_columns(stack: LayerStack, baseline: str, plan: StepPlan, method: str) -> StepResult:
    """Raw layer-direct z→z: arrays = (columns [L, S_tgt, S_src], L_j [L, S_tgt])."""
    s, sb = stack.length, stack.padded_length

    def at(rule: Rule) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        alphas, weights = stack.nodes(rule)
        chunk = z2z_chunk(method, sb, stack.hidden, stack.num_heads, len(alphas))
        m, total = stack.run(z2z, alphas, weights, baseline=baseline, method=method,
                             chunk=chunk)
        cols = np.swapaxes(m[:, :s, :s], 1, 2).reshape(-1, s)
        total = total[:, :s].reshape(-1)
        return (cols, total), relative_error(cols.sum(axis=1), total, rule.weight_sum)

    return _per_layer(plan.run(at), (stack.num_layers, s))


def z2z_matrices(stack: LayerStack, baseline: str, plan: StepPlan, method: str
                 ) -> tuple[np.ndarray, StepResult]:
    """z→z matrices [L, S_src, S_tgt] after any ratio fix, and the raw run."""
    raw = z2z_columns(stack, "self_input_token" if baseline == "itb_zero_ratio" else baseline,
                      plan, method)
    cols = raw.arrays[0]
    if baseline == "itb_zero_ratio":
        cols = ratio.z2z_zero_ratio(cols, z2z_columns(stack, "zero", plan, method).arrays[0])
    return np.swapaxes(cols, 1, 2), raw


def z2u_columns(stack: LayerStack, baseline: str, plan: StepPlan, targets: list[int],
                heads: list[int], method: str, replayed: Replay | None = None) -> StepResult:
    """Raw z→u: arrays = (scores [L, T, Hs, S], signed Σ IG [L, T, Hs], f [L, T, Hs])."""
    s, t, hs = stack.length, len(targets), len(heads)
    t_arr, h_arr = stack.targets(targets), jnp.asarray(heads)

    def at(rule: Rule) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        alphas, weights = stack.nodes(rule)
        if replayed is not None:
            scores, signed, f = replayed.z2u(t_arr, h_arr, alphas, weights, baseline)
        else:
            chunk = z2u_chunk(method, stack.padded_length, stack.hidden, len(t_arr), hs,
                              len(alphas))
            scores, signed, f = stack.run(z2u, t_arr, h_arr, alphas, weights,
                                          baseline=baseline, method=method, chunk=chunk)
        scores = scores[:, :t, :, :s].reshape(-1, s)
        signed, f = signed[:, :t].reshape(-1), f[:, :t].reshape(-1)
        return (scores, signed, f), relative_error(signed, f, rule.weight_sum)

    return _per_layer(plan.run(at), (stack.num_layers, t, hs))


def z2u_scores(stack: LayerStack, baseline: str, plan: StepPlan, targets: list[int],
               heads: list[int], method: str, replayed: Replay | None = None
               ) -> tuple[np.ndarray, StepResult]:
    """Per-source z→u scores [L, T, Hs, S] after any ratio fix, and the raw run."""
    raw = z2u_columns(stack, "zero" if baseline == "zero" else "self_input_token", plan,
                      targets, heads, method, replayed)
    if baseline == "zero":
        return raw.arrays[0].copy(), raw
    t_idx = np.asarray(targets)
    zero = alpha = None
    if baseline == "itb_zero_ratio":
        zero = z2u_columns(stack, "zero", plan, targets, heads, method, replayed).arrays[0]
    elif baseline == "itb_map_ratio":
        diag = stack.run(self_attention_probs)  # [L, H, S_b]: A^h_{j,j}
        alpha = np.transpose(diag[:, np.asarray(heads)][:, :, t_idx], (0, 2, 1))  # [L, T, Hs]
    return ratio.z2u_fixed(raw.arrays[0], t_idx, baseline, zero, alpha), raw


def u2z_contributions(stack: LayerStack, baseline: str, plan: StepPlan, targets: list[int],
                      residual: bool, replayed: Replay | None = None) -> StepResult:
    """u→z: arrays = (contributions [L, T, w], l2_total [L, T]); w = width of u_MLP."""
    t = len(targets)
    t_arr = stack.targets(targets)
    per_layer = {}
    if replayed is not None and baseline == "att_itb_a0":
        per_layer["u_base"] = replayed.u_bases(t_arr)

    def at(rule: Rule) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        alphas, weights = stack.nodes(rule)
        contrib, total = stack.run(u2z, t_arr, alphas, weights, per_layer=per_layer,
                                   baseline=baseline, residual=residual)
        width = contrib.shape[-1]
        contrib, total = contrib[:, :t].reshape(-1, width), total[:, :t].reshape(-1)
        return (contrib, total), relative_error(contrib.sum(axis=1), total, rule.weight_sum)

    return _per_layer(plan.run(at), (stack.num_layers, t))


def _per_layer(res: StepResult, columns: tuple[int, ...]) -> StepResult:
    """Give a column-major result its column axes back, e.g. (layer, target[, head])."""
    def split(a: np.ndarray) -> np.ndarray:
        return a.reshape(*columns, *a.shape[1:])

    return StepResult(tuple(split(a) for a in res.arrays), split(res.steps),
                      split(res.weight_sum),
                      None if res.converged is None else split(res.converged), res.rule)
