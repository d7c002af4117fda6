"""Running the attribution integrands over the requested layers of one sentence.

`Layers` holds the selected blocks' parameters (in the compute dtype) and their inputs
z^(l), padded to the sentence's length bucket. The integrand's chunking (targets per
chunk, nodes per step) comes from the memory budget. Where the blocks share one
structure, the input is short (≤ 128 tokens padded), every chunk fits in one call and one
device computes (no mesh, or a mesh of one), `compute` runs every raw run of every layer
as one compiled program (`lax.map` over the stacked blocks, `Layers.prefetch`), shared by
every sentence of the bucket, whose results leave the device once; otherwise each
quantity runs layer by layer, chunk by chunk (`Layers.run`: progress between calls,
meshes), each layer's results coming back to the host before the next starts. Both paths
chunk alike: the same sums, in another compiled program (equal to float32 rounding,
test). The step plan (fixed or auto) sees every (layer, target[, head]) as a column; auto
plans run layer by layer. Everything returned is cut back to the real tokens: numpy
arrays in the compute dtype, float64 where a ratio fix (done in float64, docs/spec.md §6)
was applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from . import baselines
from .attribution import ratio, replay
from .attribution.run import Dims, Job, chunking, integrand_for, run, run_layers
from .measures.layers import measure_layers
from .mesh import DATA, replicated
from .quadrature import Rule, make_rule
from .steps import StepPlan, StepResult, relative_error

Progress = Callable[[str], None]
FUSED_MAX_LENGTH = 128  # longest padded input run as one program over all layers
PROGRESS_EVERY_S = 5.0  # at most one chunk line every 5 s, with the layer's time left


def bucket_length(length: int, limit: int) -> int:
    """The padded length a sentence of `length` tokens is computed at (≤ `limit`): the
    next of 8, 16, 24, 32, 48, 64, 96, 128, … (2^k and 3·2^(k−1)).

    Sentences of the same bucket share compiled programs, so a new sentence length does
    not recompile; the padding costs at most ~1.5× the work of the sentence itself.
    """
    def buckets():
        yield 8
        p = 16
        while True:
            yield p
            yield p * 3 // 2
            p *= 2

    return min(next(b for b in buckets() if b >= length), max(limit, length))


class Layers:
    """Blocks l ∈ layers of one model and their padded inputs zs [L, S_b, d].

    The first `length` rows are the sentence (`key_mask` [S_b]); `pad_targets` are extra
    target columns computed only to keep shapes, and so compiled programs, fixed per
    bucket. `budget`: bytes one chunk's working set may use (per device). `mesh`: a
    ("data", "model") mesh (`lig_jax.mesh`) the blocks are split over (model axis) and each
    chunk's targets dealt over (data axis); None = one device.
    """

    def __init__(self, model: nnx.Module, layers: list[int], hidden: jax.Array,
                 key_mask: jax.Array, length: int, pad_targets: list[int], dtype: Any,
                 budget: int, progress: Progress | None = None, ffn: int | None = None,
                 mesh: jax.sharding.Mesh | None = None):
        self.model, self.layers, self.dtype, self.mesh = model, layers, dtype, mesh
        if mesh is not None:
            hidden = jax.device_put(hidden, replicated(mesh))
            key_mask = jax.device_put(key_mask, replicated(mesh))
        self.hidden = hidden
        self.key_mask, self.length, self.pad_targets = key_mask, length, pad_targets
        self.budget, self.ffn = budget, ffn
        self.say = progress or (lambda _m: None)
        self.blocks = [self._split(model.layers[l]) for l in layers]
        self.num_heads = model.layers[layers[0]].num_heads
        self.dims = Dims.of(model.layers[layers[0]], ffn or 4 * hidden.shape[-1],
                            hidden.shape[1], jnp.dtype(dtype).itemsize)
        self._whole = None
        # outputs of `prefetch`, taken by `run` / `self_attention_probs` on request
        self._fetched: dict[tuple, list[tuple[np.ndarray, ...]]] = {}

    def _split(self, module: nnx.Module) -> tuple[nnx.GraphDef, nnx.State]:
        """The block's parameters in the compute dtype, where loading placed them (on a
        mesh: already split over its model axis, `loading.load_model(name, mesh)`)."""
        graphdef, state = nnx.split(module)
        return graphdef, jax.tree.map(lambda a: a.astype(self.dtype), state)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def padded_length(self) -> int:
        return self.hidden.shape[1]

    def z(self, l: int) -> jax.Array:
        return self.hidden[l].astype(self.dtype)

    def nodes(self, rule: Rule, keep_zero: bool = False) -> tuple[jax.Array, jax.Array]:
        alphas, weights = ((rule.alphas, rule.weights) if keep_zero
                           else rule.without_zero_node())
        return jnp.asarray(alphas, self.dtype), jnp.asarray(weights, self.dtype)

    def run(self, quantity: str, baseline: str, rule: Rule, targets: list[int],
            heads: list[int] | None = None, method: str = "fast", replayed: bool = False,
            extra: list[jax.Array] | None = None, **options: Any) -> list[tuple[np.ndarray, ...]]:
        """One quantity at every layer: a list (per layer) of the integrand's outputs with
        the targets (and `pad_targets`) on the leading axis."""
        heads = list(range(self.num_heads)) if heads is None else heads
        all_targets = targets + self.pad_targets
        key = _job_key(quantity, baseline, rule, all_targets, heads, method, replayed, extra,
                       options)
        if key in self._fetched:
            return self._fetched.pop(key)
        out = []
        for pos, l in enumerate(self.layers):
            if replayed:
                integrand = integrand_for(quantity, baseline, method, replay_layer=l)
                if self._whole is None:
                    self._whole = self._split(self.model)
                graphdef, state = self._whole
                z = self.z(0)
            else:
                integrand = integrand_for(quantity, baseline, method, **options)
                graphdef, state = self.blocks[pos]
                z = self.z(l)
            alphas, weights = self.nodes(rule, integrand.keeps_zero_node)
            plan = chunking(integrand, self.dims, len(all_targets), len(heads),
                             alphas.shape[0], self.budget, self.data_devices)
            label = (f"layer {l} ({pos + 1}/{self.num_layers}): {quantity} {baseline}, "
                     f"{rule.num_steps} steps")
            self.say(label)
            began = time.perf_counter()
            last = [began]

            def progress(done: int, total: int, label: str = label, last: list = last,
                         began: float = began) -> None:
                now = time.perf_counter()
                if total > 1 and done < total and now - last[0] >= PROGRESS_EVERY_S:
                    last[0] = now
                    left = (now - began) * (total - done) / max(done, 1)
                    self.say(f"{label}: chunk {done}/{total}, about {_duration(left)} left "
                             "in this layer")

            out.append(run(integrand, graphdef, state, z, all_targets, heads, alphas, weights,
                           plan, self.key_mask, None if extra is None else extra[pos],
                           progress, self.mesh))
        return out

    def fusable(self) -> bool:
        """Whether `prefetch` can run every layer in one program: one device (no mesh, or
        a mesh of one), blocks of one structure (one graphdef) and a short input (up to
        `FUSED_MAX_LENGTH` tokens padded: a longer one runs for long and goes layer by
        layer, with progress between calls)."""
        one = self.mesh is None or self.mesh.devices.size == 1
        return (one and self.padded_length <= FUSED_MAX_LENGTH
                and all(g == self.blocks[0][0] for g, _ in self.blocks))

    def prefetch(self, requests: list[tuple[str, str, Rule, list[int], list[int] | None,
                                            dict[str, Any]]], self_probs: bool = False
                 ) -> bool:
        """Compute the `run` requests (quantity, baseline, rule, targets, heads, options;
        fast method) — and, with `self_probs`, the self-attention probabilities — at every
        layer in one compiled program with one transfer to the host (`run_layers`), kept
        for the `run` / `self_attention_probs` calls that ask for them. The chunking is
        `run`'s: the same sums (equal to float32 rounding). Returns False (nothing done)
        where that program does not apply (`fusable`: a mesh, blocks of several
        structures, an input longer than `FUSED_MAX_LENGTH`), a chunk too large for one
        call (many nodes: `run` then reports progress between calls), or outputs and
        stacked parameters beyond the budget (`_fits`)."""
        if not self.fusable():
            return False
        jobs, targets, sizes, heads_of, nodes, keys = [], [], [], [], [], []
        for quantity, baseline, rule, tgts, heads, options in requests:
            heads = list(range(self.num_heads)) if heads is None else heads
            all_targets = tgts + self.pad_targets
            integrand = integrand_for(quantity, baseline, "fast", **options)
            alphas, weights = self.nodes(rule, integrand.keeps_zero_node)
            plan = chunking(integrand, self.dims, len(all_targets), len(heads),
                            alphas.shape[0], self.budget, 1)
            if plan.calls(alphas.shape[0]) > 1:
                return False
            jobs.append(Job(integrand, plan.nodes_per_step))
            targets.append(all_targets)
            sizes.append(plan.targets_per_chunk)
            heads_of.append(heads)
            nodes.append((alphas, weights))
            keys.append(_job_key(quantity, baseline, rule, all_targets, heads, "fast", False,
                                 None, options))
        if not self._fits(jobs, targets, heads_of, self_probs):
            return False
        if self_probs:
            jobs.append(Job(None))
            targets.append([0])
            sizes.append(1)
            heads_of.append([0])
            nodes.append((jnp.zeros(1, self.dtype), jnp.zeros(1, self.dtype)))
            keys.append(("self_probs",))
        names = ", ".join(f"{q} {b}" for q, b, *_ in requests) + (
            ", A_jj" if self_probs else "")
        self.say(f"layers {self.layers}: {names} in one program")
        zs = self.hidden[jnp.asarray(self.layers)].astype(self.dtype)
        states = stacked_states([st for _, st in self.blocks])
        outs = run_layers(jobs, self.blocks[0][0], states, zs, self.key_mask, targets, sizes,
                          heads_of, nodes)
        self._fetched.update(zip(keys, outs, strict=True))
        return True

    def _fits(self, jobs: list[Job], targets: list[list[int]], heads: list[list[int]],
              self_probs: bool) -> bool:
        """Whether one program's extra memory — every layer's outputs held on the device
        until the end, and the blocks' parameters stacked [L, ...] — stays within the
        budget (at least 256 MB): large models go layer by layer."""
        sb, n = self.padded_length, self.num_layers
        per_target = {"z2z": lambda h: sb + 1, "z2u": lambda h: h * (sb + 2),
                      "u2z": lambda h: self.dims.width + 1}
        outputs = sum(len(t) * per_target[j.integrand.quantity](len(h))
                      for j, t, h in zip(jobs, targets, heads, strict=True))
        outputs += self.num_heads * sb if self_probs else 0
        params = sum(leaf.size for _, st in self.blocks for leaf in jax.tree.leaves(st))
        need = (n * outputs + params) * jnp.dtype(self.dtype).itemsize
        return need <= max(self.budget, 256 * 2**20)

    @property
    def data_devices(self) -> int:
        """Devices a chunk's targets are dealt over (the mesh's data axis)."""
        return 1 if self.mesh is None else self.mesh.shape[DATA]


def _job_key(quantity: str, baseline: str, rule: Rule, targets: list[int], heads: list[int],
             method: str, replayed: bool, extra: Any, options: dict[str, Any]) -> tuple | None:
    """What identifies one `Layers.run` request (None: never prefetched — replays and
    given per-target inputs)."""
    if replayed or extra is not None or method != "fast":
        return None
    return (quantity, baseline, rule.name, rule.num_steps, tuple(targets), tuple(heads),
            tuple(sorted(options.items())))


# The blocks' states stacked along a leading layer axis, for the last few block lists
# (keyed by the ids of their arrays, which the entry holds, so an id is never reused while
# it is a key; parameters replaced in a module give new arrays, hence a new key).
_STACKS: dict[tuple[int, ...], tuple[list, Any]] = {}
_STACKS_KEPT = 2


def stacked_states(states: list[Any]) -> Any:
    """[state of block l] → one state whose arrays are stacked [L, ...] (cached)."""
    leaves = [leaf for st in states for leaf in jax.tree.leaves(st)]
    key = tuple(id(leaf) for leaf in leaves)
    if key not in _STACKS:
        while len(_STACKS) >= _STACKS_KEPT:
            _STACKS.pop(next(iter(_STACKS)))
        _STACKS[key] = (leaves, jax.tree.map(lambda *xs: jnp.stack(xs), *states))
    return _STACKS[key][1]


def _duration(seconds: float) -> str:
    """`42 s`, `3 min 5 s`, `2 h 10 min`."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _stack(per_layer: list[tuple[np.ndarray, ...]], k: int) -> np.ndarray:
    """Output k of every layer, stacked [L, ...] (in the compute dtype; no copy for one
    layer)."""
    if len(per_layer) == 1:
        return np.asarray(per_layer[0][k])[None]
    return np.stack([np.asarray(o[k]) for o in per_layer])


