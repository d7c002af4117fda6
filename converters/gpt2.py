"""Key map for GPT-2 (HF `GPT2Model`, under `transformer.` in task heads).

GPT-2's `Conv1D` computes y = x W + b with W stored as [in, out], the layout of our
`Linear` kernels, so nothing is transposed. `attn.c_attn` stays fused ([d, 3d], q | k | v
with heads contiguous inside each third); the model splits it. The final `ln_f` is kept for
the targets of an output (`final_norm`; hidden states stop at the last block's output);
`base_key_filter` leaves out the causal-mask buffers `attn.bias` / `attn.masked_bias` of
old checkpoints.
"""

from __future__ import annotations

import re
from functools import partial

from .common import KeySpec, dense_specs, norm_specs, per_layer

_conv1d = partial(dense_specs, transpose=False)  # Conv1D weights are [in, out]

# Prefixes under which task heads (GPT2LMHeadModel, GPT2ForSequenceClassification, …) keep
# the base model. Tried in this order; "" = bare model.
BASE_PREFIXES = ("transformer.", "")

_MASK_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")


LAYER = (
    (norm_specs, "ln_1", "ln_1"),
    (_conv1d, "attn.c_attn", "attn.c_attn"),
    (_conv1d, "attn.c_proj", "attn.c_proj"),
    (norm_specs, "ln_2", "ln_2"),
    (_conv1d, "mlp.c_fc", "mlp.c_fc"),
    (_conv1d, "mlp.c_proj", "mlp.c_proj"),
)


def key_map(cfg) -> list[KeySpec]:
    """Every tensor our `GPT2Model` needs and where it lives in a HF state dict."""
    return [KeySpec(("wte.weight",), "wte"), KeySpec(("wpe.weight",), "wpe"),
            *per_layer(cfg.num_layers, "h.", LAYER), *norm_specs("ln_f", "ln_f")]


def base_key_filter(key: str) -> bool:
    """True for keys of the base model we consume (not mask buffers or task heads)."""
    if _MASK_BUFFER.match(key):
        return False
    return key.startswith(("wte.", "wpe.", "h.", "ln_f."))
