"""Which layout a model has and where its LIG boundaries are (spec §8).

Works from the config alone (`describe_boundaries(..., load_weights=False)`), so it
never needs the weights; with `load_weights=True` it also loads and converts the model
and says whether lig-jax can run IG on it (`ig_ready`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import LIGError
from .models import SUPPORTED_MODEL_TYPES

POST_LN_ENCODER = ("bert", "roberta", "xlm-roberta", "electra", "deberta", "deberta-v2",
                   "camembert", "albert")
PRE_LN_DECODER = ("gpt2", "gpt_neox", "llama", "mistral", "qwen2", "gemma")
PRE_POST_LN_DECODER = ("gemma3", "gemma3_text")
BLOCK_ONLY = ("mpnet", "distilbert", "modernbert", "switch_transformers", "mamba")

GRANULARITY = {
    "post_ln_encoder": ["att", "layer", "mlp"],
    "pre_ln_decoder": ["att", "layer", "mlp"],
    "pre_post_ln_decoder": ["att", "layer", "mlp"],
    "block_only": ["layer"],
}

NODES = {
    "post_ln_encoder": {
        "z": "z^(l): input of encoder.layer[l] (hidden_states[l])",
        "u": "u^(l) = attention.output.LayerNorm(z + W_O ctx + b_O): ATT sub-block output",
        "z_next": "z^(l+1) = output.LayerNorm(u + MLP(u)) (hidden_states[l+1])",
    },
    "pre_ln_decoder": {
        "z": "z^(l): residual stream entering block l",
        "u": "u^(l) = z + Attn(LN1(z)): post-attention residual",
        "z_next": "z^(l+1) = u + MLP(LN2(u))",
    },
    "pre_post_ln_decoder": {
        "z": "z^(l): residual stream entering block l",
        "u": "u^(l): all heads concatenated before o_proj",
        "z_next": "z^(l+1) = h + PostFFN(MLP(PreFFN(h))), h = z + PostAttn(o_proj(u))",
    },
    "block_only": {
        "z": "z^(l): input of block l",
        "u": None,
        "z_next": "z^(l+1): output of block l",
    },
}

# lig-jax splits the block-only encoders at their ATT/MLP boundary as well (the reference
# offers z->z only for them); what u is for each.
BLOCK_ONLY_NODES = {
    "distilbert": {
        "z": "z^(l): input of transformer.layer[l] (hidden_states[l])",
        "u": "u^(l) = sa_layer_norm(z + out_lin(ctx)): ATT sub-block output",
        "z_next": "z^(l+1) = output_layer_norm(u + FFN(u))",
    },
    "mpnet": {
        "z": "z^(l): input of encoder.layer[l] (hidden_states[l])",
        "u": "u^(l) = attention.LayerNorm(z + o(ctx)): ATT sub-block output "
             "(ctx includes the relative position bias)",
        "z_next": "z^(l+1) = output.LayerNorm(u + MLP(u))",
    },
    "modernbert": {
        "z": "z^(l): input of layers[l] (hidden_states[l])",
        "u": "u^(l) = z + Wo(Attn(attn_norm(z))): post-attention residual",
        "z_next": "z^(l+1) = u + MLP(mlp_norm(u))",
    },
}

_HOOK_NAMES = ("att_input", "att_core", "att_output", "mlp_input", "mlp_core", "mlp_output")


def _hooks(*names: str) -> dict[str, str]:
    return dict(zip(_HOOK_NAMES, names, strict=True))


HOOKS = {
    "post_ln_encoder": _hooks("encoder.layer.{l}.attention", "encoder.layer.{l}.attention.self",
                              "encoder.layer.{l}.attention.output",
                              "encoder.layer.{l}.intermediate",
                              "encoder.layer.{l}.intermediate", "encoder.layer.{l}.output"),
    "pre_ln_decoder": _hooks("layers.{l}.input_layernorm", "layers.{l}.self_attn",
                             "layers.{l}.self_attn.o_proj", "layers.{l}.post_attention_layernorm",
                             "layers.{l}.mlp", "layers.{l}.mlp.down_proj"),
    "pre_post_ln_decoder": _hooks("layers.{l}.input_layernorm", "layers.{l}.self_attn",
                                  "layers.{l}.post_attention_layernorm",
                                  "layers.{l}.pre_feedforward_layernorm", "layers.{l}.mlp",
                                  "layers.{l}.post_feedforward_layernorm"),
    "block_only": dict.fromkeys(_HOOK_NAMES),
}

HOOKS_BY_TYPE = {
    "gpt2": _hooks("h.{l}.ln_1", "h.{l}.attn", "h.{l}.attn.c_proj", "h.{l}.ln_2", "h.{l}.mlp",
                   "h.{l}.mlp.c_proj"),
    "distilbert": _hooks("transformer.layer.{l}.attention", "transformer.layer.{l}.attention",
                         "transformer.layer.{l}.sa_layer_norm", "transformer.layer.{l}.ffn",
                         "transformer.layer.{l}.ffn", "transformer.layer.{l}.output_layer_norm"),
    "mpnet": _hooks("encoder.layer.{l}.attention", "encoder.layer.{l}.attention.attn",
                    "encoder.layer.{l}.attention.LayerNorm", "encoder.layer.{l}.intermediate",
                    "encoder.layer.{l}.intermediate", "encoder.layer.{l}.output"),
    "modernbert": _hooks("layers.{l}.attn_norm", "layers.{l}.attn", "layers.{l}.attn.Wo",
                         "layers.{l}.mlp_norm", "layers.{l}.mlp", "layers.{l}.mlp.Wo"),
}


def layout_for(model_type: str) -> tuple[str | None, str]:
    """(layout, detection string) from a model_type; layout None if unknown."""
    if model_type in BLOCK_ONLY:
        return "block_only", f"model_type override ({model_type})"
    for layout, types in (
        ("post_ln_encoder", POST_LN_ENCODER),
        ("pre_ln_decoder", PRE_LN_DECODER),
        ("pre_post_ln_decoder", PRE_POST_LN_DECODER),
    ):
        if model_type in types:
            return layout, f"config model_type ({model_type})"
    return None, "config fallback (unknown layout — load model for introspection)"


def num_layers_of(cfg: dict[str, Any]) -> int:
    if cfg.get("model_type") in PRE_POST_LN_DECODER and isinstance(cfg.get("text_config"), dict):
        return int(cfg["text_config"].get("num_hidden_layers", 0))
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if cfg.get(key) is not None:
            return int(cfg[key])
    return 0


def boundaries_from_config(cfg: dict[str, Any], model: str) -> dict[str, Any]:
    """The boundary description for a config dict (no weights involved)."""
    model_type = str(cfg.get("model_type", ""))
    layout, detection = layout_for(model_type)
    notes: list[str] = []
    if layout is None:
        notes.append("unknown model_type; lig-jax cannot run it")
    if model_type not in SUPPORTED_MODEL_TYPES:
        notes.append(
            "lig-jax does not run this model_type yet; supported: "
            + ", ".join(sorted(SUPPORTED_MODEL_TYPES))
        )
    if layout == "post_ln_encoder":
        notes.append(
            "u->z per-head slices are contiguous d/H slices of the residual-space ATT "
            "output, not attention heads"
        )
    key = layout or "block_only"
    architecture = (
        "decoder" if layout in ("pre_ln_decoder", "pre_post_ln_decoder") else "encoder"
    )
    reference_granularity = sorted(GRANULARITY[key]) if layout else []
    nodes, hooks = dict(NODES[key]), dict(HOOKS_BY_TYPE.get(model_type, HOOKS[key]))
    supported = reference_granularity
    if model_type in BLOCK_ONLY_NODES:
        nodes = dict(BLOCK_ONLY_NODES[model_type])
        supported = sorted(GRANULARITY["post_ln_encoder"])
        notes.append("the reference offers z->z only for this model; lig-jax also splits "
                     "the block at its ATT/MLP boundary (u as in `nodes`)")
    if layout == "pre_ln_decoder":
        notes.append("u->z per-head slices are contiguous d/H slices of the post-attention "
                     "residual, not attention heads")
    if model_type not in SUPPORTED_MODEL_TYPES:
        supported = []
    return {
        "layout": layout or "unknown",
        "architecture": architecture,
        "model_type": model_type,
        "num_layers": num_layers_of(cfg),
        "supported_granularity": supported,
        "reference_granularity": reference_granularity,
        "nodes": nodes,
        "hook_points": hooks,
        "detection": detection,
        "notes": notes,
        "model": model,
        "lig_jax_supported": model_type in SUPPORTED_MODEL_TYPES,
    }


def _config_dict(model: str) -> dict[str, Any]:
    from .loading import gguf_hf_config, resolve_folder

    gguf = gguf_hf_config(model)  # a .gguf file, its folder, or a packaged alias
    if gguf is not None:
        return gguf.to_dict()

    path = Path(model).expanduser()
    if path.is_file():
        source = path
    else:
        source = resolve_folder(model, config_only=True) / "config.json"
    try:
        cfg = json.loads(source.read_text())
    except (OSError, ValueError) as e:
        raise LIGError(f"{source} is not a readable JSON config: {e}") from None
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise LIGError(f"{source} has no 'model_type' (not a Hugging Face config)")
    return cfg


def describe_boundaries(
    model: str = "all-MiniLM-L6-v2", *, device: str | None = None, load_weights: bool = False
) -> dict[str, Any]:
    """Layout, nodes, hook points and granularities of `model` (folder, hub id, config.json).

    With `load_weights=True` the model is loaded and converted as well and the result
    gains `ig_ready` (True when lig-jax can run every granularity on it).
    """
    info = boundaries_from_config(_config_dict(model), model)
    if load_weights:
        from .loading import load_model

        loaded = load_model(model)
        info["ig_ready"] = loaded.model is not None
        info["detection"] = f"model_type ({loaded.model_type})"
    return info
