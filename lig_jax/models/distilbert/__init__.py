"""DistilBERT: a post-LN encoder (block-only in the reference; here with ATT/MLP halves)."""

from __future__ import annotations

from typing import Any

from flax import nnx

from ..common import check_activation, check_heads
from ..interface import stack_fields
from .modeling import DistilBertConfig, DistilBertModel, PostLNBlock


def read_config(hf: Any) -> DistilBertConfig:
    """HF `DistilBertConfig` → ours; unsupported options get a one-line `LIGError`."""
    act = check_activation(hf.activation, "activation", "distilbert")
    check_heads(hf.dim, hf.n_heads, "dim", "n_heads")
    return DistilBertConfig(
        **stack_fields(hf, act, hidden=hf.dim, layers=hf.n_layers, heads=hf.n_heads,
                       ffn=hf.hidden_dim, positions=hf.max_position_embeddings,
                       pad=hf.pad_token_id if hf.pad_token_id is not None else 0),
        sinusoidal_pos_embds=bool(getattr(hf, "sinusoidal_pos_embds", False)),
    )


def build(cfg: DistilBertConfig, rngs: nnx.Rngs) -> DistilBertModel:
    return DistilBertModel(cfg, rngs=rngs)


__all__ = ["DistilBertConfig", "DistilBertModel", "PostLNBlock", "build", "read_config"]
