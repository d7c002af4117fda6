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

from typing import Protocol

import jax

from .common import attention_mix


class Block(Protocol):
    num_heads: int  # query heads H
    attention_scale: float  # τ in scores = τ⟨q, k⟩
    causal: bool  # True for decoders (source i > target j gets exactly 0)
    z2u_score: str  # "l2" (encoders: ‖IG_i,:‖₂ per source) or "signed" (decoders)
    affine_premap: bool  # premap = x @ W + b per head (post-LN encoders): premap_kernels()

    def premap(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]: ...

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

    def mlp_out(self, u: jax.Array, residual: bool = True, z: jax.Array | None = None
                ) -> jax.Array: ...

    def __call__(self, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array: ...


class Model(Protocol):
    config: object  # has num_layers, num_heads, hidden_size, max_tokens, pad_token_id
    layers: list  # nnx.List of blocks

    def hidden_states(self, input_ids: jax.Array, key_mask: jax.Array | None = None
                      ) -> jax.Array:
        """[S] → [L+1, S, d]: z^(0) … z^(L] (HF `hidden_states`, before any final norm)."""
        ...


class FactoredBlock:
    """The boundary methods a block derives from its factors, the same way in every family
    (mix in before `nnx.Module`). The block supplies `premap`, `attention_scale`,
    `attention_mask`, `attention_bias`, `project(x, ctx)` → u_MLP and `mlp_out`; a block
    whose u_MLP is not `project(z, ctx)` (Gemma3) overrides `att` and `postmap`."""

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

    def att(self, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        """[S, d] → u_MLP [S, w]: the ATT sub-block output."""
        return self.project(z, self.attention_context(z, key_mask))

    def postmap(self, x: jax.Array, ctx: jax.Array, residual: bool = True) -> jax.Array:
        """Token-wise (x [S, d], ctx [S, H, d_h]) → z^(l+1) [S, d]."""
        return self.mlp_out(self.project(x, ctx), residual)
