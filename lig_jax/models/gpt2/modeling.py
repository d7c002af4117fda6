"""Flax NNX modules for GPT-2, and the pre-LN decoder block shared with the Llama family.

A pre-LN decoder block maps z^(l) [S, d] → z^(l+1) [S, d] (spec §1):

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
import numpy as np
from flax import nnx

from ..common import ACTIVATIONS, Dense, LayerNorm
from ..interface import FactoredBlock


@dataclass(frozen=True)
class GPT2Config:
    """The hyper-parameters our GPT-2 needs, read from a HF `GPT2Config`."""

    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    hidden_act: str
    layer_norm_eps: float
    max_position_embeddings: int  # n_positions
    pad_token_id: int
    scale_attn_weights: bool = True  # scores · 1/√d_h (False: no scaling)
    scale_attn_by_inverse_layer_idx: bool = False  # scores additionally · 1/(l + 1)

    @property
    def num_kv_heads(self) -> int:
        return self.num_heads

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def max_tokens(self) -> int:
        """Longest sequence the position table allows."""
        return self.max_position_embeddings


def decoder_mask(s: int, window: int | None, key_mask: jax.Array | None) -> jax.Array:
    """bool [S_q, S_k]: key k visible from query q iff k ≤ q (and q − k < window) and
    key_mask[k]. HF's sliding window keeps kv_idx > q_idx − window, i.e. q − k < window."""
    q = np.arange(s)[:, None]
    k = np.arange(s)[None, :]
    allowed = k <= q
    if window is not None:
        allowed &= (q - k) < window
    mask = jnp.asarray(allowed)
    if key_mask is not None:
        mask = mask & jnp.asarray(key_mask, bool)[None, :]
    return mask


class PreLNDecoderBlock(FactoredBlock, nnx.Module):
    """The block protocol (`interface.Block`) for pre-LN decoders, in terms of five hooks a
    subclass provides: `premap`, `out_proj(ctx_flat)`, `norm_2(u)`, `ffn(h)` and the
    attributes `num_heads`, `attention_scale`, `window` (None = plain causal)."""

    causal = True
    z2u_score = "signed"
    affine_premap = False
    num_heads: int
    attention_scale: float
    window: int | None = None

    def premap(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Token-wise [S, d] → (q, k, v), each [S, H, d_h] (one slot per query head)."""
        raise NotImplementedError

    def out_proj(self, ctx_flat: jax.Array) -> jax.Array:
        """[S, H·d_h] → [S, d]: W_O·ctx + b_O."""
        raise NotImplementedError

    def norm_2(self, u: jax.Array) -> jax.Array:
        raise NotImplementedError

    def ffn(self, h: jax.Array) -> jax.Array:
        raise NotImplementedError

    def attention_mask(self, s: int, key_mask: jax.Array | None) -> jax.Array:
        """bool [S, S]: causal (and sliding window) AND key_mask[None, :]."""
        return decoder_mask(s, self.window, key_mask)

    def attention_bias(self, s: int) -> None:
        return None

    def project(self, x: jax.Array, ctx: jax.Array) -> jax.Array:
        """u = x + W_O·ctx + b_O from x [S, d] and ctx [S, H, d_h]; token-wise."""
        return x + self.out_proj(ctx.reshape(ctx.shape[0], -1))

    def mlp_out(self, u: jax.Array, residual: bool = True, z: jax.Array | None = None
                ) -> jax.Array:
        """[S, d] → z^(l+1) [S, d]: u + MLP(LN2(u)) (residual=False: MLP(LN2(u))). Token-wise;
        `z` is not read by pre-LN decoders."""
        h = self.ffn(self.norm_2(u))
        return u + h if residual else h

    def __call__(self, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        return self.mlp_out(self.att(z, key_mask))


class GPT2Attention(nnx.Module):
    """HF `attn`: fused q|k|v projection `c_attn` and output projection `c_proj`."""

    def __init__(self, cfg: GPT2Config, *, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.c_attn = Dense(d, 3 * d, rngs=rngs)
        self.c_proj = Dense(d, d, rngs=rngs)


class GPT2MLP(nnx.Module):
    """HF `mlp`: c_proj(act(c_fc(x)))."""

    def __init__(self, cfg: GPT2Config, *, rngs: nnx.Rngs):
        self.c_fc = Dense(cfg.hidden_size, cfg.intermediate_size, rngs=rngs)
        self.c_proj = Dense(cfg.intermediate_size, cfg.hidden_size, rngs=rngs)
        self.activation = cfg.hidden_act

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.c_proj(ACTIVATIONS[self.activation](self.c_fc(x)))


class GPT2Block(PreLNDecoderBlock):
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

    def premap(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Token-wise [S, d] → (q, k, v) [S, H, d_h]: ln_1, then c_attn split q | k | v."""
        qkv = self.attn.c_attn(self.ln_1(x))
        shape = (x.shape[0], self.num_heads, self.head_dim)
        q, k, v = jnp.split(qkv, 3, axis=-1)
        return q.reshape(shape), k.reshape(shape), v.reshape(shape)

    def out_proj(self, ctx_flat: jax.Array) -> jax.Array:
        return self.attn.c_proj(ctx_flat)

    def norm_2(self, u: jax.Array) -> jax.Array:
        return self.ln_2(u)

    def ffn(self, h: jax.Array) -> jax.Array:
        return self.mlp(h)


class GPT2Model(nnx.Module):
    """Token + position embeddings and a stack of `GPT2Block`s (no final ln_f)."""

    def __init__(self, cfg: GPT2Config, *, rngs: nnx.Rngs):
        self.config = cfg
        d = cfg.hidden_size
        self.wte = nnx.Param(jax.random.normal(rngs.params(), (cfg.vocab_size, d)) * 0.02)
        self.wpe = nnx.Param(
            jax.random.normal(rngs.params(), (cfg.max_position_embeddings, d)) * 0.02)
        self.layers = nnx.List([GPT2Block(cfg, l, rngs=rngs) for l in range(cfg.num_layers)])

    def embed(self, input_ids: jax.Array) -> jax.Array:
        """[S] int → z^(0) [S, d] = wte[ids] + wpe[0 … S−1]."""
        return self.wte[...][input_ids] + self.wpe[...][jnp.arange(input_ids.shape[0])]

    def hidden_states(self, input_ids: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        """[S] → [L+1, S, d]: z^(0) … z^(L), z^(L) = the last block's output (before ln_f)."""
        z = self.embed(input_ids)
        states = [z]
        for block in self.layers:
            z = block(z, key_mask)
            states.append(z)
        return jnp.stack(states)
