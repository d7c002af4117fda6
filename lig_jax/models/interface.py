"""What every block and model must offer for LIG (all families implement this).

A block maps z^(l) [S, d] → z^(l+1) [S, d] and is written for one unbatched sentence.
Tokens meet only inside the softmax mixing, so every block factors as

    (q, k, v) = premap(x)                         token-wise (norms, projections, RoPE)
    A, ctx    = attention_mix(q, k, v, attention_scale, attention_mask(S, key_mask),
                              attention_bias(S))
    B(x)_j    = postmap(x_j, ctx_j)               token-wise (W_O, residuals, norms, MLP)

and the LIG boundaries are

    attention_context(z)  [S, H, d_h]   u_ATT: per-head context before W_O (z→u target)
    att(z)                [S, w]        u_MLP: the u→z input (width w = d, or H·d_h)
    mlp_out(u, residual, z)  [S, d]     z^(l+1) from u_MLP (token-wise; z = the block
                                        input rows, needed only where the map reads it)

Shapes: q, k, v are [S, H, d_h] with one slot per *query* head (GQA/MQA: the block
repeats each kv group to its query heads inside premap). RoPE blocks rotate by the row
index 0..S−1 (positions are the row numbers). Padding rows sit at the end and are hidden
by `key_mask` [S] (True = real token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from flax import nnx

from .common import attention_mix, causal_mask, run_layers
from .postmix import Postmix
from .premap import Premap


class Block(Protocol):
    num_heads: int  # query heads H
    attention_scale: float  # τ in scores = τ⟨q, k⟩
    causal: bool  # True for decoders (source i > target j gets exactly 0)
    z2u_score: str  # "l2" (encoders: ‖IG_i,:‖₂ per source) or "signed" (decoders)

    def premap_parts(self) -> Premap:
        """The token-wise pre-attention map as data (norm, projections, q/k norms, RoPE)."""
        ...

    def premap(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]: ...

    def postmix_parts(self) -> Postmix:
        """The token-wise map from the head contexts to the attention sub-layer's output
        (W_O per head, b_O, the norms around the residual sum), as data."""
        ...

    def attention_mask(self, s: int, key_mask: jax.Array | None) -> jax.Array | None:
        """bool [S_q, S_k] (causal / sliding window / padding) or None for no mask."""
        ...

    def attention_bias(self, s: int) -> jax.Array | None:
        """Additive score bias [H, S, S] (relative positions) or None."""
        ...

    def postmap(self, x: jax.Array, ctx: jax.Array, residual: bool = True) -> jax.Array: ...

    def attention_context(self, z: jax.Array, key_mask: jax.Array | None = None
                          ) -> jax.Array: ...

    def attention_probs(self, z: jax.Array, key_mask: jax.Array | None = None
                        ) -> jax.Array: ...

    def att(self, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array: ...

    def att_from(self, x: jax.Array, ctx: jax.Array) -> jax.Array:
        """Token-wise u_MLP [S, w] from block input rows x [S, d] and contexts [S, H, d_h]."""
        ...

    def mlp_out(self, u: jax.Array, residual: bool = True, z: jax.Array | None = None
                ) -> jax.Array: ...

    def mlp_after(self, y: jax.Array) -> jax.Array:
        """z^(l+1) [S, d] from y [S, d], the attention sub-layer's output as `Postmix`
        computes it (the residual stream after the attention)."""
        ...

    def __call__(self, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array: ...


class Model(Protocol):
    config: object  # has num_layers, num_heads, hidden_size, max_tokens, pad_token_id
    layers: list  # nnx.List of blocks

    def hidden_states(self, input_ids: jax.Array, key_mask: jax.Array | None = None,
                      upto: int | None = None) -> jax.Array:
        """[S] → [n+1, S, d]: z^(0) … z^(n), n = upto or L (HF `hidden_states`, before any
        final norm). `LayerStackModel` implements it."""
        ...


class FactoredBlock:
    """The boundary methods a block derives from its factors, the same way in every family
    (mix in before `nnx.Module`). The block supplies `premap_parts`, `attention_scale`,
    `attention_mask`, `attention_bias`, `project(x, ctx)` → u_MLP and `mlp_out`; a block
    whose u_MLP is not `project(z, ctx)` (Gemma3) overrides `att_from`."""

    def premap(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Token-wise [S, d] → (q, k, v), each [S, H, d_h] (kv repeated to query heads)."""
        return self.premap_parts()(x)

    def mix(self, z: jax.Array, key_mask: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        """[S, d] → (probabilities [H, S_q, S_k], context [S, H, d_h])."""
        s = z.shape[0]
        return attention_mix(*self.premap(z), self.attention_scale,
                             self.attention_mask(s, key_mask), self.attention_bias(s))

    def attention_context(self, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        """[S, d] → u_ATT [S, H, d_h]: per-head context before the output projection."""
        return self.mix(z, key_mask)[1]

    def attention_probs(self, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        """[S, d] → [H, S_q, S_k] attention probabilities."""
        return self.mix(z, key_mask)[0]

    def att_from(self, x: jax.Array, ctx: jax.Array) -> jax.Array:
        """Token-wise (x [S, d], ctx [S, H, d_h]) → u_MLP [S, w]."""
        return self.project(x, ctx)

    def att(self, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        """[S, d] → u_MLP [S, w]: the ATT sub-block output."""
        return self.att_from(z, self.attention_context(z, key_mask))

    def postmap(self, x: jax.Array, ctx: jax.Array, residual: bool = True) -> jax.Array:
        """Token-wise (x [S, d], ctx [S, H, d_h]) → z^(l+1) [S, d]."""
        return self.mlp_out(self.att_from(x, ctx), residual, x)

    def mlp_after(self, y: jax.Array) -> jax.Array:
        """z^(l+1) from the attention sub-layer's output y (`Postmix`): where u_MLP is y
        (every block but Gemma 3's), the MLP half (which reads no other row)."""
        return self.mlp_out(y, True)


class PreLNDecoderBlock(FactoredBlock):
    """The block protocol for pre-LN decoders (GPT-2, the Llama family), in terms of the
    hooks a subclass provides: `premap_parts`, `out_proj(ctx_flat)`, `norm_2(u)`,
    `ffn(h)` and the attributes `num_heads`, `attention_scale`, `window` (None = plain
    causal). Mix in before `nnx.Module`.

        u  = att(z) = z + W_O·ctx + b_O          [S, d]  (u_MLP)
        z' = mlp_out(u) = u + MLP(LN2(u))        [S, d]
    """

    causal = True
    z2u_score = "signed"
    num_heads: int
    attention_scale: float
    window: int | None = None

    def out_proj(self, ctx_flat: jax.Array) -> jax.Array:
        """[S, H·d_h] → [S, d]: W_O·ctx + b_O."""
        raise NotImplementedError

    def norm_2(self, u: jax.Array) -> jax.Array:
        raise NotImplementedError

    def ffn(self, h: jax.Array) -> jax.Array:
        raise NotImplementedError

    def attention_mask(self, s: int, key_mask: jax.Array | None) -> jax.Array:
        """bool [S, S]: causal (and sliding window) AND key_mask[None, :]."""
        return causal_mask(s, self.window, key_mask)

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


@dataclass(frozen=True)
class StackConfig:
    """The hyper-parameters every family's config holds (each family's config adds its
    own fields after these); `stack_fields` reads them from a HF config."""

    model_type: str
    vocab_size: int
    hidden_size: int  # d
    num_layers: int  # L
    num_heads: int  # H query heads
    num_kv_heads: int  # G kv groups (= H without GQA/MQA)
    head_dim: int  # d_h
    intermediate_size: int  # the MLP's hidden width
    hidden_act: str  # a key of `common.ACTIVATIONS`
    max_position_embeddings: int
    pad_token_id: int

    @property
    def max_tokens(self) -> int:
        """Longest sequence the model accepts (its position table or RoPE context)."""
        return self.max_position_embeddings


def stack_fields(hf: Any, act: str, *, hidden: int, layers: int, heads: int, ffn: int,
                 positions: int, pad: int, kv_heads: int | None = None,
                 head_dim: int | None = None) -> dict[str, Any]:
    """The `StackConfig` fields of a HF config, given under the family's own names
    (kv_heads default: heads; head_dim default: hidden // heads)."""
    return dict(model_type=hf.model_type, vocab_size=int(hf.vocab_size),
                hidden_size=int(hidden), num_layers=int(layers), num_heads=int(heads),
                num_kv_heads=int(kv_heads or heads),
                head_dim=int(head_dim or hidden // heads), intermediate_size=int(ffn),
                hidden_act=act, max_position_embeddings=int(positions), pad_token_id=int(pad))


class LayerStackModel:
    """The shell every model shares (mix in before `nnx.Module`): its config, its blocks
    `layers`, z^(0) from `embeddings` (a module, or the family's own `embed`), and the
    hidden-states loop."""

    config: Any
    layers: list

    def __init__(self, cfg: Any, embeddings: Any, layers: list) -> None:
        self.config = cfg
        if embeddings is not None:
            self.embeddings = embeddings
        self.layers = nnx.List(layers)

    def word_embed(self, input_ids: jax.Array) -> jax.Array:
        """[S] int → the word embeddings [S, e]: the output of the HF model's input
        embedding module (`get_input_embeddings()`), what input attributions are taken at."""
        return self.embeddings.words(input_ids)

    def embed_words(self, words: jax.Array, input_ids: jax.Array) -> jax.Array:
        """(word embeddings [S, e], ids [S]) → z^(0) [S, d]: what the family adds to the
        words (positions, token types, the embedding norm); the ids give the positions."""
        return self.embeddings.from_words(words, input_ids)

    def embed(self, input_ids: jax.Array) -> jax.Array:
        """[S] int → z^(0) [S, d]."""
        return self.embed_words(self.word_embed(input_ids), input_ids)

    def final_norm(self, z: jax.Array) -> jax.Array:
        """z^(L) [S, d] → the last hidden state HF returns (the stack's final norm where the
        family has one; identity for post-LN encoders)."""
        return z

    def hidden_states(self, input_ids: jax.Array, key_mask: jax.Array | None = None,
                      upto: int | None = None) -> jax.Array:
        """[S] → [n+1, S, d]: z^(0) … z^(n), n = `upto` (default all L blocks); z^(L) is the
        last block's output, before any final norm (HF `hidden_states`)."""
        blocks = list(self.layers) if upto is None else list(self.layers)[:upto]
        return run_layers(self.embed(input_ids), blocks, key_mask)


class TokenTableModel(LayerStackModel):
    """The shell of the rotary decoders (Llama family, Gemma 3): z^(0) is the token table's
    rows `embed_tokens[ids]` times `word_scale` (no positions: RoPE), and the stack ends in a
    final norm `norm`, applied only by `final_norm` (the hidden states stop before it).
    A family sets `embed_tokens` and `norm` in its `__init__`."""

    embed_tokens: Any
    norm: Any

    def word_scale(self) -> float | None:
        """The factor HF's input embedding module multiplies the rows by (None: none)."""
        return None

    def word_embed(self, input_ids: jax.Array) -> jax.Array:
        """[S] int → embed_tokens[ids] (· word_scale) [S, d], HF's input embedding module.

        The scale is held in the table's dtype, as HF holds it in the weights' dtype."""
        rows = self.embed_tokens[...][input_ids]
        scale = self.word_scale()
        return rows if scale is None else rows * jnp.asarray(scale, dtype=rows.dtype)

    def embed_words(self, words: jax.Array, input_ids: jax.Array) -> jax.Array:
        """z^(0) = the word embeddings (no positions: RoPE)."""
        return words

    def token_table(self) -> jax.Array:
        """The token embedding table [V, d], unscaled (a tied LM head reads it)."""
        return self.embed_tokens[...]

    def final_norm(self, z: jax.Array) -> jax.Array:
        """z^(L) [S, d] → norm(z^(L)), what the LM head reads; not part of any z^(l)."""
        return self.norm(z)
