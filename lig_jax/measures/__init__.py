"""Context-mixing measures set beside LIG: attention, attention norms, ALTI, value zeroing
and their rollouts across layers (docs/measures.md).

Every measure is a token-to-token map per layer in LIG's orientation, [S_src, S_tgt]
(`m[i][j]` = source i → target j; the papers write the transpose). `names` holds the one
list of names; `maps` and `zeroing` compute one layer, `rollout` composes layers and
`layers.measure_layers` runs them over a sentence's requested layers.
"""

from .names import MEASURES, OUTPUTS, ROLLOUTS, measure_list

__all__ = ["MEASURES", "OUTPUTS", "ROLLOUTS", "measure_list"]
