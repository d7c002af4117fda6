"""The structured (fast) integrands equal the straightforward jacrev/grad ones.

float32: ≤ 1e-5 relative to the largest magnitude; float64: ≤ 1e-12. Every baseline the
fast path serves, several layers, uneven rules (Gauss–Legendre has no α = 0 node).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lig_jax.attribution.z2u import z2u
from lig_jax.attribution.z2z import z2z
from lig_jax.loading import load_model
from lig_jax.quadrature import make_rule

TEXT = "The quick brown fox jumps over the lazy dog."


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def _setup(folder, layer: int, dtype):
    lm = load_model(str(folder))
    ids = jnp.asarray(lm.tokenizer(TEXT)["input_ids"])
    z = lm.model.hidden_states(ids)[layer]
    graphdef, state = nnx.split(lm.model.layers[layer])
    state = jax.tree.map(lambda a: a.astype(dtype), state)
    return graphdef, state, z.astype(dtype), lm.config.num_heads


def _compare(folder, layer, dtype, rule, steps, tol):
    graphdef, state, z, n_heads = _setup(folder, layer, dtype)
    a, w = make_rule(rule, steps).without_zero_node()
    a, w = jnp.asarray(a, dtype), jnp.asarray(w, dtype)
    targets = jnp.asarray([0, 3, z.shape[0] - 1])
    heads = jnp.asarray(sorted({0, n_heads // 2, n_heads - 1}))
    for baseline in ("zero", "self_input_token"):
        fast, direct = (z2z(graphdef, state, z, a, w, baseline=baseline, chunk=4, method=m)
                        for m in ("fast", "direct"))
        for f, d in zip(fast, direct, strict=True):
            assert _rel(f, d) <= tol, ("z2z", baseline)
        fast, direct = (z2u(graphdef, state, z, targets, heads, a, w, baseline=baseline, chunk=4,
                            method=m) for m in ("fast", "direct"))
        for name, f, d in zip(("scores", "signed", "f"), fast, direct, strict=True):
            assert _rel(f, d) <= tol, ("z2u", baseline, name)


@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("rule,steps", [("captum_trapezoid", 12), ("gauss_legendre", 7)])
def test_fast_equals_direct_float32(tiny_bert, layer, rule, steps) -> None:
    _compare(tiny_bert, layer, jnp.float32, rule, steps, 1e-5)


def test_fast_equals_direct_minilm_float32(minilm) -> None:
    _compare(minilm, 3, jnp.float32, "captum_trapezoid", 16, 1e-5)


def test_fast_equals_direct_float64(tiny_bert) -> None:
    with jax.enable_x64(True):
        _compare(tiny_bert, 1, jnp.float64, "captum_trapezoid", 12, 1e-12)
