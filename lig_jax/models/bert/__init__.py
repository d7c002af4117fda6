"""Post-LN encoders: BERT, RoBERTa, ELECTRA, XLM-RoBERTa, CamemBERT."""

from .modeling import EncoderConfig, EncoderModel, PostLNBlock

__all__ = ["EncoderConfig", "EncoderModel", "PostLNBlock"]
