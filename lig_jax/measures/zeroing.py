"""Value zeroing (Mohebbi et al. 2023), every zeroed source of one layer in one program.

Zeroing source i's value row (in every head; with grouped keys/values its kv row, which
every head of the group reads) changes each target's context by one term per head and
the attention probabilities not at all; through the (linear) output projection, the
attention output changes by one vector:

    o'_j = o_j − Δ_ij,   Δ_ij = Σ_h α^h_{j,i} f_h(x_i),   f_h(x_i) = v_{i,h} W_O^h

So only the block's token-wise remainder is recomputed — the norms around the residual
sum (`Postmix.residual_sum`) and the MLP (`MlpIn`, the block's `mlp_rest`) — for one row
per (source, target) pair, and a causal source only touches the targets from itself on:
S(S+1)/2 row passes per layer for a decoder, S² for an encoder.

The MLP's first layer is most of a row's cost, and it too is affine in Δ up to scalars:
the MLP input is p' = P + c'·M(Q_j − Δ_ij) (Q the residual sum x + o; M the mean removal
and gain of the norm after it, c' that norm's 1/σ at the row and P its shift (post-LN);
no norm: p' = Q_j − Δ_ij), and N_m(p') K = K̃(p')/σ_m(p') + β_m K with K̃ = K after N_m's
mean removal and gain. With U = K̃(P), V = K̃(M(Q)) per target and W = K̃(M(f_h(x_i)))
per source and head computed once per layer,

    pre_ij = (U_j + c'·(V_j − Σ_h α^h_{j,i} W_{i,h})) / σ_m(p') + β_m K + b

costs H·F per row instead of d·F ("decomposed"; F the MLP's width). It pays once the
rows outnumber the S·H (source, head) products, i.e. from about 2H tokens; shorter
sentences, and blocks with a norm on the attention output (Gemma 3, `decomposable`),
run the rows directly. The score is the cosine distance between the target's
block output without and with the source:

    raw[i, j] = 1 − cos(B(z)_j without v_i, B(z)_j)         (0 where j cannot see i)
    value_zeroing[:, j] = raw[:, j] / Σ_i raw[i, j]

1 − cos is computed as ½‖â − b̂‖² (â, b̂ the unit vectors): the same number without the
cancellation of 1 − a·b/(‖a‖‖b‖) for nearly equal vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..models.common import PRECISION
from ..models.postmix import Postmix
from ..models.premap import Norm
from .maps import mixing


def pairs(length: int, causal: bool) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) index arrays of every pair whose distance can be nonzero."""
    src, tgt = np.meshgrid(np.arange(length), np.arange(length), indexing="ij")
    keep = (tgt >= src) if causal else np.ones_like(src, bool)
    return src[keep].astype(np.int32), tgt[keep].astype(np.int32)


def row_bytes(d: int, heads: int, ffn: int, itemsize: int, decompose: bool) -> int:
    """Working memory of one (source, target) row: its f_h rows (and, decomposed, its W
    rows), the input and output rows, the MLP's first-layer outputs, with room for XLA's
    copies."""
    return itemsize * 3 * (heads * d + (heads * ffn if decompose else 0) + 6 * d + 3 * ffn)


SMALLEST_CHUNK = 32


