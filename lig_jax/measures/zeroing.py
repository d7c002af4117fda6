"""Value zeroing (Mohebbi et al. 2023), every zeroed source of one layer in one program.

Zeroing source i's value row (in every head; with grouped keys/values its kv row, which
every head of the group reads) changes each target's context by one term per head and
the attention probabilities not at all; through the (linear) output projection, the
attention output changes by one vector:

    o'_j = o_j − Δ_ij,   Δ_ij = Σ_h α^h_{j,i} f_h(x_i),   f_h(x_i) = v_{i,h} W_O^h

So only the block's token-wise remainder is recomputed — the norms around the residual
sum (`Postmix.residual_sum`) and the MLP (the block's `mlp_after`) — for one row per
(source, target) pair, and a causal source only touches the targets from itself on:
S(S+1)/2 row passes per layer for a decoder (fewer under a sliding window), S² for an
encoder, in chunks of at most
`MAX_CHUNK` rows (fewer where the memory budget says so). The score is the cosine
distance between the target's block output without and with the source:

    raw[i, j] = 1 − cos(B(z)_j without v_i, B(z)_j)         (0 where j cannot see i)
    value_zeroing[:, j] = raw[:, j] / Σ_i raw[i, j]

1 − cos is computed as ½‖â − b̂‖² (â, b̂ the unit vectors): the same number without the
cancellation of 1 − a·b/(‖a‖‖b‖) for nearly equal vectors.

Tried and dropped: splitting the MLP's first layer over Δ too (its response to each
source's f_h computed once per layer, H·F per row instead of d·F) is exact, but slower on
CPU: gathering H·F numbers per row costs more than the multiply-adds it saves (SmolLM2,
129 tokens, per layer: 388 ms against 314 ms).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..models.common import PRECISION
from .maps import mixing


def visible(block, length: int) -> np.ndarray:
    """bool [S_t, S_s]: which sources each target's attention sees (causal, sliding
    windows) among `length` real tokens."""
    mask = block.attention_mask(length, None)
    if mask is None:
        return np.ones((length, length), bool)
    return np.broadcast_to(np.asarray(mask, bool), (length, length))


def pairs(seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) index arrays of every pair whose distance can be nonzero: the
    target sees the source (`visible`, [S_t, S_s])."""
    tgt, src = np.nonzero(seen)
    order = np.lexsort((tgt, src))  # by source, then target
    return src[order].astype(np.int32), tgt[order].astype(np.int32)


def row_bytes(d: int, heads: int, ffn: int, itemsize: int) -> int:
    """Working memory of one (source, target) row: its f_h rows, the input and output rows
    and the MLP's hidden units, with room for XLA's copies."""
    return itemsize * 3 * (heads * d + 6 * d + 3 * ffn)


SMALLEST_CHUNK = 32
# Rows per chunk at most: the MLP's weights and a few hundred rows' activations stay in
# cache (SmolLM2, 129 tokens, per layer: 314 ms at 256 rows, 378 ms at 4,096).
MAX_CHUNK = 256


def chunk_sizes(budget: int, per_row: int, num_pairs: int) -> tuple[int, int, tuple[int, ...]]:
    """How one layer's `num_pairs` rows are split: (top, k, tail) — k chunks of `top` rows
    (the largest power of two up to `MAX_CHUNK` that fits the budget) run one after
    another, then the rest in descending powers of two down to `SMALLEST_CHUNK` (padded),
    so at most SMALLEST_CHUNK − 1 rows are padding. The split follows the pair count: one
    compiled program per sentence length and block structure (shared by every layer of
    that structure and every sentence of that length)."""
    fit = min(MAX_CHUNK, max(SMALLEST_CHUNK, budget // max(per_row, 1)))
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
    return a, v, o, post.head_outputs(v), block.mlp_after(post.residual_sum(z, o))


def _cosine_distance(out: jax.Array, ref: jax.Array) -> jax.Array:
    def unit(v: jax.Array) -> jax.Array:
        return v / jnp.linalg.norm(v, axis=-1, keepdims=True)

    diff = unit(out) - unit(ref)
    return 0.5 * jnp.sum(diff * diff, axis=-1)


def _rows(block, z: jax.Array, a: jax.Array, v: jax.Array, o: jax.Array, f: jax.Array,
          clean: jax.Array) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Distances of pairs (src [C], tgt [C]), each row through the block's remainder.

    o'_j = o_j − Δ_ij, except where a norm follows the attention output (Gemma 3): there
    o'_j is summed afresh without the source, Σ_{k≠i} α_{j,k} v_k W_O + b_O (S·H·e more
    per row), as the model computes it: o_j − Δ_ij nearly vanishes where the source
    carries the target's attention, and the norm would divide float32's cancellation
    error by that small size (3e-5 of the scale on a tiny Gemma 3)."""
    post = block.postmix_parts()
    fresh = post.out_norm is not None

    def rows(src: jax.Array, tgt: jax.Array) -> jax.Array:
        if fresh:
            keep = jnp.arange(v.shape[0])[None, :] != src[:, None]  # [C, S]
            ctx = jnp.einsum("hcs,she->che", a[:, tgt, :] * keep[None], v,
                             precision=PRECISION)
            zeroed = post.output(ctx)
        else:
            weight = jnp.transpose(a[:, tgt, src])  # α^h_{j,i}: [C, H]
            zeroed = o[tgt] - jnp.einsum("ch,chd->cd", weight, f[src],
                                         precision=PRECISION)  # o'_j: [C, d]
        return _cosine_distance(block.mlp_after(post.residual_sum(z[tgt], zeroed)), clean[tgt])

    return rows


@partial(jax.jit, static_argnames=("graphdef", "top", "tail"))
def layer_distances(graphdef: nnx.GraphDef, state: nnx.State, z: jax.Array,
                    key_mask: jax.Array | None, src: jax.Array, tgt: jax.Array, top: int,
                    tail: tuple[int, ...]) -> jax.Array:
    """Distances [P] of the pairs (src [P], tgt [P]), P = k·top + Σ tail (`chunk_sizes`):
    one program per layer, the clean block computed once."""
    block = nnx.merge(graphdef, state)
    rows = _rows(block, z, *_prepare(block, z, key_mask))
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
                  key_mask: jax.Array | None, seen: np.ndarray, budget: int, heads: int,
                  ffn: int) -> tuple[np.ndarray, np.ndarray]:
    """(value_zeroing, value_zeroing_raw), each [S_src, S_tgt] over the real tokens of z
    [S_b, d] — `seen` [S, S] (`visible`) says which, and which sources each target sees —
    float64 on the host; `budget` bytes per chunk; `heads` and `ffn` (the MLP's hidden
    width, both halves of a gated one) size a row."""
    length = seen.shape[0]
    src, tgt = pairs(seen)
    n = len(src)
    per_row = row_bytes(z.shape[-1], heads, ffn, jnp.dtype(z.dtype).itemsize)
    top, k, tail = chunk_sizes(budget, per_row, n)
    padded = k * top + sum(tail)
    src_p = np.zeros(padded, np.int32)
    tgt_p = np.zeros(padded, np.int32)
    src_p[:n], tgt_p[:n] = src, tgt
    dist = np.asarray(layer_distances(graphdef, state, z, key_mask, jnp.asarray(src_p),
                                      jnp.asarray(tgt_p), top, tail), np.float64)[:n]
    raw = np.zeros((length, length))
    raw[src, tgt] = dist
    total = raw.sum(axis=0, keepdims=True)
    norm = np.divide(raw, total, out=np.zeros_like(raw), where=total > 0)
    return norm, raw
