"""Backward rules: the plain gradient, or AttnLRP's (Achtibat et al., ICML 2024).

AttnLRP computes relevance as "input × modified gradient" in one backward pass. The
modification touches four kinds of operation, and every family's forward pass goes through
the helpers below for each of them, so one switch turns the whole model's backward pass into
AttnLRP's while the forward values stay what they were (bit for bit where noted):

    norm divisor      LayerNorm's √(var + ε), RMSNorm's √(mean x² + ε) are held constant
                      (the identity rule; LayerNorm's mean is *not* held, as in lxt)
    elementwise f     the identity rule: ∂f(x)/∂x := f(x)/(x + 1e-10)   (activations)
    products a·b      the uniform rule: each factor gets half the gradient — the attention
                      scores q·kᵀ, the mixing A·v, the gated MLP product act(gate)·up
    softmax           the plain gradient (AttnLRP's softmax rule in gradient × input form)

Outside `attnlrp()` every helper is the plain operation. The switch is read while JAX
traces: a function that runs the model under `attnlrp()` must enter it inside the traced
function (so every trace of it sees the rules), and nothing it calls may be a separately
jitted function traced before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import jax

IDENTITY_EPS = 1e-10  # the identity rule's stabiliser (lxt's `identity_rule_implicit`)

_state = threading.local()


def active() -> bool:
    """True while tracing under `attnlrp()`."""
    return getattr(_state, "lrp", False)


@contextmanager
def attnlrp() -> Iterator[None]:
    """Trace the model with AttnLRP's backward rules (see the module doc)."""
    before = active()
    _state.lrp = True
    try:
        yield
    finally:
        _state.lrp = before


def held(divisor: jax.Array) -> jax.Array:
    """A norm's divisor: held constant under AttnLRP (no gradient), else itself."""
    return jax.lax.stop_gradient(divisor) if active() else divisor


def elementwise(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """f(x); under AttnLRP its gradient is f(x)/(x + 1e-10) (the forward value is f(x)
    exactly: the added term is (x − x)·c)."""
    y = f(x)
    if not active():
        return y
    sg = jax.lax.stop_gradient
    return sg(y) + (x - sg(x)) * sg(y / (x + IDENTITY_EPS))


def product(op: Callable[[jax.Array, jax.Array], jax.Array], a: jax.Array, b: jax.Array
            ) -> jax.Array:
    """op(a, b) for a bilinear op (a product, an einsum); under AttnLRP each factor gets
    half its gradient: ½·(op(a, sg(b)) + op(sg(a), b)), the same value exactly (x + x and
    ½·2x are exact in floating point)."""
    if not active():
        return op(a, b)
    sg = jax.lax.stop_gradient
    return 0.5 * (op(a, sg(b)) + op(sg(a), b))
