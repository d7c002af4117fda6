"""Key map for MPNet (`MPNetModel` and its task heads).

HF `nn.Linear` weights [out, in] are transposed to our [in, out] kernels; embedding tables
and LayerNorm vectors are copied as they are. The relative-position table
`encoder.relative_attention_bias.weight` [buckets, H] is shared by all layers in HF; every
one of our blocks gets its own copy (the same HF tensor feeds one KeySpec per layer).
"""

from __future__ import annotations

from .common import KeySpec, dense_specs, norm_specs

# Task heads (…ForMaskedLM, …ForSequenceClassification, …) keep the base under "mpnet.";
# "" = the bare model. Tried in this order.
BASE_PREFIXES = ("mpnet.", "")

# Keys under the base model's prefixes that carry no parameters we need.
IGNORED_PREFIXES = ("pooler.", "embeddings.position_ids")

SHARED_BIAS = "encoder.relative_attention_bias.weight"


def key_map(cfg) -> list[KeySpec]:
    """Every tensor our `MPNetModel` needs and where it lives in a HF state dict."""
    specs = [
        KeySpec(("embeddings.word_embeddings.weight",), "embeddings.word"),
        KeySpec(("embeddings.position_embeddings.weight",), "embeddings.position"),
        *norm_specs("embeddings.LayerNorm", "embeddings.norm"),
    ]
    for l in range(cfg.num_layers):
        hf, ours = f"encoder.layer.{l}", f"layers.{l}"
        for name, mine in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "output")):
            specs += dense_specs(f"{hf}.attention.attn.{name}", f"{ours}.{mine}")
        specs += norm_specs(f"{hf}.attention.LayerNorm", f"{ours}.attn_norm")
        specs += dense_specs(f"{hf}.intermediate.dense", f"{ours}.ffn_in")
        specs += dense_specs(f"{hf}.output.dense", f"{ours}.ffn_out")
        specs += norm_specs(f"{hf}.output.LayerNorm", f"{ours}.out_norm")
        specs.append(KeySpec((SHARED_BIAS,), f"{ours}.relative_bias"))
    return specs


def base_key_filter(key: str) -> bool:
    """True for keys of the base MPNet (pooler, buffers and task heads are False)."""
    if key.startswith(IGNORED_PREFIXES):
        return False
    return key.startswith(("embeddings.", "encoder."))
