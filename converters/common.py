"""Reading HF checkpoints, applying a key map, and caching the result.

Flow: folder → `read_state_dict` (safetensors, sharded safetensors, or
`pytorch_model.bin` when torch is installed) → `convert_checkpoint` (strip the task
head's base prefix, look up every `KeySpec`, transpose, check shapes, report missing /
unexpected keys in one line) → flat {nnx_path: float32 array}. Converted parameters are
stored under `cache_dir()/<sha256 of the checkpoint files>.safetensors`, so a second run
on the same checkpoint reads them back instead of converting again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import cache_dir

CACHE_FORMAT_VERSION = "1"


class ConversionError(ValueError):
    """A checkpoint that cannot be converted; the message is one line."""


@dataclass(frozen=True)
class KeySpec:
    """One parameter: candidate HF names (first found wins) → NNX path (dotted)."""

    hf_names: tuple[str, ...]
    nnx_path: str
    transpose: bool = False
    # Any other reshaping (split a fused tensor, reshape per head, add an offset): applied
    # to the float32 array after `transpose`, before the shape check.
    transform: Callable[[np.ndarray], np.ndarray] | None = None


def dense_specs(hf: str, ours: str, bias: bool = True, *, transpose: bool = True
                ) -> list[KeySpec]:
    """A HF linear layer → our `Dense`: weight → kernel (nn.Linear's [out, in] is
    transposed; GPT-2's Conv1D is already [in, out]: transpose=False), bias → bias."""
    specs = [KeySpec((f"{hf}.weight",), f"{ours}.kernel", transpose=transpose)]
    return specs + [KeySpec((f"{hf}.bias",), f"{ours}.bias")] if bias else specs


def norm_specs(hf: str, ours: str, bias: bool = True, *, legacy_names: bool = False
               ) -> list[KeySpec]:
    """A HF LayerNorm/RMSNorm → our norm: weight → scale, bias → bias. legacy_names also
    accepts the TF-era `gamma`/`beta` names of old BERT checkpoints."""
    scale = (f"{hf}.weight", f"{hf}.gamma") if legacy_names else (f"{hf}.weight",)
    specs = [KeySpec(scale, f"{ours}.scale")]
    if bias:
        specs.append(KeySpec((f"{hf}.bias", f"{hf}.beta") if legacy_names else (f"{hf}.bias",),
                             f"{ours}.bias"))
    return specs


Part = tuple[Callable[[str, str], list[KeySpec]], str, str]


def per_layer(num_layers: int, hf_layer: str, parts: Sequence[Part]) -> list[KeySpec]:
    """Every block's specs: for layer l and each (make, hf, ours) of `parts`,
    `make(f"{hf_layer}{l}.{hf}", f"layers.{l}.{ours}")` (hf_layer such as "encoder.layer.";
    make such as `dense_specs` or `norm_specs`)."""
    return [spec for l in range(num_layers) for make, hf, ours in parts
            for spec in make(f"{hf_layer}{l}.{hf}", f"layers.{l}.{ours}")]


def base_keys(roots: tuple[str, ...], ignored: tuple[str, ...] = ()) -> Callable[[str], bool]:
    """A `base_key_filter`: True for the keys under `roots` (the base model), except those
    starting with one of `ignored` (buffers, a pooler)."""
    def is_base_key(key: str) -> bool:
        return key.startswith(roots) and not (ignored and key.startswith(ignored))
    return is_base_key


def checkpoint_files(folder: Path) -> list[Path]:
    """The weight files of a HF folder, in a stable order."""
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError) as e:
            raise ConversionError(f"malformed safetensors index {index}: {e}") from None
        return [folder / s for s in shards]
    for name in ("pytorch_model.bin",):
        if (folder / name).is_file():
            return [folder / name]
    raise ConversionError(
        f"no weights in {folder}: expected model.safetensors, "
        "model.safetensors.index.json or pytorch_model.bin"
    )


def content_hash(files: Sequence[Path]) -> str:
    """sha256 over the bytes of every weight file (names excluded)."""
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    out: dict[str, np.ndarray] = {}
    try:
        with safe_open(str(path), framework="np") as f:
            for k in f.keys():
                out[k] = f.get_tensor(k)
    except Exception as e:  # safetensors raises its own error types, and OSError
        if "bfloat16" in str(e) or "BF16" in str(e):
            return _read_safetensors_torch(path)
        raise ConversionError(f"checkpoint {path} is corrupt or unreadable: {e}") from None
    return out


