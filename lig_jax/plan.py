"""`lig-jax plan`: compile a job for hardware this machine does not have, from shapes alone.

A model folder holding only `config.json` is enough: the model is built abstractly
(`nnx.eval_shape`, no weights), its parameters become `ShapeDtypeStruct`s carrying the
`NamedSharding`s of `lig_jax.mesh` over a (data, model) `Mesh` of the topology's devices
(abstract TPU devices from `jax.experimental.topologies`, which needs `libtpu`: the `tpu`
extra), and the very programs the engine runs are lowered and compiled for that chip:

- explain: per granularity, one chunk of targets of one layer (`attribution.run._whole`,
  the chunk the planner picks for the chip's memory);
- experiment: the same chunk programs for every raw run an Experiment-A record needs
  (`experiment.compute`), within the run's fixed chunk budget, on one data row of the
  mesh (1×M devices): the run deals whole sentences to the rows (`mesh/rows.py`).

`memory_analysis()` gives what one chip needs; FLOPs are XLA's counts of the pieces of
each layer's computation (layer context; per chunk: prepare, one node step, finish; block
loops unrolled over the blocks a causal chunk sees) times their trip counts, because XLA
counts a loop body once. See docs/experiment-a.md and docs/performance.md.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from . import baselines
from .attribution import blockscan
from .attribution import run as runner
from .attribution.integrand import Dims, traced, zero_acc
from .config import GRANULARITIES, LIGConfig
from .errors import LIGError, choice_error
from .loading import read_hf_config, resolve_folder
from .mesh import (
    DATA,
    MODEL,
    along_data,
    make_mesh,
    parse_mesh,
    rows,
    state_shardings,
    state_specs,
)
from .models import family_for
from .quadrature import make_rule, resolve_rule

# Per chip: HBM bytes and peak dense bfloat16 FLOP/s (public spec sheets). float32 matmuls
# at full precision run as 6 bfloat16 passes on TPUs (precision HIGHEST): a sixth of it.
CHIPS = {
    "TPU v4": (32 * 2**30, 275e12),
    "TPU v5 lite": (16 * 2**30, 197e12),
    "TPU v5": (95 * 2**30, 459e12),
    "TPU v6 lite": (32 * 2**30, 918e12),
}
FLOAT32_SHARE = 1 / 6
# GPUs (`--topology local` on a GPU machine): dense bfloat16 and float32 (no TF32) peaks;
# the memory comes from the device itself.
GPU_PEAKS = {"H200": (989e12, 67e12), "H100": (989e12, 67e12), "A100": (312e12, 19.5e12),
             "L4": (121e12, 30e12)}
ASSUMED_UTILIZATION = 0.4
TASKS = ("explain", "experiment")
# granularity → (quantity, baseline): explain's defaults
QUANTITIES = {"layer": ("z2z", "self_input_token"), "att": ("z2u", "self_input_token"),
              "mlp": ("u2z", "zero")}
MEMORY_SHARE = 0.8  # of what a chip has left after the resident parameters, for one chunk
COMPUTE_DTYPE_NAMES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
TOPOLOGY_EXAMPLES = "v5e:2x2, v5e:2x4, v4:2x2x2, v5p:2x2x4, v6e:2x4, or local"


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """libtpu writes harmless host-discovery lines to fd 2 when no TPU is attached."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def topology_devices(topology: str) -> list[Any]:
    """The devices of `topology`: abstract TPU devices ("v5e:2x4", …) or "local"."""
    if topology == "local":
        return list(jax.devices())
    from jax.experimental import topologies

    # libtpu takes a machine-wide lock file unless told otherwise; abstract devices need
    # no exclusive chip, so two plans (or a plan next to a TPU job) may run at once
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        with _quiet_stderr():
            return list(topologies.get_topology_desc(platform="tpu",
                                                     topology_name=topology).devices)
    except Exception as e:  # libtpu missing, or a name it does not know
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise LIGError(f"cannot resolve topology {topology!r} ({first}); give one of "
                       f"{TOPOLOGY_EXAMPLES} (TPU topologies need libtpu: pip install "
                       "'lig-jax[tpu]')") from None


