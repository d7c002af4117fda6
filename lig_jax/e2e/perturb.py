"""Perturbed inputs of one sentence, evaluated in batches: token removal at the id level.

A perturbation keeps a subset of the sentence's rows. `delete` drops the others (the rows
close up; decoders always delete), `mask` replaces them by the tokenizer's mask token,
`pad` by the pad token (both stay attended). Every perturbation of a sentence is padded to
one length (the sentence's, rounded up to a bucket) and evaluated in jitted calls of at
most `chunk` perturbations, the batch itself padded to a bucket (8, 16, 24, 32, 48, …), so
a few compiled shapes serve every call: `batch_values` vmaps the model over [B, S] ids
with key masks, and on a ("data", "model") mesh the batch axis is split over the data
axis.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ..errors import LIGError
from ..lm_head import LMHead
from ..mesh import DATA
from .targets import Target, column_arrays, values

ABLATIONS = ("delete", "mask", "pad")


@partial(jax.jit, static_argnames=("graphdef", "kind", "output", "softcap"))
def _batch_values(graphdef, state, unembed, ids, key_mask, positions, cols, *, kind: str,
                  output: str, softcap: float | None):
    """ids, key_mask [B, S], positions [B, T] → target values [B, T]."""
    head = None if unembed is None else LMHead(unembed, softcap)

    def one(i, m, p):
        model = nnx.merge(graphdef, state)
        z = model.hidden_states(i, m)[-1]
        return values(kind, output, model.final_norm(z), m, {**cols, "positions": p}, head)
    return jax.vmap(one)(ids, key_mask, positions)


class Evaluator:
    """Target values of perturbed versions of one sentence (`keep` masks over its rows)."""

    def __init__(self, lm: Any, target: Target, ablation: str, *, length: int,
                 unembed: jax.Array | None, softcap: float | None, chunk: int,
                 mesh: Any = None):
        if ablation not in ABLATIONS:
            from ..errors import choice_error

            raise choice_error("ablation", ablation, ABLATIONS)
        decoder = lm.family.architecture == "decoder"
        if decoder and ablation != "delete":
            raise LIGError(f"--ablation {ablation} applies to encoders; decoders delete "
                           "the removed tokens")
        self.fill = None
        if ablation == "mask":
            self.fill = getattr(lm.tokenizer, "mask_token_id", None)
            if self.fill is None:
                raise LIGError(f"--ablation mask needs a mask token; {lm.name}'s tokenizer "
                               "has none. Allowed here: delete, pad")
        elif ablation == "pad":
            self.fill = lm.config.pad_token_id
        self.lm, self.target, self.ablation = lm, target, ablation
        self.ids = np.asarray(target.ids, np.int32)
        self.length, self.mesh = length, mesh
        self.pad = lm.config.pad_token_id
        self.graphdef, self.state = nnx.split(lm.model)
        self.unembed, self.softcap = unembed, softcap
        d = mesh.shape[DATA] if mesh is not None else 1
        self.chunk = max(d, (chunk // d) * d)
        cols = column_arrays(target, lm.config.hidden_size)
        self.cols = {k: jnp.asarray(v) for k, v in cols.items() if k != "positions"}
        self.positions = np.asarray(target.positions, np.int32)
        self.calls = 0

    def rows(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One perturbation → (ids [S_b], key_mask [S_b], positions [T])."""
        s = len(self.ids)
        ids = np.full(self.length, self.pad, np.int32)
        mask = np.zeros(self.length, bool)
        if self.ablation == "delete":
            kept = np.flatnonzero(keep)
            ids[: len(kept)], mask[: len(kept)] = self.ids[kept], True
            shift = np.cumsum(~keep)  # rows removed at or before each row
            pos = np.where(self.positions < 0, -1,
                           self.positions - shift[np.maximum(self.positions, 0)])
            if self.target.kind in ("next", "token", "contrast"):
                pos = np.full_like(self.positions, len(kept) - 1)
        else:
            ids[:s] = np.where(keep, self.ids, self.fill)
            mask[:s] = True
            pos = self.positions
        return ids, mask, pos.astype(np.int32)

    def __call__(self, keeps: list[np.ndarray]) -> np.ndarray:
        """Values [N, T] of N perturbations (keep masks [S] bool), in chunks of one size."""
        if not keeps:
            return np.zeros((0, self.target.num_columns))
        from ..engine import bucket_length

        built = [self.rows(k) for k in keeps]
        out = []
        d = self.mesh.shape[DATA] if self.mesh is not None else 1
        for start in range(0, len(built), self.chunk):
            part = built[start:start + self.chunk]
            # a batch bucket (8, 16, 24, 32, 48, …; a multiple of the data devices): a few
            # shapes serve every call, and a small call is not padded to a full chunk
            size = min(self.chunk, -(-bucket_length(len(part), self.chunk) // d) * d)
            part = part + [part[-1]] * (size - len(part))
            ids, mask, pos = (np.stack(x) for x in zip(*part, strict=True))
            arrays = [jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(pos)]
            if self.mesh is not None:
                arrays = [jax.device_put(a, NamedSharding(self.mesh, P(DATA)))
                          for a in arrays]
            v = _batch_values(self.graphdef, self.state, self.unembed, *arrays, self.cols,
                              kind=self.target.kind, output=self.target.spec.output,
                              softcap=self.softcap)
            self.calls += 1
            out.append(np.asarray(v, np.float64))
        return np.concatenate(out)[: len(built)]
