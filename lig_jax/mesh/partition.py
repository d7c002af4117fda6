"""How the model axis splits the parameters: each parameter declares its logical axes where
the model defines it (`models.common.Dense(split=...)`, `models.common.table(vocab=...)`),
stored as the variable's `axes` metadata, and one rule maps them to the mesh:

- "split" (the heads or MLP units a `Dense` fans out into, or brings back from) → the
  model axis, when M divides that dimension (e.g. 9 heads on 2 devices stay replicated);
- "vocab" (a token table's rows) → the model axis when M divides the vocabulary, else its
  width ("embed") is split instead (vocabularies are often odd);
- anything without axes (norm scales, biases of row-split layers, position tables) is
  replicated.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .layout import MODEL

SPLIT, VOCAB, EMBED = "split", "vocab", "embed"


def spec_for(axes: tuple[str | None, ...] | None, shape: tuple[int, ...], m: int) -> P:
    """The PartitionSpec of one parameter with logical `axes` (None: replicated) and
    `shape`, on a model axis of m devices."""
    def split(axis: int) -> P:
        if m == 1 or shape[axis] % m:
            return P()
        spec = [None] * len(shape)
        spec[axis] = MODEL
        return P(*spec)

    if not axes:
        return P()
    if VOCAB in axes:
        at = axes.index(VOCAB)
        return split(at) if shape[at] % m == 0 else split(axes.index(EMBED))
    return split(axes.index(SPLIT)) if SPLIT in axes else P()


def axes_by_path(state: nnx.State) -> dict[str, tuple[str | None, ...] | None]:
    """Each parameter's declared axes by its dotted path ("layers.0.attention.query.kernel")."""
    return {".".join(map(str, path)): var.get_metadata().get("axes")
            for path, var in nnx.to_flat_state(state)}


def state_specs(state: nnx.State, mesh: Mesh) -> Any:
    """PartitionSpecs for an `nnx.State` (same tree of variables), by the declared axes."""
    m = mesh.shape[MODEL]

    def spec(var: Any) -> Any:
        return var.replace(spec_for(var.get_metadata().get("axes"), var.get_value().shape, m))

    return jax.tree.map(spec, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def state_shardings(state: nnx.State, mesh: Mesh) -> Any:
    return jax.tree.map(lambda s: NamedSharding(mesh, s), state_specs(state, mesh),
                        is_leaf=lambda x: isinstance(x, P))
