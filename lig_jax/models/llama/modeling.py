"""Flax NNX modules for the Llama family (Llama, Mistral, Qwen2), split at the LIG boundaries.

One block (HF `layers.{l}`) maps z^(l) [S, d] → z^(l+1) [S, d] (docs/spec.md §1, §11):

    h         = RMSNorm_in(z)                                  `input_layernorm`
    q, k, v   = q/k/v_proj(h)          q: H heads, k/v: G kv groups of width d_h
    q, k      = RoPE(q), RoPE(k)       rotate-half at positions 0 … S−1
    k, v      = repeat each kv group to its H/G query heads     (HF repeat_kv)
    ctx       = softmax(q·kᵀ · d_h^−½ + causal/sliding mask) v     [S, H, d_h]
    u         = z + o_proj(ctx)                                 (u_MLP)
    z'        = u + down(act(gate(RMSNorm_post(u))) ⊙ up(RMSNorm_post(u)))

Biases: Qwen2 has q/k/v biases; Llama's `attention_bias` adds q/k/v/o biases and its
`mlp_bias` gate/up/down biases; Mistral has none. Sliding windows (Mistral
`sliding_window`, Qwen2 `layer_types` == "sliding_attention") let query q see key k iff
0 ≤ q − k < window, as HF's `sliding_window_overlay` (kv_idx > q_idx − window). RoPE
frequencies come from `lig_jax.models.rope` (default, linear, llama3, dynamic; dynamic
equals default within max_position_embeddings, the longest sequence we accept).
z^(0) = embed_tokens[ids] (no scaling); the final `norm` is applied only by `final_norm`
(targets of an output), never to a z^(l).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
from flax import nnx

from ..common import Dense, RMSNorm, activate, gated, table
from ..interface import PreLNDecoderBlock, StackConfig, TokenTableModel
from ..postmix import Postmix, dense_out
from ..premap import Premap, dense_heads, norm_of


@dataclass(frozen=True)
class LlamaConfig(StackConfig):
    """The hyper-parameters our Llama-family decoder needs, read from a HF config (the
    RoPE frequencies are HF's up to `max_tokens`)."""

    rms_norm_eps: float
    qkv_bias: bool  # Qwen2; Llama attention_bias
    o_bias: bool  # Llama attention_bias
    mlp_bias: bool  # Llama mlp_bias
    rope_type: str
    rope_theta: float
    inv_freq: tuple[float, ...]  # float32 RoPE inverse frequencies [head_dim // 2]
    sliding_windows: tuple[int | None, ...]  # per layer; None = full causal attention


class LlamaAttention(nnx.Module):
    """HF `self_attn`: q/k/v/o projections (the RoPE and mixing live in the block)."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        d, hd = cfg.hidden_size, cfg.head_dim
        self.q_proj = Dense(d, cfg.num_heads * hd, use_bias=cfg.qkv_bias, split="out", rngs=rngs)
        self.k_proj = Dense(d, cfg.num_kv_heads * hd, use_bias=cfg.qkv_bias, split="out", rngs=rngs)
        self.v_proj = Dense(d, cfg.num_kv_heads * hd, use_bias=cfg.qkv_bias, split="out", rngs=rngs)
        self.o_proj = Dense(cfg.num_heads * hd, d, use_bias=cfg.o_bias, split="in", rngs=rngs)


class LlamaMLP(nnx.Module):
    """HF `mlp`: down(act(gate(x)) ⊙ up(x)) (SwiGLU for act = silu)."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        d, i = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = Dense(d, i, use_bias=cfg.mlp_bias, split="out", rngs=rngs)
        self.up_proj = Dense(d, i, use_bias=cfg.mlp_bias, split="out", rngs=rngs)
        self.down_proj = Dense(i, d, use_bias=cfg.mlp_bias, split="in", rngs=rngs)
        self.activation = cfg.hidden_act

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(gated(activate(self.activation, self.gate_proj(x)), self.up_proj(x)))


class LlamaBlock(PreLNDecoderBlock, nnx.Module):
    """One Llama/Mistral/Qwen2 decoder layer with its ATT and MLP halves exposed."""

    def __init__(self, cfg: LlamaConfig, layer_idx: int, *, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = LlamaAttention(cfg, rngs=rngs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = LlamaMLP(cfg, rngs=rngs)
        self.num_heads = cfg.num_heads
        self.num_kv_heads = cfg.num_kv_heads
        self.head_dim = cfg.head_dim
        self.attention_scale = float(cfg.head_dim) ** -0.5
        self.inv_freq = cfg.inv_freq
        self.window = cfg.sliding_windows[layer_idx]

    def premap_parts(self) -> Premap:
        """RMSNorm, q/k/v projections (H query heads, G kv groups), RoPE on q and k."""
        attn = self.self_attn
        (wq, bq), (wk, bk), (wv, bv) = (dense_heads(m, n) for m, n in (
            (attn.q_proj, self.num_heads), (attn.k_proj, self.num_kv_heads),
            (attn.v_proj, self.num_kv_heads)))
        return Premap(norm_of(self.input_layernorm, "rms"), wq, wk, wv, bq, bk, bv,
                      inv_freq=self.inv_freq)

    def postmix_parts(self) -> Postmix:
        """o_proj per head (and its bias); pre-norm: no norm up to the residual sum."""
        return Postmix(*dense_out(self.self_attn.o_proj, self.num_heads))

    def out_proj(self, ctx_flat: jax.Array) -> jax.Array:
        return self.self_attn.o_proj(ctx_flat)

    def norm_2(self, u: jax.Array) -> jax.Array:
        return self.post_attention_layernorm(u)

    def ffn(self, h: jax.Array) -> jax.Array:
        return self.mlp(h)


class LlamaModel(TokenTableModel, nnx.Module):
    """Token embeddings (unscaled), a stack of `LlamaBlock`s and the final RMSNorm (`norm`,
    applied only by `final_norm`: the hidden states z^(l) stop before it)."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        self.embed_tokens = table(rngs, cfg.vocab_size, cfg.hidden_size, vocab=True)
        super().__init__(cfg, None, [LlamaBlock(cfg, l, rngs=rngs)
                                     for l in range(cfg.num_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
