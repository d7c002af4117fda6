"""Key map for MPNet (`MPNetModel` and its task heads).

HF `nn.Linear` weights [out, in] are transposed to our [in, out] kernels; embedding tables
and LayerNorm vectors are copied as they are. The relative-position table
`encoder.relative_attention_bias.weight` [buckets, H] is shared by all layers in HF; every
one of our blocks gets its own copy (the same HF tensor feeds one KeySpec per layer).
"""

from __future__ import annotations

from .common import KeySpec, base_keys, dense_specs, norm_specs, per_layer

# Task heads (…ForMaskedLM, …ForSequenceClassification, …) keep the base under "mpnet.";
# "" = the bare model. Tried in this order.
BASE_PREFIXES = ("mpnet.", "")

# Keys under the base model's prefixes that carry no parameters we need.
IGNORED_PREFIXES = ("pooler.", "embeddings.position_ids")

SHARED_BIAS = "encoder.relative_attention_bias.weight"


LAYER = (
    *((dense_specs, f"attention.attn.{hf}", ours) for hf, ours in (
        ("q", "query"), ("k", "key"), ("v", "value"), ("o", "output"))),
    (norm_specs, "attention.LayerNorm", "attn_norm"),
    (dense_specs, "intermediate.dense", "ffn_in"),
    (dense_specs, "output.dense", "ffn_out"),
    (norm_specs, "output.LayerNorm", "out_norm"),
    (lambda hf, ours: [KeySpec((SHARED_BIAS,), ours)], "", "relative_bias"),
)


def key_map(cfg) -> list[KeySpec]:
    """Every tensor our `MPNetModel` needs and where it lives in a HF state dict."""
    return [
        KeySpec(("embeddings.word_embeddings.weight",), "embeddings.word"),
        KeySpec(("embeddings.position_embeddings.weight",), "embeddings.position"),
        *norm_specs("embeddings.LayerNorm", "embeddings.norm"),
        *per_layer(cfg.num_layers, "encoder.layer.", LAYER),
    ]


# True for keys of the base MPNet (pooler, buffers and task heads are False).
base_key_filter = base_keys(("embeddings.", "encoder."), IGNORED_PREFIXES)
