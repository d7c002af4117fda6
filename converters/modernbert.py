"""Key map for ModernBERT (`ModernBertModel` and its task heads).

HF `nn.Linear` weights [out, in] are transposed to our [in, out] kernels (the fused
`attn.Wqkv` stays fused: [d, 3d] with q | k | v column blocks; `mlp.Wi` stays [d, 2w] with
input | gate). Biases and LayerNorm biases exist only where the config asks for them
(`attention_bias`, `mlp_bias`, `norm_bias`); layer 0 has no `attn_norm` (Identity in HF).
`final_norm` is kept as `last_norm` (applied only by `final_norm`: not part of z^(L)).
"""

from __future__ import annotations

from .common import KeySpec, dense_specs, norm_specs

# Task heads (…ForMaskedLM, …ForSequenceClassification, …) keep the base under "model.";
# "" = the bare model. Tried in this order.
BASE_PREFIXES = ("model.", "")


def key_map(cfg) -> list[KeySpec]:
    """Every tensor our `ModernBertModel` needs and where it lives in a HF state dict."""
    specs = [KeySpec(("embeddings.tok_embeddings.weight",), "embeddings.tok"),
             *norm_specs("embeddings.norm", "embeddings.norm", cfg.norm_bias)]
    for l in range(cfg.num_layers):
        hf, ours = f"layers.{l}", f"layers.{l}"
        if l > 0:
            specs += norm_specs(f"{hf}.attn_norm", f"{ours}.attn_norm", cfg.norm_bias)
        specs += dense_specs(f"{hf}.attn.Wqkv", f"{ours}.wqkv", cfg.attention_bias)
        specs += dense_specs(f"{hf}.attn.Wo", f"{ours}.wo", cfg.attention_bias)
        specs += norm_specs(f"{hf}.mlp_norm", f"{ours}.mlp_norm", cfg.norm_bias)
        specs += dense_specs(f"{hf}.mlp.Wi", f"{ours}.wi", cfg.mlp_bias)
        specs += dense_specs(f"{hf}.mlp.Wo", f"{ours}.mlp_wo", cfg.mlp_bias)
    return [*specs, *norm_specs("final_norm", "last_norm", cfg.norm_bias)]


def base_key_filter(key: str) -> bool:
    """True for keys of the base ModernBERT we consume (task heads are False)."""
    return key.startswith(("embeddings.", "layers.", "final_norm."))
