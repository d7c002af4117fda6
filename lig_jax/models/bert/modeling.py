"""Flax NNX modules for post-LN encoders (BERT family), split at the LIG boundaries.

One block maps z^(l) [S, d] → z^(l+1) [S, d] in two explicit halves (docs/spec.md §1):

    ctx = attention_context(z)          [S, H, d_h]  per-head context before W_O (z→u target)
    u   = att(z) = LN_att(z + W_O·ctx + b_O)   [S, d]  ATT sub-block output (u→z input)
    z'  = mlp(u) = LN_out(u + W_2·act(W_1·u + b_1) + b_2)   [S, d]

Everything is written for one unbatched sentence; batches come from `jax.vmap`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from ..common import Dense, LayerNorm, activate, attention_mix, key_rows, table
from ..interface import LayerStackModel, StackConfig
from ..postmix import Postmix, dense_out
from ..premap import Premap, dense_heads, norm_of


@dataclass(frozen=True)
class EncoderConfig(StackConfig):
    """The hyper-parameters our encoder needs, read from a HF config."""

    layer_norm_eps: float
    type_vocab_size: int
    embedding_size: int  # ELECTRA's embeddings may be narrower than the blocks
    roberta_positions: bool  # positions start after padding_idx (RoBERTa, XLM-R, CamemBERT)

    @property
    def max_tokens(self) -> int:
        """Longest sequence the position table allows."""
        if self.roberta_positions:
            return self.max_position_embeddings - self.pad_token_id - 1
        return self.max_position_embeddings


class SelfAttention(nnx.Module):
    """Multi-head scaled dot-product attention core (HF `attention.self`)."""

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.query = Dense(d, d, split="out", rngs=rngs)
        self.key = Dense(d, d, split="out", rngs=rngs)
        self.value = Dense(d, d, split="out", rngs=rngs)
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.head_dim

    def _split(self, t: jax.Array) -> jax.Array:
        return t.reshape(t.shape[0], self.num_heads, self.head_dim)

    @property
    def scale(self) -> float:
        return 1.0 / float(self.head_dim) ** 0.5

    def qkv(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Token-wise projections [S, d] → q, k, v, each [S, H, d_h]."""
        return self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))

    def probs(self, x: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        """Attention probabilities A[h, query, key], [H, S, S]."""
        return attention_mix(*self.qkv(x), self.scale, key_rows(key_mask))[0]

    def __call__(self, x: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        """Per-head context before the output projection, [S, H, d_h]."""
        return attention_mix(*self.qkv(x), self.scale, key_rows(key_mask))[1]


class Attention(nnx.Module):
    """ATT sub-block: z ↦ u = LN_att(z + W_O·ctx + b_O)."""

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs):
        self.self_attn = SelfAttention(cfg, rngs=rngs)
        self.output = Dense(cfg.hidden_size, cfg.hidden_size, split="in", rngs=rngs)
        self.norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)

    def project(self, x: jax.Array, ctx: jax.Array) -> jax.Array:
        """u from the residual input x [S, d] and the head contexts ctx [S, H, d_h]."""
        return self.norm(x + self.output(ctx.reshape(ctx.shape[0], -1)))

    def __call__(self, x: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        return self.project(x, self.self_attn(x, key_mask))


class MLP(nnx.Module):
    """MLP sub-block: u ↦ z' = LN_out(u + W_2·act(W_1·u + b_1) + b_2). Token-wise."""

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs):
        self.intermediate = Dense(cfg.hidden_size, cfg.intermediate_size, split="out", rngs=rngs)
        self.output = Dense(cfg.intermediate_size, cfg.hidden_size, split="in", rngs=rngs)
        self.norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)
        self.activation = cfg.hidden_act

    def __call__(self, u: jax.Array, residual: bool = True) -> jax.Array:
        h = self.output(activate(self.activation, self.intermediate(u)))
        return self.norm(u + h if residual else h)


