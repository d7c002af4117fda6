"""Llama family (pre-LN RMSNorm decoders with RoPE): llama, mistral, qwen2."""

from __future__ import annotations

from typing import Any

from flax import nnx

from ...errors import LIGError
from ..common import check_activation, pad_token_id
from ..interface import stack_fields
from ..rope import ROPE_TYPES, inverse_frequencies, rope_parameters
from .modeling import LlamaBlock, LlamaConfig, LlamaModel

MODEL_TYPES = ("llama", "mistral", "qwen2")
LAYER_TYPES = ("full_attention", "sliding_attention")


def _window(value: Any, mt: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LIGError(f"sliding_window {value!r} of {mt} is not supported. "
                       "Allowed: a positive integer or null")
    return int(value)


def sliding_windows(hf: Any) -> tuple[int | None, ...]:
    """Per-layer sliding window as HF 5.24 applies it (None = full causal attention).

    Llama: never. Mistral: `sliding_window` on every layer (when set). Qwen2: the layers
    whose `layer_types[l]` is "sliding_attention" (HF derives `layer_types` from
    `use_sliding_window` and `max_window_layers`, and drops `sliding_window` unless
    `use_sliding_window`).
    """
    mt, n = hf.model_type, hf.num_hidden_layers
    if mt == "mistral":
        return (_window(getattr(hf, "sliding_window", None), mt),) * n
    if mt != "qwen2":
        return (None,) * n
    types = list(getattr(hf, "layer_types", None) or ["full_attention"] * n)
    if len(types) != n:
        raise LIGError(f"qwen2 layer_types has {len(types)} entries for {n} layers")
    window = _window(getattr(hf, "sliding_window", None), mt)
    out: list[int | None] = []
    for t in types:
        if t not in LAYER_TYPES:
            raise LIGError(f"qwen2 layer type {t!r} is not supported. "
                           f"Allowed: {', '.join(LAYER_TYPES)}")
        if t == "sliding_attention" and window is None:
            raise LIGError("qwen2 has sliding_attention layers but no sliding_window "
                           "(set use_sliding_window and sliding_window)")
        out.append(window if t == "sliding_attention" else None)
    return tuple(out)


def read_config(hf: Any) -> LlamaConfig:
    """Read a HF Llama / Mistral / Qwen2 config; unsupported variants get a one-line
    `LIGError` naming the allowed values."""
    mt = hf.model_type
    if mt not in MODEL_TYPES:
        raise LIGError(f"model_type {mt!r} is not a Llama-family model. "
                       f"Allowed: {', '.join(MODEL_TYPES)}")
    act = check_activation(hf.hidden_act, "hidden_act", mt)
    heads = hf.num_attention_heads
    kv_heads = getattr(hf, "num_key_value_heads", None) or heads
    if heads % kv_heads:
        raise LIGError(f"num_attention_heads {heads} is not a multiple of "
                       f"num_key_value_heads {kv_heads}")
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // heads
    params = rope_parameters(hf)
    rope_type = params["rope_type"]
    if rope_type not in ROPE_TYPES:
        raise LIGError(f"rope_type {rope_type!r} of {mt} is not supported. "
                       f"Allowed: {', '.join(ROPE_TYPES)}")
    inv_freq = inverse_frequencies(head_dim, params["rope_theta"], params,
                                   hf.max_position_embeddings)
    if mt == "llama":
        qkv_bias = o_bias = bool(getattr(hf, "attention_bias", False))
        mlp_bias = bool(getattr(hf, "mlp_bias", False))
    else:
        qkv_bias, o_bias, mlp_bias = mt == "qwen2", False, False
    return LlamaConfig(
        **stack_fields(hf, act, hidden=hf.hidden_size, layers=hf.num_hidden_layers,
                       heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                       ffn=hf.intermediate_size, positions=hf.max_position_embeddings,
                       pad=pad_token_id(hf)),
        rms_norm_eps=float(hf.rms_norm_eps),
        qkv_bias=qkv_bias,
        o_bias=o_bias,
        mlp_bias=mlp_bias,
        rope_type=rope_type,
        rope_theta=params["rope_theta"],
        inv_freq=tuple(float(x) for x in inv_freq),
        sliding_windows=sliding_windows(hf),
    )


def build(cfg: LlamaConfig, rngs: nnx.Rngs) -> LlamaModel:
    return LlamaModel(cfg, rngs=rngs)


__all__ = ["LlamaBlock", "LlamaConfig", "LlamaModel", "build", "read_config",
           "sliding_windows"]
