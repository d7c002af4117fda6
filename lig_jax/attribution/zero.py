"""Zero-baseline integrands: one path x(α) = α z shared by every target (docs/method.md).

Per node: one forward-mode pass of the premap along Δ = z gives every token's q, k, v and
their tangents; the targets' attention rows, one reverse pass of the token-wise map after
the mixing (z→z) or the closed-form direction of ‖c − c′‖ (z→u) give each target's
cotangent p_j of its own context; the source × target terms follow from the softmax
derivative in O(T·S·d):

    E^h_ji = A^h_ji ⟨p_jh, v̇_i⟩ + β^h_ji τ⟨q_jh, k̇_i⟩,  β^h_ji = A^h_ji (⟨p_jh, v_i⟩ − ⟨p_jh, c_jh⟩)

plus, on the diagonal, the target's own query term τ⟨q̇_jh, Σ_i β^h_ji k_i⟩ and (z→z) the
residual term ⟨r_j, Δ_j⟩. Causal and window masks select the most negative score, so
A = β = 0 exactly where a key is hidden. Shapes: T targets of the chunk, S sources.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..models.common import PRECISION, attention_mix
from . import l2
from .blockscan import chunk_masks, layer_pieces
from .integrand import Integrand
from .norm import safe_norm


def _es(spec: str, *xs: jax.Array) -> jax.Array:
    return jnp.einsum(spec, *xs, precision=PRECISION)


def attention_terms(a, p, q, k, v, c, kd, vd, tau):
    """Terms for cotangents p [T, H, e] of the targets' contexts.

    a [H, T, S], q and c [T, H, e] are the targets' rows; k, v, k̇, v̇ [S, H, e] all
    sources'. Returns (terms [H, T, S] without the query term, β [H, T, S], Σ_i β k_i
    [T, H, e]).
    """
    vdot = _es("jhe,ihe->hji", p, vd)
    pv = _es("jhe,ihe->hji", p, v)
    rho = _es("jhe,jhe->hj", p, c)
    kdot = tau * _es("jhe,ihe->hji", q, kd)
    beta = a * (pv - rho[..., None])
    return a * vdot + beta * kdot, beta, _es("hji,ihe->jhe", beta, k)


def _mixed(block, ctx: dict, alpha, heads):
    """q, k, v and tangents at x = α z for the selected heads, the targets' attention."""
    z = ctx["z"]
    pm = block.premap_parts()
    (q, k, v), (qd, kd, vd) = jax.jvp(pm, (alpha * z,), (z,))
    q, k, v, qd, kd, vd = (t[:, heads] for t in (q, k, v, qd, kd, vd))
    t = ctx["targets"]
    a, c = attention_mix(q[t], k, v, block.attention_scale, ctx["mask"], ctx["bias"])
    return q, k, v, qd, kd, vd, a, c


def _base_context(block, lay, targets, heads) -> dict:
    z = lay["z"]
    s = z.shape[0]
    mask, bias = chunk_masks(block, s, lay["key_mask"], targets, heads)
    mask = None if mask is None else mask[0]
    return {"z": z, "targets": targets, "heads": heads, "mask": mask, "bias": bias}


def _own(targets: jax.Array, s: int) -> jax.Array:
    """[T, S]: True where the source is the target itself."""
    return jnp.arange(s)[None, :] == targets[:, None]


def zero_bytes(dims, targets: int, heads: int, nodes: int, per_target_node: int) -> int:
    """Per node: the premap and its tangent for every row, about ten [H, T, S] attention
    temporaries and `per_target_node` elements per target."""
    s = dims.seq
    per_node = (8 * s * (dims.heads + 2 * dims.kv_heads) * dims.head_dim + 6 * s * dims.hidden
                + 10 * heads * targets * s + targets * per_target_node)
    fixed = 4 * s * dims.hidden + 4 * heads * targets * s
    return dims.itemsize * (fixed + nodes * per_node)


