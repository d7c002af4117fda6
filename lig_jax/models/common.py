"""Small numerical pieces shared by every model family."""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..errors import LIGError
from . import rules

# Parity with PyTorch needs true float32 matmuls on every backend (TPU/GPU default to
# bf16 passes otherwise).
PRECISION = jax.lax.Precision.HIGHEST


def gelu_erf(x: jax.Array) -> jax.Array:
    return 0.5 * x * (1.0 + jax.lax.erf(x / math.sqrt(2.0)))


def gelu_tanh(x: jax.Array) -> jax.Array:
    return 0.5 * x * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


ACTIVATIONS = {
    "gelu": gelu_erf,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


def attention_mix(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    scale: float,
    mask: jax.Array | None = None,
    bias: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Softmax mixing: q [S_q, H, e], k, v [S_k, H, e] → (A [H, S_q, S_k], ctx [S_q, H, e]).

    mask: bool, broadcastable to [S_q, S_k] ([S_k] = a key mask); False entries get the
    most negative float score (selected, not added), so their probability is exactly 0.
    bias: additive score bias broadcastable to [H, S_q, S_k] (relative positions).
    k and v carry one slot per *query* head (GQA groups repeated by the block's premap).
    """
    scores = rules.product(partial(jnp.einsum, "qhd,khd->hqk", precision=PRECISION), q, k)
    scores = scores * scale
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    a = jax.nn.softmax(scores, axis=-1)
    return a, rules.product(partial(jnp.einsum, "hqk,khd->qhd", precision=PRECISION), a, v)


def rms_norm(x: jax.Array, scale: jax.Array, eps: float, offset: float = 0.0) -> jax.Array:
    """RMSNorm over the last axis: x / sqrt(mean x² + eps) · (offset + scale).

    Written as a division by jnp.sqrt: both x · lax.rsqrt(…) and x · (1/jnp.sqrt(…)) (which
    XLA rewrites to rsqrt) compiled, under jit(vmap(jacrev)), to Jacobians wrong by O(1) on
    CPU (jax 0.10; tests/test_numerics.py).
    """
    ms = jnp.mean(x * x, axis=-1, keepdims=True)
    return x / rules.held(jnp.sqrt(ms + eps)) * (offset + scale)


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    """LayerNorm over the last axis with the two-pass variance PyTorch uses."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    var = jnp.mean(centred * centred, axis=-1, keepdims=True)
    return centred / rules.held(jnp.sqrt(var + eps)) * scale + bias


def activate(name: str, x: jax.Array) -> jax.Array:
    """The activation `name` (a key of ACTIVATIONS) applied elementwise (AttnLRP: the
    identity rule, `rules.elementwise`)."""
    return rules.elementwise(ACTIVATIONS[name], x)


def gated(a: jax.Array, b: jax.Array) -> jax.Array:
    """The gated MLP's product a ⊙ b (AttnLRP: the uniform rule, `rules.product`)."""
    return rules.product(jnp.multiply, a, b)


def check_activation(act: object, field: str, model_type: str) -> str:
    """The config's activation name, or a one-line `LIGError` listing the supported ones."""
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise LIGError(f"{field} {act!r} of {model_type} is not supported. "
                       f"Allowed: {', '.join(sorted(ACTIVATIONS))}")
    return act


def pad_token_id(hf: object) -> int:
    """A HF config's pad_token_id, else eos_token_id (the first of a list), else 0."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(hf, name, None)
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    return 0


def check_heads(width: int, heads: int, width_name: str, heads_name: str) -> None:
    """The model width must split evenly over the attention heads."""
    if width % heads:
        raise LIGError(f"{width_name} {width} is not divisible by {heads_name} {heads}")

def table(rngs: nnx.Rngs, rows: int, width: int, *, vocab: bool = False) -> nnx.Param:
    """An embedding table [rows, width], randomly initialised (the weights are loaded);
    `vocab`: a token table, split over a mesh's model axis along its rows (or its width
    where the rows do not divide; `lig_jax.mesh.partition`)."""
    axes = {"axes": ("vocab", "embed")} if vocab else {}
    return nnx.Param(jax.random.normal(rngs.params(), (rows, width)) * 0.02, **axes)


class Dense(nnx.Module):
    """y = x @ kernel (+ bias), kernel [in, out] (HF nn.Linear weights are transposed on
    load; GPT-2's Conv1D weights are already [in, out]).

    `split` declares how a mesh's model axis splits it (`lig_jax.mesh.partition`): "out"
    for a layer that fans out into heads or MLP units (kernel and bias along the output),
    "in" for one that brings them back (kernel along the input; the bias is replicated),
    None to replicate it."""

    def __init__(self, d_in: int, d_out: int, *, use_bias: bool = True,
                 split: str | None = None, rngs: nnx.Rngs):
        kernel_axes = {"out": (None, "split"), "in": ("split", None)}.get(split)
        if split is not None and kernel_axes is None:
            raise ValueError(f"Dense split must be 'out', 'in' or None, not {split!r}")
        kernel = jax.random.normal(rngs.params(), (d_in, d_out)) * 0.02
        self.kernel = nnx.Param(kernel, **({"axes": kernel_axes} if kernel_axes else {}))
        bias_axes = {"axes": ("split",)} if split == "out" else {}
        self.bias = nnx.Param(jnp.zeros((d_out,)), **bias_axes) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.matmul(x, self.kernel[...], precision=PRECISION)
        return y if self.bias is None else y + self.bias[...]


class RMSNorm(nnx.Module):
    """RMSNorm over the last axis: x / √(mean x² + eps) · (offset + scale).

    Llama family: offset 0, scale initialised to 1. Gemma: offset 1 (HF stores the raw
    `w`, 0 = identity) and the norm runs in at least float32 (`upcast`, as HF does).
    """

    def __init__(self, dim: int, eps: float, offset: float = 0.0, upcast: bool = False):
        self.scale = nnx.Param(jnp.full((dim,), 1.0 - offset))
        self.eps = eps
        self.offset = offset
        self.upcast = upcast

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = jnp.promote_types(x.dtype, jnp.float32) if self.upcast else x.dtype
        y = rms_norm(x.astype(dtype), self.scale[...].astype(dtype), self.eps, self.offset)
        return y.astype(x.dtype)


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis: scale [dim] and, if `use_bias`, bias [dim]."""

    def __init__(self, dim: int, eps: float, use_bias: bool = True):
        self.scale = nnx.Param(jnp.ones((dim,)))
        self.bias = nnx.Param(jnp.zeros((dim,))) if use_bias else None
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        bias = 0.0 if self.bias is None else self.bias[...]
        return layer_norm(x, self.scale[...], bias, self.eps)


# ---------------------------------------------------------------------------- masks


def key_rows(key_mask: jax.Array | None) -> jax.Array | None:
    """Bidirectional attention: only padded keys are hidden → bool [1, S_k] or None."""
    return None if key_mask is None else jnp.asarray(key_mask, bool)[None, :]


def causal_mask(s: int, window: int | None = None, key_mask: jax.Array | None = None
                ) -> jax.Array:
    """bool [S_q, S_k]: key k visible from query q iff k ≤ q (and q − k < window) and
    key_mask[k]. HF's sliding window keeps kv_idx > q_idx − window, i.e. q − k < window."""
    q = np.arange(s)[:, None]
    k = np.arange(s)[None, :]
    allowed = k <= q
    if window is not None:
        allowed &= (q - k) < window
    mask = jnp.asarray(allowed)
    if key_mask is not None:
        mask = mask & jnp.asarray(key_mask, bool)[None, :]
    return mask


def window_mask(s: int, half_window: int, key_mask: jax.Array | None = None) -> jax.Array:
    """bool [S_q, S_k]: bidirectional sliding window |q − k| ≤ half_window, AND key_mask."""
    pos = np.arange(s)
    mask = jnp.asarray(np.abs(pos[:, None] - pos[None, :]) <= half_window)
    if key_mask is not None:
        mask = mask & jnp.asarray(key_mask, bool)[None, :]
    return mask


# ----------------------------------------------------------------- the hidden states


def run_layers(z: jax.Array, layers, key_mask: jax.Array | None = None) -> jax.Array:
    """z^(0) [S, d] through every block → [L+1, S, d]: z^(0) … z^(L) (HF `hidden_states`,
    before any final norm)."""
    states = [z]
    for block in layers:
        z = block(z, key_mask)
        states.append(z)
    return jnp.stack(states)