def z2z_columns(layers: Layers, baseline: str, plan: StepPlan, method: str) -> StepResult:
    """Raw layer-direct z→z: arrays = (columns [L, S_tgt, S_src], L_j [L, S_tgt])."""
    s = layers.length
    targets = list(range(s))

    def at(rule: Rule) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        outs = layers.run("z2z", baseline, rule, targets, method=method)
        cols = _stack(outs, 0)[:, :s, :s].reshape(-1, s)
        total = _stack(outs, 1)[:, :s].reshape(-1)
        return (cols, total), relative_error(cols.sum(axis=1), total, rule.weight_sum)

    return _per_layer(plan.run(at), (layers.num_layers, s))


def z2u_columns(layers: Layers, baseline: str, plan: StepPlan, targets: list[int],
                heads: list[int], method: str, replayed: bool = False) -> StepResult:
    """Raw z→u: arrays = (scores [L, T, Hs, S], signed Σ IG [L, T, Hs], f [L, T, Hs])."""
    s, t, hs = layers.length, len(targets), len(heads)

    def at(rule: Rule) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        outs = layers.run("z2u", baseline, rule, targets, heads, method, replayed)
        scores = _stack(outs, 0)[:, :t, :, :s].reshape(-1, s)
        signed, f = _stack(outs, 1)[:, :t].reshape(-1), _stack(outs, 2)[:, :t].reshape(-1)
        return (scores, signed, f), relative_error(signed, f, rule.weight_sum)

    return _per_layer(plan.run(at), (layers.num_layers, t, hs))


