"""Key map for DistilBERT (`DistilBertModel` and its task heads).

HF `nn.Linear` weights [out, in] are transposed to our [in, out] kernels; embedding tables
and LayerNorm vectors are copied as they are. The position table is stored in the
checkpoint also for `sinusoidal_pos_embds=True`.
"""

from __future__ import annotations

from .common import KeySpec, dense_specs, norm_specs

# Task heads (…ForMaskedLM, …ForSequenceClassification, …) keep the base under
# "distilbert."; "" = the bare model. Tried in this order.
BASE_PREFIXES = ("distilbert.", "")

# Keys under the base model's prefixes that carry no parameters we need (buffers).
IGNORED_PREFIXES = ("embeddings.position_ids",)


def key_map(cfg) -> list[KeySpec]:
    """Every tensor our `DistilBertModel` needs and where it lives in a HF state dict."""
    specs = [
        KeySpec(("embeddings.word_embeddings.weight",), "embeddings.word"),
        KeySpec(("embeddings.position_embeddings.weight",), "embeddings.position"),
        *norm_specs("embeddings.LayerNorm", "embeddings.norm"),
    ]
    for l in range(cfg.num_layers):
        hf, ours = f"transformer.layer.{l}", f"layers.{l}"
        for name, mine in (("q_lin", "query"), ("k_lin", "key"), ("v_lin", "value"),
                           ("out_lin", "output")):
            specs += dense_specs(f"{hf}.attention.{name}", f"{ours}.{mine}")
        specs += norm_specs(f"{hf}.sa_layer_norm", f"{ours}.attn_norm")
        specs += dense_specs(f"{hf}.ffn.lin1", f"{ours}.ffn_in")
        specs += dense_specs(f"{hf}.ffn.lin2", f"{ours}.ffn_out")
        specs += norm_specs(f"{hf}.output_layer_norm", f"{ours}.out_norm")
    return specs


def base_key_filter(key: str) -> bool:
    """True for keys of the base DistilBERT (anything else is a task head or a buffer)."""
    if key.startswith(IGNORED_PREFIXES):
        return False
    return key.startswith(("embeddings.", "transformer."))