def chip(devices: Sequence[Any]) -> tuple[int, float, int]:
    """(HBM bytes, peak bfloat16 FLOP/s) per *device*, and the devices per chip, from
    `CHIPS`, or a one-line error. Where a chip shows up as several devices (v4's two
    TensorCores without megacore), they share its HBM and its peak."""
    device = devices[0]
    kind = device.device_kind
    if device.platform == "cpu":  # this machine: its free memory, no stated peak
        from .memory import free_host_memory

        return free_host_memory(), float("nan"), 1
    if device.platform == "gpu":
        stats = device.memory_stats() or {}
        peak = next((v for k, v in GPU_PEAKS.items() if k in kind), (float("nan"),) * 2)
        return int(stats.get("bytes_limit", 0)), peak[0], 1
    if kind not in CHIPS:
        raise LIGError(f"no memory/peak figures for device kind {kind!r}; known: "
                       f"{', '.join(CHIPS)}")
    chips = len({(d.process_index, tuple(getattr(d, "coords", ()))) for d in devices})
    per_chip = max(1, len(devices) // max(1, chips))
    hbm, peak = CHIPS[kind]
    return hbm // per_chip, peak / per_chip, per_chip


@dataclass
class Abstract:
    """A model built from its config only: graphdef and abstract state, per-family facts."""

    name: str
    family: Any
    config: Any
    model: nnx.Module  # abstract (ShapeDtypeStruct leaves)

    @classmethod
    def of(cls, name: str) -> Abstract:
        folder = resolve_folder(name, config_only=True)
        hf = read_hf_config(folder)
        family = family_for(hf.model_type)
        cfg = family.read_config(hf)
        model = nnx.eval_shape(lambda: family.build(cfg, nnx.Rngs(0)))
        return cls(name, family, cfg, model)

    @property
    def ffn(self) -> int:
        return getattr(self.config, "intermediate_size", 4 * self.config.hidden_size)


def _sds(state: Any, dtype: Any, mesh: Any) -> Any:
    """ShapeDtypeStructs of `state` in `dtype`, each with its mesh sharding."""
    shardings = state_shardings(state, mesh)
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, dtype, sharding=s),
                        state, shardings)


def _per_chip_bytes(state: Any, mesh: Any, itemsize: int) -> int:
    """Bytes of `state` on one chip under the model-axis rules."""
    m = mesh.shape[MODEL]
    specs = state_specs(state, mesh)
    leaves = jax.tree.leaves(state)
    spec_leaves = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, P))
    return sum(math.prod(a.shape) * itemsize // (m if any(spec) else 1)
               for a, spec in zip(leaves, spec_leaves, strict=True))


def _nbytes(x: Any) -> int:
    """Bytes of a whole array (or `ShapeDtypeStruct`)."""
    return math.prod(x.shape) * jnp.dtype(x.dtype).itemsize


def _flops(fn: Any, *args: Any) -> float:
    ca = jax.jit(fn).lower(*args).cost_analysis()
    return float((ca[0] if isinstance(ca, list) else ca or {}).get("flops", 0.0))


