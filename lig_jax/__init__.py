"""lig-jax: Layer-wise Integrated Gradients for Transformers in JAX / Flax NNX.

The face of the package: `explain` and `explain_batch` return `Explanation`s (dicts that
show themselves as the flow viewer in Jupyter); `lig_jax.api` holds the same functions
returning plain dicts.
"""

from .api import explain_arrays, explain_to_json
from .boundaries import describe_boundaries
from .config import LIGConfig
from .errors import LIGError
from .version import __version__
from .view.notebook import explain, explain_batch

__all__ = ["LIGConfig", "LIGError", "__version__", "describe_boundaries", "explain",
           "explain_arrays", "explain_batch", "explain_to_json"]
