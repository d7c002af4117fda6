"""A result as one tidy long table (`explain --csv`): a row per attribution value.

    layer, quantity, head, source, source_token, target, target_token, value

`quantity` is z2z (the layer-direct map), z2z_composed, z2u (per head; `head` is empty
for the others) or a context-mixing measure (`explain --measures`: its name, e.g. alti,
rollout/alti; per head for attention_heads and attention_norm_heads); `source`/`target`
are token (or, with `--words`, unit) indices. u→z is not token-to-token (its
contributions run over the dimensions of u) and is left out. In pandas:
`pd.read_csv(path).pivot_table(index="source", columns="target", values="value")` per
layer and quantity gives back the matrix (source i → target j).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from .files import write_atomic
from .measures.names import ARRAYS, is_heads
from .results import Result

COLUMNS = ("layer", "quantity", "head", "source", "source_token", "target", "target_token",
           "value")


def rows(result: Result) -> Iterator[tuple]:
    """The table's rows, layer by layer (sources within targets)."""
    tokens = result.meta["tokens"]
    cfg = result.meta["config"]
    targets = list(cfg["target_tokens"])
    heads = result.meta["format"]["heads"]
    s = len(tokens)
    for l, arrays in result.layers.items():
        if "z2z" in arrays:
            m = np.asarray(arrays["z2z"])
            for j in range(s):
                for i in range(s):
                    yield l, "z2z", "", i, tokens[i], j, tokens[j], float(m[i, j])
        if "z2z_composed" in arrays:
            m = np.asarray(arrays["z2z_composed"])
            for t, j in enumerate(targets):
                for i in range(s):
                    yield l, "z2z_composed", "", i, tokens[i], j, tokens[j], float(m[i, t])
        if "z2u" in arrays:
            m = np.asarray(arrays["z2u"])  # [T, H, S]
            for t, j in enumerate(targets):
                for hi, h in enumerate(heads):
                    for i in range(s):
                        yield l, "z2u", h, i, tokens[i], j, tokens[j], float(m[t, hi, i])
        for name in ARRAYS:
            if name not in arrays:
                continue
            m = np.asarray(arrays[name])
            for h, hm in (enumerate(m) if is_heads(name) else [("", m)]):
                for j in range(s):
                    for i in range(s):
                        yield l, name, h, i, tokens[i], j, tokens[j], float(hm[i, j])


def write_csv(result: Result, path: str | Path) -> Path:
    """Write the table to `path` atomically (`files.write_atomic`)."""
    def fill(fh: IO[bytes]) -> None:
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        w = csv.writer(text, lineterminator="\n")
        w.writerow(COLUMNS)
        for row in rows(result):
            w.writerow(row[:-1] + (f"{row[-1]:.9g}",))
        text.flush()
        text.detach()

    return write_atomic(path, fill)
