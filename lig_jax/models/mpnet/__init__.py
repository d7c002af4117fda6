"""MPNet: a post-LN encoder with a relative-position score bias (block-only in the
reference; here with ATT/MLP halves)."""

from __future__ import annotations

from typing import Any

from flax import nnx

from ...errors import LIGError
from ..common import check_activation, check_heads
from ..interface import stack_fields
from .modeling import NUM_BUCKETS, PADDING_IDX, MPNetBlock, MPNetConfig, MPNetModel


def read_config(hf: Any) -> MPNetConfig:
    """HF `MPNetConfig` → ours; unsupported options get a one-line `LIGError`."""
    act = check_activation(hf.hidden_act, "hidden_act", "mpnet")
    check_heads(hf.hidden_size, hf.num_attention_heads, "hidden_size", "num_attention_heads")
    buckets = int(getattr(hf, "relative_attention_num_buckets", NUM_BUCKETS))
    if buckets < NUM_BUCKETS:
        raise LIGError(f"relative_attention_num_buckets {buckets} is not supported for mpnet: "
                       f"HF always looks up {NUM_BUCKETS} buckets. Allowed: ≥ {NUM_BUCKETS}")
    if hf.max_position_embeddings <= PADDING_IDX + 1:
        raise LIGError(f"max_position_embeddings {hf.max_position_embeddings} of mpnet leaves "
                       f"no positions after the padding index {PADDING_IDX}. Allowed: > "
                       f"{PADDING_IDX + 1}")
    return MPNetConfig(
        **stack_fields(hf, act, hidden=hf.hidden_size, layers=hf.num_hidden_layers,
                       heads=hf.num_attention_heads, ffn=hf.intermediate_size,
                       positions=hf.max_position_embeddings,
                       pad=hf.pad_token_id if hf.pad_token_id is not None else PADDING_IDX),
        layer_norm_eps=float(hf.layer_norm_eps),
        relative_attention_num_buckets=buckets,
    )


def build(cfg: MPNetConfig, rngs: nnx.Rngs) -> MPNetModel:
    return MPNetModel(cfg, rngs=rngs)


__all__ = ["MPNetBlock", "MPNetConfig", "MPNetModel", "build", "read_config"]
