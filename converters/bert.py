"""Key map for post-LN encoders: BERT, RoBERTa, ELECTRA, XLM-RoBERTa, CamemBERT.

HF `nn.Linear` stores W as [out, in] and computes x Wᵀ + b; our `Dense` stores the
kernel as [in, out], so every linear weight is transposed ("T"). Embedding tables and
LayerNorm vectors are copied as they are.
"""

from __future__ import annotations

from functools import partial

from .common import KeySpec, base_keys, dense_specs, norm_specs, per_layer

_norm = partial(norm_specs, legacy_names=True)  # old checkpoints: gamma/beta

# Prefixes under which task heads (…ForMaskedLM, …ForSequenceClassification, the
# ELECTRA discriminator) keep the base model. Tried in this order; "" = bare model.
BASE_PREFIXES = ("bert.", "roberta.", "electra.", "camembert.", "xlm_roberta.", "")

# Keys of the base model that carry no parameters we need.
IGNORED_PREFIXES = ("pooler.", "embeddings.position_ids", "embeddings.token_type_ids")


LAYER = (
    *((dense_specs, f"attention.self.{n}", f"attention.self_attn.{n}")
      for n in ("query", "key", "value")),
    (dense_specs, "attention.output.dense", "attention.output"),
    (_norm, "attention.output.LayerNorm", "attention.norm"),
    (dense_specs, "intermediate.dense", "mlp.intermediate"),
    (dense_specs, "output.dense", "mlp.output"),
    (_norm, "output.LayerNorm", "mlp.norm"),
)


def key_map(cfg) -> list[KeySpec]:
    """Every tensor our `EncoderModel` needs and where it lives in a HF state dict."""
    specs = [
        KeySpec(("embeddings.word_embeddings.weight",), "embeddings.word"),
        KeySpec(("embeddings.position_embeddings.weight",), "embeddings.position"),
        KeySpec(("embeddings.token_type_embeddings.weight",), "embeddings.token_type"),
        *_norm("embeddings.LayerNorm", "embeddings.norm"),
    ]
    if cfg.embedding_size != cfg.hidden_size:
        specs += dense_specs("embeddings_project", "embeddings.project")
    return specs + per_layer(cfg.num_layers, "encoder.layer.", LAYER)


# True for keys that belong to the base encoder (anything else is a task head).
base_key_filter = base_keys(("embeddings.", "encoder.", "embeddings_project."),
                            IGNORED_PREFIXES)
