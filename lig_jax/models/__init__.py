"""Model families: which `model_type`s we run, how to build and convert each.

A family bundles: a config reader (HF config → our frozen dataclass), a module
constructor, and a key map (in `converters/`). `FAMILIES` is the registry `loading`
uses; `SUPPORTED_MODEL_TYPES` is what error messages list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flax import nnx

from ..errors import LIGError
from .bert import EncoderConfig, EncoderModel

ROBERTA_POSITION_TYPES = ("roberta", "xlm-roberta", "camembert")


def encoder_config(hf: Any) -> EncoderConfig:
    """Read a BERT-family HF config; unsupported variants get a one-line error."""
    mt = hf.model_type
    pos_type = getattr(hf, "position_embedding_type", "absolute") or "absolute"
    if pos_type != "absolute":
        raise LIGError(
            f"position_embedding_type {pos_type!r} is not supported for {mt}. Allowed: absolute"
        )
    act = hf.hidden_act
    from .common import ACTIVATIONS

    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise LIGError(
            f"hidden_act {act!r} of {mt} is not supported. "
            f"Allowed: {', '.join(sorted(ACTIVATIONS))}"
        )
    if hf.hidden_size % hf.num_attention_heads:
        raise LIGError(
            f"hidden_size {hf.hidden_size} is not divisible by num_attention_heads "
            f"{hf.num_attention_heads}"
        )
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


@dataclass(frozen=True)
class Family:
    """Everything needed to run one layout of model."""

    layout: str
    model_types: tuple[str, ...]
    read_config: Callable[[Any], Any]
    build: Callable[[Any, nnx.Rngs], nnx.Module]
    converter: str  # module name under `converters`


FAMILIES: tuple[Family, ...] = (
    Family(
        layout="post_ln_encoder",
        model_types=("bert", "roberta", "electra", "xlm-roberta", "camembert"),
        read_config=encoder_config,
        build=lambda cfg, rngs: EncoderModel(cfg, rngs=rngs),
        converter="bert",
    ),
)

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(t for f in FAMILIES for t in f.model_types)


def family_for(model_type: str) -> Family:
    for f in FAMILIES:
        if model_type in f.model_types:
            return f
    raise LIGError(
        f"model_type {model_type!r} is not supported by lig-jax yet. "
        f"Supported: {', '.join(sorted(SUPPORTED_MODEL_TYPES))}"
    )
