"""Layer-wise IG quantities for one block.

- `z2z`: token → token across the whole block (layer-direct), [S_src, S_tgt].
- `z2u`: token → head context before W_O, per (target, head), [T, H, S_src].
- `u2z`: ATT output u_j → z^(l+1)_j through the MLP sub-block, [T, d].
- `compose`: z→u × u→z per head, summed over heads, [S_src, T].
- `ratio`: the ITB column fixes (zeroRatio, mapRatio).

Each jitted function takes the block as (graphdef, state) so that one compilation
serves every layer with the same structure and sentence length.
"""
