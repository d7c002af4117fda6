"""Post-LN encoders: BERT, RoBERTa, ELECTRA, XLM-RoBERTa, CamemBERT."""

from typing import Any

from flax import nnx

from ...errors import LIGError
from ..common import check_activation, check_heads
from ..interface import stack_fields
from .modeling import EncoderConfig, EncoderModel, PostLNBlock

ROBERTA_POSITION_TYPES = ("roberta", "xlm-roberta", "camembert")


def read_config(hf: Any) -> EncoderConfig:
    """Read a BERT-family HF config; unsupported variants get a one-line error."""
    mt = hf.model_type
    pos_type = getattr(hf, "position_embedding_type", "absolute") or "absolute"
    if pos_type != "absolute":
        raise LIGError(
            f"position_embedding_type {pos_type!r} is not supported for {mt}. Allowed: absolute"
        )
    act = check_activation(hf.hidden_act, "hidden_act", mt)
    check_heads(hf.hidden_size, hf.num_attention_heads, "hidden_size", "num_attention_heads")
    return EncoderConfig(
        **stack_fields(hf, act, hidden=hf.hidden_size, layers=hf.num_hidden_layers,
                       heads=hf.num_attention_heads, ffn=hf.intermediate_size,
                       positions=hf.max_position_embeddings,
                       pad=hf.pad_token_id if hf.pad_token_id is not None else 0),
        layer_norm_eps=float(hf.layer_norm_eps),
        type_vocab_size=hf.type_vocab_size,
        embedding_size=int(getattr(hf, "embedding_size", None) or hf.hidden_size),
        roberta_positions=mt in ROBERTA_POSITION_TYPES,
    )


def build(cfg: EncoderConfig, rngs: nnx.Rngs) -> EncoderModel:
    return EncoderModel(cfg, rngs=rngs)


__all__ = ["EncoderConfig", "EncoderModel", "PostLNBlock", "build", "read_config"]
