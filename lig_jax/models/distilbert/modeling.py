"""Flax NNX modules for DistilBERT, split at the LIG boundaries (`models.interface.Block`).

DistilBERT is a post-LN encoder like BERT (no token types, LayerNorm eps fixed at 1e-12).
One block maps z = z^(l) [S, d] → z^(l+1) [S, d] (HF `transformer.layer.{l}`):

    q, k, v = z W_Q + b_Q, z W_K + b_K, z W_V + b_V      (`attention.{q,k,v}_lin`)
    ctx     = softmax(q kᵀ / √d_h) v                       [S, H, d_h]
    u       = LN_sa(z + W_O·ctx + b_O)                     (`attention.out_lin`, `sa_layer_norm`)
    z'      = LN_out(u + W_2·act(W_1·u + b_1) + b_2)       (`ffn.lin1`/`lin2`, `output_layer_norm`)

LIG boundaries:

* u_ATT (z→u target) = ctx, head h's context Σ_i A^h_{j,i} v_{i,h} *before* `out_lin`
  (width d_h per head, v with its bias);
* u_MLP (u→z input) = att(z) = u = sa_layer_norm(z + out_lin(ctx)), the ATT sub-block
  output after residual and LayerNorm (width d; "per head" = contiguous d_h slices);
  mlp_out(u, residual) = output_layer_norm(u + ffn(u)), without `u +` when
  residual=False.

Position embeddings are a table in the checkpoint also when `sinusoidal_pos_embds` is set
(HF fills the `nn.Embedding` sinusoidally at init and saves it like any weight).

`PostLNBlock` here is also the base of MPNet's block (which adds a relative-position score
bias through `attention_bias`). Everything is written for one unbatched sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from ..common import Dense, LayerNorm, activate, key_rows, table
from ..interface import FactoredBlock, LayerStackModel, StackConfig
from ..postmix import Postmix, dense_out
from ..premap import Premap, dense_heads, norm_of

LAYER_NORM_EPS = 1e-12  # hard-coded in HF DistilBERT (embeddings and both block norms)


@dataclass(frozen=True)
class DistilBertConfig(StackConfig):
    """The hyper-parameters our DistilBERT needs, read from a HF config."""

    sinusoidal_pos_embds: bool = False
    layer_norm_eps: float = LAYER_NORM_EPS


class PostLNBlock(FactoredBlock, nnx.Module):
    """One post-LN encoder layer with its ATT and MLP halves exposed.

    Parameters: query/key/value/output [d, d] (+ bias), attn_norm (LN after attention),
    ffn_in [d, w], ffn_out [w, d], out_norm (LN after the MLP).
    """

    causal = False
    z2u_score = "l2"  # encoder convention: per-source ‖IG_i,:‖₂ (docs/spec.md §4)

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int,
                 hidden_act: str, layer_norm_eps: float, *, rngs: nnx.Rngs):
        d = hidden_size
        self.query = Dense(d, d, split="out", rngs=rngs)
        self.key = Dense(d, d, split="out", rngs=rngs)
        self.value = Dense(d, d, split="out", rngs=rngs)
        self.output = Dense(d, d, split="in", rngs=rngs)
        self.attn_norm = LayerNorm(d, layer_norm_eps)
        self.ffn_in = Dense(d, intermediate_size, split="out", rngs=rngs)
        self.ffn_out = Dense(intermediate_size, d, split="in", rngs=rngs)
        self.out_norm = LayerNorm(d, layer_norm_eps)
        self.activation = hidden_act
        self.num_heads = num_heads
        self.head_dim = d // num_heads
        self.attention_scale = 1.0 / float(self.head_dim) ** 0.5

    # ---- the token-wise maps and the mixing inputs (docs/method.md, "The block as data")

    def premap_parts(self) -> Premap:
        """Affine: x W + b per head for q, k and v (no norm before the projections)."""
        (wq, bq), (wk, bk), (wv, bv) = (dense_heads(m, self.num_heads)
                                        for m in (self.query, self.key, self.value))
        return Premap(None, wq, wk, wv, bq, bk, bv)

    def postmix_parts(self) -> Postmix:
        """W_O per head and b_O; attn_norm after the residual sum."""
        return Postmix(*dense_out(self.output, self.num_heads),
                       sum_norm=norm_of(self.attn_norm, "layer"))

    def attention_mask(self, s: int, key_mask: jax.Array | None) -> jax.Array | None:
        """Bidirectional: bool [1, S] hiding padded keys, or None (no padding)."""
        return key_rows(key_mask)

    def attention_bias(self, s: int) -> jax.Array | None:
        """No score bias for DistilBERT (MPNet overrides this)."""
        return None

    def project(self, x: jax.Array, ctx: jax.Array) -> jax.Array:
        """u = LN_att(x + W_O·ctx + b_O) from x [S, d] and ctx [S, H, d_h] → [S, d]."""
        return self.attn_norm(x + self.output(ctx.reshape(ctx.shape[0], -1)))

    # ---- the LIG boundaries

    def mlp_out(self, u: jax.Array, residual: bool = True, z: jax.Array | None = None
                ) -> jax.Array:
        """[S, d] → z^(l+1) [S, d]: LN_out(u + FFN(u)) (no `u +` if not residual);
        token-wise, `z` is not needed."""
        h = self.ffn_out(activate(self.activation, self.ffn_in(u)))
        return self.out_norm(u + h if residual else h)

    def __call__(self, z: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        """[S, d] → z^(l+1) [S, d]."""
        return self.mlp_out(self.att(z, key_mask))


class Embeddings(nnx.Module):
    """Word + position embeddings (positions 0..S−1), then LayerNorm."""

    def __init__(self, cfg: StackConfig, eps: float, *, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.word = table(rngs, cfg.vocab_size, d, vocab=True)
        self.position = table(rngs, cfg.max_position_embeddings, d)
        self.norm = LayerNorm(d, eps)

    @staticmethod
    def position_ids(input_ids: jax.Array) -> jax.Array:
        """[S] → [S]: the rows of the position table, 0..S−1."""
        return jnp.arange(input_ids.shape[0])

    def words(self, input_ids: jax.Array) -> jax.Array:
        """[S] int → word embeddings [S, d]."""
        return self.word[...][input_ids]

    def from_words(self, words: jax.Array, input_ids: jax.Array) -> jax.Array:
        """(words [S, d], ids [S]) → z^(0) = LN(words + position embeddings)."""
        return self.norm(words + self.position[...][self.position_ids(input_ids)])

    def __call__(self, input_ids: jax.Array) -> jax.Array:
        """[S] int → z^(0) [S, d]."""
        return self.from_words(self.words(input_ids), input_ids)


class DistilBertModel(LayerStackModel, nnx.Module):
    """Embeddings and a stack of `PostLNBlock`s (HF `DistilBertModel`)."""

    def __init__(self, cfg: DistilBertConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg, Embeddings(cfg, cfg.layer_norm_eps, rngs=rngs), [
            PostLNBlock(cfg.hidden_size, cfg.num_heads, cfg.intermediate_size, cfg.hidden_act,
                        cfg.layer_norm_eps, rngs=rngs)
            for _ in range(cfg.num_layers)])
