"""Keep JAX from probing for a TPU that is not there.

With `libtpu` installed (the `tpu` and `test` extras: `lig-jax plan` compiles for abstract
TPU chips) JAX tries to open a TPU in every process, which on a machine without one costs
about a second and prints libtpu's host-discovery errors on stderr. When the user has not
chosen platforms (`JAX_PLATFORMS`), libtpu is installed, no TPU device file exists
(/dev/accel* on v4/v5e, /dev/vfio/N on v5p/v6e) and no GPU plugin is installed, JAX is
told to use the CPU. `lig-jax plan` still gets its abstract TPU devices (they do not need
the TPU backend).
"""

from __future__ import annotations

import glob
import importlib.util
import os

GPU_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin",
               "jax_rocm7_plugin")


def cpu_unless_an_accelerator_is_there() -> None:
    if os.environ.get("JAX_PLATFORMS") is not None:
        return
    if importlib.util.find_spec("libtpu") is None:
        return
    if glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"):
        return
    if any(importlib.util.find_spec(p) is not None for p in GPU_PLUGINS):
        return
    import jax

    jax.config.update("jax_platforms", "cpu")
