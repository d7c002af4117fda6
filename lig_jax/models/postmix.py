"""The token-wise map after the attention mixing, up to the residual sum, as data.

Every block we run turns the per-head contexts ctx [S, H, e] into its attention
sub-layer's output the same way, row by row:

    o = Σ_h ctx_h W_O^h (+ b_O)        W_O [H, e, d]: the output projection, per head
    o = N_o(o)                          optional norm of the attention output (Gemma 3)
    r = x + o                           x: the block's input row (the residual stream)
    y = N_r(r)                          optional norm after the residual sum (post-LN)

`Postmix` holds those pieces (each block's `postmix_parts()`); the context-mixing
measures (`lig_jax.measures`) read them to split y at each target into one vector per
source (attention norms, ALTI). The block continues from y with its `mlp_after(y)`
(value zeroing recomputes that part per zeroed source, `lig_jax.measures.zeroing`).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .common import PRECISION
from .premap import Norm


@dataclass(frozen=True)
class Postmix:
    """ctx → y as in the module doc. wo [H, e, d]; bo [d] or None; out_norm: N_o (norm of
    the attention output before the residual) or None; sum_norm: N_r (norm of the
    residual sum) or None."""

    wo: jax.Array
    bo: jax.Array | None = None
    out_norm: Norm | None = None
    sum_norm: Norm | None = None

    def head_outputs(self, v: jax.Array) -> jax.Array:
        """Value rows v [S, H, e] → f_h(x_s) = v_{s,h} W_O^h, [S, H, d] (no bias)."""
        return jnp.einsum("she,hed->shd", v, self.wo, precision=PRECISION)

    def output(self, ctx: jax.Array) -> jax.Array:
        """ctx [S, H, e] → o [S, d] before N_o (with b_O)."""
        o = jnp.einsum("she,hed->sd", ctx, self.wo, precision=PRECISION)
        return o if self.bo is None else o + self.bo

    def residual_sum(self, x: jax.Array, o: jax.Array) -> jax.Array:
        """(block input rows x [S, d], o [S, d]) → y = N_r(x + N_o(o)) [S, d]: the attention
        sub-layer's output, which the block's `mlp_after` continues."""
        r = x + (o if self.out_norm is None else self.out_norm(o))
        return r if self.sum_norm is None else self.sum_norm(r)


def dense_out(dense, num_heads: int) -> tuple[jax.Array, jax.Array | None]:
    """(kernel [H, e, d], bias [d] or None) of a `common.Dense` [H·e, d] that brings the
    heads back to the model width (W_O)."""
    kernel = dense.kernel[...]
    bias = None if dense.bias is None else dense.bias[...]
    return kernel.reshape(num_heads, -1, kernel.shape[-1]), bias