def self_attention_probs(layers: Layers) -> np.ndarray:
    """A^h_{j,j} for every layer, head and token: [L, H, S_b] (for the mapRatio fix)."""
    if ("self_probs",) in layers._fetched:
        return np.stack([np.asarray(o[0], np.float64)
                         for o in layers._fetched.pop(("self_probs",))])
    return np.stack([np.asarray(_self_probs(g, s, layers.z(l), layers.key_mask), np.float64)
                     for (g, s), l in zip(layers.blocks, layers.layers, strict=True)])


@jax.jit(static_argnames=("graphdef",))
def _self_probs(graphdef: nnx.GraphDef, state: nnx.State, z: jax.Array,
                key_mask: jax.Array | None) -> jax.Array:
    return ratio.self_attention_probs(nnx.merge(graphdef, state), z, key_mask)


def replayed_u_bases(layers: Layers, targets: list[int]) -> list[jax.Array]:
    """The reference's replayed Gemma3 `att_itb_a0` baselines u′, one [T, w] per layer."""
    graphdef, state = layers._whole or layers._split(layers.model)
    t_arr = jnp.asarray(targets + layers.pad_targets)
    return [replay.itb_u_base(graphdef, state, layers.z(0), t_arr, layer=l,
                              key_mask=layers.key_mask) for l in layers.layers]