class PostLNBlock(nnx.Module):
    """One encoder layer with its ATT and MLP halves exposed (`models.interface.Block`)."""

    causal = False
    z2u_score = "l2"  # per-source ‖IG_i,:‖₂, the encoder convention (docs/spec.md §4)

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs):
        self.attention = Attention(cfg, rngs=rngs)
        self.mlp = MLP(cfg, rngs=rngs)

    def attention_context(self, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        """[S, d] → [S, H, d_h]: per-head context before W_O (the z→u target)."""
        return self.attention.self_attn(z, key_mask)

    def attention_probs(self, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        """[S, d] → [H, S, S] attention probabilities (query, key)."""
        return self.attention.self_attn.probs(z, key_mask)

    def att(self, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        """[S, d] → u [S, d]: the ATT sub-block output (after residual + LayerNorm)."""
        return self.attention(z, key_mask)

    def mlp_out(self, u: jax.Array, residual: bool = True, z: jax.Array | None = None
                ) -> jax.Array:
        """[S, d] → z^(l+1) [S, d]: the MLP sub-block, token-wise (z is not needed)."""
        return self.mlp(u, residual)

    def mlp_after(self, y: jax.Array) -> jax.Array:
        """z^(l+1) from y = LN_att(x + W_O·ctx + b_O) (= u, `Postmix`)."""
        return self.mlp(y)

    def __call__(self, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        return self.mlp(self.attention(z, key_mask))

    # The decomposition the structured (fast) IG path uses (docs/method.md):
    # B(x)_j = postmap(x_j, ctx_j), ctx = mix(premap(x)); premap and postmap are token-wise.

    @property
    def num_heads(self) -> int:
        return self.attention.self_attn.num_heads

    @property
    def attention_scale(self) -> float:
        return self.attention.self_attn.scale

    def attention_mask(self, s: int, key_mask: jax.Array | None) -> jax.Array | None:
        """Bidirectional: only padded keys are hidden, [1, S] or None."""
        return key_rows(key_mask)

    def attention_bias(self, s: int) -> None:
        return None

    def premap(self, z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Token-wise [S, d] → (q, k, v) [S, H, d_h]; affine for post-LN encoders."""
        return self.premap_parts()(z)

    def postmap(self, z: jax.Array, ctx: jax.Array, residual: bool = True) -> jax.Array:
        """Token-wise (z [S, d], ctx [S, H, d_h]) → z^(l+1) [S, d]."""
        return self.mlp(self.attention.project(z, ctx), residual)

    def att_from(self, x: jax.Array, ctx: jax.Array) -> jax.Array:
        """Token-wise u [S, d] = LN_att(x + W_O·ctx + b_O) from rows x and contexts ctx."""
        return self.attention.project(x, ctx)

    def premap_parts(self) -> Premap:
        """Affine: x W + b per head for q, k and v (post-LN: no norm before them)."""
        sa = self.attention.self_attn
        (wq, bq), (wk, bk), (wv, bv) = (dense_heads(m, sa.num_heads)
                                        for m in (sa.query, sa.key, sa.value))
        return Premap(None, wq, wk, wv, bq, bk, bv)

    def postmix_parts(self) -> Postmix:
        """W_O per head and b_O; LN_att after the residual sum."""
        att = self.attention
        return Postmix(*dense_out(att.output, self.num_heads),
                       sum_norm=norm_of(att.norm, "layer"))


class Embeddings(nnx.Module):
    """Word + position + token-type embeddings, LayerNorm (+ ELECTRA's projection)."""

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs):
        e = cfg.embedding_size
        self.word = table(rngs, cfg.vocab_size, e, vocab=True)
        self.position = table(rngs, cfg.max_position_embeddings, e)
        self.token_type = table(rngs, cfg.type_vocab_size, e)
        self.norm = LayerNorm(e, cfg.layer_norm_eps)
        self.project = Dense(e, cfg.hidden_size, rngs=rngs) if e != cfg.hidden_size else None
        self.pad_token_id = cfg.pad_token_id
        self.roberta_positions = cfg.roberta_positions

    def position_ids(self, input_ids: jax.Array) -> jax.Array:
        if self.roberta_positions:
            not_pad = (input_ids != self.pad_token_id).astype(jnp.int32)
            return jnp.cumsum(not_pad) * not_pad + self.pad_token_id
        return jnp.arange(input_ids.shape[0])

    def words(self, input_ids: jax.Array) -> jax.Array:
        """[S] int → word embeddings [S, e] (HF `word_embeddings`)."""
        return self.word[...][input_ids]

    def from_words(self, words: jax.Array, input_ids: jax.Array) -> jax.Array:
        """(words [S, e], ids [S]) → z^(0) [S, d]: + token type 0 (single sentence) and
        position embeddings, LayerNorm (and ELECTRA's projection)."""
        x = words + self.token_type[...][0] + self.position[...][self.position_ids(input_ids)]
        x = self.norm(x)
        return self.project(x) if self.project is not None else x

    def __call__(self, input_ids: jax.Array) -> jax.Array:
        """[S] int → z^(0) [S, d]."""
        return self.from_words(self.words(input_ids), input_ids)


class EncoderModel(LayerStackModel, nnx.Module):
    """Embeddings and a stack of `PostLNBlock`s."""

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg, Embeddings(cfg, rngs=rngs),
                         [PostLNBlock(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
