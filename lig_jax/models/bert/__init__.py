"""Post-LN encoders: BERT, RoBERTa, ELECTRA, XLM-RoBERTa, CamemBERT."""

from flax import nnx

from .modeling import EncoderConfig, EncoderModel, PostLNBlock


def read_config(hf) -> EncoderConfig:
    from .. import encoder_config

    return encoder_config(hf)


def build(cfg: EncoderConfig, rngs: nnx.Rngs) -> EncoderModel:
    return EncoderModel(cfg, rngs=rngs)


__all__ = ["EncoderConfig", "EncoderModel", "PostLNBlock", "build", "read_config"]