def layer_flops(integrand: Any, graphdef: Any, state: Any, seq: int, heads: int,
                alphas: Any, weights: Any, plan: runner.Chunking, causal: bool,
                count: Any = _flops) -> float:
    """XLA-counted FLOPs of one layer's quantity as the engine runs it: the layer context
    once, per chunk its prepare, ⌈n/k⌉ node steps and the finish. Block loops are unrolled
    over the blocks a chunk's targets see (causal); FLOPs are affine in that count, so each
    piece is counted at 1 and 2 blocks and extended. `state` may be abstract. `count(fn,
    *args)`: FLOPs of one jitted function (default: XLA's count before optimisation)."""
    d = jax.tree.leaves(state)[0].dtype
    z = jax.ShapeDtypeStruct((seq, graphdef_hidden(graphdef, state)), d)
    hs = jnp.arange(heads)
    km = jnp.ones(seq, bool)
    tc, k, n = plan.targets_per_chunk, plan.nodes_per_step, alphas.shape[0]

    def merged(st: Any) -> Any:
        return nnx.merge(graphdef, st)

    def ctx_of(st: Any, zz: Any) -> Any:
        return integrand.layer_context(merged(st), zz, hs, km)

    f_layer = count(ctx_of, state, z)
    lay = jax.eval_shape(ctx_of, state, z)
    a_k, w_k = alphas[:k], weights[:k]
    size = min(seq, blockscan.BLOCK)
    nb = -(-seq // size) if seq > blockscan.BLOCK else 1

    def pieces(hi: int) -> tuple[float, float, float]:
        t0 = jnp.arange(tc)
        with blockscan.unrolled_blocks(0, hi):
            def prep(st, ly, tg):
                return integrand.prepare(merged(st), ly, tg, hs)

            ctx = jax.eval_shape(prep, state, lay, t0)
            acc = jax.eval_shape(lambda st, c: zero_acc(integrand, merged(st), c, k,
                                                        alphas.dtype), state, ctx)
            f_prep = count(prep, state, lay, t0)
            f_upd = count(lambda st, c, ac, al, wt: integrand.update(merged(st), c, ac, al,
                                                                        wt),
                           state, ctx, acc, a_k, w_k)
            f_fin = count(lambda st, c, ac: integrand.finish(merged(st), c, ac), state, ctx,
                           acc)
        return f_prep, f_upd, f_fin

    one = pieces(1)
    two = pieces(2) if nb > 1 else one
    steps = math.ceil(n / k)
    total = f_layer
    for c in range(math.ceil(seq / tc)):
        last = min(seq, (c + 1) * tc) if causal else seq
        hi = -(-last // size) if nb > 1 else 1
        p, u, f = (a + (hi - 1) * (b - a) for a, b in zip(one, two, strict=True))
        total += p + steps * u + f
    return total


def graphdef_hidden(graphdef: Any, state: Any) -> int:
    """d of a block (its pre-attention map's input width)."""
    return traced(graphdef, state, lambda b: b.premap_parts().wq.shape[0])


def block_forward_flops(graphdef: Any, state: Any, seq: int) -> float:
    """Arithmetic of one block forward on `seq` tokens: 2 FLOPs per weight per token, plus
    scores and context 4·S²·H·e (half of it for causal blocks)."""
    weights = sum(math.prod(a.shape) for a in jax.tree.leaves(state) if len(a.shape) == 2)
    _, h, e, causal = traced(graphdef, state, lambda b: (*b.premap_parts().wq.shape,
                                                        bool(getattr(b, "causal", False))))
    return 2.0 * weights * seq + 4.0 * seq * seq * h * e * (0.5 if causal else 1.0)


def _nodes(family: Any, quantity: str, steps: int, dtype: Any) -> tuple[Any, Any]:
    rule = resolve_rule("reference", dict(family.reference_rules)[quantity])
    a, w = make_rule(rule, steps).without_zero_node()
    return jnp.asarray(a, dtype), jnp.asarray(w, dtype)


def _memory(compiled: Any) -> dict[str, int]:
    ma = compiled.memory_analysis()
    return {k: int(getattr(ma, f"{k}_size_in_bytes", 0) or 0)
            for k in ("argument", "output", "temp", "alias", "generated_code")}


def _meshes(n: int, heads: int, kv_heads: int, ffn: int) -> list[tuple[int, int]]:
    """(D, M) with D·M = n, M dividing the heads, kv heads and MLP width, fewest M first."""
    out = [(n // m, m) for m in range(1, n + 1)
           if n % m == 0 and heads % m == 0 and kv_heads % m == 0 and ffn % m == 0]
    return out or [(n, 1)]


def plan(model: str, topology: str, seq_len: int, *, granularity: Sequence[str] = ("layer",),
         task: str = "explain", sentences: int = 1, mesh: str | None = None,
         dtype: str = "float32", steps: int = LIGConfig.num_steps,
         utilization: float = ASSUMED_UTILIZATION) -> dict[str, Any]:
    """Plan (compile, measure, project) a job; returns the JSON fields of `lig-jax plan`."""
    if task not in TASKS:
        raise choice_error("task", task, TASKS)
    for g in granularity:
        if g not in GRANULARITIES:
            raise choice_error("granularity", g, GRANULARITIES)
    if dtype not in COMPUTE_DTYPE_NAMES:
        raise choice_error("dtype", dtype, tuple(COMPUTE_DTYPE_NAMES))
    if steps < 2 or sentences < 1:
        raise LIGError(f"--steps must be ≥ 2 and --sentences ≥ 1; got {steps}, {sentences}")
    am = Abstract.of(model)
    limit = am.config.max_tokens
    if not 3 <= seq_len <= limit:
        raise LIGError(f"--seq-len {seq_len} is out of range for {model}. Allowed: 3..{limit}")
    devices = topology_devices(topology)
    hbm, peak, per_chip = chip(devices)
    gd, st = nnx.split(am.model.layers[0])
    h, g = traced(gd, st, lambda b: (b.premap_parts().num_heads, b.premap_parts().num_groups))
    candidates = ([parse_mesh(mesh)] if mesh is not None else
                  _meshes(len(devices), h, g, am.ffn))
    if mesh is not None:
        d, m = candidates[0]
        if d * m > len(devices):
            raise LIGError(f"mesh {mesh} needs {d * m} devices; {topology} has "
                           f"{len(devices)}")
    itemsize = jnp.dtype(COMPUTE_DTYPE_NAMES[dtype]).itemsize
    tried = []
    for d, m in candidates:
        mesh_obj = make_mesh((d, m), devices)
        out = _plan_on(am, mesh_obj, seq_len, granularity, task, sentences, dtype, steps,
                       hbm, itemsize)
        tried.append(out)
        if out["fits"]:
            break
    best = tried[-1]
    flops = best["flops"]
    if devices[0].platform == "gpu":
        bf16, f32 = next((v for k, v in GPU_PEAKS.items() if k in devices[0].device_kind),
                         (float("nan"),) * 2)
        rate = f32 if dtype == "float32" else bf16
    else:
        rate = peak * (FLOAT32_SHARE if dtype == "float32" else 1.0)
    seconds = flops / (len(devices[:math.prod(best["mesh"])]) * rate * utilization)
    return {
        "model": model, "model_type": am.family.model_types[0], "task": task,
        "granularity": list(granularity), "seq_len": seq_len, "sentences": sentences,
        "steps": steps, "dtype": dtype, "topology": topology,
        "num_devices": len(devices), "device_kind": devices[0].device_kind,
        "devices_per_chip": per_chip, "per_device_hbm_bytes": hbm,
        **best,
        "device_hbm_bytes": {k: v[0] for k, v in CHIPS.items()},  # per chip
        "peak_flops_per_s": rate, "assumed_utilization": utilization,
        "projected_seconds": None if math.isnan(seconds) else seconds,
        "meshes_tried": [t["mesh"] for t in tried],
    }


def _plan_on(am: Abstract, mesh: Any, seq: int, granularity: Sequence[str], task: str,
             sentences: int, dtype: str, steps: int, hbm: int, itemsize: int
             ) -> dict[str, Any]:
    t0 = time.perf_counter()
    cdt = COMPUTE_DTYPE_NAMES[dtype]
    d, m = mesh.shape[DATA], mesh.shape[MODEL]
    if task == "experiment":  # each row of M devices takes whole sentences
        mesh = rows.data_rows(mesh)[0]
    _, whole = nnx.split(am.model)
    resident = _per_chip_bytes(whole, mesh, itemsize)
    num_layers = len(am.model.layers)
    if task == "experiment":  # every raw run of a record, within the fixed chunk budget
        from .experiment.compute import WANTED, Settings

        jobs = [(f"{q}/{r}", q, r) for q, names in WANTED.items()
                for r in dict.fromkeys(x for n in names for x in baselines.get(q, n).runs)]
    else:
        jobs = [(g, *QUANTITIES[g]) for g in granularity]
    gd, st = nnx.split(am.model.layers[0])
    st_sds = _sds(st, cdt, mesh)
    block = am.model.layers[0]
    heads = block.num_heads
    rep = NamedSharding(mesh, P())
    hidden = (num_layers + 1) * seq * am.config.hidden_size * 4  # z^(0..L) on every chip
    budget = (Settings().chunk_mb * 2**20 if task == "experiment"
              else max(1, int(MEMORY_SHARE * (hbm - resident - hidden))))
    dims = traced(gd, st, lambda b: Dims.of(b, am.ffn, seq, itemsize))
    causal = traced(gd, st, lambda b: bool(getattr(b, "causal", False)))
    peak_program, flops, chunks = 0, 0.0, {}
    for g, quantity, baseline in jobs:
        integrand = runner.integrand_for(quantity, baseline, residual=True)
        alphas, weights = _nodes(am.family, quantity, steps, cdt)
        try:
            p = runner.chunking(integrand, dims, seq, heads, alphas.shape[0], budget,
                                 mesh.shape[DATA])
        except LIGError:
            return {"mesh": [d, m], "fits": False, "per_device_bytes": None,
                    "flops": float("nan"), "compile_seconds": time.perf_counter() - t0,
                    "why": "not even one target and one node fit next to the parameters"}
        zs = jax.ShapeDtypeStruct((seq, am.config.hidden_size), cdt, sharding=rep)
        hs = jnp.arange(heads)
        km = jnp.ones(seq, bool)
        lay = jax.eval_shape(lambda s_, z_, i=integrand, h_=hs, k_=km: i.layer_context(
            nnx.merge(gd, s_), z_, h_, k_), st_sds, zs)
        lay = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), lay)
        tgt = jax.ShapeDtypeStruct((p.targets_per_chunk,), jnp.int32,
                                   sharding=along_data(mesh))

        def rep_of(x: Any) -> Any:
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep)

        compiled = runner._whole.lower(gd, st_sds, lay, tgt, rep_of(hs), rep_of(alphas),
                                       rep_of(weights), None, integrand=integrand,
                                       per_step=p.nodes_per_step).compile()
        mem = _memory(compiled)
        # the inputs besides the (resident, already counted) block parameters, per chip;
        # not `argument` minus the block, since jit drops parameters a program never reads
        inputs = (sum(_nbytes(x) for x in jax.tree.leaves((lay, hs, alphas, weights)))
                  + _nbytes(tgt) // mesh.shape[DATA])  # replicated; targets dealt
        program = inputs + mem["output"] + mem["temp"] - mem["alias"]
        peak_program = max(peak_program, program)
        host_state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, cdt), st)
        flops += num_layers * layer_flops(integrand, gd, host_state, seq, heads, alphas,
                                          weights, p, causal)
        chunks[g] = {"targets_per_chunk": p.targets_per_chunk,
                     "nodes_per_step": p.nodes_per_step,
                     "chunks_per_layer": math.ceil(seq / p.targets_per_chunk),
                     "program_bytes": program}
    per_device = resident + hidden + peak_program
    flops *= sentences
    forward = block_forward_flops(gd, st, seq) * num_layers * sentences
    return {"mesh": [d, m], "fits": per_device <= hbm, "per_device_bytes": per_device,
            "resident_parameter_bytes": resident, "hidden_state_bytes": hidden,
            "chunks": chunks, "flops": flops,
            "block_forwards_per_node": flops / forward / max(1, steps - 1),
            "compile_seconds": time.perf_counter() - t0}


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


