"""Key map for Gemma 3 text stacks (`gemma3_text`, and the language model of `gemma3`).

HF `nn.Linear` stores W as [out, in]; our `Dense` kernels are [in, out], so every
projection is transposed. The embedding table and the Gemma RMSNorm weights (raw `w`, the
norm scales by 1 + w) are copied as they are. The final `norm` is loaded too (the model
keeps it for completeness; no z^(l) goes through it).
"""

from __future__ import annotations

from .common import KeySpec, dense_specs

# Where the language model's keys live, per HF class (transformers 5.x):
#   Gemma3ForConditionalGeneration  model.language_model.
#   legacy multimodal checkpoints   language_model.model.   (the Hub's gemma-3-*b-it files)
#   Gemma3Model                     language_model.
#   Gemma3ForCausalLM / …ForSequenceClassification (text)  model.
#   Gemma3TextModel                 ""
# The prefix holding the most base keys wins (`common.strip_base_prefix`); vision tower,
# projector and lm_head keys never pass `base_key_filter`.
BASE_PREFIXES = ("model.language_model.", "language_model.model.", "language_model.", "model.",
                 "")

BASE_ROOTS = ("embed_tokens.", "layers.", "norm.")

ATTN_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
LAYER_NORMS = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
               "post_feedforward_layernorm")


def _norm(hf: str, ours: str) -> KeySpec:
    return KeySpec((f"{hf}.weight",), f"{ours}.scale")


def key_map(cfg) -> list[KeySpec]:
    """Every tensor our `Gemma3Model` needs and where it lives in a HF state dict."""
    specs = [KeySpec(("embed_tokens.weight",), "embed_tokens"), _norm("norm", "norm")]
    for layer in range(cfg.num_layers):
        p = f"layers.{layer}"
        for name in ATTN_PROJECTIONS:
            specs += dense_specs(f"{p}.self_attn.{name}", f"{p}.self_attn.{name}",
                                 cfg.attention_bias)
        specs += [_norm(f"{p}.self_attn.{n}", f"{p}.self_attn.{n}") for n in ("q_norm", "k_norm")]
        for name in ("gate_proj", "up_proj", "down_proj"):
            specs += dense_specs(f"{p}.mlp.{name}", f"{p}.mlp.{name}", False)
        specs += [_norm(f"{p}.{n}", f"{p}.{n}") for n in LAYER_NORMS]
    return specs


def base_key_filter(key: str) -> bool:
    """True for keys of the text stack (anything else: vision tower, projector, lm_head)."""
    if "rotary_emb" in key or key.endswith(".embed_scale"):
        return False
    return key.startswith(BASE_ROOTS)
