"""Flax NNX modules for GPT-2 (a pre-LN decoder, `interface.PreLNDecoderBlock`).

A pre-LN decoder block maps z^(l) [S, d] → z^(l+1) [S, d] (docs/spec.md §1):

    (q, k, v) = premap(z)        LN1 → projections (→ RoPE → GQA repeat)   [S, H, d_h]
    ctx       = attention_context(z)   causal softmax mixing, before W_O   [S, H, d_h]
    u         = att(z) = z + W_O·ctx + b_O                                  [S, d]  (u_MLP)
    z'        = mlp_out(u) = u + MLP(LN2(u))                                [S, d]

GPT-2 (HF `GPT2Model`): LN1 = `ln_1`, one fused Conv1D `attn.c_attn` [d, 3d] split q | k | v
(heads contiguous inside each third), scores · 1/√d_h, causal mask, `attn.c_proj`, LN2 =
`ln_2`, MLP = `mlp.c_proj`(gelu_new(`mlp.c_fc`(·))). z^(0) = wte[ids] + wpe[0 … S−1]. The
final `ln_f` is not part of the model (hidden states stop at the last block's output).
Everything is written for one unbatched sentence; batches come from `jax.vmap`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from ..common import Dense, LayerNorm, activate, table
from ..interface import LayerStackModel, PreLNDecoderBlock, StackConfig
from ..postmix import Postmix, dense_out
from ..premap import Premap, fused_heads, norm_of


@dataclass(frozen=True)
class GPT2Config(StackConfig):
    """The hyper-parameters our GPT-2 needs, read from a HF `GPT2Config`
    (`max_position_embeddings` = n_positions)."""

    layer_norm_eps: float
    scale_attn_weights: bool = True  # scores · 1/√d_h (False: no scaling)
    scale_attn_by_inverse_layer_idx: bool = False  # scores additionally · 1/(l + 1)


class GPT2Attention(nnx.Module):
    """HF `attn`: fused q|k|v projection `c_attn` and output projection `c_proj`."""

    def __init__(self, cfg: GPT2Config, *, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.c_attn = Dense(d, 3 * d, split="out", rngs=rngs)
        self.c_proj = Dense(d, d, split="in", rngs=rngs)


class GPT2MLP(nnx.Module):
    """HF `mlp`: c_proj(act(c_fc(x)))."""

    def __init__(self, cfg: GPT2Config, *, rngs: nnx.Rngs):
        self.c_fc = Dense(cfg.hidden_size, cfg.intermediate_size, split="out", rngs=rngs)
        self.c_proj = Dense(cfg.intermediate_size, cfg.hidden_size, split="in", rngs=rngs)
        self.activation = cfg.hidden_act

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.c_proj(activate(self.activation, self.c_fc(x)))


class GPT2Block(PreLNDecoderBlock, nnx.Module):
    """One GPT-2 layer (HF `h.{l}`) with its ATT and MLP halves exposed."""

    def __init__(self, cfg: GPT2Config, layer_idx: int, *, rngs: nnx.Rngs):
        self.ln_1 = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)
        self.attn = GPT2Attention(cfg, rngs=rngs)
        self.ln_2 = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)
        self.mlp = GPT2MLP(cfg, rngs=rngs)
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.head_dim
        scale = 1.0 / float(cfg.head_dim) ** 0.5 if cfg.scale_attn_weights else 1.0
        if cfg.scale_attn_by_inverse_layer_idx:
            scale /= float(layer_idx + 1)
        self.attention_scale = scale
        self.window = None

    def premap_parts(self) -> Premap:
        """ln_1, then c_attn split q | k | v (heads contiguous inside each third)."""
        (wq, bq), (wk, bk), (wv, bv) = fused_heads(self.attn.c_attn, 3, self.num_heads)
        return Premap(norm_of(self.ln_1, "layer"), wq, wk, wv, bq, bk, bv)

    def postmix_parts(self) -> Postmix:
        """c_proj per head and its bias; pre-LN: no norm up to the residual sum."""
        return Postmix(*dense_out(self.attn.c_proj, self.num_heads))

    def out_proj(self, ctx_flat: jax.Array) -> jax.Array:
        return self.attn.c_proj(ctx_flat)

    def norm_2(self, u: jax.Array) -> jax.Array:
        return self.ln_2(u)

    def ffn(self, h: jax.Array) -> jax.Array:
        return self.mlp(h)


class GPT2Model(LayerStackModel, nnx.Module):
    """Token + position embeddings, a stack of `GPT2Block`s and the final `ln_f` (applied
    only by `final_norm`: the hidden states z^(l) stop before it)."""

    def __init__(self, cfg: GPT2Config, *, rngs: nnx.Rngs):
        self.wte = table(rngs, cfg.vocab_size, cfg.hidden_size, vocab=True)
        self.wpe = table(rngs, cfg.max_position_embeddings, cfg.hidden_size)
        super().__init__(cfg, None, [GPT2Block(cfg, l, rngs=rngs)
                                     for l in range(cfg.num_layers)])
        self.ln_f = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)

    def word_embed(self, input_ids: jax.Array) -> jax.Array:
        """[S] int → wte[ids] [S, d]."""
        return self.wte[...][input_ids]

    def embed_words(self, words: jax.Array, input_ids: jax.Array) -> jax.Array:
        """z^(0) = words + wpe[0 … S−1]."""
        return words + self.wpe[...][jnp.arange(input_ids.shape[0])]

    def token_table(self) -> jax.Array:
        """The token embedding table wte [V, d] (GPT-2's LM head is tied to it)."""
        return self.wte[...]

    def final_norm(self, z: jax.Array) -> jax.Array:
        """z^(L) → ln_f(z^(L)), what the LM head reads."""
        return self.ln_f(z)
