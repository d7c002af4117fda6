"""Value zeroing (Mohebbi et al. 2023), every zeroed source of one layer in one program.

Zeroing source i's value row (in every head; with grouped keys/values its kv row, which
every head of the group reads) changes each target's context by one term,
ctx'_j = ctx_j − α_{j,i} v_i (per head), and the attention probabilities not at all. So
the block's token-wise remainder (`postmap`: output projection, residual, norms, MLP) is
all that is recomputed, for one row per (source, target) pair, and a causal source only
touches the targets from itself on: S(S+1)/2 row passes per layer for a decoder, S² for
an encoder. The score is the cosine distance between the target's block output without
and with the source:

    raw[i, j] = 1 − cos(B(z)_j without v_i, B(z)_j)         (0 where j cannot see i)
    value_zeroing[:, j] = raw[:, j] / Σ_i raw[i, j]

1 − cos is computed as ½‖â − b̂‖² (â, b̂ the unit vectors): the same number without the
cancellation of 1 − a·b/(‖a‖‖b‖) for nearly equal vectors.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .maps import mixing


def pairs(length: int, causal: bool) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) index arrays of every pair whose distance can be nonzero."""
    src, tgt = np.meshgrid(np.arange(length), np.arange(length), indexing="ij")
    keep = (tgt >= src) if causal else np.ones_like(src, bool)
    return src[keep].astype(np.int32), tgt[keep].astype(np.int32)


def row_bytes(d: int, width: int, ffn: int, itemsize: int) -> int:
    """Working memory of one (source, target) row pass: the input and context rows, the
    MLP's hidden units (gated: two of them) and the outputs, with room for XLA's copies."""
    return itemsize * 4 * (4 * d + 2 * width + 3 * ffn)


SMALLEST_CHUNK = 32


def chunk_sizes(budget: int, per_row: int, num_pairs: int) -> list[int]:
    """Rows of each program call, covering `num_pairs`: powers of two (so sentences share
    compiled programs), the largest that fits the budget as often as it fits whole, the
    rest in descending powers of two down to `SMALLEST_CHUNK` (padded), so at most
    SMALLEST_CHUNK − 1 rows are padding."""
    fit = max(SMALLEST_CHUNK, budget // max(per_row, 1))
    top = SMALLEST_CHUNK
    while top * 2 <= fit:
        top *= 2
    sizes = [top] * (num_pairs // top)
    rest = num_pairs - top * len(sizes)
    size = top // 2
    while rest > 0 and size >= SMALLEST_CHUNK:
        if rest >= size:
            sizes.append(size)
            rest -= size
        size //= 2
    if rest > 0:
        sizes.append(SMALLEST_CHUNK)
    return sizes


@partial(jax.jit, static_argnames=("graphdef",))
def prepare(graphdef: nnx.GraphDef, state: nnx.State, z: jax.Array,
            key_mask: jax.Array | None) -> tuple[jax.Array, ...]:
    """The clean block: (α [H, S_t, S_s], ctx [S, H, e], v [S, H, e], B(z) [S, d])."""
    block = nnx.merge(graphdef, state)
    a, ctx, v, _ = mixing(block, z, key_mask)
    return a, ctx, v, block.postmap(z, ctx)


@partial(jax.jit, static_argnames=("graphdef",))
def distances(graphdef: nnx.GraphDef, state: nnx.State, z: jax.Array, a: jax.Array,
              ctx: jax.Array, v: jax.Array, clean: jax.Array, src: jax.Array,
              tgt: jax.Array) -> jax.Array:
    """Cosine distances [C] of the pairs (src [C], tgt [C])."""
    block = nnx.merge(graphdef, state)
    weight = jnp.transpose(a[:, tgt, src])[..., None]  # α^h_{j,i}: [C, H, 1]
    zeroed = ctx[tgt] - weight * v[src]  # [C, H, e]
    out = block.postmap(z[tgt], zeroed)  # [C, d]
    ref = clean[tgt]

    def unit(x: jax.Array) -> jax.Array:
        return x / jnp.linalg.norm(x, axis=-1, keepdims=True)

    diff = unit(out) - unit(ref)
    return 0.5 * jnp.sum(diff * diff, axis=-1)


def value_zeroing(graphdef: nnx.GraphDef, state: nnx.State, z: jax.Array,
                  key_mask: jax.Array | None, length: int, causal: bool, budget: int,
                  per_row: int) -> tuple[np.ndarray, np.ndarray]:
    """(value_zeroing, value_zeroing_raw), each [S_src, S_tgt] over the `length` real
    tokens of z [S_b, d] (float64 on the host); `budget` bytes per call, `per_row` bytes
    per (source, target) row (`row_bytes`)."""
    a, ctx, v, clean = prepare(graphdef, state, z, key_mask)
    src, tgt = pairs(length, causal)
    n = len(src)
    sizes = chunk_sizes(budget, per_row, n)
    padded = sum(sizes)
    src_p = np.zeros(padded, np.int32)
    tgt_p = np.zeros(padded, np.int32)
    src_p[:n], tgt_p[:n] = src, tgt
    starts = np.cumsum([0, *sizes[:-1]])
    parts = [distances(graphdef, state, z, a, ctx, v, clean, jnp.asarray(src_p[k:k + c]),
                       jnp.asarray(tgt_p[k:k + c])) for k, c in zip(starts, sizes, strict=True)]
    dist = np.concatenate([np.asarray(p, np.float64) for p in parts])[:n]
    raw = np.zeros((length, length))
    raw[src, tgt] = dist
    total = raw.sum(axis=0, keepdims=True)
    norm = np.divide(raw, total, out=np.zeros_like(raw), where=total > 0)
    return norm, raw
