"""lig-jax: Layer-wise Integrated Gradients for Transformers in JAX / Flax NNX."""

__version__ = "0.1.0"

from .api import explain, explain_arrays, explain_batch, explain_to_json  # noqa: E402
from .boundaries import describe_boundaries  # noqa: E402
from .config import LIGConfig  # noqa: E402
from .errors import LIGError  # noqa: E402

__all__ = ["LIGConfig", "LIGError", "describe_boundaries", "explain", "explain_arrays",
           "explain_batch", "explain_to_json"]