def u2z_contributions(layers: Layers, baseline: str, plan: StepPlan, targets: list[int],
                      residual: bool, replayed: bool = False) -> StepResult:
    """u→z: arrays = (contributions [L, T, w], l2_total [L, T]); w = width of u_MLP."""
    t = len(targets)
    given = replayed and baseline == "att_itb_a0"
    extra = replayed_u_bases(layers, targets) if given else None

    def at(rule: Rule) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        outs = layers.run("u2z", baseline, rule, targets, extra=extra, residual=residual,
                          given_base=given)
        contrib = _stack(outs, 0)[:, :t]
        width = contrib.shape[-1]
        contrib, total = contrib.reshape(-1, width), _stack(outs, 1)[:, :t].reshape(-1)
        return (contrib, total), relative_error(contrib.sum(axis=1), total, rule.weight_sum)

    return _per_layer(plan.run(at), (layers.num_layers, t))


def _per_layer(res: StepResult, columns: tuple[int, ...]) -> StepResult:
    """Give a column-major result its column axes back, e.g. (layer, target[, head])."""
    def split(a: np.ndarray) -> np.ndarray:
        return a.reshape(*columns, *a.shape[1:])

    return StepResult(tuple(split(a) for a in res.arrays), split(res.steps),
                      split(res.weight_sum),
                      None if res.converged is None else split(res.converged), res.rule)


