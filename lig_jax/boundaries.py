"""Which layout a model has and where its LIG boundaries are (docs/spec.md §8).

Works from the config alone (`describe_boundaries(..., load_weights=False)`), so it
never needs the weights; with `load_weights=True` it also loads and converts the model
and reports the converted weights (`weights`: checkpoint digest, parameter count). Every
fact comes from the family registry (`lig_jax.models`: `FAMILIES`, `LAYOUTS`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import DEFAULT_MODEL, GRANULARITIES
from .errors import LIGError
from .models import (
    FAMILIES,
    HOOK_NAMES,
    LAYOUTS,
    REFERENCE_ONLY_LAYOUTS,
    SUPPORTED_MODEL_TYPES,
    Family,
)

BLOCK_ONLY_TYPES = tuple(t for f in FAMILIES if f.layout == "block_only" for t in f.model_types
                         ) + tuple(t for t, lay in REFERENCE_ONLY_LAYOUTS.items()
                                   if lay == "block_only")


def _family(model_type: str) -> Family | None:
    return next((f for f in FAMILIES if model_type in f.model_types), None)


def layout_for(model_type: str) -> tuple[str | None, str]:
    """(layout, detection string) from a model_type; layout None if unknown."""
    family = _family(model_type)
    layout = family.layout if family else REFERENCE_ONLY_LAYOUTS.get(model_type)
    if layout is None:
        return None, "config fallback (unknown layout — load model for introspection)"
    if model_type in BLOCK_ONLY_TYPES:
        return layout, f"model_type override ({model_type})"
    return layout, f"config model_type ({model_type})"


def num_layers_of(cfg: dict[str, Any]) -> int:
    if cfg.get("model_type") in ("gemma3", "gemma3_text") and isinstance(
            cfg.get("text_config"), dict):
        return int(cfg["text_config"].get("num_hidden_layers", 0))
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if cfg.get(key) is not None:
            return int(cfg[key])
    return 0


def boundaries_from_config(cfg: dict[str, Any], model: str) -> dict[str, Any]:
    """The boundary description for a config dict (no weights involved), from the
    family registry (`lig_jax.models.FAMILIES`) and the reference's layouts."""
    model_type = str(cfg.get("model_type", ""))
    layout_name, detection = layout_for(model_type)
    family = _family(model_type)
    layout = LAYOUTS[layout_name or "block_only"]
    notes: list[str] = []
    if layout_name is None:
        notes.append("unknown model_type; lig-jax cannot run it")
    if family is None:
        notes.append("lig-jax does not run this model_type yet; supported: "
                     + ", ".join(sorted(SUPPORTED_MODEL_TYPES)))
    notes += layout.notes if layout_name else ()
    nodes = (family.nodes if family and family.nodes else layout.nodes)
    hooks = (family.hooks if family and family.hooks else layout.hooks)
    if family:
        notes += family.notes
    return {
        "layout": layout_name or "unknown",
        "architecture": layout.architecture if layout_name else "encoder",
        "model_type": model_type,
        "num_layers": num_layers_of(cfg),
        "supported_granularity": sorted(GRANULARITIES) if family else [],
        "reference_granularity": sorted(layout.granularities) if layout_name else [],
        "nodes": dict(zip(("z", "u", "z_next"), nodes, strict=True)),
        "hook_points": dict(zip(HOOK_NAMES, hooks, strict=True)),
        "detection": detection,
        "notes": notes,
        "model": model,
        "lig_jax_supported": family is not None,
    }


def _config_dict(model: str) -> dict[str, Any]:
    from .loading import gguf_hf_config, resolve_folder

    gguf = gguf_hf_config(model)  # a .gguf file, its folder, or a packaged alias
    if gguf is not None:
        return gguf.to_dict()

    path = Path(model).expanduser()
    if path.is_file():
        source = path
    else:
        source = resolve_folder(model, config_only=True) / "config.json"
    try:
        cfg = json.loads(source.read_text())
    except (OSError, ValueError) as e:
        raise LIGError(f"{source} is not a readable JSON config: {e}") from None
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise LIGError(f"{source} has no 'model_type' (not a Hugging Face config)")
    return cfg


def describe_boundaries(model: str = DEFAULT_MODEL, *, load_weights: bool = False
                        ) -> dict[str, Any]:
    """Layout, nodes, hook points and granularities of `model` (folder, hub id, config.json).

    With `load_weights=True` the model is loaded and converted as well (a checkpoint that
    cannot be is refused in one line) and the result gains `weights`: the checkpoint's
    sha256 and the converted parameter count.
    """
    info = boundaries_from_config(_config_dict(model), model)
    if load_weights:
        import jax
        from flax import nnx

        from .loading import load_model

        loaded = load_model(model)
        info["weights"] = {"checkpoint_sha256": loaded.checkpoint_hash, "parameters": int(
            sum(x.size for x in jax.tree.leaves(nnx.state(loaded.model, nnx.Param))))}
        info["detection"] = f"model_type ({loaded.model_type})"
    return info
