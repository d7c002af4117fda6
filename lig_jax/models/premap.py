"""The token-wise map in front of the attention mixing, as data (every family's `premap`).

Every block we run computes its queries, keys and values the same way, row by row:

    h        = N(x)                         input norm: LayerNorm, RMSNorm or none
    q̃, k̃, ṽ  = h W_q + b_q, h W_k + b_k, h W_v + b_v     [S, H, e], [S, G, e], [S, G, e]
    q, k     = N_q(q̃), N_k(k̃)              optional norms over the head width e (Gemma3)
    q, k     = R_i q, R_i k                 optional RoPE at the row's position i
    k, v     repeated from G kv groups to the H query heads (query head h reads g = h // (H/G))

`Premap` holds those pieces; `Premap.__call__` is the block's premap, and the structured
integrands (`lig_jax.attribution`) read the same pieces to decompose the map along an IG
path (docs/method.md, "Norm-first blocks"). One place for the arithmetic of all families.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .common import PRECISION, layer_norm, rms_norm
from .rope import apply_rope, cos_sin

NORM_KINDS = ("layer", "rms")


@dataclass(frozen=True)
class Norm:
    """A norm over the last axis: "layer" (centred, with optional bias) or "rms".

    rms: x · (1/√(mean x² + eps)) · (offset + scale); Gemma's offset is 1 and its norms
    run in at least float32 (`upcast`). layer: (x − mean)/√(var + eps) · scale + bias.
    """

    kind: str
    scale: jax.Array
    eps: float
    bias: jax.Array | None = None
    offset: float = 0.0
    upcast: bool = False

    @property
    def gamma(self) -> jax.Array:
        """The effective per-feature scale (offset + scale)."""
        return self.offset + self.scale

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.kind == "layer":
            return layer_norm(x, self.scale, 0.0 if self.bias is None else self.bias, self.eps)
        dtype = jnp.promote_types(x.dtype, jnp.float32) if self.upcast else x.dtype
        y = rms_norm(x.astype(dtype), self.scale.astype(dtype), self.eps, self.offset)
        return y.astype(x.dtype)


@dataclass(frozen=True)
class Premap:
    """x [S, d] → (q, k, v) [S, H, e] (kv repeated to the query heads); see the module doc.

    Kernels: wq [d, H, e], wk and wv [d, G, e]; biases [H, e] / [G, e] or None.
    inv_freq: RoPE inverse frequencies [e/2] (float32) or None for no rotation.
    """

    norm: Norm | None
    wq: jax.Array
    wk: jax.Array
    wv: jax.Array
    bq: jax.Array | None = None
    bk: jax.Array | None = None
    bv: jax.Array | None = None
    q_norm: Norm | None = None
    k_norm: Norm | None = None
    inv_freq: tuple[float, ...] | None = None

    @property
    def num_heads(self) -> int:
        return self.wq.shape[1]

    @property
    def num_groups(self) -> int:
        return self.wk.shape[1]

    @property
    def repeat(self) -> int:
        """Query heads per kv group (1 = MHA)."""
        return self.num_heads // self.num_groups

    @property
    def affine(self) -> bool:
        """True when x ↦ (q, k, v) is affine (no norm anywhere, no rotation)."""
        return (self.norm is None and self.q_norm is None and self.k_norm is None
                and self.inv_freq is None)

    def rope(self, s: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(cos, sin) float32 [S, e] at positions 0 … S−1, or None."""
        if self.inv_freq is None:
            return None
        return cos_sin(np.asarray(self.inv_freq, np.float32), s)

    def normed(self, x: jax.Array) -> jax.Array:
        return x if self.norm is None else self.norm(x)

    def project(self, h: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Normed rows h [S, d] → (q̃ [S, H, e], k̃ [S, G, e], ṽ [S, G, e]) with biases."""
        out = []
        for w, b in ((self.wq, self.bq), (self.wk, self.bk), (self.wv, self.bv)):
            t = jnp.einsum("sd,dge->sge", h, w, precision=PRECISION)
            out.append(t if b is None else t + b)
        return tuple(out)

    def repeat_kv(self, t: jax.Array) -> jax.Array:
        """[..., G, e] → [..., H, e]: each kv group repeated to its query heads."""
        return t if self.repeat == 1 else jnp.repeat(t, self.repeat, axis=-2)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        q, k, v = self.project(self.normed(x))
        if self.q_norm is not None:
            q = self.q_norm(q)
        if self.k_norm is not None:
            k = self.k_norm(k)
        rope = self.rope(x.shape[0])
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return q, self.repeat_kv(k), self.repeat_kv(v)


def heads(kernel: jax.Array, num_heads: int) -> jax.Array:
    """A [d, n·e] projection kernel as [d, n, e]."""
    return kernel.reshape(kernel.shape[0], num_heads, -1)


def head_bias(bias: jax.Array | None, num_heads: int) -> jax.Array | None:
    """A [n·e] bias as [n, e] (None stays None)."""
    return None if bias is None else bias.reshape(num_heads, -1)


def dense_heads(dense, num_heads: int) -> tuple[jax.Array, jax.Array | None]:
    """(kernel [d, n, e], bias [n, e] or None) of a `common.Dense` split into n heads."""
    bias = None if dense.bias is None else dense.bias[...]
    return heads(dense.kernel[...], num_heads), head_bias(bias, num_heads)


def fused_heads(dense, parts: int, num_heads: int
                ) -> list[tuple[jax.Array, jax.Array | None]]:
    """A fused projection whose output columns are [parts][heads][e] (GPT-2's c_attn,
    ModernBERT's Wqkv) as one (kernel [d, H, e], bias [H, e] or None) per part."""
    kernel = dense.kernel[...]
    d = kernel.shape[0]
    k = kernel.reshape(d, parts, num_heads, -1)
    b = None if dense.bias is None else dense.bias[...].reshape(parts, num_heads, -1)
    return [(k[:, p], None if b is None else b[p]) for p in range(parts)]


def norm_of(module, kind: str) -> Norm:
    """A `Norm` from a `common.LayerNorm` (kind "layer") or `common.RMSNorm` ("rms")."""
    bias = getattr(module, "bias", None)
    return Norm(kind, module.scale[...], module.eps, None if bias is None else bias[...],
                getattr(module, "offset", 0.0), getattr(module, "upcast", False))
