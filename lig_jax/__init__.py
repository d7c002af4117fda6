"""lig-jax: Layer-wise Integrated Gradients for Transformers in JAX / Flax NNX.

The face of the package: `explain` and `explain_batch` return `Explanation`s (dicts that
show themselves as the flow viewer in Jupyter); `lig_jax.api` holds the same functions
returning plain dicts.
"""

import os

# transformers announces at import, as an "advisory", that PyTorch is absent; lig-jax never
# needs PyTorch to run. Only its advisories are silenced (a user's setting wins).
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from .platforms import cpu_unless_an_accelerator_is_there  # noqa: E402

cpu_unless_an_accelerator_is_there()  # before any JAX backend starts

from .api import explain_arrays, explain_to_json  # noqa: E402
from .boundaries import describe_boundaries  # noqa: E402
from .config import LIGConfig  # noqa: E402
from .e2e.attribute import attribute  # noqa: E402
from .errors import LIGError  # noqa: E402
from .version import __version__  # noqa: E402
from .view.notebook import explain, explain_batch  # noqa: E402

__all__ = ["LIGConfig", "LIGError", "__version__", "attribute", "describe_boundaries", "explain",
           "explain_arrays", "explain_batch", "explain_to_json"]
