"""Where arrays live on a (data, model) device mesh — kept apart from the math.

A mesh `D×M` spans the first D·M devices with the axes ("data", "model"):

- **model** (tensor parallel): every `Dense` of a block is split Megatron-style — the
  ones that fan out into heads or the MLP's hidden units along their output dimension,
  the ones that bring them back along their input dimension — and the token embedding
  table along its vocabulary (along d where M does not divide the vocabulary), as each
  parameter declares where the model defines it (`partition.py`). So with M > 1 no device
  holds a whole block or the whole model; loading with a mesh
  (`loading.load_model(name, mesh)`) puts every parameter straight onto its shards, once.
  Norm scales, biases of row-split layers and everything else are replicated.
- **data**: a single sentence's targets (explain), or the sentences themselves
  (explain-batch, Experiment A: each row of M devices takes whole sentences; `rows.py`;
  under multi-host, rows are dealt to processes first: `processes.py`).

The compiled programs are the same `jax.jit` programs as on one device: their inputs
carry `NamedSharding`s and XLA's SPMD partitioner splits the work, so the numbers do not
depend on the mesh (up to the order of floating-point sums). A dimension that the model
axis does not divide (e.g. 9 heads on 2 devices) stays replicated.

Modules: `layout` (the mesh, "DxM", the replicated and data-split placements),
`partition` (declared axes → PartitionSpecs), `rows` (sentences over data
rows), `processes` (this process's rows of a multi-host mesh).
"""

from .layout import DATA, MESH_FORMAT, MODEL, along_data, make_mesh, parse_mesh, replicated
from .partition import (
    EMBED,
    SPLIT,
    VOCAB,
    axes_by_path,
    spec_for,
    state_shardings,
    state_specs,
)

__all__ = ["DATA", "EMBED", "MESH_FORMAT", "MODEL", "SPLIT", "VOCAB", "along_data",
           "axes_by_path", "make_mesh", "parse_mesh", "replicated", "spec_for",
           "state_shardings", "state_specs"]