def chunk_sizes(budget: int, per_row: int, num_pairs: int) -> tuple[int, int, tuple[int, ...]]:
    """How one layer's `num_pairs` rows are split: (top, k, tail) — k chunks of `top` rows
    (the largest power of two that fits the budget) run one after another, then the rest
    in descending powers of two down to `SMALLEST_CHUNK` (padded), so at most
    SMALLEST_CHUNK − 1 rows are padding. Powers of two keep the compiled programs few."""
    fit = max(SMALLEST_CHUNK, budget // max(per_row, 1))
    top = SMALLEST_CHUNK
    while top * 2 <= fit and top * 2 <= num_pairs:
        top *= 2
    k = num_pairs // top
    rest = num_pairs - top * k
    tail: list[int] = []
    size = top // 2
    while rest > 0 and size >= SMALLEST_CHUNK:
        if rest >= size:
            tail.append(size)
            rest -= size
        size //= 2
    if rest > 0:
        tail.append(SMALLEST_CHUNK)
    return top, k, tuple(tail)


def _prepare(block, z: jax.Array, key_mask: jax.Array | None) -> tuple[jax.Array, ...]:
    """The clean block: (α [H, S_t, S_s], v [S, H, e], o [S, d], f [S, H, d], B(z) [S, d])
    with o the attention output (b_O included) and f_h(x_s) = v_{s,h} W_O^h."""
    a, ctx, v, _ = mixing(block, z, key_mask)
    post = block.postmix_parts()
    o = post.output(ctx)
    y = post.residual_sum(z, o)
    return a, v, o, post.head_outputs(v), block.mlp_rest(block.mlp_parts()(y), y)


def _cosine_distance(out: jax.Array, ref: jax.Array) -> jax.Array:
    def unit(v: jax.Array) -> jax.Array:
        return v / jnp.linalg.norm(v, axis=-1, keepdims=True)

    diff = unit(out) - unit(ref)
    return 0.5 * jnp.sum(diff * diff, axis=-1)


def _direct(block, z: jax.Array, a: jax.Array, v: jax.Array, o: jax.Array, f: jax.Array,
            clean: jax.Array) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Distances of pairs (src [C], tgt [C]), each row through the whole remainder.

    o'_j = o_j − Δ_ij, except where a norm follows the attention output (Gemma 3): there
    o'_j is summed afresh without the source, Σ_{k≠i} α_{j,k} v_k W_O + b_O (S·H·e more
    per row), as the model computes it: o_j − Δ_ij nearly vanishes where the source
    carries the target's attention, and the norm would divide float32's cancellation
    error by that small size."""
    post, mlp = block.postmix_parts(), block.mlp_parts()
    fresh = post.out_norm is not None

    def rows(src: jax.Array, tgt: jax.Array) -> jax.Array:
        if fresh:
            keep = jnp.arange(v.shape[0])[None, :] != src[:, None]  # [C, S]
            ctx = jnp.einsum("hcs,she->che", a[:, tgt, :] * keep[None], v,
                             precision=PRECISION)
            zeroed = post.output(ctx)
        else:
            weight = jnp.transpose(a[:, tgt, src])  # α^h_{j,i}: [C, H]
            zeroed = o[tgt] - jnp.einsum("ch,chd->cd", weight, f[src])  # o'_j: [C, d]
        y = post.residual_sum(z[tgt], zeroed)
        return _cosine_distance(block.mlp_rest(mlp(y), y), clean[tgt])

    return rows


def _shape(norm: Norm | None, v: jax.Array) -> jax.Array:
    """A norm's linear part: mean removal (LayerNorm) and gain; identity for None."""
    if norm is None:
        return v
    if norm.kind == "layer":
        v = v - jnp.mean(v, axis=-1, keepdims=True)
    return v * norm.gamma


def _inverse_scale(norm: Norm | None, v: jax.Array) -> jax.Array:
    """1/σ of v [..., d] as `norm` divides by it ([..., 1]); 1 for None."""
    if norm is None:
        return jnp.ones(v.shape[:-1] + (1,), v.dtype)
    if norm.kind == "layer":
        v = v - jnp.mean(v, axis=-1, keepdims=True)
    return 1.0 / jnp.sqrt(jnp.mean(v * v, axis=-1, keepdims=True) + norm.eps)


def decomposable(post: Postmix) -> bool:
    """Decomposed rows for blocks without a norm on the attention output. With one
    (Gemma 3) its 1/σ multiplies o_j − Δ_ij, which nearly vanishes where the zeroed
    source carries the target's attention (a causal first token): the split terms then
    cancel and float32 rounding grows by that factor (3e-5 against the direct rows on a
    tiny Gemma 3); the direct rows form p' first and stay at float32's floor."""
    return post.out_norm is None


