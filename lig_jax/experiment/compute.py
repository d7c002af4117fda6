"""Experiment A's quantities for a batch of sentences, data-parallel over a device mesh.

Per sentence and layer (docs/spec.md §10): layer-direct z→z under `zero` and ITB
(`self_input_token`), z→u under `zero` and ITB for every (target, head), the self
attention probabilities A^h_{j,j} (for mapRatio), and u→z under `zero` and `att_itb_a0`
(residual on). One jitted program per length bucket computes all of it for all layers;
`jax.shard_map` deals the batch's sentences over the data axis of a ("data", "model")
`Mesh` (`sharding.py`), each data slice running the same per-sentence program (`lax.map`
over its local sentences); the parameters are split over the model axis (tensor
parallel, left to XLA inside the mapped program). A sentence's numbers do not depend on
which device, mesh or batch computed it. The ratio fixes
and the composition are cheap and exact in float64 on the host (`derive`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .. import baselines, sharding
from ..attribution import compose, ratio
from ..attribution.integrand import integrate_targets, traced
from ..attribution.run import Dims, integrand_for, make_plan
from ..errors import LIGError
from ..loading import LoadedModel
from ..quadrature import make_rule, resolve_rule

AXIS = sharding.DATA

# Every baseline of every quantity (`baselines.TABLE`), and the raw runs they need.
Z2Z, Z2U, U2Z = (baselines.names(q) for q in ("z2z", "z2u", "u2z"))
RAW = {q: tuple(dict.fromkeys(r for b in baselines.of(q) for r in b.runs))
       for q in ("z2z", "z2u", "u2z")}


@dataclass(frozen=True)
class Settings:
    """What fixes a run's numbers (kept in the store's manifest; a resume must match)."""

    steps: int = 32
    max_length: int = 128
    chunk_mb: int = 128  # bytes budget per chunk of nodes; fixed so chunks (and sums) are too
    per_device: int = 1  # sentences per device per call


def local_mesh(devices: Sequence[Any] | None = None, shape: str | None = None) -> Mesh:
    """A ("data", "model") mesh over this process's devices (all local devices by
    default): `shape` "DxM" over the first D·M of them, or all of them on the data axis."""
    devs = list(devices) if devices is not None else jax.local_devices()
    return sharding.make_mesh(shape or (len(devs), 1), devs)


def _nodes(lm: LoadedModel, steps: int) -> dict[str, tuple[jax.Array, jax.Array]]:
    """The reference's rule on each path (TRAP for encoders), α = 0 node dropped."""
    out = {}
    for path, rule in lm.family.reference_rules:
        alphas, weights = make_rule(resolve_rule("reference", rule), steps).without_zero_node()
        out[path] = (jnp.asarray(alphas, jnp.float32), jnp.asarray(weights, jnp.float32))
    return out


