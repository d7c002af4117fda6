"""Post-LN encoders: BERT, RoBERTa, ELECTRA, XLM-RoBERTa, CamemBERT."""

from typing import Any

from flax import nnx

from ...errors import LIGError
from ..common import check_activation, check_heads
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
        model_type=mt,
        vocab_size=hf.vocab_size,
        hidden_size=hf.hidden_size,
        num_layers=hf.num_hidden_layers,
        num_heads=hf.num_attention_heads,
        intermediate_size=hf.intermediate_size,
        hidden_act=act,
        layer_norm_eps=float(hf.layer_norm_eps),
        max_position_embeddings=hf.max_position_embeddings,
        type_vocab_size=hf.type_vocab_size,
        pad_token_id=int(hf.pad_token_id if hf.pad_token_id is not None else 0),
        embedding_size=int(getattr(hf, "embedding_size", None) or hf.hidden_size),
        roberta_positions=mt in ROBERTA_POSITION_TYPES,
    )


def build(cfg: EncoderConfig, rngs: nnx.Rngs) -> EncoderModel:
    return EncoderModel(cfg, rngs=rngs)


__all__ = ["EncoderConfig", "EncoderModel", "PostLNBlock", "build", "read_config"]
