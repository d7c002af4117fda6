"""The names of the measures: what `--measures` takes and what each one writes."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import LIGError, choice_error

# A measure → the arrays it writes per layer ([S_src, S_tgt], or [H, S_src, S_tgt]).
OUTPUTS: dict[str, tuple[str, ...]] = {
    "attention": ("attention", "attention_heads"),
    "attention_norm": ("attention_norm", "attention_norm_heads"),
    "alti": ("alti",),
    "value_zeroing": ("value_zeroing", "value_zeroing_raw"),
}
MEASURES = tuple(OUTPUTS)
# Rollouts: the product of per-layer maps through blocks 0 … l, [S_input, S_tgt]. Of the
# measures that include the residual path, of attention as 0.5·A + 0.5·I (Abnar &
# Zuidema) and of LIG's own z→z (per target, |values| summing to 1).
ROLLOUT_OF = {"rollout/attention": "attention", "rollout/alti": "alti",
              "rollout/value_zeroing": "value_zeroing", "rollout/lig": "z2z"}
ROLLOUTS = tuple(ROLLOUT_OF)
CHOICES = (*MEASURES, *ROLLOUTS)


def measure_list(measures: str | Sequence[str] | None, lig: bool = True) -> list[str]:
    """"all" → every measure and rollout (rollout/lig only where `lig`: LIG's z→z is
    computed); "a,b" or a list → validated names, order kept; None or "" → []. One-line
    `LIGError` for an unknown name."""
    if measures is None:
        return []
    if isinstance(measures, str):
        items = [m.strip() for m in measures.split(",") if m.strip()]
    else:
        items = [str(m).strip() for m in measures]
    if items == ["all"]:
        return [c for c in CHOICES if lig or c != "rollout/lig"]
    out: list[str] = []
    for m in items:
        if m not in CHOICES:
            raise choice_error("measures", m, ("all", *CHOICES))
        if m not in out:
            out.append(m)
    return out


def measure_outputs(name: str, num_heads: int) -> list[str]:
    """The [S, S] maps measure or rollout `name` writes per layer (a per-head array
    counted once per head): for sizing results."""
    if name in ROLLOUT_OF:
        return [name]
    return [o for o in OUTPUTS[name] for _ in range(num_heads if o.endswith("_heads") else 1)]


def needed_maps(names: Sequence[str]) -> list[str]:
    """The per-layer measures `names` need (a rollout needs its measure), in MEASURES order."""
    want = set(names) | {ROLLOUT_OF[r] for r in names if r in ROLLOUT_OF}
    return [m for m in MEASURES if m in want]


def check_lig_rollout(names: Sequence[str], has_z2z: bool) -> None:
    """rollout/lig composes LIG's z→z: refuse it without the layer granularity."""
    if "rollout/lig" in names and not has_z2z:
        raise LIGError("measure rollout/lig composes LIG's z→z: add layer to --granularity "
                       "(or leave rollout/lig out)")
