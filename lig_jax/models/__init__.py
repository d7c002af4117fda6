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

HOOK_NAMES = ("att_input", "att_core", "att_output", "mlp_input", "mlp_core", "mlp_output")
Nodes = tuple[str, str | None, str]  # z, u, z_next (docs/spec.md §8 `nodes`)


@dataclass(frozen=True)
class Layout:
    """What the reference's `detect_boundaries` says of a block layout (docs/spec.md §8): its node
    descriptions, hook points and granularities, and the notes it carries."""

    name: str
    nodes: Nodes
    hooks: tuple[str | None, ...]  # one per HOOK_NAMES entry
    granularities: tuple[str, ...]  # what the reference offers
    architecture: str = "encoder"
    notes: tuple[str, ...] = ()


SLICE_NOTE = ("u->z per-head slices are contiguous d/H slices of the {space}, not attention "
              "heads")
LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    Layout("post_ln_encoder",
           ("z^(l): input of encoder.layer[l] (hidden_states[l])",
            "u^(l) = attention.output.LayerNorm(z + W_O ctx + b_O): ATT sub-block output",
            "z^(l+1) = output.LayerNorm(u + MLP(u)) (hidden_states[l+1])"),
           ("encoder.layer.{l}.attention", "encoder.layer.{l}.attention.self",
            "encoder.layer.{l}.attention.output", "encoder.layer.{l}.intermediate",
            "encoder.layer.{l}.intermediate", "encoder.layer.{l}.output"),
           ("att", "layer", "mlp"),
           notes=(SLICE_NOTE.format(space="residual-space ATT output"),)),
    Layout("pre_ln_decoder",
           ("z^(l): residual stream entering block l",
            "u^(l) = z + Attn(LN1(z)): post-attention residual", "z^(l+1) = u + MLP(LN2(u))"),
           ("layers.{l}.input_layernorm", "layers.{l}.self_attn", "layers.{l}.self_attn.o_proj",
            "layers.{l}.post_attention_layernorm", "layers.{l}.mlp", "layers.{l}.mlp.down_proj"),
           ("att", "layer", "mlp"), "decoder",
           notes=(SLICE_NOTE.format(space="post-attention residual"),)),
    Layout("pre_post_ln_decoder",
           ("z^(l): residual stream entering block l",
            "u^(l): all heads concatenated before o_proj",
            "z^(l+1) = h + PostFFN(MLP(PreFFN(h))), h = z + PostAttn(o_proj(u))"),
           ("layers.{l}.input_layernorm", "layers.{l}.self_attn",
            "layers.{l}.post_attention_layernorm", "layers.{l}.pre_feedforward_layernorm",
            "layers.{l}.mlp", "layers.{l}.post_feedforward_layernorm"),
           ("att", "layer", "mlp"), "decoder"),
    Layout("block_only",
           ("z^(l): input of block l", None, "z^(l+1): output of block l"),
           (None,) * len(HOOK_NAMES), ("layer",)),
)}

# The reference's layouts for model types lig-jax does not run (docs/spec.md §8's tables), so that
# `describe` still answers for them.
REFERENCE_ONLY_LAYOUTS = {"deberta": "post_ln_encoder", "deberta-v2": "post_ln_encoder",
                          "albert": "post_ln_encoder", "gpt_neox": "pre_ln_decoder",
                          "gemma": "pre_ln_decoder", "switch_transformers": "block_only",
                          "mamba": "block_only"}


