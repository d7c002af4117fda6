"""Flax NNX modules for Gemma 3 text stacks (pre+post-LN decoders), split at the LIG boundaries.

One block maps z^(l) [S, d] → z^(l+1) [S, d] (docs/spec.md §1, §5, §11):

    h         = In(z)                                   Gemma RMSNorm x·(1/√(mean x² + ε))·(1 + w)
    q, k, v   = q/k/v_proj(h) per head; q, k ← q_norm, k_norm (over d_h); RoPE (rotate-half);
                GQA: kv group g is repeated to query heads g·(H/G) … (g+1)·(H/G) − 1
    ctx       = softmax(q·k · query_pre_attn_scalar^-½ + mask) v      [S, H, d_h]  (u_ATT)
    u         = ctx.reshape(S, H·d_h)                                 (u_MLP, width H·d_h ≠ d ok)
    p         = z + PostAttn(o_proj(u))
    z'        = p + PostFFN(down(gelu_tanh(gate(PreFFN(p))) · up(PreFFN(p))))

Sliding layers use the local RoPE table and the window mask 0 ≤ i − k < window; full layers
the global RoPE table (default or linear scaling) and the causal mask 0 ≤ i − k. Positions
are the row numbers 0..S−1. Everything is written for one unbatched sentence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import numpy as np
from flax import nnx

from ...errors import LIGError
from ..common import Dense, activate, causal_mask, gated, table
from ..common import RMSNorm as _RMSNorm
from ..interface import FactoredBlock, StackConfig, TokenTableModel
from ..postmix import Postmix, dense_out
from ..premap import Premap, dense_heads, norm_of
from ..rope import default_inv_freq

SLIDING, FULL = "sliding_attention", "full_attention"


@dataclass(frozen=True)
class Gemma3Config(StackConfig):
    """The hyper-parameters of a Gemma 3 text stack, read from a HF config (`model_type`
    "gemma3_text", or "gemma3" for the language model of a multimodal one; `hidden_act`
    is HF's hidden_activation; `max_tokens` is the RoPE context length)."""

    rms_norm_eps: float
    query_pre_attn_scalar: float
    sliding_window: int | None
    layer_types: tuple[str, ...]
    rope_theta_global: float
    rope_factor_global: float  # linear scaling factor (1.0 = default RoPE)
    rope_theta_local: float
    rope_factor_local: float
    attention_bias: bool = False

    @property
    def attention_scale(self) -> float:
        return float(self.query_pre_attn_scalar) ** -0.5


class RMSNorm(_RMSNorm):
    """Gemma RMSNorm over the last axis: x·(1/√(mean x² + ε))·(1 + scale), in at least
    float32 (bfloat16 inputs are upcast as HF does). `scale` holds HF's raw `weight`."""

    def __init__(self, dim: int, eps: float):
        super().__init__(dim, eps, offset=1.0, upcast=True)


class Attention(nnx.Module):
    """Gemma 3 self-attention core: projections, q/k norms, RoPE, GQA, o_proj."""

    def __init__(self, cfg: Gemma3Config, layer: int, *, rngs: nnx.Rngs):
        d, h, g, e = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        b = cfg.attention_bias
        self.q_proj = Dense(d, h * e, use_bias=b, split="out", rngs=rngs)
        self.k_proj = Dense(d, g * e, use_bias=b, split="out", rngs=rngs)
        self.v_proj = Dense(d, g * e, use_bias=b, split="out", rngs=rngs)
        self.o_proj = Dense(h * e, d, use_bias=b, split="in", rngs=rngs)
        self.q_norm = RMSNorm(e, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(e, cfg.rms_norm_eps)
        self.num_heads, self.num_kv_heads, self.head_dim = h, g, e
        self.is_sliding = cfg.layer_types[layer] == SLIDING
        self.sliding_window = cfg.sliding_window if self.is_sliding else None
        theta, factor = ((cfg.rope_theta_local, cfg.rope_factor_local) if self.is_sliding
                         else (cfg.rope_theta_global, cfg.rope_factor_global))
        # A tuple (static, part of the graph definition): HF's float32 inverse frequencies.
        inv = default_inv_freq(e, theta) / np.float32(factor)
        self.inv_freq = tuple(float(x) for x in inv.astype(np.float32))
        self.scale = cfg.attention_scale

    def premap_parts(self, norm: _RMSNorm) -> Premap:
        """Input norm `norm`, projections, q/k norms over d_h, RoPE, GQA."""
        (wq, bq), (wk, bk), (wv, bv) = (dense_heads(m, n) for m, n in (
            (self.q_proj, self.num_heads), (self.k_proj, self.num_kv_heads),
            (self.v_proj, self.num_kv_heads)))
        return Premap(norm_of(norm, "rms"), wq, wk, wv, bq, bk, bv,
                      q_norm=norm_of(self.q_norm, "rms"), k_norm=norm_of(self.k_norm, "rms"),
                      inv_freq=self.inv_freq)

    def mask(self, s: int, key_mask: jax.Array | None = None) -> jax.Array:
        """bool [S_q, S_k]: causal (full) or 0 ≤ i − k < window (sliding), AND key_mask."""
        return causal_mask(s, self.sliding_window, key_mask)


class MLP(nnx.Module):
    """Gated MLP: down(act(gate(x)) · up(x)). Token-wise."""

    def __init__(self, cfg: Gemma3Config, *, rngs: nnx.Rngs):
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = Dense(d, f, use_bias=False, split="out", rngs=rngs)
        self.up_proj = Dense(d, f, use_bias=False, split="out", rngs=rngs)
        self.down_proj = Dense(f, d, use_bias=False, split="in", rngs=rngs)
        self.activation = cfg.hidden_act

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(gated(activate(self.activation, self.gate_proj(x)), self.up_proj(x)))


class PrePostLNBlock(FactoredBlock, nnx.Module):
    """One Gemma 3 decoder layer with its ATT and MLP halves exposed (Block protocol)."""

    causal = True
    z2u_score = "signed"

    def __init__(self, cfg: Gemma3Config, layer: int, *, rngs: nnx.Rngs):
        d, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.input_layernorm = RMSNorm(d, eps)
        self.self_attn = Attention(cfg, layer, rngs=rngs)
        self.post_attention_layernorm = RMSNorm(d, eps)
        self.pre_feedforward_layernorm = RMSNorm(d, eps)
        self.mlp = MLP(cfg, rngs=rngs)
        self.post_feedforward_layernorm = RMSNorm(d, eps)

    @property
    def num_heads(self) -> int:
        return self.self_attn.num_heads

    @property
    def attention_scale(self) -> float:
        return self.self_attn.scale

    @property
    def is_sliding(self) -> bool:
        return self.self_attn.is_sliding

    def premap_parts(self) -> Premap:
        """Input norm, projections, q/k norms, RoPE, GQA (`Attention.premap_parts`)."""
        return self.self_attn.premap_parts(self.input_layernorm)

    def postmix_parts(self) -> Postmix:
        """o_proj per head, then the post-attention RMSNorm before the residual sum."""
        return Postmix(*dense_out(self.self_attn.o_proj, self.num_heads),
                       out_norm=norm_of(self.post_attention_layernorm, "rms"))

    def attention_mask(self, s: int, key_mask: jax.Array | None = None) -> jax.Array:
        """bool [S, S] (query, key): causal or sliding-window causal, AND key_mask[None, :]."""
        return self.self_attn.mask(s, key_mask)

    def attention_bias(self, s: int) -> None:
        return None

    def att_from(self, x: jax.Array, ctx: jax.Array) -> jax.Array:
        """u_MLP [S, H·d_h]: all heads concatenated before o_proj (x is not read)."""
        return ctx.reshape(ctx.shape[0], -1)

    def mlp_out(self, u: jax.Array, residual: bool = True, z: jax.Array | None = None
                ) -> jax.Array:
        """(u [S, H·d_h], z [S, d]) → z^(l+1) [S, d], token-wise.

        p = z + PostAttn(o_proj(u)); returns p + PostFFN(MLP(PreFFN(p))), or without the
        `p +` when residual=False. z (the block input rows) is required.
        """
        if z is None:
            raise LIGError("Gemma3 mlp_out needs z, the block input rows (p = z + PostAttn(o(u)))")
        p = z + self.post_attention_layernorm(self.self_attn.o_proj(u))
        m = self._ffn(p)
        return p + m if residual else m

    def _ffn(self, p: jax.Array) -> jax.Array:
        return self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(p)))

    def mlp_after(self, y: jax.Array) -> jax.Array:
        """z^(l+1) from p = y = x + PostAttn(o_proj(ctx)) (`Postmix`): p + PostFFN(MLP(
        PreFFN(p)))."""
        return y + self._ffn(y)

    def __call__(self, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        return self.postmap(z, self.attention_context(z, key_mask))


class Gemma3Model(TokenTableModel, nnx.Module):
    """Scaled token embeddings, a stack of `PrePostLNBlock`s and the final norm (applied only
    by `final_norm`)."""

    def __init__(self, cfg: Gemma3Config, *, rngs: nnx.Rngs):
        self.embed_tokens = table(rngs, cfg.vocab_size, cfg.hidden_size, vocab=True)
        super().__init__(cfg, None, [PrePostLNBlock(cfg, layer, rngs=rngs)
                                     for layer in range(cfg.num_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def word_scale(self) -> float:
        """HF's scaled word embedding module multiplies the rows by √d, held as a tensor of
        the weights' dtype (float32 here: float32(√d), exactly as in a float32 HF run)."""
        return math.sqrt(self.config.hidden_size)