class BatchComputer:
    """Computes the raw per-layer arrays of many sentences, one bucket shape at a time."""

    def __init__(self, lm: LoadedModel, settings: Settings, mesh: Mesh,
                 abstract: bool = False):
        """`abstract`: `lm.model` holds ShapeDtypeStructs (`plan.Abstract`); the programs
        can then only be lowered and compiled (`lower`), not run."""
        if lm.family.architecture == "decoder":
            raise LIGError(f"experiment A needs an encoder with z→u and u→z (BERT family); "
                           f"{lm.name} is a {lm.family.model_types[0]} model")
        self.lm, self.settings, self.mesh, self.is_abstract = lm, settings, mesh, abstract
        self.graphdef, state = nnx.split(lm.model)
        block_defs = [nnx.split(b)[0] for b in lm.model.layers]
        if any(g != block_defs[0] for g in block_defs):
            raise LIGError(f"experiment A needs blocks of one structure; {lm.name} mixes them")
        self.block_def = block_defs[0]
        block_states = [nnx.split(b)[1] for b in lm.model.layers]
        if abstract:
            def stacked(*xs: Any) -> Any:
                return jax.ShapeDtypeStruct((len(xs), *xs[0].shape), xs[0].dtype)

            def sds(tree: Any) -> Any:
                return jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype,
                                                                       sharding=sh),
                                    tree, sharding.state_shardings(tree, mesh))

            self.state = sds(state)
            self.blocks = sds(jax.tree.map(stacked, *block_states))
        else:
            self.state = sharding.place_state(state, mesh)
            blocks = jax.tree.map(lambda *xs: jnp.stack(xs), *block_states)
            self.blocks = sharding.place_state(blocks, mesh)
        self.nodes = _nodes(lm, settings.steps)
        self.num_heads = lm.config.num_heads
        self._programs: dict[int, Any] = {}

    @classmethod
    def abstract(cls, am: Any, settings: Settings, mesh: Mesh) -> BatchComputer:
        """For `lig-jax plan`: from a `plan.Abstract` model (no weights)."""
        return cls(am, settings, mesh, abstract=True)  # duck-typed: family, model, config

    @property
    def batch_size(self) -> int:
        """Sentences per call: `per_device` on every slice of the mesh's data axis."""
        return self.settings.per_device * self.mesh.shape[AXIS]

    def _program(self, length: int) -> Any:
        if length not in self._programs:
            self._programs[length] = self._build(length)
        return self._programs[length]

    def jobs(self, sb: int) -> list[tuple[str, Any, Any, tuple[jax.Array, jax.Array]]]:
        """(record key stem, integrand, plan, (alphas, weights)) of every quantity the
        bucket-`sb` program computes per layer."""
        h = self.num_heads
        budget = self.settings.chunk_mb * 2**20
        cfg = self.lm.config
        ffn = getattr(cfg, "intermediate_size", 4 * cfg.hidden_size)
        gd, st = nnx.split(self.lm.model.layers[0])
        dims = traced(gd, st, lambda b: Dims.of(b, ffn, sb, 4))
        out = []
        for quantity in ("z2z", "z2u", "u2z"):
            for r in RAW[quantity]:
                out.append((f"{quantity}_{r}", integrand_for(quantity, r, residual=True),
                            quantity))
        return [(key, integ, make_plan(integ, dims, sb, h, self.nodes[path][0].shape[0],
                                       budget), self.nodes[path])
                for key, integ, path in out]

    def lower(self, length: int) -> Any:
        """The bucket's program lowered for the mesh's devices (`.compile()` for them)."""
        n = self.batch_size
        spec = NamedSharding(self.mesh, P(AXIS))
        ids = jax.ShapeDtypeStruct((n, length), jnp.int32, sharding=spec)
        km = jax.ShapeDtypeStruct((n, length), jnp.bool_, sharding=spec)
        return self._program(length).lower(self.state, self.blocks, ids, km)

    def _build(self, sb: int) -> Any:
        h = self.num_heads
        targets, heads = jnp.arange(sb), jnp.arange(h)
        block_def, graphdef = self.block_def, self.graphdef
        jobs = self.jobs(sb)

        def layer(st: nnx.State, z: jax.Array, km: jax.Array) -> dict[str, jax.Array]:
            block = nnx.merge(block_def, st)
            out = {}
            for key, integ, p, (a, w) in jobs:
                res = integrate_targets(integ, block, z, targets, heads, a, w,
                                        p.nodes_per_step, p.targets_per_chunk, km)
                quantity, name = key.split("_", 1)
                if quantity == "z2z":
                    out[f"z2z_{name}"], out[f"z2z_total_{name}"] = res[0].T, res[1]
                elif quantity == "z2u":
                    out[f"z2u_{name}"] = res[0]
                    out[f"z2u_sum_{name}"], out[f"z2u_total_{name}"] = res[1], res[2]
                else:
                    out[f"u2z_{name}"], out[f"u2z_total_{name}"] = res
            out["self_probs"] = ratio.self_attention_probs(block, z, km)
            return out

        def sentence(state: nnx.State, blocks: nnx.State, ids: jax.Array, km: jax.Array
                     ) -> dict[str, jax.Array]:
            zs = nnx.merge(graphdef, state).hidden_states(ids, km)[:-1]  # z^(0..L-1)
            return jax.lax.map(lambda x: layer(x[0], x[1], km), (blocks, zs))

        def local(state: nnx.State, blocks: nnx.State, ids: jax.Array, km: jax.Array
                  ) -> dict[str, jax.Array]:
            return jax.lax.map(lambda x: sentence(state, blocks, x[0], x[1]), (ids, km))

        # manual over the data axis only: the model axis stays XLA's (tensor parallel)
        mapped = jax.shard_map(local, mesh=self.mesh, in_specs=(P(), P(), P(AXIS), P(AXIS)),
                               out_specs=P(AXIS), axis_names={AXIS}, check_vma=False)
        return jax.jit(mapped)

    def run(self, ids: list[list[int]], length: int) -> list[dict[str, np.ndarray]]:
        """Raw arrays (float32 numpy, padded to `length`) for each of up to `batch_size`
        sentences of token ids, all padded to the bucket `length`."""
        if not 0 < len(ids) <= self.batch_size:
            raise ValueError(f"a batch holds 1..{self.batch_size} sentences, got {len(ids)}")
        pad_id = self.lm.config.pad_token_id
        rows = [list(r) + [pad_id] * (length - len(r)) for r in ids]
        masks = [[True] * len(r) + [False] * (length - len(r)) for r in ids]
        while len(rows) < self.batch_size:  # fill the last batch with copies of sentence 0
            rows.append(rows[0])
            masks.append(masks[0])
        spec = NamedSharding(self.mesh, P(AXIS))
        ids_arr = jax.device_put(np.asarray(rows, np.int32), spec)
        km_arr = jax.device_put(np.asarray(masks, bool), spec)
        out = self._program(length)(self.state, self.blocks, ids_arr, km_arr)
        out = {k: np.asarray(v) for k, v in out.items()}
        return [{k: v[b] for k, v in out.items()} for b in range(len(ids))]


