"""The one table of baselines: name → raw runs → ratio fix → labels.

A baseline's `name` is the only name lig-jax uses for it — in `explain`'s options and JSON,
the CLI flags of explain, view and plot, Experiment-A record keys (`z2z/<name>`,
`z2u/<name>`, `u2z/<name>`, `composed/<att>/<mlp>`) and the API. The other columns are
what the name stands for and how others spell it:

- `raw`: the integrand baseline the numbers are computed under (`attribution.run`):
  "zero", "self_input_token" (ITB: every input row replaced by the target's own row) or
  "att_itb_a0" (u→z: the ATT output at the α = 0 end of the ITB path);
- `fix`: the ratio fix applied to the raw ITB numbers afterwards, in float64
  (`attribution.ratio`; docs/spec.md §6): None, "zero_ratio" (needs the zero-baseline
  run as well) or "map_ratio" (needs the attention probabilities A^h_{j,j});
- `label`: figures and pair names ("ITB-zeroRatio"); `tag`: the reference's pair-key part
  ("lig_itb_zero_ratio"); `reference_name`: the reference's name in its flow-consistency
  CSV ("ITB_raw"); `group`: the reference CSV's layer baseline group (z→z only).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import choice_error

ITB = "self_input_token"


@dataclass(frozen=True)
class Baseline:
    name: str
    quantity: str  # "z2z" (layer), "z2u" (att) or "u2z" (mlp)
    raw: str
    fix: str | None
    label: str
    tag: str
    reference_name: str
    group: str = ""

    @property
    def runs(self) -> tuple[str, ...]:
        """The raw integrand runs its numbers need (the zero run too for zero_ratio)."""
        return (self.raw, "zero") if self.fix == "zero_ratio" else (self.raw,)


TABLE: tuple[Baseline, ...] = (
    Baseline("zero", "z2z", "zero", None, "Zero", "lig_zero", "zero", "zero"),
    Baseline(ITB, "z2z", ITB, None, "ITB", "lig_itb", ITB, "itb"),
    Baseline("itb_zero_ratio", "z2z", ITB, "zero_ratio", "ITB-zeroRatio",
             "lig_itb_zero_ratio", "self_input_token_self_contrib_zero_base_ratio",
             "itb_zero_ratio"),
    Baseline("zero", "z2u", "zero", None, "Zero", "att0", "zero"),
    Baseline(ITB, "z2u", ITB, None, "ITB", "att_itb", "ITB_raw"),
    Baseline("itb_map_ratio", "z2u", ITB, "map_ratio", "ITB-mapRatio", "att_itbmap",
             "ITB_map"),
    Baseline("itb_zero_ratio", "z2u", ITB, "zero_ratio", "ITB-zeroRatio", "att_itb_zbr",
             "ITB_zero_base_ratio"),
    Baseline("zero", "u2z", "zero", None, "Zero", "mlp0", "zero"),
    Baseline("att_itb_a0", "u2z", "att_itb_a0", None, "ATT-ITB-a0", "mlp_attitba0",
             "ATTITBa0"),
)

GRANULARITY_QUANTITY = {"layer": "z2z", "att": "z2u", "mlp": "u2z"}
DEFAULTS = {"z2z": ITB, "z2u": ITB, "u2z": "zero"}  # explain's defaults


def of(quantity: str) -> tuple[Baseline, ...]:
    """The baselines of one quantity, in the reference's order."""
    return tuple(b for b in TABLE if b.quantity == quantity)


def names(quantity: str) -> tuple[str, ...]:
    return tuple(b.name for b in of(quantity))


def get(quantity: str, name: str, what: str | None = None) -> Baseline:
    """The row of (quantity, name); one-line LIGError listing the allowed names."""
    for b in of(quantity):
        if b.name == name:
            return b
    raise choice_error(what or f"{quantity} baseline", name, names(quantity))
