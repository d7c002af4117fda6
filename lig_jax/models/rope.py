"""Rotary position embeddings (RoPE), computed the way Hugging Face `transformers` 5 does.

Three pieces, usable by any RoPE family (Llama, Mistral, Qwen2, Gemma3):

    rope_parameters(hf_config, layer_type=None) -> dict     where HF 5 keeps them
    inverse_frequencies(head_dim, theta, params, max_positions) -> np.float32 [d_h/2]
    cos_sin(inv_freq, positions) -> (cos, sin), np.float32 [S, d_h]
    apply_rope(x [S, H, d_h], cos, sin) -> x·cos + rotate_half(x)·sin

Supported `rope_type`s (`ROPE_TYPES`): ``default``, ``linear`` (inverse frequencies ÷
factor), ``llama3`` (Llama 3.1 smooth wavelength-dependent scaling) and ``dynamic``
(dynamic NTK). HF's dynamic NTK changes the frequencies only for sequences longer than
``max_position_embeddings``; our models accept at most that many tokens (``max_tokens``),
so within our limit ``dynamic`` is exactly the frequencies HF computes at initialisation
(the NTK formula at seq_len = max_position_embeddings, which reduces to ``default``).
Any other type (yarn, longrope, …) raises a one-line `LIGError` naming the allowed ones.

Precision: HF computes the inverse frequencies in float32 torch (θ^(2i/d) with a float32
base and exponent, then 1/·), the angles as float32 position·inv_freq, and cos/sin in
float32. We do the same in numpy; the float32 power here is correctly rounded, torch's may
differ from it by one ulp for a few entries (a relative angle error ≤ 1.2e-7).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import LIGError

ROPE_TYPES = ("default", "dynamic", "linear", "llama3")
DEFAULT_THETA = 10_000.0


def rope_parameters(hf_config: Any, layer_type: str | None = None) -> dict[str, Any]:
    """The RoPE parameter dict of a HF config (transformers 5 `rope_parameters`).

    Falls back to the transformers 4 attributes (`rope_theta`, `rope_scaling`). For configs
    whose parameters are nested per layer type (Gemma3), pass `layer_type`
    (e.g. "sliding_attention"). Returns a copy with at least `rope_type` and `rope_theta`.
    """
    params = getattr(hf_config, "rope_parameters", None)
    if not params:
        params = dict(getattr(hf_config, "rope_scaling", None) or {})
    else:
        params = dict(params)
    if layer_type is not None and isinstance(params.get(layer_type), Mapping):
        params = dict(params[layer_type])
    params.setdefault("rope_type", params.get("type", "default"))
    theta = params.get("rope_theta") or getattr(hf_config, "rope_theta", None) or DEFAULT_THETA
    params["rope_theta"] = float(theta)
    return params


def default_inv_freq(dim: int, theta: float) -> np.ndarray:
    """1 / θ^(2i/dim), i = 0 … dim/2 − 1, float32 (base and exponents rounded to float32)."""
    exponents = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
    base = np.float64(np.float32(theta))
    powers = (base ** exponents.astype(np.float64)).astype(np.float32)
    return (np.float32(1.0) / powers).astype(np.float32)


def _rdiv(scalar: float, x: np.ndarray) -> np.ndarray:
    """torch's `scalar / tensor` in float32: reciprocal(tensor) · float32(scalar)."""
    return ((np.float32(1.0) / x).astype(np.float32) * np.float32(scalar)).astype(np.float32)


def _llama3_inv_freq(inv_freq: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Llama 3.1 scaling: long wavelengths ÷ factor, short ones kept, a smooth ramp between."""
    f32 = np.float32
    factor = f32(params["factor"])
    low, high = float(params["low_freq_factor"]), float(params["high_freq_factor"])
    old_len = float(params["original_max_position_embeddings"])
    low_freq_wavelen, high_freq_wavelen = f32(old_len / low), f32(old_len / high)
    wavelen = _rdiv(2 * math.pi, inv_freq)
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq).astype(f32)
    smooth = ((_rdiv(old_len, wavelen) - f32(low)) / f32(high - low)).astype(f32)
    smoothed = ((f32(1) - smooth) * scaled / factor + smooth * scaled).astype(f32)
    medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(medium, smoothed, scaled).astype(f32)


def inverse_frequencies(head_dim: int, theta: float,
                        rope_params: Mapping[str, Any] | None = None,
                        max_positions: int | None = None) -> np.ndarray:
    """RoPE inverse frequencies, float32 [head_dim // 2].

    rope_params: the HF `rope_parameters` dict (None = default RoPE); `rope_type` and its
    scaling fields are read from it. max_positions: `max_position_embeddings` (needed by
    ``dynamic``). Raises `LIGError` for unsupported types or a partial rotary factor.
    """
    params = dict(rope_params or {})
    rope_type = params.get("rope_type", params.get("type", "default")) or "default"
    if rope_type not in ROPE_TYPES:
        raise LIGError(f"rope_type {rope_type!r} is not supported. "
                       f"Allowed: {', '.join(ROPE_TYPES)}")
    partial = params.get("partial_rotary_factor", 1.0)
    if partial is not None and float(partial) != 1.0:
        raise LIGError(f"partial_rotary_factor {partial} is not supported. Allowed: 1.0")
    if head_dim % 2:
        raise LIGError(f"RoPE needs an even head_dim, got {head_dim}")
    needed = {"linear": ("factor",), "dynamic": ("factor",),
              "llama3": ("factor", "low_freq_factor", "high_freq_factor",
                         "original_max_position_embeddings")}.get(rope_type, ())
    for key in needed:
        if params.get(key) is None:
            raise LIGError(f"rope_type {rope_type!r} needs rope_parameters[{key!r}]")
    if rope_type == "dynamic":
        if max_positions is None:
            raise LIGError("rope_type 'dynamic' needs max_position_embeddings")
        # HF's NTK base at seq_len = max_position_embeddings (the longest we accept).
        factor, m = float(params["factor"]), float(max_positions)
        theta = theta * ((factor * m / m) - (factor - 1)) ** (head_dim / (head_dim - 2))
    inv_freq = default_inv_freq(head_dim, theta)
    if rope_type == "linear":
        inv_freq = (inv_freq / np.float32(params["factor"])).astype(np.float32)
    elif rope_type == "llama3":
        inv_freq = _llama3_inv_freq(inv_freq, params)
    return inv_freq


def cos_sin(inv_freq: np.ndarray, positions: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin), float32 [S, 2·len(inv_freq)]: angles position·inv_freq, halves repeated.

    positions: int array [S], or an int S for 0 … S−1.
    """
    if isinstance(positions, int | np.integer):
        positions = np.arange(int(positions))
    pos = np.asarray(positions).astype(np.float32)
    freqs = (pos[:, None] * np.asarray(inv_freq, np.float32)[None, :]).astype(np.float32)
    emb = np.concatenate([freqs, freqs], axis=-1).astype(np.float64)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def rotate_half(x: jax.Array) -> jax.Array:
    """[..., d] → [..., d]: (x1, x2) ↦ (−x2, x1) over the two halves of the last axis."""
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x: jax.Array, cos: jax.Array | np.ndarray, sin: jax.Array | np.ndarray
               ) -> jax.Array:
    """Rotate x [S, H, d_h] by (cos, sin) [S, d_h] (rotate-half convention, as HF)."""
    c = jnp.asarray(cos, x.dtype)[:, None, :]
    s = jnp.asarray(sin, x.dtype)[:, None, :]
    return x * c + rotate_half(x) * s
