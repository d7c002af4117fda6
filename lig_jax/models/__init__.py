"""Model families: which `model_type`s we run, how to build and convert each.

A family bundles: a config reader (HF config → our frozen dataclass), a module
constructor, and a key map (in `converters/`). `FAMILIES` is the registry `loading`
uses; `SUPPORTED_MODEL_TYPES` is what error messages list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flax import nnx

from ..errors import LIGError
from .bert import EncoderConfig

ROBERTA_POSITION_TYPES = ("roberta", "xlm-roberta", "camembert")


def encoder_config(hf: Any) -> EncoderConfig:
    """Read a BERT-family HF config; unsupported variants get a one-line error."""
    mt = hf.model_type
    pos_type = getattr(hf, "position_embedding_type", "absolute") or "absolute"
    if pos_type != "absolute":
        raise LIGError(
            f"position_embedding_type {pos_type!r} is not supported for {mt}. Allowed: absolute"
        )
    from .common import check_activation, check_heads

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


@dataclass(frozen=True)
class Family:
    """Everything needed to run one family of model.

    `package` is a module under `lig_jax.models` exporting `read_config(hf) -> Config`
    and `build(cfg, rngs) -> Model` (imported on first use); `converter` a module under
    `converters` exporting `key_map(cfg)`, `BASE_PREFIXES` and `base_key_filter(key)`.
    """

    layout: str
    model_types: tuple[str, ...]
    package: str
    converter: str
    architecture: str = "encoder"  # "decoder" for causal language models
    # Tokenisation as the reference does it (spec §8): special tokens, GPT-2 prefix space.
    add_special_tokens: bool = True
    tokenizer_kwargs: tuple[tuple[str, Any], ...] = ()
    # The reference's quadrature rule per path (spec §2), used by rule="reference".
    reference_rules: tuple[tuple[str, str], ...] = (
        ("z2z", "captum_trapezoid"), ("z2u", "captum_trapezoid"), ("u2z", "captum_trapezoid"))
    granularities: tuple[str, ...] = ("att", "layer", "mlp")

    def _module(self):
        import importlib

        return importlib.import_module(f"{__name__}.{self.package}")

    def read_config(self, hf: Any) -> Any:
        return self._module().read_config(hf)

    def build(self, cfg: Any, rngs: nnx.Rngs) -> nnx.Module:
        return self._module().build(cfg, rngs)


GL_ATT_MLP = (("z2z", "captum_trapezoid"), ("z2u", "gauss_legendre"),
              ("u2z", "gauss_legendre"))

FAMILIES: tuple[Family, ...] = (
    Family("post_ln_encoder", ("bert", "roberta", "electra", "xlm-roberta", "camembert"),
           package="bert", converter="bert"),
    Family("pre_ln_decoder", ("gpt2",), package="gpt2", converter="gpt2",
           architecture="decoder", add_special_tokens=False,
           tokenizer_kwargs=(("add_prefix_space", True),), reference_rules=GL_ATT_MLP),
    Family("pre_ln_decoder", ("llama", "mistral", "qwen2"), package="llama",
           converter="llama", architecture="decoder", add_special_tokens=False,
           reference_rules=GL_ATT_MLP),
    Family("pre_post_ln_decoder", ("gemma3_text", "gemma3"), package="gemma3",
           converter="gemma3", architecture="decoder"),
    Family("block_only", ("distilbert",), package="distilbert", converter="distilbert"),
    Family("block_only", ("mpnet",), package="mpnet", converter="mpnet"),
    Family("block_only", ("modernbert",), package="modernbert", converter="modernbert"),
)

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(t for f in FAMILIES for t in f.model_types)


def family_for(model_type: str) -> Family:
    for f in FAMILIES:
        if model_type in f.model_types:
            return f
    raise LIGError(
        f"model_type {model_type!r} is not supported by lig-jax. "
        f"Supported: {', '.join(sorted(SUPPORTED_MODEL_TYPES))}"
    )
