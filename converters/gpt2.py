"""Key map for GPT-2 (HF `GPT2Model`, under `transformer.` in task heads).

GPT-2's `Conv1D` computes y = x W + b with W stored as [in, out], the layout of our
`Linear` kernels, so nothing is transposed. `attn.c_attn` stays fused ([d, 3d], q | k | v
with heads contiguous inside each third); the model splits it. The final `ln_f` is not part
of our model (hidden states stop at the last block's output), so `base_key_filter` leaves
it out, with the causal-mask buffers `attn.bias` / `attn.masked_bias` of old checkpoints.
"""

from __future__ import annotations

import re
from functools import partial

from .common import KeySpec, dense_specs, norm_specs

_conv1d = partial(dense_specs, transpose=False)  # Conv1D weights are [in, out]

# Prefixes under which task heads (GPT2LMHeadModel, GPT2ForSequenceClassification, …) keep
# the base model. Tried in this order; "" = bare model.
BASE_PREFIXES = ("transformer.", "")

_MASK_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")


def key_map(cfg) -> list[KeySpec]:
    """Every tensor our `GPT2Model` needs and where it lives in a HF state dict."""
    specs = [KeySpec(("wte.weight",), "wte"), KeySpec(("wpe.weight",), "wpe")]
    for l in range(cfg.num_layers):
        hf, ours = f"h.{l}", f"layers.{l}"
        specs += norm_specs(f"{hf}.ln_1", f"{ours}.ln_1")
        specs += _conv1d(f"{hf}.attn.c_attn", f"{ours}.attn.c_attn")
        specs += _conv1d(f"{hf}.attn.c_proj", f"{ours}.attn.c_proj")
        specs += norm_specs(f"{hf}.ln_2", f"{ours}.ln_2")
        specs += _conv1d(f"{hf}.mlp.c_fc", f"{ours}.mlp.c_fc")
        specs += _conv1d(f"{hf}.mlp.c_proj", f"{ours}.mlp.c_proj")
    return specs


def base_key_filter(key: str) -> bool:
    """True for keys of the base model we consume (not ln_f, mask buffers or task heads)."""
    if _MASK_BUFFER.match(key):
        return False
    return key.startswith(("wte.", "wpe.", "h."))
