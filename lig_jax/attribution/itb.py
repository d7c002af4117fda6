"""ITB integrands for every premap (affine, LayerNorm/RMSNorm first, q/k norms, RoPE, GQA).

Under the ITB baseline target j's path is x_i(α) = z_j + α D_ij, D_ij = z_i − z_j, for
every row i: nothing is shared between targets. `blockscan.py` decomposes the premap once
per sentence (docs/method.md, "ITB for any premap"), so a node costs O(H·T·S·d_h) plus one
one-token pass of the post-attention map per target, whatever the length; here are the
z→z and z→u integrands built on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from . import blockscan, l2
from .blockscan import (
    chunk_masks,
    chunk_pieces,
    endpoints,
    layer_pieces,
    node_sum,
    pad_sources,
    safe_cotangent,
    step_blocks,
)
from .integrand import Integrand
from .norm import safe_norm


def layer_context(block, z, heads, key_mask) -> dict:
    """The layer's shared part of every ITB chunk: z, the key mask, `layer_pieces`."""
    return {"z": z, "key_mask": key_mask, "shared": layer_pieces(block.premap_parts(), z)}


def _context(block, lay: dict, targets, heads) -> dict:
    """Everything the nodes of one chunk of targets share (a pytree of arrays)."""
    pm = block.premap_parts()
    z, key_mask, shared = lay["z"], lay["key_mask"], lay["shared"]
    s, d = z.shape
    mask, bias = chunk_masks(block, s, key_mask, targets, heads)
    chunk = chunk_pieces(pm, shared, targets, heads, s, block.attention_scale, mask, bias)
    return {"z": z, "shared": shared, "chunk": chunk, "ends": endpoints(pm, chunk, d)}


def _own(v: dict) -> jax.Array:
    """[T, B]: True where the view's source is the target itself (its term is exactly 0)."""
    return v["src"][None, :] == v["targets"][:, None]


def _zero_own(acc: jax.Array, chunk: dict) -> jax.Array:
    """acc [..., T, S] with each target's own source set to 0: Δ_j = 0 on j's ITB path, so
    that term is 0 by definition (the node sums only held rounding there)."""
    t = chunk["targets"]
    return acc.at[..., jnp.arange(t.shape[0]), t].set(0.0)


def postmap_row(block):
    """Φ(x_j [d], c_j [H, e]) → [d]: the block's token-wise post-attention map, one row."""
    def phi(x: jax.Array, c: jax.Array) -> jax.Array:
        return block.postmap(x[None], c[None])[0]

    return phi


ROWS = 256  # (node, target) rows per step: head-batched matmuls of this height stay fast


def itb_bytes(dims, targets: int, heads: int, nodes: int, per_row: int = 0) -> int:
    """Working set of an ITB chunk: the shared rows; the chunk's α-free arrays along all
    sources (Q's, Gram rows, mask, accumulator: about eight [Hs, T, S]); per step about
    twenty [Hs, k, T, B] block temporaries and `per_row` elements per (node, target)."""
    s, e = dims.seq, dims.head_dim
    blk = min(s, blockscan.BLOCK)
    fixed = 4 * s * (dims.hidden + 2 * dims.kv_heads * e + dims.heads * e) + 8 * heads * targets * s
    per_node = 20 * heads * targets * blk + 10 * targets * blk + targets * (per_row + 8 * heads * e)
    return dims.itemsize * (fixed + nodes * per_node)