def _swap(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, -1, -2)


def derive(raw: dict[str, np.ndarray], length: int, num_heads: int) -> dict[str, np.ndarray]:
    """Every matrix of a record from one sentence's raw arrays (cut to `length` tokens),
    one per row of `baselines.TABLE` (record keys are the baselines' names).

    z2z/<b>: [L, S_src, S_tgt]; z2u/<b>: [L, T, H, S_src] (T = S targets);
    u2z/<b>: [L, T, w]; composed/<att>/<mlp>: [L, S_src, S_tgt]; plus completeness totals
    per raw run (total/z2z_<raw>, total/z2u_sum_<raw>, total/z2u_<raw>, total/u2z_<raw>).
    Ratio fixes in float64 (docs/spec.md §6), composition as `compose.compose` (docs/spec.md §7).
    """
    s, t = length, np.arange(length)
    f64 = {k: np.asarray(v, np.float64) for k, v in raw.items()}
    out: dict[str, np.ndarray] = {}
    n_layers = f64["z2z_zero"].shape[0]
    z2z = {r: f64[f"z2z_{r}"][:, :s, :s] for r in RAW["z2z"]}
    for b in baselines.of("z2z"):
        m = z2z[b.raw]
        if b.fix == "zero_ratio":
            m = _swap(ratio.z2z_zero_ratio(_swap(m), _swap(z2z["zero"])))
        out[f"z2z/{b.name}"] = m
    z2u = {r: f64[f"z2u_{r}"][:, :s, :, :s] for r in RAW["z2u"]}
    alpha = np.transpose(f64["self_probs"][:, :, :s], (0, 2, 1))  # [L, T, H]: A^h_{j,j}
    for b in baselines.of("z2u"):
        out[f"z2u/{b.name}"] = z2u[b.raw] if b.raw == "zero" else ratio.z2u_fixed(
            z2u[b.raw], t, b.fix, zero=z2u["zero"], alpha=alpha)
    for b in baselines.of("u2z"):
        out[f"u2z/{b.name}"] = f64[f"u2z_{b.raw}"][:, :s]
    for r in RAW["z2z"]:
        out[f"total/z2z_{r}"] = f64[f"z2z_total_{r}"][:, :s]
    for r in RAW["z2u"]:
        out[f"total/z2u_sum_{r}"] = f64[f"z2u_sum_{r}"][:, :s]
        out[f"total/z2u_{r}"] = f64[f"z2u_total_{r}"][:, :s]
    for r in RAW["u2z"]:
        out[f"total/u2z_{r}"] = f64[f"u2z_total_{r}"][:, :s]
    for att in Z2U:
        for mlp in U2Z:
            out[f"composed/{att}/{mlp}"] = np.stack([
                compose.compose(np.transpose(out[f"z2u/{att}"][l], (1, 2, 0)),
                                compose.head_slices(out[f"u2z/{mlp}"][l], num_heads))
                for l in range(n_layers)]).astype(np.float64)
    return out
