"""Numerical traps of the shared layers under jit, vmap and reverse mode (docs/method.md)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lig_jax.models.common import rms_norm


def test_jitted_vmapped_jacrev_through_rms_norm_equals_eager() -> None:
    """Gemma 3's q norm inside the z→u integrand: jacrev of ‖RMSNorm(x W)[j]‖ over (nodes ×
    targets). Written as x · (1/√(ms+ε)) (or with lax.rsqrt), XLA:CPU compiled this to a
    Jacobian wrong by O(1) (jax 0.10); x / √(ms+ε) compiles correctly."""
    s, d, h, e = 32, 640, 4, 256
    rng = np.random.default_rng(0)
    x0 = jnp.asarray(rng.normal(size=(s, d)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(d, h, e)) * 0.05, jnp.float32)
    gain = jnp.asarray(rng.normal(size=(e,)), jnp.float32)

    def f(x, j):
        q = jnp.einsum("sd,dhe->she", x, w, precision=jax.lax.Precision.HIGHEST)
        return optax.safe_norm(rms_norm(q, gain, 1e-6, offset=1.0)[j], 0.0, axis=-1)

    def one(xb, j, alpha):
        return jax.jacrev(lambda x: f(x, j))(xb + alpha * (x0 - xb))

    targets, bases = jnp.asarray([24, 4]), jnp.zeros((2, s, d), jnp.float32)
    alphas = jnp.asarray(np.linspace(0, 1, 32, dtype=np.float32)[1:5])

    def nodes(a):
        return jax.vmap(lambda al: jax.vmap(one, in_axes=(0, 0, None))(bases, targets, al))(a)

    jitted, eager = np.asarray(jax.jit(nodes)(alphas)), np.asarray(nodes(alphas))
    assert np.abs(jitted - eager).max() <= 1e-5 * np.abs(eager).max()