@dataclass(frozen=True)
class Z2zItb(Integrand):
    """Layer-direct z→z under ITB (x′ = z_j in every row, per target), any premap."""

    quantity = "z2z"
    nodes_per_step = 4

    def layer_context(self, block, z, heads, key_mask) -> dict:
        return layer_context(block, z, heads, key_mask)

    def prepare(self, block, lay, targets, heads, extra=None) -> dict:
        ctx = _context(block, lay, targets, jnp.arange(block.num_heads))
        z = lay["z"]
        phi = jax.vmap(postmap_row(block))
        y = jax.vmap(lambda c: phi(z[targets], c))(ctx["ends"])  # [2, T, d]
        ctx["y_base"], ctx["total"] = y[0], safe_norm(y[1] - y[0])
        return ctx

    def update(self, block, ctx: dict, acc, alphas, weights):
        phi = postmap_row(block)
        zt = ctx["z"][ctx["chunk"]["targets"]]
        grad = jax.vmap(jax.vmap(jax.grad(lambda c, x, yb: safe_norm(phi(x, c) - yb))),
                        (0, None, None))

        def cot(c):  # [Hs, k, T, e]: ∂L_j/∂c_j, one one-token pass per target and node
            p = grad(jnp.transpose(c, (1, 2, 0, 3)), zt, ctx["y_base"])  # [k, T, H, e]
            return jnp.transpose(p, (2, 0, 1, 3))

        def emit(v, terms, parts):  # Σ_h Σ_k w_k terms (a fused reduction, not a dot)
            return {"cols": jnp.sum(terms * weights[None, :, None, None], (0, 1))}

        return step_blocks(block.premap_parts(), ctx["chunk"], alphas, zt.shape[-1], cot,
                           emit, {"cols": acc}, {"cols": 1})["cols"]

    def step(self, block, ctx: dict, alphas, weights):
        zero = jnp.zeros(ctx["chunk"]["gram"].shape, ctx["z"].dtype)
        return self.update(block, ctx, zero, alphas, weights)

    def finish(self, block, ctx: dict, acc) -> tuple:
        return _zero_own(acc, ctx["chunk"])[:, :ctx["z"].shape[0]], ctx["total"]

    def memory(self, dims, targets, heads, nodes) -> int:
        return itb_bytes(dims, targets, dims.heads, nodes, 10 * (dims.ffn + dims.hidden))

    def preferred_targets(self, dims, nodes: int) -> int:
        return max(1, ROWS // nodes)


@dataclass(frozen=True)
class Z2uItb(Integrand):
    """z→u under ITB per (target, head): signed per-source sums (decoders) or per-source
    L2 norms of the IG vector (encoders, `block.z2u_score == "l2"`, see `l2.py`)."""

    quantity = "z2u"
    nodes_per_step = 4

    def layer_context(self, block, z, heads, key_mask) -> dict:
        return layer_context(block, z, heads, key_mask)

    def prepare(self, block, lay, targets, heads, extra=None) -> dict:
        ctx = _context(block, lay, targets, heads)
        z = lay["z"]
        if block.z2u_score == "l2":
            ctx["l2"], kq = l2.itb_pieces(block.premap_parts(), ctx["shared"], ctx["chunk"],
                                          heads, z.shape[0])
            if kq is not None:
                ctx["chunk"] = pad_sources({**ctx["chunk"], "kq": kq},
                                           ctx["chunk"]["gram"].shape[-1])
        return ctx

    def step(self, block, ctx: dict, alphas, weights):
        zero = jax.tree.map(lambda o: jnp.zeros(o.shape, o.dtype),
                            jax.eval_shape(self._shapes, block, ctx, alphas))
        return self.update(block, ctx, zero, alphas, weights)

    def _shapes(self, block, ctx, alphas):
        chunk = ctx["chunk"]
        hs, t, s = len(chunk["heads"]), chunk["targets"].shape[0], chunk["gram"].shape[-1]
        dtype = ctx["z"].dtype
        if block.z2u_score != "l2":
            return jnp.zeros((hs, t, s), dtype)
        return l2.itb_reduce(block.premap_parts(), ctx["l2"], chunk, block.attention_scale,
                             ctx["z"].shape[-1], alphas, _l2_shapes(
                                 hs, alphas.shape[0], t, s, chunk["nv"].shape[-1], dtype,
                                 alphas))

    def update(self, block, ctx: dict, acc, alphas, weights):
        pm, chunk, d = block.premap_parts(), ctx["chunk"], ctx["z"].shape[-1]
        cot = safe_cotangent(ctx["ends"][0])
        if block.z2u_score != "l2":
            def emit(v, terms, parts):
                return {"scores": node_sum(terms, weights)}

            return step_blocks(pm, chunk, alphas, d, cot, emit, {"scores": acc},
                               {"scores": 2})["scores"]

        def emit_l2(v, terms, parts):
            terms = jnp.where(_own(v)[None, None], 0.0, terms)
            return l2.itb_reduce(pm, ctx["l2"], v, block.attention_scale, d, weights,
                                 {**parts, "signed": jnp.sum(terms, -1), "alpha": alphas})

        axes = {name: (None if name == "signed" else 1 if name == "v" else 2) for name in acc}
        return step_blocks(pm, chunk, alphas, d, cot, emit_l2, acc, axes)

    def finish(self, block, ctx: dict, acc) -> tuple:
        f = safe_norm(ctx["ends"][1] - ctx["ends"][0])  # [T, Hs]
        s = ctx["z"].shape[0]
        if block.z2u_score != "l2":
            scores = jnp.transpose(_zero_own(acc, ctx["chunk"])[..., :s], (1, 0, 2))
            return scores, jnp.sum(scores, -1), f
        acc = {k: (v if k == "signed" else (v[:, :s] if k == "v" else v[..., :s]))
               for k, v in acc.items()}
        scores = l2.itb_scores(block.premap_parts(), ctx["l2"], ctx["chunk"], ctx["z"],
                               ctx["shared"]["zc"], acc)
        return scores, acc["signed"].T, f

    def memory(self, dims, targets, heads, nodes) -> int:
        base = itb_bytes(dims, targets, heads, nodes)
        if not dims.l2:
            return base
        tshe = targets * dims.seq * heads * dims.head_dim
        blk = min(dims.seq, blockscan.BLOCK)
        return base + dims.itemsize * (2 * tshe + 6 * heads * targets * dims.seq
                                       + nodes * targets * blk * heads * (dims.head_dim + 8))

    def preferred_targets(self, dims, nodes: int) -> int:
        return max(1, ROWS // nodes)


def _l2_shapes(hs, k, t, s, e, dtype, alphas) -> dict:
    """Placeholder node values with the shapes `l2.itb_reduce` reads (for its output
    shapes only)."""
    z4 = jnp.zeros((hs, k, t, s), dtype)
    return {"signed": jnp.zeros((hs, k, t), dtype), "probs": z4, "beta": z4,
            "p": jnp.zeros((hs, k, t, e), dtype), "pvi": z4,
            "pvj": jnp.zeros((hs, k, t, 1), dtype), "ca": jnp.zeros((k, t, s), dtype),
            "alpha": alphas}