@dataclass(frozen=True)
class Z2zZero(Integrand):
    """Layer-direct z→z, zero baseline."""

    quantity = "z2z"

    def layer_context(self, block, z, heads, key_mask) -> dict:
        ends = jax.vmap(lambda x: block(x, key_mask))(jnp.stack([jnp.zeros_like(z), z]))
        return {"z": z, "key_mask": key_mask, "ends": ends}  # B(0), B(z): [2, S, d]

    def prepare(self, block, lay, targets, heads, extra=None) -> dict:
        ctx = _base_context(block, lay, targets, jnp.arange(block.num_heads))
        ctx["y_base"] = lay["ends"][0][targets]
        ctx["total"] = safe_norm(lay["ends"][1][targets] - ctx["y_base"])
        return ctx

    def node(self, block, ctx: dict, alpha):
        z, t, tau = ctx["z"], ctx["targets"], block.attention_scale
        q, k, v, qd, kd, vd, a, c = _mixed(block, ctx, alpha, ctx["heads"])

        def total(xr, cc):
            return jnp.sum(safe_norm(block.postmap(xr, cc) - ctx["y_base"]))

        r, p = jax.grad(total, argnums=(0, 1))(alpha * z[t], c)
        terms, _, beta_k = attention_terms(a, p, q[t], k, v, c, kd, vd, tau)
        e = jnp.sum(terms, axis=0)  # [T, S]
        diag = jnp.sum(r * z[t], axis=-1) + tau * _es("jhe,jhe->j", qd[t], beta_k)
        return jnp.where(_own(t, z.shape[0]), e + diag[:, None], e)

    def finish(self, block, ctx: dict, acc) -> tuple:
        return acc, ctx["total"]

    def memory(self, dims, targets, heads, nodes) -> int:
        return zero_bytes(dims, targets, dims.heads, nodes, 10 * (dims.ffn + dims.hidden))


@dataclass(frozen=True)
class Z2uZero(Integrand):
    """z→u, zero baseline: signed per-source sums (decoders) or per-source L2 (encoders)."""

    quantity = "z2u"

    def layer_context(self, block, z, heads, key_mask) -> dict:
        ends = jax.vmap(lambda x: block.attention_context(x, key_mask)[:, heads])(
            jnp.stack([jnp.zeros_like(z), z]))  # one batched evaluation of both ends
        lay = {"z": z, "key_mask": key_mask, "ends": ends}  # [2, S, Hs, e]
        if block.z2u_score == "l2":
            pm = block.premap_parts()
            lay["shared"] = layer_pieces(pm, z)
            lay["l2"] = l2.zero_pieces(pm, lay["shared"], heads, z)
        return lay

    def prepare(self, block, lay, targets, heads, extra=None) -> dict:
        ctx = _base_context(block, lay, targets, heads)
        ends = lay["ends"][:, targets]
        ctx["c_base"], ctx["f"] = ends[0], safe_norm(ends[1] - ends[0])
        if block.z2u_score == "l2":
            ctx["shared"], ctx["l2"] = lay["shared"], lay["l2"]
        return ctx

    def node(self, block, ctx: dict, alpha):
        z, t, tau = ctx["z"], ctx["targets"], block.attention_scale
        q, k, v, qd, kd, vd, a, c = _mixed(block, ctx, alpha, ctx["heads"])
        p = jax.grad(lambda cc: jnp.sum(safe_norm(cc - ctx["c_base"])))(c)  # [T, Hs, e]
        terms, beta, beta_k = attention_terms(a, p, q[t], k, v, c, kd, vd, tau)
        query = tau * _es("jhe,jhe->hj", qd[t], beta_k)  # [Hs, T]
        terms = jnp.where(_own(t, z.shape[0])[None], terms + query[..., None], terms)
        if block.z2u_score != "l2":
            return jnp.transpose(terms, (1, 0, 2))  # [T, Hs, S]
        values = l2.zero_node_parts(block.premap_parts(), ctx["l2"], ctx["shared"], t, alpha,
                                    q[t], p, a, beta, tau * beta_k)
        values["signed"] = jnp.sum(terms, axis=-1)
        return values

    def reduce(self, block, ctx, weights, values):
        if block.z2u_score != "l2":
            return super().reduce(block, ctx, weights, values)
        return l2.zero_reduce(block.premap_parts(), ctx["l2"], ctx["targets"],
                              block.attention_scale, ctx["z"].shape[-1], weights, values)

    def finish(self, block, ctx: dict, acc) -> tuple:
        if block.z2u_score != "l2":
            return acc, jnp.sum(acc, -1), ctx["f"]
        scores = l2.zero_scores(block.premap_parts(), ctx["l2"], ctx["targets"], ctx["z"],
                                ctx["shared"]["zc"], acc)
        return scores, acc["signed"].T, ctx["f"]

    def memory(self, dims, targets, heads, nodes) -> int:
        base = zero_bytes(dims, targets, heads, nodes, 0)
        if not dims.l2:
            return base
        tshe = targets * dims.seq * heads * dims.head_dim
        return base + dims.itemsize * (2 * tshe + nodes * 8 * heads * targets * dims.seq
                                       + 3 * dims.seq * heads * dims.head_dim)