def _decomposed(block, z: jax.Array, a: jax.Array, v: jax.Array, o: jax.Array,
                f: jax.Array, clean: jax.Array
                ) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Distances of pairs (src [C], tgt [C]) with the MLP's first layer decomposed
    (module doc)."""
    post, mlp = block.postmix_parts(), block.mlp_parts()
    # p' = β_r + c'·M(r − Δ), r = x + o the residual sum (no norm after it: p' = r − Δ)
    norm, q = post.sum_norm, z + o
    p0 = jnp.zeros_like(z) if norm is None or norm.bias is None else (
        jnp.broadcast_to(norm.bias, z.shape))

    def first(v: jax.Array) -> jax.Array:  # K̃(v) = N_m's linear part, then K
        return jnp.matmul(_shape(mlp.norm, v), mlp.kernel, precision=PRECISION)

    u_t, v_t = first(p0), first(_shape(norm, q))  # [S, F]
    w_s = first(_shape(norm, f))  # [S, H, F]
    shift = mlp.bias if mlp.bias is not None else 0.0
    if mlp.norm is not None and mlp.norm.bias is not None:
        shift = shift + jnp.matmul(mlp.norm.bias, mlp.kernel, precision=PRECISION)

    def rows(src: jax.Array, tgt: jax.Array) -> jax.Array:
        weight = jnp.transpose(a[:, tgt, src])  # α^h_{j,i}: [C, H]
        w = q[tgt] - jnp.einsum("ch,chd->cd", weight, f[src])  # Q_j − Δ_ij: [C, d]
        c = _inverse_scale(norm, w)
        p = p0[tgt] + c * _shape(norm, w)  # the MLP input p' [C, d]
        k = v_t[tgt] - jnp.einsum("ch,chf->cf", weight, w_s[src])
        pre = (u_t[tgt] + c * k) * _inverse_scale(mlp.norm, p) + shift
        return _cosine_distance(block.mlp_rest(pre, p), clean[tgt])

    return rows


@partial(jax.jit, static_argnames=("graphdef", "top", "tail", "decompose"))
def layer_distances(graphdef: nnx.GraphDef, state: nnx.State, z: jax.Array,
                    key_mask: jax.Array | None, src: jax.Array, tgt: jax.Array, top: int,
                    tail: tuple[int, ...], decompose: bool) -> jax.Array:
    """Distances [P] of the pairs (src [P], tgt [P]), P = k·top + Σ tail (`chunk_sizes`):
    one program per layer, the clean block computed once."""
    block = nnx.merge(graphdef, state)
    clean = _prepare(block, z, key_mask)
    rows = (_decomposed if decompose else _direct)(block, z, *clean)
    k = (src.shape[0] - sum(tail)) // top
    parts = []
    if k:
        chunks = (src[:k * top].reshape(k, top), tgt[:k * top].reshape(k, top))
        parts.append(jax.lax.map(lambda st: rows(*st), chunks).reshape(-1))
    at = k * top
    for c in tail:
        parts.append(rows(src[at:at + c], tgt[at:at + c]))
        at += c
    return jnp.concatenate(parts)


def value_zeroing(graphdef: nnx.GraphDef, state: nnx.State, z: jax.Array,
                  key_mask: jax.Array | None, length: int, causal: bool, budget: int,
                  ffn: int, decompose: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(value_zeroing, value_zeroing_raw), each [S_src, S_tgt] over the `length` real
    tokens of z [S_b, d] (float64 on the host); `budget` bytes per chunk, `ffn` the MLP's
    first-layer width F; `decompose`: None = where it pays (module doc), False = direct rows
(True decomposes where the block allows it)."""
    block = nnx.merge(graphdef, state)
    heads, d = block.num_heads, z.shape[-1]
    src, tgt = pairs(length, causal)
    n = len(src)
    decompose = decomposable(block.postmix_parts()) and (
        n > length * heads if decompose is None else decompose)
    per_row = row_bytes(d, heads, ffn, jnp.dtype(z.dtype).itemsize, decompose)
    top, k, tail = chunk_sizes(budget, per_row, n)
    padded = k * top + sum(tail)
    src_p = np.zeros(padded, np.int32)
    tgt_p = np.zeros(padded, np.int32)
    src_p[:n], tgt_p[:n] = src, tgt
    dist = np.asarray(layer_distances(graphdef, state, z, key_mask, jnp.asarray(src_p),
                                      jnp.asarray(tgt_p), top, tail, decompose),
                      np.float64)[:n]
    raw = np.zeros((length, length))
    raw[src, tgt] = dist
    total = raw.sum(axis=0, keepdims=True)
    norm = np.divide(raw, total, out=np.zeros_like(raw), where=total > 0)
    return norm, raw
