"""Key map for DistilBERT (`DistilBertModel` and its task heads).

HF `nn.Linear` weights [out, in] are transposed to our [in, out] kernels; embedding tables
and LayerNorm vectors are copied as they are. The position table is stored in the
checkpoint also for `sinusoidal_pos_embds=True`.
"""

from __future__ import annotations

from .common import KeySpec, base_keys, dense_specs, norm_specs, per_layer

# Task heads (…ForMaskedLM, …ForSequenceClassification, …) keep the base under
# "distilbert."; "" = the bare model. Tried in this order.
BASE_PREFIXES = ("distilbert.", "")

# Keys under the base model's prefixes that carry no parameters we need (buffers).
IGNORED_PREFIXES = ("embeddings.position_ids",)


LAYER = (
    *((dense_specs, f"attention.{hf}", ours) for hf, ours in (
        ("q_lin", "query"), ("k_lin", "key"), ("v_lin", "value"), ("out_lin", "output"))),
    (norm_specs, "sa_layer_norm", "attn_norm"),
    (dense_specs, "ffn.lin1", "ffn_in"),
    (dense_specs, "ffn.lin2", "ffn_out"),
    (norm_specs, "output_layer_norm", "out_norm"),
)


def key_map(cfg) -> list[KeySpec]:
    """Every tensor our `DistilBertModel` needs and where it lives in a HF state dict."""
    return [
        KeySpec(("embeddings.word_embeddings.weight",), "embeddings.word"),
        KeySpec(("embeddings.position_embeddings.weight",), "embeddings.position"),
        *norm_specs("embeddings.LayerNorm", "embeddings.norm"),
        *per_layer(cfg.num_layers, "transformer.layer.", LAYER),
    ]


# True for keys of the base DistilBERT (anything else is a task head or a buffer).
base_key_filter = base_keys(("embeddings.", "transformer."), IGNORED_PREFIXES)
