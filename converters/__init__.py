"""Hugging Face checkpoint → lig-jax NNX parameter converters.

Each family has a module with an explicit key map (HF key → NNX path, with the
transpose each tensor needs); `common` reads checkpoints, checks shapes and keys, and
caches converted parameters on disk keyed by the checkpoint's content hash.
"""

from .common import ConversionError, convert_checkpoint, read_state_dict

__all__ = ["ConversionError", "convert_checkpoint", "read_state_dict"]