def _read_safetensors_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
        from safetensors.torch import load_file
    except ImportError:
        raise ConversionError(
            f"{path} holds bfloat16 tensors; reading them needs torch (pip install torch)"
        ) from None
    try:
        return {k: v.to(torch.float32).numpy() for k, v in load_file(str(path)).items()}
    except Exception as e:
        raise ConversionError(f"checkpoint {path} is corrupt or unreadable: {e}") from None


def _read_torch_bin(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ConversionError(
            f"{path} is a PyTorch pickle; reading it needs torch (pip install torch), "
            "or convert the checkpoint to safetensors"
        ) from None
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConversionError(f"checkpoint {path} is corrupt or unreadable: {e}") from None
    return {k: v.to(torch.float32).numpy() for k, v in sd.items()}


def read_tensor(folder: Path, name: str) -> np.ndarray | None:
    """One tensor of a HF checkpoint folder (None if no file holds it); safetensors files
    are opened lazily, so only that tensor is read."""
    from safetensors import safe_open

    for f in checkpoint_files(Path(folder)):
        if f.suffix == ".bin":
            found = _read_torch_bin(f).get(name)
        else:
            try:
                with safe_open(str(f), framework="np") as fh:
                    if name not in fh.keys():
                        continue
                    found = fh.get_tensor(name)
            except Exception:  # bfloat16 (numpy has none) or unreadable: read it whole
                found = _read_safetensors(f).get(name)
        if found is not None:
            return found
    return None


def read_state_dict(folder: Path) -> dict[str, np.ndarray]:
    """All tensors of a HF checkpoint folder as numpy arrays (dtype as stored)."""
    out: dict[str, np.ndarray] = {}
    for f in checkpoint_files(Path(folder)):
        out.update(_read_torch_bin(f) if f.suffix == ".bin" else _read_safetensors(f))
    return out


def strip_base_prefix(
    state: Mapping[str, np.ndarray], prefixes: Sequence[str], is_base_key: Callable[[str], bool]
) -> dict[str, np.ndarray]:
    """Pick the prefix under which the base model's keys live and strip it."""
    best, best_count = "", -1
    for p in prefixes:
        n = sum(1 for k in state if k.startswith(p) and is_base_key(k[len(p) :]))
        if n > best_count:
            best, best_count = p, n
    return {k[len(best) :]: v for k, v in state.items() if k.startswith(best)}


def _short_list(keys: Sequence[str], limit: int = 6) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def convert_checkpoint(
    state: Mapping[str, np.ndarray],
    specs: Sequence[KeySpec],
    expected_shapes: Mapping[str, tuple[int, ...]],
    *,
    prefixes: Sequence[str],
    is_base_key: Callable[[str], bool],
    source: str,
) -> dict[str, np.ndarray]:
    """Apply a key map; raise `ConversionError` listing missing / unexpected keys.

    Returns {nnx_path: float32 array} whose shapes equal `expected_shapes`.
    """
    base = strip_base_prefix(state, prefixes, is_base_key)
    out: dict[str, np.ndarray] = {}
    used: set[str] = set()
    missing: list[str] = []
    for spec in specs:
        name = next((n for n in spec.hf_names if n in base), None)
        if name is None:
            missing.append(spec.hf_names[0])
            continue
        used.add(name)
        arr = np.asarray(base[name], dtype=np.float32)
        if spec.transpose:
            arr = arr.T
        if spec.transform is not None:
            arr = np.asarray(spec.transform(arr), dtype=np.float32)
        want = tuple(expected_shapes[spec.nnx_path])
        if arr.shape != want:
            expected = want if not spec.transpose else want[::-1]
            if spec.transform is not None:
                expected = f"one that gives {want} for {spec.nnx_path}"
            raise ConversionError(
                f"{source}: tensor {name} has shape {tuple(base[name].shape)}, "
                f"expected {expected} from the config"
            )
        out[spec.nnx_path] = np.ascontiguousarray(arr)
    unexpected = [k for k in base if is_base_key(k) and k not in used]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short_list(unexpected)}")
        raise ConversionError(f"{source} does not match its config: " + "; ".join(parts))
    return out


def cached_params(
    key: str, convert: Callable[[], dict[str, np.ndarray]]
) -> tuple[dict[str, np.ndarray], bool]:
    """Converted parameters for cache `key`, converting (and storing) on a miss.

    Returns (params, hit). A cache file that cannot be read is converted again.
    """
    from safetensors.numpy import load_file, save_file

    path = cache_dir() / "converted" / f"{key}-v{CACHE_FORMAT_VERSION}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path)), True
        except Exception:
            path.unlink(missing_ok=True)
    params = convert()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file(params, str(tmp))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs a conversion next time
    return params, False
