"""An Experiment-A record (one sentence of `lig-jax experiment run`) as an `explain` result,
so the viewer and the figures work on experiment output too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import baselines
from ..errors import LIGError
from ..experiment.store import Store
from ..loading import DEFAULT_ALIASES, DEFAULT_MODEL


def record_result(folder: str | Path, index: int, *,
                  baseline_layer: str = baselines.DEFAULTS["z2z"],
                  baseline_att: str = baselines.DEFAULTS["z2u"],
                  baseline_mlp: str = baselines.DEFAULTS["u2z"]) -> dict[str, Any]:
    """Sentence `index` of a run folder in the `explain` schema: per layer `z2z` (the
    layer-direct map under `baseline_layer`), `z2z_composed` (att × mlp baselines) and
    per-target `z2u` heads and `u2z` contributions."""
    for name, value, quantity in (("layer baseline", baseline_layer, "z2z"),
                                  ("att baseline", baseline_att, "z2u"),
                                  ("mlp baseline", baseline_mlp, "u2z")):
        baselines.get(quantity, value, name)
    store = Store(folder)
    manifest = store.manifest()
    if index not in store.done():
        have = sorted(store.done())
        span = f"{have[0]}..{have[-1]}" if have else "none yet"
        raise LIGError(f"{folder} has no record for sentence {index} (finished: {span})")
    rec = store.read(index)
    a = {k: rec.array(k) for k in (f"z2z/{baseline_layer}", f"composed/{baseline_att}/"
                                   f"{baseline_mlp}", f"z2u/{baseline_att}",
                                   f"u2z/{baseline_mlp}")}
    tokens = rec.meta["tokens"]
    s = len(tokens)
    z2z = a[f"z2z/{baseline_layer}"]
    comp = a[f"composed/{baseline_att}/{baseline_mlp}"]
    z2u, u2z = a[f"z2u/{baseline_att}"], a[f"u2z/{baseline_mlp}"]
    out_layers = {}
    for layer in range(z2z.shape[0]):
        targets = {}
        for j in range(s):
            heads = {str(h): {"contributions": np.asarray(z2u[layer, j, h], float).tolist()}
                     for h in range(z2u.shape[2])}
            targets[str(j)] = {
                "target_token_idx": j, "target_token": tokens[j],
                "z2u": {"baseline": baseline_att, "heads": heads},
                "u2z": {"baseline": baseline_mlp,
                        "contributions": np.asarray(u2z[layer, j], float).tolist()}}
        out_layers[str(layer)] = {
            "layer_idx": layer,
            "z2z": {"baseline": baseline_layer, "shape": [s, s],
                    "matrix": np.asarray(z2z[layer], float).tolist()},
            "targets": targets,
            "z2z_composed": {"baseline_att": baseline_att, "baseline_mlp": baseline_mlp,
                             "shape": [s, s], "target_token_idx": list(range(s)),
                             "matrix": np.asarray(comp[layer], float).tolist()},
        }
    model, settings = manifest.get("model"), manifest.get("settings")
    return {"text": " ".join(rec.meta.get("words") or tokens), "tokens": tokens,
            "model": DEFAULT_MODEL if model in DEFAULT_ALIASES else model,
            "model_type": manifest.get("model_type"),
            "config": {"num_steps": settings.get("steps") if isinstance(settings, dict)
                       else None,
                       "baseline_layer": baseline_layer, "baseline_att": baseline_att,
                       "baseline_mlp": baseline_mlp, "sentence_index": index},
            "layers": out_layers}