def format_plan(out: dict[str, Any]) -> str:
    """A plan (the JSON fields of `plan`) as the lines `lig-jax plan` prints."""
    need = out["per_device_bytes"]
    hbm = out["per_device_hbm_bytes"]
    mesh_txt = "x".join(map(str, out["mesh"]))
    what = (f"{', '.join(out['granularity'])}" if out["task"] == "explain"
            else "every quantity of a record")
    lines = [
        f"{out['task']} {out['model']} ({out['model_type']}), {out['seq_len']} tokens, "
        f"{out['sentences']} sentence(s), {what} on {out['topology']} "
        f"({out['num_devices']} × {out['device_kind']}), mesh {mesh_txt} (data x model)",
        f"per device: {_size(need)}" if need is not None else "per device: –",
        f"fits: {'yes' if out['fits'] else 'no'} ({_size(hbm)} per device)",
        f"FLOPs: {out['flops']:.3e} ({out['block_forwards_per_node']:.2f} block forwards per "
        "node)" if out["flops"] == out["flops"] else "FLOPs: –",
    ]
    if out["projected_seconds"] is not None:
        lines.append(f"projected: {out['projected_seconds']:.3g} s at "
                     f"{out['assumed_utilization']:.0%} of {out['peak_flops_per_s']:.3g} "
                     f"FLOP/s per device ({out['dtype']})")
    lines.append(f"compiled in {out['compile_seconds']:.1f} s")
    return "\n".join(lines)