# ------------------------------------------------------------------ the compute core


def sentence_layers(lm: Any, ids: list[int], layers: list[int], *, dtype: Any, budget: int,
                    mesh: jax.sharding.Mesh | None = None, bucket: bool = True,
                    pad_targets: bool = True, progress: Progress | None = None) -> Layers:
    """Token ids of one sentence → `Layers` (z^(l) of the requested blocks, padded to the
    sentence's length bucket and masked). `pad_targets`: compute the padding columns too,
    so the compiled programs are shared by every sentence of the bucket. With `mesh`, the
    parameters of `lm` are already on it (loaded with it, or viewed on a row: `mesh.rows`)."""
    s = len(ids)
    sb = bucket_length(s, lm.config.max_tokens) if bucket else s
    key_mask = jnp.arange(sb) < s
    padded = jnp.asarray(list(ids) + [lm.config.pad_token_id] * (sb - s), jnp.int32)
    graphdef, state = nnx.split(lm.model)  # on `mesh` since loading (or `mesh.rows`)
    # z^(0) … z^(max layer): the blocks above the last requested layer are not needed
    hidden = jax.block_until_ready(_hidden_states(graphdef, state, padded, key_mask,
                                                  upto=max(layers)))
    return Layers(lm.model, layers, hidden, key_mask, s,
                  list(range(s, sb)) if pad_targets else [], dtype, budget, progress,
                  getattr(lm.config, "intermediate_size", None), mesh)


@jax.jit(static_argnames=("graphdef", "upto"))
def _hidden_states(graphdef: nnx.GraphDef, state: nnx.State, ids: jax.Array,
                   key_mask: jax.Array, upto: int) -> jax.Array:
    return nnx.merge(graphdef, state).hidden_states(ids, key_mask, upto)


def measures(layers: Layers, names: list[str], z2z: dict[int, np.ndarray] | None = None
             ) -> dict[int, dict[str, np.ndarray]]:
    """The context-mixing measures and rollouts `names` (`lig_jax.measures`) at every
    layer of `layers`: {layer: {name: [S_src, S_tgt] (heads: [H, S_src, S_tgt])}}, cut to
    the real tokens, float64. z2z: LIG's z→z per layer, for rollout/lig."""
    layers.say(f"measures: {', '.join(names)}")
    return measure_layers(layers.model, layers.hidden, layers.key_mask, layers.length,
                          layers.layers, names, layers.dtype, layers.budget, layers.ffn, z2z)


