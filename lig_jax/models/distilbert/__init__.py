"""DistilBERT: a post-LN encoder (block-only in the reference; here with ATT/MLP halves)."""

from __future__ import annotations

from typing import Any

from flax import nnx

from ..common import check_activation, check_heads
from .modeling import DistilBertConfig, DistilBertModel, PostLNBlock


def read_config(hf: Any) -> DistilBertConfig:
    """HF `DistilBertConfig` → ours; unsupported options get a one-line `LIGError`."""
    act = check_activation(hf.activation, "activation", "distilbert")
    check_heads(hf.dim, hf.n_heads, "dim", "n_heads")
    return DistilBertConfig(
        model_type=hf.model_type,
        vocab_size=int(hf.vocab_size),
        hidden_size=int(hf.dim),
        num_layers=int(hf.n_layers),
        num_heads=int(hf.n_heads),
        intermediate_size=int(hf.hidden_dim),
        hidden_act=act,
        max_position_embeddings=int(hf.max_position_embeddings),
        pad_token_id=int(hf.pad_token_id if hf.pad_token_id is not None else 0),
        sinusoidal_pos_embds=bool(getattr(hf, "sinusoidal_pos_embds", False)),
    )


def build(cfg: DistilBertConfig, rngs: nnx.Rngs) -> DistilBertModel:
    return DistilBertModel(cfg, rngs=rngs)


__all__ = ["DistilBertConfig", "DistilBertModel", "PostLNBlock", "build", "read_config"]
