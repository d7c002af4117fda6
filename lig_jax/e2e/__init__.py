"""Input attributions of a model output (end to end): targets, methods, faithfulness.

    text → ids → (target: one scalar per column) → methods: scores [S_src, T]

`targets` turns a target spec into the columns' scalar functions of the last hidden state,
`gradients` computes the gradient methods (IG, gradient × input, AttnLRP) in one jitted
program per input, `flows` reads LIG's composed per-layer maps and the rollouts at the
target positions, `attribute` ties them to a loaded model.
"""
