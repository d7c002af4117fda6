"""Where arrays live on a (data, model) device mesh — kept apart from the math.

A mesh `D×M` spans the first D·M devices with the axes ("data", "model"):

- **model** (tensor parallel): every `Dense` of a block is split Megatron-style — the
  ones that fan out into heads or the MLP's hidden units (`COLUMN`) along their output
  dimension, the ones that bring them back (`ROW`) along their input dimension — and the
  token embedding table along its vocabulary (along d where M does not divide the
  vocabulary). So with M > 1 no device holds a whole block or the whole model; loading
  with a mesh (`loading.load_model(name, mesh)`) puts every parameter straight onto its
  shards. Norm scales, biases of `ROW` layers and everything else are
  replicated.
- **data**: a single sentence's targets (explain), or the sentences themselves
  (explain-batch, Experiment A: each row of M devices takes whole sentences; `rows.py`).

The compiled programs are the same `jax.jit` programs as on one device: their inputs
carry `NamedSharding`s and XLA's SPMD partitioner splits the work, so the numbers do not
depend on the mesh (up to the order of floating-point sums). A dimension that the model
axis does not divide (e.g. 9 heads on 2 devices) stays replicated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .errors import LIGError

DATA, MODEL = "data", "model"

# `Dense` attribute names (every family's modeling.py) by how the model axis splits them.
COLUMN = frozenset({"query", "key", "value", "q_proj", "k_proj", "v_proj", "c_attn", "wqkv",
                    "intermediate", "gate_proj", "up_proj", "ffn_in", "c_fc", "wi"})
ROW = frozenset({"output", "o_proj", "c_proj", "wo", "down_proj", "ffn_out", "mlp_wo"})
EMBEDDINGS = frozenset({"word", "wte", "embed_tokens", "tok"})  # [vocab, d] tables

MESH_FORMAT = "DxM (data × model devices, e.g. 2x4)"


def parse_mesh(text: str) -> tuple[int, int]:
    """"2x4" → (2, 4); one-line LIGError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise LIGError(f"mesh {text!r} is not of the form {MESH_FORMAT}")
    return int(m.group(1)), int(m.group(2))


def make_mesh(shape: tuple[int, int] | str, devices: Sequence[Any] | None = None) -> Mesh:
    """A ("data", "model") mesh over the first D·M of `devices` (default: all devices,
    every host's under multi-host)."""
    d, m = parse_mesh(shape) if isinstance(shape, str) else shape
    devs = list(jax.devices() if devices is None else devices)
    if d * m > len(devs):
        hint = ("; on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N in the "
                "environment gives N devices" if devs[0].platform == "cpu" else "")
        raise LIGError(f"mesh {d}x{m} needs {d * m} devices, {len(devs)} available "
                       f"({devs[0].platform}); choose D·M ≤ {len(devs)}{hint}")
    return Mesh(np.asarray(devs[:d * m]).reshape(d, m), (DATA, MODEL))


def spec_for(names: Sequence[str], shape: tuple[int, ...], m: int) -> P:
    """The PartitionSpec of one parameter, by its path names (e.g. ["layers", "0",
    "attention", "self_attn", "query", "kernel"]) and shape, on a model axis of m."""
    names = [n for n in names if n != "value"]
    leaf, owner = names[-1], names[-2] if len(names) > 1 else ""

    def split(axis: int) -> P:
        if m == 1 or shape[axis] % m:
            return P()
        spec = [None] * len(shape)
        spec[axis] = MODEL
        return P(*spec)

    # (a leading axis, e.g. blocks stacked over layers, is never split)
    if owner in COLUMN and leaf in ("kernel", "bias"):
        return split(len(shape) - 1)
    if owner in ROW and leaf == "kernel" and len(shape) >= 2:
        return split(len(shape) - 2)
    if leaf in EMBEDDINGS and len(shape) == 2:  # vocabularies are often odd: then along d
        return split(0) if shape[0] % m == 0 else split(1)
    return P()


def _leaf_spec(path: tuple, shape: tuple[int, ...], m: int) -> P:
    names = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
    return spec_for(names, shape, m)


def state_specs(state: Any, mesh: Mesh) -> Any:
    """PartitionSpecs for an `nnx.State` (same tree), by the rules above."""
    m = mesh.shape[MODEL]
    return jax.tree_util.tree_map_with_path(lambda p, a: _leaf_spec(p, a.shape, m), state)


def state_shardings(state: Any, mesh: Mesh) -> Any:
    return jax.tree.map(lambda s: NamedSharding(mesh, s), state_specs(state, mesh),
                        is_leaf=lambda x: isinstance(x, P))


def place_state(state: Any, mesh: Mesh) -> Any:
    """`state` on the mesh, split over the model axis by the rules above."""
    return jax.device_put(state, state_shardings(state, mesh))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def along_data(mesh: Mesh, rank: int = 1) -> NamedSharding:
    """Leading axis split over the data axis (targets, or sentences)."""
    return NamedSharding(mesh, P(DATA, *([None] * (rank - 1))))