@dataclass(frozen=True)
class Family:
    """Everything needed to run one family of model — the one place for per-family facts.

    `package` is a module under `lig_jax.models` exporting `read_config(hf) -> Config`
    and `build(cfg, rngs) -> Model` (imported on first use); `converter` a module under
    `converters` exporting `key_map(cfg)`, `BASE_PREFIXES` and `base_key_filter(key)`.
    `nodes`/`hooks` override the layout's where the family's modules differ; lig-jax
    splits every family at its ATT/MLP boundary (every granularity of
    `config.GRANULARITIES`), also where the reference offers z→z only
    (`Layout.granularities`).
    """

    layout: str
    model_types: tuple[str, ...]
    package: str
    converter: str
    # Tokenisation as the reference does it (docs/spec.md §8): special tokens, GPT-2 prefix space.
    add_special_tokens: bool = True
    tokenizer_kwargs: tuple[tuple[str, Any], ...] = ()
    # The reference's quadrature rule per path (docs/spec.md §2), used by rule="reference".
    reference_rules: tuple[tuple[str, str], ...] = (
        ("z2z", "captum_trapezoid"), ("z2u", "captum_trapezoid"), ("u2z", "captum_trapezoid"))
    nodes: Nodes | None = None
    hooks: tuple[str | None, ...] | None = None
    notes: tuple[str, ...] = ()

    @property
    def layout_info(self) -> Layout:
        return LAYOUTS[self.layout]

    @property
    def architecture(self) -> str:
        """"decoder" for causal language models, else "encoder"."""
        return self.layout_info.architecture

    def _module(self):
        import importlib

        return importlib.import_module(f"{__name__}.{self.package}")

    def read_config(self, hf: Any) -> Any:
        return self._module().read_config(hf)

    def build(self, cfg: Any, rngs: nnx.Rngs) -> nnx.Module:
        return self._module().build(cfg, rngs)


GL_ATT_MLP = (("z2z", "captum_trapezoid"), ("z2u", "gauss_legendre"),
              ("u2z", "gauss_legendre"))
SPLIT_NOTE = ("the reference offers z->z only for this model; lig-jax also splits the block "
              "at its ATT/MLP boundary (u as in `nodes`)")

FAMILIES: tuple[Family, ...] = (
    Family("post_ln_encoder", ("bert", "roberta", "electra", "xlm-roberta", "camembert"),
           package="bert", converter="bert"),
    Family("pre_ln_decoder", ("gpt2",), package="gpt2", converter="gpt2",
           add_special_tokens=False, tokenizer_kwargs=(("add_prefix_space", True),),
           reference_rules=GL_ATT_MLP,
           hooks=("h.{l}.ln_1", "h.{l}.attn", "h.{l}.attn.c_proj", "h.{l}.ln_2", "h.{l}.mlp",
                  "h.{l}.mlp.c_proj")),
    Family("pre_ln_decoder", ("llama", "mistral", "qwen2"), package="llama",
           converter="llama", add_special_tokens=False, reference_rules=GL_ATT_MLP),
    Family("pre_post_ln_decoder", ("gemma3_text", "gemma3"), package="gemma3",
           converter="gemma3"),
    Family("block_only", ("distilbert",), package="distilbert", converter="distilbert",
           nodes=("z^(l): input of transformer.layer[l] (hidden_states[l])",
                  "u^(l) = sa_layer_norm(z + out_lin(ctx)): ATT sub-block output",
                  "z^(l+1) = output_layer_norm(u + FFN(u))"),
           hooks=("transformer.layer.{l}.attention", "transformer.layer.{l}.attention",
                  "transformer.layer.{l}.sa_layer_norm", "transformer.layer.{l}.ffn",
                  "transformer.layer.{l}.ffn", "transformer.layer.{l}.output_layer_norm"),
           notes=(SPLIT_NOTE,)),
    Family("block_only", ("mpnet",), package="mpnet", converter="mpnet",
           nodes=("z^(l): input of encoder.layer[l] (hidden_states[l])",
                  "u^(l) = attention.LayerNorm(z + o(ctx)): ATT sub-block output "
                  "(ctx includes the relative position bias)",
                  "z^(l+1) = output.LayerNorm(u + MLP(u))"),
           hooks=("encoder.layer.{l}.attention", "encoder.layer.{l}.attention.attn",
                  "encoder.layer.{l}.attention.LayerNorm", "encoder.layer.{l}.intermediate",
                  "encoder.layer.{l}.intermediate", "encoder.layer.{l}.output"),
           notes=(SPLIT_NOTE,)),
    Family("block_only", ("modernbert",), package="modernbert", converter="modernbert",
           nodes=("z^(l): input of layers[l] (hidden_states[l])",
                  "u^(l) = z + Wo(Attn(attn_norm(z))): post-attention residual",
                  "z^(l+1) = u + MLP(mlp_norm(u))"),
           hooks=("layers.{l}.attn_norm", "layers.{l}.attn", "layers.{l}.attn.Wo",
                  "layers.{l}.mlp_norm", "layers.{l}.mlp", "layers.{l}.mlp.Wo"),
           notes=(SPLIT_NOTE,)),
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
