"""Key map for post-LN encoders: BERT, RoBERTa, ELECTRA, XLM-RoBERTa, CamemBERT.

HF `nn.Linear` stores W as [out, in] and computes x Wᵀ + b; our `Dense` stores the
kernel as [in, out], so every linear weight is transposed ("T"). Embedding tables and
LayerNorm vectors are copied as they are.
"""

from __future__ import annotations

from functools import partial

from .common import KeySpec, dense_specs, norm_specs

_norm = partial(norm_specs, legacy_names=True)  # old checkpoints: gamma/beta

# Prefixes under which task heads (…ForMaskedLM, …ForSequenceClassification, the
# ELECTRA discriminator) keep the base model. Tried in this order; "" = bare model.
BASE_PREFIXES = ("bert.", "roberta.", "electra.", "camembert.", "xlm_roberta.", "")

# Keys of the base model that carry no parameters we need.
IGNORED_PREFIXES = ("pooler.", "embeddings.position_ids", "embeddings.token_type_ids")


def key_map(cfg) -> list[KeySpec]:
    """Every tensor our `EncoderModel` needs and where it lives in a HF state dict."""
    num_layers, has_projection = cfg.num_layers, cfg.embedding_size != cfg.hidden_size
    specs = [
        KeySpec(("embeddings.word_embeddings.weight",), "embeddings.word"),
        KeySpec(("embeddings.position_embeddings.weight",), "embeddings.position"),
        KeySpec(("embeddings.token_type_embeddings.weight",), "embeddings.token_type"),
        *_norm("embeddings.LayerNorm", "embeddings.norm"),
    ]
    if has_projection:
        specs += dense_specs("embeddings_project", "embeddings.project")
    for l in range(num_layers):
        hf, ours = f"encoder.layer.{l}", f"layers.{l}"
        for name in ("query", "key", "value"):
            specs += dense_specs(f"{hf}.attention.self.{name}",
                                 f"{ours}.attention.self_attn.{name}")
        specs += dense_specs(f"{hf}.attention.output.dense", f"{ours}.attention.output")
        specs += _norm(f"{hf}.attention.output.LayerNorm", f"{ours}.attention.norm")
        specs += dense_specs(f"{hf}.intermediate.dense", f"{ours}.mlp.intermediate")
        specs += dense_specs(f"{hf}.output.dense", f"{ours}.mlp.output")
        specs += _norm(f"{hf}.output.LayerNorm", f"{ours}.mlp.norm")
    return specs


def base_key_filter(key: str) -> bool:
    """True for keys that belong to the base encoder (anything else is a task head)."""
    if key.startswith(IGNORED_PREFIXES):
        return False
    return key.startswith(("embeddings.", "encoder.", "embeddings_project."))
