"""Key map for the Llama family: Llama, Mistral, Qwen2 (HF `…Model`, under `model.` in
task heads).

HF `nn.Linear` stores W as [out, in]; our `Linear` kernels are [in, out], so every linear
weight is transposed. Which biases exist follows the config (Qwen2: q/k/v; Llama
`attention_bias`: q/k/v/o, `mlp_bias`: gate/up/down). The final `norm` is kept for the
targets of an output (`final_norm`; hidden states stop at the last block's output). Not
consumed: the RoPE `inv_freq` buffers some old checkpoints store (we compute the
frequencies from the config); the LM head (`lig_jax.models.head`).
"""

from __future__ import annotations

from .common import KeySpec, dense_specs

# Prefixes under which task heads keep the base model (…ForCausalLM and most heads use
# `model.`, LlamaForQuestionAnswering `transformer.`). Tried in this order; "" = bare model.
BASE_PREFIXES = ("model.", "transformer.", "")


def key_map(cfg) -> list[KeySpec]:
    """Every tensor our `LlamaModel` needs and where it lives in a HF state dict."""
    specs = [KeySpec(("embed_tokens.weight",), "embed_tokens"),
             KeySpec(("norm.weight",), "norm.scale")]
    for l in range(cfg.num_layers):
        hf, ours = f"layers.{l}", f"layers.{l}"
        specs.append(KeySpec((f"{hf}.input_layernorm.weight",),
                             f"{ours}.input_layernorm.scale"))
        for name in ("q_proj", "k_proj", "v_proj"):
            specs += dense_specs(f"{hf}.self_attn.{name}", f"{ours}.self_attn.{name}", cfg.qkv_bias)
        specs += dense_specs(f"{hf}.self_attn.o_proj", f"{ours}.self_attn.o_proj", cfg.o_bias)
        specs.append(KeySpec((f"{hf}.post_attention_layernorm.weight",),
                             f"{ours}.post_attention_layernorm.scale"))
        for name in ("gate_proj", "up_proj", "down_proj"):
            specs += dense_specs(f"{hf}.mlp.{name}", f"{ours}.mlp.{name}", cfg.mlp_bias)
    return specs


def base_key_filter(key: str) -> bool:
    """True for keys of the base model we consume (not RoPE buffers or heads)."""
    if "rotary_emb." in key:
        return False
    return key.startswith(("embed_tokens.", "layers.", "norm."))
