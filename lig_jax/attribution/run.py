"""Running an `Integrand` over all targets of one layer within a memory budget.

A `Chunking` fixes how many targets share one chunk and how many nodes are vmapped per
step; `chunking` picks both from the integrand's memory estimate so that one chunk's working
set fits the budget (and refuses in one line when not even one target and one node fit).
`run` then goes chunk by chunk: small node counts are one compiled program per chunk,
large ones (`--steps 100000`) a prepare → accumulate (repeated, `NODES_PER_CALL` nodes
per call) → finish sequence, so memory stays that of one chunk and progress can be
reported between calls. Results come back to the host chunk by chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from ..errors import LIGError
from ..mesh import along_data
from . import ratio
from .direct import Z2uDirect, Z2zDirect
from .integrand import Dims, Integrand, accumulate, integrate, phase, zero_acc
from .itb import Z2uItb, Z2zItb
from .replay import ReplayZ2u
from .u2z import U2z
from .zero import Z2uZero, Z2zZero

NODES_PER_CALL = 512  # above this many nodes, one call per block of nodes (progress)

def integrand_for(quantity: str, baseline: str, method: str = "fast", **options: Any
                  ) -> Integrand:
    """The integrand of `quantity` under `baseline` ("zero" / "self_input_token" for z2z
    and z2u; "zero" / "att_itb_a0" for u2z) and `method` ("fast" structured, or "direct").
    options: u2z `residual`, `given_base`; z2u `replay_layer` (the reference's Gemma3)."""
    if quantity == "u2z":
        return U2z(baseline, options.get("residual", True), options.get("given_base", False))
    if options.get("replay_layer") is not None:
        return ReplayZ2u(options["replay_layer"], baseline)
    if method == "direct":
        return (Z2zDirect if quantity == "z2z" else Z2uDirect)(baseline)
    if quantity == "z2z":
        return Z2zZero() if baseline == "zero" else Z2zItb()
    return Z2uZero() if baseline == "zero" else Z2uItb()


@dataclass(frozen=True)
class Chunking:
    targets_per_chunk: int
    nodes_per_step: int
    bytes: int  # the estimated working set of one chunk

    def calls(self, num_nodes: int) -> int:
        """Accumulate calls per chunk (1: the whole chunk is one program)."""
        return 1 if num_nodes <= NODES_PER_CALL else math.ceil(num_nodes / NODES_PER_CALL)


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**28 else f"{n / 2**20:.0f} MB"


def chunking(integrand: Integrand, dims: Dims, num_targets: int, num_heads: int,
             num_nodes: int, budget: int, data_devices: int = 1) -> Chunking:
    """Targets per chunk and nodes per step: the integrand's preferred chunk (for speed),
    or as many targets as fit when it has no preference (targets that share work per
    node), shrunk until the working set fits `budget`; one-line refusal when not even one
    target and one node fit. With `data_devices` > 1 a chunk holds that many devices'
    chunks (a multiple of it: each device computes targets_per_chunk / data_devices)."""
    mem = integrand.memory
    need = mem(dims, 1, num_heads, 1)
    if need > budget:
        raise LIGError(f"one chunk (1 target, 1 integration node, {dims.seq} tokens) needs "
                       f"about {_gb(need)}, more than the memory budget of {_gb(budget)}; "
                       "raise --memory-budget or explain a shorter text")
    per_step = max(1, min(integrand.nodes_per_step, num_nodes))
    preferred = integrand.preferred_targets(dims, per_step)
    tc = num_targets if preferred is None else max(1, min(num_targets, preferred))
    if preferred is None:
        # Targets share each node's work (one forward per chunk and node): fewer nodes per
        # step cost nothing extra, more chunks repeat that work, so shrink the step first.
        while per_step > 1 and mem(dims, tc, num_heads, per_step) > budget:
            per_step //= 2
    while tc > 1 and mem(dims, tc, num_heads, per_step) > budget:
        tc = max(1, tc * 3 // 4)
    while per_step > 1 and mem(dims, tc, num_heads, per_step) > budget:
        per_step //= 2
    chunks = math.ceil(num_targets / (tc * data_devices))
    tc = math.ceil(num_targets / chunks)  # balanced chunks: little padding
    tc = data_devices * math.ceil(tc / data_devices)
    return Chunking(tc, per_step, mem(dims, math.ceil(tc / data_devices), num_heads, per_step))


# ----------------------------------------------------------------- compiled programs


@partial(jax.jit, static_argnames=("graphdef", "integrand", "per_step"))
def program(graphdef: nnx.GraphDef, state: nnx.State, z: jax.Array, targets: jax.Array,
            heads: jax.Array, alphas: jax.Array, weights: jax.Array,
            key_mask: jax.Array | None = None, extra: jax.Array | None = None, *,
            integrand: Integrand, per_step: int) -> tuple:
    """`integrand` for one chunk of `targets` (layer context included) as one compiled
    program, without `run`'s chunking and budget: for FLOP counts of the whole and for
    tests of the integrands themselves. Outputs as in `integrand.py`."""
    return integrate(integrand, nnx.merge(graphdef, state), z, targets, heads, alphas,
                     weights, per_step, key_mask, extra)


@partial(jax.jit, static_argnames=("graphdef", "integrand"))
def _layer(graphdef, state, z, heads, key_mask, *, integrand):
    with phase(integrand, "layer"):
        return integrand.layer_context(nnx.merge(graphdef, state), z, heads, key_mask)


@partial(jax.jit, static_argnames=("graphdef", "integrand", "per_step"))
def _whole(graphdef, state, lay, targets, heads, alphas, weights, extra, *, integrand,
           per_step):
    return integrate(integrand, nnx.merge(graphdef, state), None, targets, heads, alphas,
                     weights, per_step, extra=extra, lay=lay)


@partial(jax.jit, static_argnames=("graphdef", "integrand", "per_step"))
def _prepare(graphdef, state, lay, targets, heads, extra, alphas, *, integrand, per_step):
    block = nnx.merge(graphdef, state)
    with phase(integrand, "prepare"):
        ctx = integrand.prepare(block, lay, targets, heads, extra)
    return ctx, zero_acc(integrand, block, ctx, per_step, alphas.dtype)


@partial(jax.jit, static_argnames=("graphdef", "integrand", "per_step"),
         donate_argnames=("acc",))
def _accumulate(graphdef, state, ctx, acc, alphas, weights, *, integrand, per_step):
    return accumulate(integrand, nnx.merge(graphdef, state), ctx, acc, alphas, weights,
                      per_step)


@partial(jax.jit, static_argnames=("graphdef", "integrand"))
def _finish(graphdef, state, ctx, acc, *, integrand):
    with phase(integrand, "finish"):
        return integrand.finish(nnx.merge(graphdef, state), ctx, acc)


def run(integrand: Integrand, graphdef: nnx.GraphDef, state: nnx.State, z: jax.Array,
        targets: list[int], heads: list[int], alphas: jax.Array, weights: jax.Array,
        plan: Chunking, key_mask: jax.Array | None = None, extra: jax.Array | None = None,
        progress: Callable[[int, int], None] | None = None, mesh: Mesh | None = None
        ) -> tuple[np.ndarray, ...]:
    """The integrand's outputs for `targets`, chunk by chunk, as host arrays with the
    targets on the leading axis. extra: per-target inputs [T, ...] (u→z given baselines).
    progress(done, total) is called after each chunk / block of nodes. mesh: each chunk's
    targets are split over its data axis (`state` already placed, `lig_jax.mesh`)."""
    tc, n = plan.targets_per_chunk, alphas.shape[0]
    calls = plan.calls(n)
    chunks = [targets[i:i + tc] for i in range(0, len(targets), tc)]
    total_steps, done = len(chunks) * calls, 0
    heads_arr = jnp.asarray(heads)
    lay = _layer(graphdef, state, z, heads_arr, key_mask, integrand=integrand)
    outs: list[tuple[np.ndarray, ...]] = []
    for c, part in enumerate(chunks):
        padded = part + [part[-1]] * (tc - len(part))  # repeat a target: fixed shapes
        t_arr = jnp.asarray(padded)
        if mesh is not None:
            t_arr = jax.device_put(t_arr, along_data(mesh))
        ex = None
        if extra is not None:
            lo = c * tc
            ex = extra[lo:lo + len(part)]
            ex = jnp.concatenate([ex, jnp.repeat(ex[-1:], tc - len(part), 0)])
        if calls == 1:
            out = _whole(graphdef, state, lay, t_arr, heads_arr, alphas, weights, ex,
                         integrand=integrand, per_step=plan.nodes_per_step)
            done += 1
        else:
            ctx, acc = _prepare(graphdef, state, lay, t_arr, heads_arr, ex, alphas,
                                integrand=integrand, per_step=plan.nodes_per_step)
            for b in range(calls):
                lo, hi = b * NODES_PER_CALL, min(n, (b + 1) * NODES_PER_CALL)
                a_blk = jnp.concatenate([alphas[lo:hi], jnp.ones((NODES_PER_CALL - (hi - lo),),
                                                                 alphas.dtype)])
                w_blk = jnp.concatenate([weights[lo:hi], jnp.zeros((NODES_PER_CALL - (hi - lo),),
                                                                   weights.dtype)])
                acc = _accumulate(graphdef, state, ctx, acc, a_blk, w_blk,
                                  integrand=integrand, per_step=plan.nodes_per_step)
                done += 1
                if progress is not None and b + 1 < calls:
                    jax.block_until_ready(acc)
                    progress(done, total_steps)
            out = _finish(graphdef, state, ctx, acc, integrand=integrand)
        outs.append(tuple(np.asarray(o)[:len(part)] for o in out))
        if progress is not None:
            progress(done, total_steps)
    return tuple(np.concatenate([o[k] for o in outs]) for k in range(len(outs[0])))


# ------------------------------------------------------- every layer in one program


@dataclass(frozen=True)
class Job:
    """One integrand over every layer of a fused program and its `Chunking`-given nodes
    per step (static; the target chunk size is the shape of `run_layers`' target array);
    integrand None: the self-attention probabilities instead (the mapRatio fix's
    A^h_{j,j})."""

    integrand: Integrand | None
    per_step: int = 1


@partial(jax.jit, static_argnames=("graphdef", "jobs"))
def _over_layers(graphdef, states, zs, key_mask, targets, heads, alphas, weights, *, jobs):
    def layer(args):
        st, z = args
        block = nnx.merge(graphdef, st)
        outs = []
        for job, t_chunks, hd, al, w in zip(jobs, targets, heads, alphas, weights,
                                            strict=True):
            if job.integrand is None:
                outs.append((ratio.self_attention_probs(block, z, key_mask),))
                continue
            integrand = job.integrand
            with phase(integrand, "layer"):
                lay = integrand.layer_context(block, z, hd, key_mask)

            def chunk(t, integrand=integrand, lay=lay, hd=hd, al=al, w=w, job=job):
                return integrate(integrand, block, z, t, hd, al, w, job.per_step,
                                 key_mask, None, lay)

            res = jax.lax.map(chunk, t_chunks)  # [chunks, tc, ...] per output
            outs.append(tuple(r.reshape(-1, *r.shape[2:]) for r in res))
        return tuple(outs)

    return jax.lax.map(layer, (states, zs))


def run_layers(jobs: list[Job], graphdef: nnx.GraphDef, states: Any, zs: jax.Array,
               key_mask: jax.Array | None, targets: list[list[int]],
               chunk_sizes: list[int], heads: list[list[int]],
               nodes: list[tuple[jax.Array, jax.Array]]) -> list[list[tuple[np.ndarray, ...]]]:
    """Every job at every layer as one compiled program (`lax.map` over the layers, the
    blocks' states stacked [L, ...], zs [L, S_b, d]; each job's targets in chunks of
    `chunk_sizes` by `lax.map`), brought to the host once: per job, per layer, the
    outputs `run` gives (targets on the leading axis). For blocks of one structure whose
    chunks each fit in one call (`Chunking.calls` = 1) and no mesh."""
    t_arrs, h_arrs, a_arrs, w_arrs = [], [], [], []
    for t, tc, hd, (al, w) in zip(targets, chunk_sizes, heads, nodes, strict=True):
        n = -(-len(t) // tc)
        padded = t + [t[-1]] * (n * tc - len(t))  # repeat a target: fixed shapes, as `run`
        t_arrs.append(jnp.asarray(padded).reshape(n, tc))
        h_arrs.append(jnp.asarray(hd))
        a_arrs.append(al)
        w_arrs.append(w)
    out = _over_layers(graphdef, states, zs, key_mask, tuple(t_arrs), tuple(h_arrs),
                       tuple(a_arrs), tuple(w_arrs), jobs=tuple(jobs))
    out = jax.device_get(out)
    per_job = []
    for job, t, res in zip(jobs, targets, out, strict=True):
        keep = slice(None) if job.integrand is None else slice(0, len(t))
        per_job.append([tuple(np.asarray(r[l])[keep] for r in res)
                        for l in range(zs.shape[0])])
    return per_job


__all__ = ["Dims", "Integrand", "Chunking", "Job", "integrand_for", "integrate", "chunking",
           "program", "run", "run_layers"]
