"""Sub-word → word aggregation of token-to-token maps, the same way for every route.

Units are the sentence's words plus each special token as a unit of its own, in token
order (e.g. [CLS], w0, w1, …, [SEP]: T = words + 2 for BERT). A map M [S_src, S_tgt]
over tokens becomes W = Σ_src · M · mean_tgt: attribution *from* a word is the sum over
its sub-words (attributions add over sources), attribution *to* a word is the mean over
its sub-word targets (each target column is its own scalar). This is the convention of
Clark et al. (2019) for attention maps (sum over the attended word's pieces, mean over
the attending word's pieces). Words cut off by truncation have no tokens and no unit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def units(word_ids: Sequence[int]) -> tuple[np.ndarray, list[int]]:
    """(unit index per token [S], word index per unit (−1 for a special-token unit))."""
    unit_of, unit_word = [], []
    last_word = None
    for w in word_ids:
        if w < 0:
            unit_word.append(-1)
            last_word = None
        elif w != last_word:
            unit_word.append(int(w))
            last_word = w
        unit_of.append(len(unit_word) - 1)
    return np.asarray(unit_of), unit_word


def aggregation(word_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(sum matrix [U, S], mean matrix [U, S], word per unit) for `to_words`."""
    unit_of, unit_word = units(word_ids)
    n_units, s = len(unit_word), len(unit_of)
    summ = np.zeros((n_units, s))
    summ[unit_of, np.arange(s)] = 1.0
    mean = summ / summ.sum(axis=1, keepdims=True)
    return summ, mean, unit_word


def aggregate(matrix: np.ndarray, summ: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """[..., S_src, S_tgt] token map → [..., U_src, U_tgt] with `aggregation`'s matrices."""
    return np.einsum("us,...st,vt->...uv", summ, np.asarray(matrix, np.float64), mean)


def to_words(matrix: np.ndarray, word_ids: Sequence[int]) -> np.ndarray:
    """[..., S_src, S_tgt] token map → [..., U_src, U_tgt] unit map (see module doc)."""
    summ, mean, _ = aggregation(word_ids)
    return aggregate(matrix, summ, mean)
