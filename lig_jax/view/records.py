"""An Experiment-A record (one sentence of `lig-jax experiment run`) as an `explain` result,
so the viewer and the figures work on experiment output too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LIGError
from ..experiment.compute import U2Z, Z2U
from ..experiment.flow import LAYER
from ..experiment.store import Store
from ..loading import DEFAULT_ALIASES, DEFAULT_MODEL

Z2Z_KEYS = tuple(v.key for v in LAYER)


def record_result(folder: str | Path, index: int, *, layer_baseline: str = "itb",
                  att_baseline: str = "itb", mlp_baseline: str = "zero") -> dict[str, Any]:
    """Sentence `index` of a run folder in the `explain` schema: per layer `z2z` (the
    layer-direct map under `layer_baseline`), `z2z_composed` (att × mlp baselines) and
    per-target `z2u` heads and `u2z` contributions."""
    for name, value, allowed in (("layer baseline", layer_baseline, Z2Z_KEYS),
                                 ("att baseline", att_baseline, Z2U),
                                 ("mlp baseline", mlp_baseline, U2Z)):
        if value not in allowed:
            raise LIGError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")
    store = Store(folder)
    manifest = store.manifest()
    if index not in store.done():
        have = sorted(store.done())
        span = f"{have[0]}..{have[-1]}" if have else "none yet"
        raise LIGError(f"{folder} has no record for sentence {index} (finished: {span})")
    rec = store.read(index)
    a = rec.arrays
    tokens = rec.meta["tokens"]
    s = len(tokens)
    z2z = a[f"z2z/{layer_baseline}"]
    comp = a[f"composed/{att_baseline}/{mlp_baseline}"]
    z2u, u2z = a[f"z2u/{att_baseline}"], a[f"u2z/{mlp_baseline}"]
    out_layers = {}
    for layer in range(z2z.shape[0]):
        targets = {}
        for j in range(s):
            heads = {str(h): {"contributions": np.asarray(z2u[layer, j, h], float).tolist()}
                     for h in range(z2u.shape[2])}
            targets[str(j)] = {
                "target_token_idx": j, "target_token": tokens[j],
                "z2u": {"baseline": att_baseline, "heads": heads},
                "u2z": {"baseline": mlp_baseline,
                        "contributions": np.asarray(u2z[layer, j], float).tolist()}}
        out_layers[str(layer)] = {
            "layer_idx": layer,
            "z2z": {"baseline": layer_baseline, "shape": [s, s],
                    "matrix": np.asarray(z2z[layer], float).tolist()},
            "targets": targets,
            "z2z_composed": {"baseline_att": att_baseline, "baseline_mlp": mlp_baseline,
                             "shape": [s, s], "target_token_idx": list(range(s)),
                             "matrix": np.asarray(comp[layer], float).tolist()},
        }
    model = manifest.get("model")
    return {"text": " ".join(rec.meta["words"]), "tokens": tokens,
            "model": DEFAULT_MODEL if model in DEFAULT_ALIASES else model,
            "model_type": manifest.get("model_type"),
            "config": {"num_steps": manifest.get("settings", {}).get("steps"),
                       "baseline_layer": layer_baseline, "baseline_att": att_baseline,
                       "baseline_mlp": mlp_baseline, "sentence_index": index},
            "layers": out_layers}
