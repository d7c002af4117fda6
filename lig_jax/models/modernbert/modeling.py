"""Flax NNX modules for ModernBERT, split at the LIG boundaries (`models.interface.Block`).

ModernBERT is a pre-LN encoder with RoPE, a fused QKV projection, alternating global
and local (sliding-window) attention and a GeGLU MLP. One block maps z = z^(l) [S, d] →
z^(l+1) [S, d] (HF `layers.{l}`):

    h       = attn_norm(z)                    (LayerNorm; Identity in layer 0, as in HF)
    q|k|v   = h W_qkv (+ b)                    (`attn.Wqkv`, [q heads | k heads | v heads])
    q, k    ← RoPE(q), RoPE(k) at positions 0..S−1 (θ = rope_theta of the layer's type)
    ctx     = softmax(q kᵀ / √d_h, mask) v     [S, H, d_h]
    u       = z + W_o·ctx (+ b)                (`attn.Wo`)
    z'      = u + W_out·(act(a) ⊙ g) (+ b),  a|g = mlp_norm(u) W_i (+ b)
                                               (`mlp_norm`, `mlp.Wi`, `mlp.Wo`)

Global layers (`layer_types[l] == "full_attention"`) attend to every key; local layers
("sliding_attention") only to keys with |query − key| ≤ local_attention // 2 (HF's
`config.sliding_window` and its bidirectional sliding-window mask). Biases exist per
`norm_bias`, `attention_bias`, `mlp_bias`.

LIG boundaries:

* u_ATT (z→u target) = ctx, head h's context Σ_i A^h_{j,i} v_{i,h} *before* `attn.Wo`
  (width d_h per head; q, k after RoPE, v with its bias);
* u_MLP (u→z input) = att(z) = u = z + Wo(attention(attn_norm(z))), the post-attention
  residual (width d; "per head" = contiguous d_h slices); mlp_out(u, residual) =
  u + mlp(mlp_norm(u)), without `u +` when residual=False.

The premap (norm, projection, RoPE) is not affine (except in layer 0, which has no
attn_norm, but still rotates). z^(L) is the last block's output; HF's last `hidden_states`
entry has `final_norm` applied on top, which we do not model.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from ..common import Dense, LayerNorm, activate, gated, key_rows, table, window_mask
from ..interface import FactoredBlock, LayerStackModel, StackConfig
from ..postmix import Postmix, dense_out
from ..premap import Premap, fused_heads, norm_of
from ..rope import default_inv_freq

GLOBAL, LOCAL = "full_attention", "sliding_attention"


@dataclass(frozen=True)
class ModernBertConfig(StackConfig):
    """The hyper-parameters our ModernBERT needs, read from a HF config."""

    norm_eps: float
    norm_bias: bool
    attention_bias: bool
    mlp_bias: bool
    layer_types: tuple[str, ...]  # GLOBAL or LOCAL per layer
    global_rope_theta: float
    local_rope_theta: float
    local_attention: int  # total window; keys with |j − i| ≤ local_attention // 2 are seen


class ModernBertBlock(FactoredBlock, nnx.Module):
    """One pre-LN ModernBERT layer with its ATT and MLP halves exposed."""

    causal = False
    z2u_score = "l2"  # encoder convention: per-source ‖IG_i,:‖₂ (docs/spec.md §4)

    def __init__(self, cfg: ModernBertConfig, layer: int, *, rngs: nnx.Rngs):
        d, w = cfg.hidden_size, cfg.intermediate_size
        self.attn_norm = (None if layer == 0
                          else LayerNorm(d, cfg.norm_eps, cfg.norm_bias))
        self.wqkv = Dense(d, 3 * d, use_bias=cfg.attention_bias, split="out", rngs=rngs)
        self.wo = Dense(d, d, use_bias=cfg.attention_bias, split="in", rngs=rngs)
        self.mlp_norm = LayerNorm(d, cfg.norm_eps, cfg.norm_bias)
        self.wi = Dense(d, 2 * w, use_bias=cfg.mlp_bias, split="out", rngs=rngs)
        self.mlp_wo = Dense(w, d, use_bias=cfg.mlp_bias, split="in", rngs=rngs)
        self.activation = cfg.hidden_act
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.head_dim
        self.attention_scale = float(self.head_dim) ** -0.5
        self.layer_type = cfg.layer_types[layer]
        self.sliding = self.layer_type == LOCAL
        theta = cfg.local_rope_theta if self.sliding else cfg.global_rope_theta
        self.inv_freq = tuple(float(x) for x in default_inv_freq(self.head_dim, theta))
        self.half_window = cfg.local_attention // 2

    # ---- the token-wise maps and the mixing inputs (docs/method.md, "The block as data")

    def premap_parts(self) -> Premap:
        """attn_norm (none in layer 0), Wqkv split [q heads | k heads | v heads], RoPE."""
        (wq, bq), (wk, bk), (wv, bv) = fused_heads(self.wqkv, 3, self.num_heads)
        norm = None if self.attn_norm is None else norm_of(self.attn_norm, "layer")
        return Premap(norm, wq, wk, wv, bq, bk, bv, inv_freq=self.inv_freq)

    def postmix_parts(self) -> Postmix:
        """Wo per head (and its bias); pre-LN: no norm up to the residual sum."""
        return Postmix(*dense_out(self.wo, self.num_heads))

    def attention_mask(self, s: int, key_mask: jax.Array | None) -> jax.Array | None:
        """Global layers: bool [1, S] hiding padded keys, or None; local layers: the
        sliding window [S, S] (and the padded keys)."""
        if not self.sliding:
            return key_rows(key_mask)
        return window_mask(s, self.half_window, key_mask)

    def attention_bias(self, s: int) -> None:
        """No additive score bias (positions enter through RoPE)."""
        return None

    def project(self, x: jax.Array, ctx: jax.Array) -> jax.Array:
        """u = x + Wo·ctx (+ b) from x [S, d] and ctx [S, H, d_h] → [S, d]."""
        return x + self.wo(ctx.reshape(ctx.shape[0], -1))

    # ---- the LIG boundaries

    def mlp(self, u: jax.Array) -> jax.Array:
        """GeGLU MLP of the normalised u: Wo(act(a) ⊙ g), a|g = Wi(mlp_norm(u)). [S, d]."""
        a, g = jnp.split(self.wi(self.mlp_norm(u)), 2, axis=-1)
        return self.mlp_wo(gated(activate(self.activation, a), g))

    def mlp_out(self, u: jax.Array, residual: bool = True, z: jax.Array | None = None
                ) -> jax.Array:
        """[S, d] → z^(l+1) [S, d] = u + mlp(u) (no `u +` if not residual); token-wise,
        `z` is not needed."""
        h = self.mlp(u)
        return u + h if residual else h

    def __call__(self, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        """[S, d] → z^(l+1) [S, d]."""
        return self.mlp_out(self.att(z, key_mask))


class Embeddings(nnx.Module):
    """Token embeddings, then LayerNorm (no position embeddings: RoPE)."""

    def __init__(self, cfg: ModernBertConfig, *, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.tok = table(rngs, cfg.vocab_size, d, vocab=True)
        self.norm = LayerNorm(d, cfg.norm_eps, cfg.norm_bias)

    def words(self, input_ids: jax.Array) -> jax.Array:
        """[S] int → word embeddings [S, d] (HF `tok_embeddings`)."""
        return self.tok[...][input_ids]

    def from_words(self, words: jax.Array, input_ids: jax.Array) -> jax.Array:
        """(words [S, d], ids [S]) → z^(0) = LN(words)."""
        return self.norm(words)

    def __call__(self, input_ids: jax.Array) -> jax.Array:
        """[S] int → z^(0) [S, d]."""
        return self.from_words(self.words(input_ids), input_ids)


class ModernBertModel(LayerStackModel, nnx.Module):
    """Embeddings, a stack of `ModernBertBlock`s and HF's `final_norm` (`last_norm`, applied
    only by `final_norm`: the hidden states z^(l) stop before it)."""

    def __init__(self, cfg: ModernBertConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg, Embeddings(cfg, rngs=rngs),
                         [ModernBertBlock(cfg, l, rngs=rngs) for l in range(cfg.num_layers)])
        self.last_norm = LayerNorm(cfg.hidden_size, cfg.norm_eps, cfg.norm_bias)

    def final_norm(self, z: jax.Array) -> jax.Array:
        """z^(L) → HF's last_hidden_state = final_norm(z^(L))."""
        return self.last_norm(z)
