"""One layer's attention, attention-norm and ALTI maps, from the block's parts.

For a block with per-head values v (`Premap`), attention probabilities α^h [H, S_t, S_s]
and the output side `Postmix` (W_O per head, b_O, the norms around the residual sum):

    f_h(x_s)   = v_{s,h} W_O^h                         [S_s, H, d]   (no bias)
    W_{t,s}    = Σ_h α^h_{t,s} f_h(x_s)                [S_t, S_s, d]

    attention        α averaged over heads; attention_heads α^h
    attention_norm   ‖W_{t,s}‖₂ (Kobayashi et al. 2020); per head α^h_{t,s} ‖f_h(x_s)‖₂
    alti             T_{t,s} = N(W_{t,s} + [s = t]·x_t), N the block's norms as linear
                     maps given the target's own statistics; y_t the sub-layer's output;
                     score max(0, ‖y_t‖₁ − ‖T_{t,s} − y_t + ε‖₁), ε = 1e-6, sources the
                     target cannot see set to 0, normalised to sum 1 over sources
                     (Ferrando et al. 2022)

Everything runs on the padded sentence (padded keys have α = 0 and are masked); the
caller cuts the maps back to the real tokens. Targets go in chunks (`lax.map`), so the
[S_t, S_s, d] tensor never exists whole. Outputs are [S_src, S_tgt] (heads: [H, S_src,
S_tgt]).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..models.common import PRECISION, attention_mix
from ..models.premap import Norm

# ALTI's distance adds this to every component of T − y before the L1 norm (the authors
# measure it with torch's pairwise_distance(T, y), whose eps is 1e-6); without it float32
# parity stops near 1e-4.
ALTI_EPS = 1e-6


def mixing(block, z: jax.Array, key_mask: jax.Array | None
           ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """z [S, d] → (α [H, S_t, S_s], ctx [S, H, e], v [S, H, e], visible bool [S_t, S_s])."""
    s = z.shape[0]
    q, k, v = block.premap_parts()(z)
    mask = block.attention_mask(s, key_mask)
    a, ctx = attention_mix(q, k, v, block.attention_scale, mask, block.attention_bias(s))
    visible = jnp.ones((s, s), bool) if mask is None else jnp.broadcast_to(mask, (s, s))
    return a, ctx, v, visible


def as_linear(norm: Norm, parts: jax.Array, whole: jax.Array) -> jax.Array:
    """`norm` applied to `parts` [..., d] as the linear map it is at `whole` [d] (the sum
    the parts add up to, less any constant): LayerNorm removes the mean and divides by
    whole's standard deviation; RMSNorm divides by whole's root mean square; both then
    multiply by the gain. The norm's shift belongs to the resultant only."""
    whole = whole.astype(jnp.float32) if norm.upcast else whole
    if norm.kind == "layer":
        centred = whole - jnp.mean(whole, axis=-1, keepdims=True)
        scale = jnp.sqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + norm.eps)
        parts = parts - jnp.mean(parts, axis=-1, keepdims=True)
    else:
        scale = jnp.sqrt(jnp.mean(whole * whole, axis=-1, keepdims=True) + norm.eps)
    return (parts / scale * norm.gamma).astype(parts.dtype)


def layer_maps(block, z: jax.Array, key_mask: jax.Array | None, names: tuple[str, ...],
               chunk: int) -> dict[str, jax.Array]:
    """The maps of `names` (a subset of attention, attention_norm, alti) for one block and
    its input z [S, d]; `chunk` targets at a time."""
    a, ctx, v, visible = mixing(block, z, key_mask)
    out: dict[str, jax.Array] = {}
    if "attention" in names:
        out["attention"] = jnp.mean(a, axis=0).T
        out["attention_heads"] = jnp.swapaxes(a, 1, 2)
    if "attention_norm" not in names and "alti" not in names:
        return out
    post = block.postmix_parts()
    f = post.head_outputs(v)  # [S_s, H, d]
    if "attention_norm" in names:
        out["attention_norm_heads"] = (jnp.swapaxes(a, 1, 2)
                                       * jnp.linalg.norm(f, axis=-1).T[:, :, None])
    o = post.output(ctx)  # [S_t, d], with b_O
    o_normed = o if post.out_norm is None else post.out_norm(o)
    r = z + o_normed  # the residual sum
    y = r if post.sum_norm is None else post.sum_norm(r)

    def column(t: jax.Array) -> tuple[jax.Array, jax.Array]:
        w = jnp.einsum("hs,shd->sd", a[:, t, :], f,
                       precision=PRECISION)  # Σ_h α^h_{t,s} f_h(x_s), [S_s, d]
        norms = jnp.linalg.norm(w, axis=-1)
        parts = w if post.out_norm is None else as_linear(post.out_norm, w, o[t])
        parts = parts.at[t].add(z[t])
        if post.sum_norm is not None:
            parts = as_linear(post.sum_norm, parts, r[t])
        dist = jnp.sum(jnp.abs(parts - y[t] + ALTI_EPS), axis=-1)
        score = jnp.where(visible[t], jnp.maximum(jnp.sum(jnp.abs(y[t])) - dist, 0.0), 0.0)
        total = jnp.sum(score)
        return norms, jnp.where(total > 0, score / jnp.where(total > 0, total, 1.0), 0.0)

    norms, alti = jax.lax.map(column, jnp.arange(z.shape[0]), batch_size=chunk)
    if "attention_norm" in names:
        out["attention_norm"] = norms.T
    if "alti" in names:
        out["alti"] = alti.T
    return out
