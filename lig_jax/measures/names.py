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
ROLLOUT_PREFIX = "rollout/"
CHOICES = (*MEASURES, *ROLLOUTS)
# Every array name a result can hold, and what it is (the JSON's "description").
DESCRIPTIONS = {
    "attention": "Attention probabilities, head mean",
    "attention_heads": "Attention probabilities per head [H, S_src, S_tgt]",
    "attention_norm": "Attention norm ||sum_h a f_h(x)|| (Kobayashi et al. 2020)",
    "attention_norm_heads": "Attention norm per head ||a f_h(x)|| [H, S_src, S_tgt]",
    "alti": "ALTI (Ferrando et al. 2022), shares of each target summing to 1",
    "value_zeroing": "Value zeroing (Mohebbi et al. 2023), shares of each target summing to 1",
    "value_zeroing_raw": "Value zeroing cosine distances before normalisation",
    "rollout/attention": "Attention rollout through blocks 0..l, 0.5 A + 0.5 I",
    "rollout/alti": "ALTI rollout through blocks 0..l",
    "rollout/value_zeroing": "Value zeroing rollout through blocks 0..l",
    "rollout/lig": "LIG z->z rollout through blocks 0..l, |z2z| per target summing to 1",
}
ARRAYS = tuple(DESCRIPTIONS)
# Views of a measure that are not token-to-token rankings of their own: per-head arrays
# [H, S, S] and the raw value-zeroing distances.
VIEW_SUFFIXES = ("_heads", "_raw")


def is_view(name: str) -> bool:
    """A per-head array or raw distances (left out of rankings, viewers and records)."""
    return name.endswith(VIEW_SUFFIXES)


def is_heads(name: str) -> bool:
    """A per-head array [H, S_src, S_tgt]."""
    return name.endswith("_heads")


def measure_list(measures: str | Sequence[str] | None, lig: bool = True) -> list[str]:
    """"all" → every measure and rollout (rollout/lig only where `lig`: LIG's z→z is
    computed at every layer it composes); "a,b" or a list → validated names, order kept
    ("all" among them adds the rest); None, "" or "none" → []. One-line `LIGError` for an
    unknown name."""
    if measures is None:
        return []
    if isinstance(measures, str):
        items = [m.strip() for m in measures.split(",") if m.strip()]
    else:
        items = [str(m).strip() for m in measures]
    if items == ["none"]:
        return []
    for m in items:
        if m not in CHOICES and m != "all":
            raise choice_error("measures", m, ("all", "none", *CHOICES))
    if "all" in items:
        return [c for c in CHOICES if lig or c != "rollout/lig"]
    out: list[str] = []
    for m in items:
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


def lig_rollout_possible(has_z2z: bool, layers: Sequence[int] | None) -> bool:
    """rollout/lig composes LIG's z→z through blocks 0 … l: it needs the layer
    granularity and every layer from 0 to the last requested (None = all layers)."""
    return has_z2z and (layers is None or set(range(max(layers) + 1)) <= set(layers))


def check_lig_rollout(names: Sequence[str], has_z2z: bool,
                      layers: Sequence[int] | None = None) -> None:
    """Refuse rollout/lig, in one line, where LIG's z→z is not computed at every layer it
    composes (`lig_rollout_possible`)."""
    if "rollout/lig" not in names:
        return
    if not has_z2z:
        raise LIGError("measure rollout/lig composes LIG's z→z: add layer to --granularity "
                       "(or leave rollout/lig out)")
    if not lig_rollout_possible(has_z2z, layers):
        top = max(layers or [0])
        raise LIGError(f"measure rollout/lig composes LIG's z→z through layers 0..{top}: "
                       f"give --layers 0..{top} (e.g. {','.join(map(str, range(top + 1)))}) "
                       "or leave rollout/lig out")
