"""ModernBERT: a pre-LN encoder with RoPE and local/global attention (block-only in the
reference; here with ATT/MLP halves)."""

from __future__ import annotations

from typing import Any

from flax import nnx

from ...errors import LIGError
from ..common import check_activation, check_heads
from ..interface import stack_fields
from .modeling import GLOBAL, LOCAL, ModernBertBlock, ModernBertConfig, ModernBertModel

DEFAULT_THETA = {GLOBAL: 160_000.0, LOCAL: 10_000.0}  # HF ModernBertConfig.default_theta


def _layer_types(hf: Any) -> tuple[str, ...]:
    n = int(hf.num_hidden_layers)
    types = getattr(hf, "layer_types", None)
    if types is None:  # older configs: a global layer every n layers, starting at 0
        every = int(getattr(hf, "global_attn_every_n_layers", 3))
        types = [LOCAL if i % every else GLOBAL for i in range(n)]
    types = tuple(types)
    bad = sorted({t for t in types if t not in (GLOBAL, LOCAL)})
    if bad:
        raise LIGError(f"layer_types {bad} of modernbert are not supported. "
                       f"Allowed: {GLOBAL}, {LOCAL}")
    if len(types) != n:
        raise LIGError(f"modernbert layer_types has {len(types)} entries for "
                       f"{n} layers (num_hidden_layers)")
    return types


def _rope_theta(hf: Any, layer_type: str) -> float:
    params = (getattr(hf, "rope_parameters", None) or {}).get(layer_type) or {}
    rope_type = params.get("rope_type", "default")
    if rope_type != "default":
        raise LIGError(f"rope_type {rope_type!r} ({layer_type}) of modernbert is not "
                       "supported. Allowed: default")
    legacy = "global_rope_theta" if layer_type == GLOBAL else "local_rope_theta"
    theta = params.get("rope_theta", getattr(hf, legacy, None))
    return float(theta if theta is not None else DEFAULT_THETA[layer_type])


def read_config(hf: Any) -> ModernBertConfig:
    """HF `ModernBertConfig` → ours; unsupported options get a one-line `LIGError`."""
    act = check_activation(hf.hidden_activation, "hidden_activation", "modernbert")
    check_heads(hf.hidden_size, hf.num_attention_heads, "hidden_size", "num_attention_heads")
    if (hf.hidden_size // hf.num_attention_heads) % 2:
        raise LIGError(f"modernbert head size {hf.hidden_size // hf.num_attention_heads} "
                       "is odd; RoPE needs an even head size")
    return ModernBertConfig(
        **stack_fields(hf, act, hidden=hf.hidden_size, layers=hf.num_hidden_layers,
                       heads=hf.num_attention_heads, ffn=hf.intermediate_size,
                       positions=hf.max_position_embeddings,
                       pad=hf.pad_token_id if hf.pad_token_id is not None else 0),
        norm_eps=float(hf.norm_eps),
        norm_bias=bool(hf.norm_bias),
        attention_bias=bool(hf.attention_bias),
        mlp_bias=bool(hf.mlp_bias),
        layer_types=_layer_types(hf),
        global_rope_theta=_rope_theta(hf, GLOBAL),
        local_rope_theta=_rope_theta(hf, LOCAL),
        local_attention=int(hf.local_attention),
    )


def build(cfg: ModernBertConfig, rngs: nnx.Rngs) -> ModernBertModel:
    return ModernBertModel(cfg, rngs=rngs)


__all__ = ["ModernBertBlock", "ModernBertConfig", "ModernBertModel", "build", "read_config"]
