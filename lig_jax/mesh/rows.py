"""Many sentences on one (data, model) mesh: the data axis deals sentences.

A mesh D×M (`lig_jax.mesh`) has D data rows, each a model group of M devices holding one
copy of the (model-axis split) parameters. For a job of many sentences (explain-batch,
Experiment A) each row takes the next sentence as soon as it is free, so D sentences run
at once, each on its own M devices — one worker thread per row (JAX releases the GIL
while a device computes). A single sentence instead deals its targets over the data axis
(`attribution.run`). A sentence's numbers are those of a 1×M mesh, whichever row
computed it.

Top-down: `data_rows(mesh)` → one 1×M mesh per row → `model_on_row` (the parameters
already on the row's devices, viewed without a copy) → `over_rows` runs `work(row, item)`
for every item and keeps each result on the calling thread.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .layout import DATA, MODEL

Item = TypeVar("Item")
Result = TypeVar("Result")


def data_rows(mesh: Mesh) -> list[Mesh]:
    """The mesh's data rows, each a 1×M ("data", "model") mesh of its model group."""
    grid = np.asarray(mesh.devices)
    return [Mesh(grid[i:i + 1], (DATA, MODEL)) for i in range(grid.shape[0])]


def _on_row(a: Any, mesh: Mesh, row: Mesh) -> Any:
    """One array of a data-replicated layout on `mesh`, viewed on `row` (its shards on the
    row's devices, no copy); any other array is copied there, replicated."""
    if not isinstance(a, jax.Array):
        return a
    sh = a.sharding
    if isinstance(sh, NamedSharding) and sh.mesh == mesh and DATA not in jax.tree.leaves(
            tuple(sh.spec)):
        target = NamedSharding(row, sh.spec)
        by_device = {s.device: s.data for s in a.addressable_shards}
        shards = [by_device[d] for d in target.addressable_devices_indices_map(a.shape)]
        return jax.make_array_from_single_device_arrays(a.shape, target, shards)
    return jax.device_put(a, NamedSharding(row, P()))


def model_on_row(lm: Any, mesh: Mesh, row: Mesh) -> Any:
    """A `LoadedModel` whose parameters are those of `lm` (loaded on `mesh`) on one row."""
    if row.devices.size == mesh.devices.size:
        return lm
    graphdef, state = nnx.split(lm.model)
    state = jax.tree.map(lambda a: _on_row(a, mesh, row), state)
    return dataclasses.replace(lm, model=nnx.merge(graphdef, state))


def over_rows(workers: list[Any], items: Iterable[Item],
              work: Callable[[Any, Item], Result], keep: Callable[[Item, Result], None],
              after: Callable[[], None] = lambda: None) -> None:
    """`work(worker, item)` for every item, each worker (one per row) busy with one item at
    a time; `keep(item, result)` then `after()` on the calling thread as each finishes
    (with one worker: in order, all on this thread). When anything raises (`after` is
    where the CLI raises Ctrl-C), no new item starts, the running ones finish and are
    kept, then the exception propagates: no finished work is lost."""
    if len(workers) == 1:
        for item in items:
            keep(item, work(workers[0], item))
            after()
        return
    pending = iter(items)
    free = list(reversed(workers))
    running: dict[Future, tuple[int, Item, Any]] = {}
    started = itertools.count()
    with ThreadPoolExecutor(len(workers), thread_name_prefix="lig-row") as pool:
        def start() -> None:
            for w in list(free):
                item = next(pending, _END)
                if item is _END:
                    return
                free.remove(w)
                running[pool.submit(work, w, item)] = (next(started), item, w)

        try:
            start()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in sorted(done, key=lambda f: running[f][0]):
                    _, item, w = running.pop(f)
                    free.append(w)
                    keep(item, f.result())
                    after()
                start()
        except BaseException:
            for f in list(running):  # finish and keep what is already running
                _, item, _w = running.pop(f)
                if f.exception() is None:
                    keep(item, f.result())
            raise


_END = object()
