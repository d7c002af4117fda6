"""Flax NNX modules for MPNet, split at the LIG boundaries (`models.interface.Block`).

MPNet is a post-LN encoder like BERT plus a bidirectional relative-position score bias
(T5-style buckets, one table shared by all layers). One block maps z = z^(l) [S, d] →
z^(l+1) [S, d] (HF `encoder.layer.{l}`):

    q, k, v = z W_Q + b_Q, z W_K + b_K, z W_V + b_V      (`attention.attn.{q,k,v}`)
    ctx     = softmax(q kᵀ / √d_h + B) v                   [S, H, d_h]
    u       = LN_att(z + W_O·ctx + b_O)                    (`attention.attn.o`,
                                                            `attention.LayerNorm`)
    z'      = LN_out(u + W_2·act(W_1·u + b_1) + b_2)       (`intermediate.dense`,
                                                            `output.dense`, `output.LayerNorm`)

with B[h, j, i] = table[bucket(i − j), h] (`encoder.relative_attention_bias`, [buckets, H]).

LIG boundaries:

* u_ATT (z→u target) = ctx, head h's context Σ_i A^h_{j,i} v_{i,h} *before* `attention.attn.o`
  (width d_h per head, v with its bias, A including the relative bias);
* u_MLP (u→z input) = att(z) = u = attention.LayerNorm(z + o(ctx)), the ATT sub-block
  output after residual and LayerNorm (width d; "per head" = contiguous d_h slices);
  mlp_out(u, residual) = output.LayerNorm(u + output.dense(act(intermediate.dense(u)))),
  without `u +` when residual=False.

Buckets follow HF's `MPNetEncoder.compute_position_bias` exactly: it always calls
`relative_position_bucket` with 32 buckets and max_distance 128, whatever
`relative_attention_num_buckets` says (that only sizes the table). Each block holds its
own copy of the shared table. Embeddings: word + position + LayerNorm, position ids as
in RoBERTa with HF's hard-coded padding index 1: cumsum(ids ≠ 1)·(ids ≠ 1) + 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..distilbert.modeling import Embeddings as PlainEmbeddings
from ..distilbert.modeling import PostLNBlock
from ..interface import LayerStackModel, StackConfig

NUM_BUCKETS = 32  # what HF's compute_position_bias always passes
MAX_DISTANCE = 128
PADDING_IDX = 1  # MPNetEmbeddings.padding_idx, hard-coded in HF


@dataclass(frozen=True)
class MPNetConfig(StackConfig):
    """The hyper-parameters our MPNet needs, read from a HF config."""

    layer_norm_eps: float
    relative_attention_num_buckets: int = NUM_BUCKETS

    @property
    def max_tokens(self) -> int:
        """Longest sequence the position table allows (positions start after index 1)."""
        return self.max_position_embeddings - PADDING_IDX - 1


def relative_buckets(s: int, num_buckets: int = NUM_BUCKETS,
                     max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """Bucket of key i for query j, int [S_q, S_k], as HF's `relative_position_bucket`.

    n = j − i; keys after the query (n < 0) use the upper half of the buckets; |n| below
    a quarter of the buckets is exact, larger |n| is log-spaced up to max_distance. The
    log is taken in float32 as in PyTorch (bucket edges fall on exact float32 values).
    """
    pos = np.arange(s)
    n = pos[:, None] - pos[None, :]  # query − key
    half = num_buckets // 2
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    ratio = np.maximum(n, 1).astype(np.float32) / np.float32(max_exact)
    large = (np.log(ratio) / np.float32(math.log(max_distance / max_exact))
             * np.float32(half - max_exact)).astype(np.int64) + max_exact
    large = np.minimum(large, half - 1)
    return ret + np.where(n < max_exact, n, large)


class MPNetBlock(PostLNBlock):
    """A post-LN block whose scores get the relative-position bias B [H, S, S]."""

    def __init__(self, cfg: MPNetConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg.hidden_size, cfg.num_heads, cfg.intermediate_size, cfg.hidden_act,
                         cfg.layer_norm_eps, rngs=rngs)
        self.relative_bias = nnx.Param(
            jax.random.normal(rngs.params(), (cfg.relative_attention_num_buckets,
                                              cfg.num_heads)) * 0.02)

    def attention_bias(self, s: int) -> jax.Array:
        """Additive score bias [H, S_q, S_k]: table[bucket(key − query), head]."""
        return jnp.transpose(self.relative_bias[...][relative_buckets(s)], (2, 0, 1))


class Embeddings(PlainEmbeddings):
    """Word + position embeddings (RoBERTa-style position ids), then LayerNorm."""

    @staticmethod
    def position_ids(input_ids: jax.Array) -> jax.Array:
        """[S] → [S]: 2, 3, … for real tokens, 1 for the padding id 1 (HF's rule)."""
        not_pad = (input_ids != PADDING_IDX).astype(jnp.int32)
        return jnp.cumsum(not_pad) * not_pad + PADDING_IDX


class MPNetModel(LayerStackModel, nnx.Module):
    """Embeddings and a stack of `MPNetBlock`s (HF `MPNetModel` without the pooler)."""

    def __init__(self, cfg: MPNetConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg, Embeddings(cfg, cfg.layer_norm_eps, rngs=rngs),
                         [MPNetBlock(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
