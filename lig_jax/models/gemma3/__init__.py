"""Gemma 3 text stacks (`gemma3_text`, and the language model of multimodal `gemma3`)."""

from __future__ import annotations

from typing import Any

from flax import nnx

from ...errors import LIGError
from ..common import ACTIVATIONS
from ..interface import stack_fields
from .modeling import (
    FULL,
    SLIDING,
    Attention,
    Gemma3Config,
    Gemma3Model,
    PrePostLNBlock,
    RMSNorm,
)

ROPE_TYPES = ("default", "linear")
LAYER_TYPES = (FULL, SLIDING)


def text_config(hf: Any) -> Any:
    """The text (language-model) config: `text_config` of a multimodal `gemma3` config."""
    if getattr(hf, "model_type", None) != "gemma3":
        return hf
    t = getattr(hf, "text_config", None)
    if t is None:
        raise LIGError("gemma3 config has no text_config (the language model's config)")
    if isinstance(t, dict):
        from transformers import Gemma3TextConfig

        t = Gemma3TextConfig(**t)
    return t


def _rope(t: Any, layer_type: str) -> tuple[float, float]:
    """(theta, linear factor) of the RoPE table `layer_type` layers use."""
    params = getattr(t, "rope_parameters", None)
    if isinstance(params, dict) and isinstance(params.get(layer_type), dict):
        p = params[layer_type]
    elif layer_type == FULL:  # older transformers: flat rope_theta / rope_scaling
        p = dict(getattr(t, "rope_scaling", None) or {})
        p.setdefault("rope_theta", getattr(t, "rope_theta", 1_000_000.0))
    else:
        p = {"rope_theta": getattr(t, "rope_local_base_freq", 10_000.0)}
    kind = p.get("rope_type", p.get("type", "default")) or "default"
    if kind not in ROPE_TYPES:
        raise LIGError(
            f"gemma3 rope_type {kind!r} ({layer_type} layers) is not supported. "
            f"Allowed: {', '.join(ROPE_TYPES)}"
        )
    partial = p.get("partial_rotary_factor", 1.0)
    if partial not in (None, 1.0):
        raise LIGError(f"gemma3 partial_rotary_factor {partial!r} is not supported. Allowed: 1.0")
    factor = float(p["factor"]) if kind == "linear" else 1.0
    return float(p["rope_theta"]), factor


def read_config(hf: Any) -> Gemma3Config:
    """Read a `gemma3_text` config, or the `text_config` of a `gemma3` one."""
    t = text_config(hf)
    cap = getattr(t, "attn_logit_softcapping", None)
    if cap is not None:
        raise LIGError(
            f"gemma3 attn_logit_softcapping={cap!r} is not supported. Allowed: None"
        )
    if getattr(t, "use_bidirectional_attention", False):
        raise LIGError("gemma3 use_bidirectional_attention=True is not supported. Allowed: False")
    act = getattr(t, "hidden_activation", None) or getattr(t, "hidden_act", None)
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise LIGError(
            f"gemma3 hidden_activation {act!r} is not supported. "
            f"Allowed: {', '.join(sorted(ACTIVATIONS))}"
        )
    num_layers = int(t.num_hidden_layers)
    layer_types = tuple(t.layer_types)
    if len(layer_types) != num_layers or any(lt not in LAYER_TYPES for lt in layer_types):
        raise LIGError(
            f"gemma3 layer_types {list(layer_types)!r} must give one of "
            f"{', '.join(LAYER_TYPES)} for each of the {num_layers} layers"
        )
    window = getattr(t, "sliding_window", None)
    if SLIDING in layer_types and (window is None or int(window) < 1):
        raise LIGError(f"gemma3 sliding layers need sliding_window ≥ 1. Got: {window!r}")
    heads, kv_heads = int(t.num_attention_heads), int(t.num_key_value_heads)
    if heads % kv_heads:
        raise LIGError(
            f"gemma3 num_attention_heads {heads} is not a multiple of num_key_value_heads "
            f"{kv_heads}"
        )
    head_dim = int(getattr(t, "head_dim", None) or t.hidden_size // heads)
    if head_dim % 2:
        raise LIGError(f"gemma3 head_dim {head_dim} must be even for RoPE")
    theta_g, factor_g = _rope(t, FULL)
    theta_l, factor_l = _rope(t, SLIDING)
    pad = getattr(t, "pad_token_id", None)
    shared = stack_fields(t, act, hidden=t.hidden_size, layers=num_layers, heads=heads,
                          kv_heads=kv_heads, head_dim=head_dim, ffn=t.intermediate_size,
                          positions=t.max_position_embeddings,
                          pad=pad if pad is not None else 0)
    return Gemma3Config(
        **{**shared, "model_type": hf.model_type},  # "gemma3" for a multimodal config
        rms_norm_eps=float(t.rms_norm_eps),
        query_pre_attn_scalar=float(t.query_pre_attn_scalar),
        sliding_window=int(window) if window is not None else None,
        layer_types=layer_types,
        rope_theta_global=theta_g,
        rope_factor_global=factor_g,
        rope_theta_local=theta_l,
        rope_factor_local=factor_l,
        attention_bias=bool(getattr(t, "attention_bias", False)),
    )


def build(cfg: Gemma3Config, rngs: nnx.Rngs) -> Gemma3Model:
    return Gemma3Model(cfg, rngs=rngs)


__all__ = [
    "Attention",
    "Gemma3Config",
    "Gemma3Model",
    "PrePostLNBlock",
    "RMSNorm",
    "build",
    "read_config",
    "text_config",
]