class Computed:
    """What `compute` returns: `maps[f"{quantity}/{name}"]` for every requested baseline
    (after its ratio fix, `baselines.TABLE`) — z2z [L, S_src, S_tgt], z2u [L, T, Hs, S],
    u2z [L, T, w] — and `raw[f"{quantity}/{raw}"]`, the StepResult of every raw run
    (completeness: z2z (columns, L_j), z2u (scores, Σ IG, f), u2z (contributions, total))."""

    def __init__(self) -> None:
        self.maps: dict[str, np.ndarray] = {}
        self.raw: dict[str, StepResult] = {}
        self.seconds: dict[str, float] = {}


def compute(layers: Layers, wanted: dict[str, Any], plans: dict[str, StepPlan],
            targets: list[int], heads: list[int], method: str = "fast",
            residual: bool = True, replayed: bool = False) -> Computed:
    """The one compute core of explain, explain-batch and Experiment A: every baseline of
    `wanted` (quantity → baseline names; quantities "z2z", "z2u", "u2z") at every layer of
    `layers`, each raw run done once however many baselines share it. `plans`: the step
    plan (fixed or auto) of each quantity's path; `replayed`: the reference's Gemma3
    quirks (z→u replay, u→z given baselines)."""
    out = Computed()

    def timed(key: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        res = fn()
        out.seconds[key] = out.seconds.get(key, 0.0) + time.perf_counter() - t
        return res

    rows = {q: [baselines.get(q, n) for n in names] for q, names in wanted.items()}
    runs = {q: list(dict.fromkeys(r for b in bs for r in b.runs)) for q, bs in rows.items()}
    map_ratio = any(b.fix == "map_ratio" for b in rows.get("z2u", []))
    if method == "fast" and not replayed and not any(plans[q].auto for q in runs):
        # every raw run at every layer in one program where it applies (`Layers.prefetch`)
        s = layers.length
        ask = {"z2z": (list(range(s)), None, {}), "z2u": (targets, heads, {}),
               "u2z": (targets, None, {"residual": residual, "given_base": False})}
        requests = [(q, raw, make_rule(plans[q].rule, plans[q].schedule[0]), *ask[q])
                    for q in ("z2z", "z2u", "u2z") for raw in runs.get(q, [])]
        if requests:
            timed("fused_s", lambda: layers.prefetch(requests, self_probs=map_ratio))
    for raw in runs.get("z2z", []):
        out.raw[f"z2z/{raw}"] = timed("z2z_s", lambda r=raw: z2z_columns(
            layers, r, plans["z2z"], method))
    for b in rows.get("z2z", []):
        cols = out.raw[f"z2z/{b.raw}"].arrays[0]
        if b.fix == "zero_ratio":
            cols = ratio.z2z_zero_ratio(cols, out.raw["z2z/zero"].arrays[0])
        out.maps[f"z2z/{b.name}"] = np.swapaxes(cols, 1, 2)
    for raw in runs.get("z2u", []):
        out.raw[f"z2u/{raw}"] = timed("z2u_s", lambda r=raw: z2u_columns(
            layers, r, plans["z2u"], targets, heads, method, replayed))
    t_idx = np.asarray(targets)
    alpha = None
    if map_ratio:
        diag = timed("z2u_s", lambda: self_attention_probs(layers))  # [L, H, S_b]: A^h_{j,j}
        alpha = np.transpose(diag[:, np.asarray(heads)][:, :, t_idx], (0, 2, 1))  # [L, T, Hs]
    for b in rows.get("z2u", []):
        scores = out.raw[f"z2u/{b.raw}"].arrays[0]
        zero = out.raw["z2u/zero"].arrays[0] if b.fix == "zero_ratio" else None
        out.maps[f"z2u/{b.name}"] = scores if b.raw == "zero" else ratio.z2u_fixed(
            scores, t_idx, b.fix, zero, alpha)
    for raw in runs.get("u2z", []):
        out.raw[f"u2z/{raw}"] = timed("u2z_s", lambda r=raw: u2z_contributions(
            layers, r, plans["u2z"], targets, residual, replayed))
    for b in rows.get("u2z", []):
        out.maps[f"u2z/{b.name}"] = out.raw[f"u2z/{b.raw}"].arrays[0]
    return out
