"""GPT-2 (pre-LN decoder, HF `model_type` gpt2)."""

from __future__ import annotations

from typing import Any

from flax import nnx

from ...errors import LIGError
from ..common import check_activation, check_heads, pad_token_id
from ..interface import stack_fields
from .modeling import GPT2Block, GPT2Config, GPT2Model


def read_config(hf: Any) -> GPT2Config:
    """Read a HF GPT-2 config; unsupported variants get a one-line `LIGError`."""
    act = check_activation(hf.activation_function, "activation_function", "gpt2")
    if getattr(hf, "add_cross_attention", False):
        raise LIGError("gpt2 with add_cross_attention=True is not supported. Allowed: False")
    d, heads = hf.n_embd, hf.n_head
    check_heads(d, heads, "n_embd", "n_head")
    return GPT2Config(
        **stack_fields(hf, act, hidden=d, layers=hf.n_layer, heads=heads,
                       ffn=hf.n_inner if hf.n_inner is not None else 4 * d,
                       positions=hf.n_positions, pad=pad_token_id(hf)),
        layer_norm_eps=float(hf.layer_norm_epsilon),
        scale_attn_weights=bool(getattr(hf, "scale_attn_weights", True)),
        scale_attn_by_inverse_layer_idx=bool(getattr(hf, "scale_attn_by_inverse_layer_idx",
                                                     False)),
    )


def build(cfg: GPT2Config, rngs: nnx.Rngs) -> GPT2Model:
    return GPT2Model(cfg, rngs=rngs)


__all__ = ["GPT2Block", "GPT2Config", "GPT2Model", "build", "read_config"]
