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

from lig_jax.attribution.integrand import integrate
from lig_jax.attribution.run import integrand_for
from lig_jax.ig import safe_norm
from lig_jax.loading import load_model
from lig_jax.quadrature import make_rule

TEXT = "The quick brown fox jumps over the lazy dog."


def _rel(a, b, scale: float | None = None) -> float:
    """max |a − b| relative to max |b| (or to `scale`, when that is larger)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), scale or 0.0))


def _setup(folder, layer: int, dtype):
    lm = load_model(str(folder))
    ids = jnp.asarray(lm.tokenizer(TEXT)["input_ids"])
    z = lm.model.hidden_states(ids)[layer]
    graphdef, state = nnx.split(lm.model.layers[layer])
    state = jax.tree.map(lambda a: a.astype(dtype), state)
    return graphdef, state, z.astype(dtype), lm.config.num_heads


def _term_scale(block, z, targets, heads, a, w) -> float:
    """max over (target, head, source) of Σ_c |IG_{i,c}| for zero-baseline z→u.

    Behind a pre-norm (decoders, ModernBERT) u(αz) ≈ u(z) except near α = 0, so the signed
    per-source sums Σ_c IG_{i,c} cancel to remainders far below their terms (docs/method.md,
    pitfall 3): rounding of either implementation is relative to the
    terms, not the sums.
    """
    zeros = jnp.zeros_like(z)
    u0 = block.attention_context(zeros)[targets][:, heads]

    def scalars(x):
        return safe_norm(block.attention_context(x)[targets][:, heads] - u0)

    jac = sum(wk * jax.jacrev(scalars)(ak * z) for ak, wk in zip(a, w, strict=True))
    return float(jnp.abs(jac * z).sum(-1).max())


def _compare(folder, layer, dtype, rule, steps, tol):
    graphdef, state, z, n_heads = _setup(folder, layer, dtype)
    block = nnx.merge(graphdef, state)
    a, w = make_rule(rule, steps).without_zero_node()
    a, w = jnp.asarray(a, dtype), jnp.asarray(w, dtype)
    targets = jnp.asarray([0, 3, z.shape[0] - 1])
    heads = jnp.asarray(sorted({0, n_heads // 2, n_heads - 1}))
    norm_first = block.premap_parts().norm is not None
    run = jax.jit(lambda q, b, m: integrate(integrand_for(q, b, m), block, z, targets, heads,
                                            a, w, 3), static_argnums=(0, 1, 2))
    for baseline in ("zero", "self_input_token"):
        fast, direct = (run("z2z", baseline, m) for m in ("fast", "direct"))
        for f, d in zip(fast, direct, strict=True):
            assert _rel(f, d) <= tol, ("z2z", baseline)
        fast, direct = (run("z2u", baseline, m) for m in ("fast", "direct"))
        scale = None
        if baseline == "zero" and norm_first:
            scale = _term_scale(block, z, targets, heads, a, w)
        for name, f, d in zip(("scores", "signed", "f"), fast, direct, strict=True):
            sc = None if name == "f" or (name == "scores" and block.z2u_score == "l2") else scale
            assert _rel(f, d, sc) <= tol, ("z2u", baseline, name)


@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("rule,steps", [("captum_trapezoid", 12), ("gauss_legendre", 7)])
def test_fast_equals_direct_float32(tiny_bert, layer, rule, steps) -> None:
    _compare(tiny_bert, layer, jnp.float32, rule, steps, 1e-5)


def test_fast_equals_direct_minilm_float32(minilm) -> None:
    _compare(minilm, 3, jnp.float32, "captum_trapezoid", 16, 1e-5)


def test_fast_equals_direct_float64(tiny_bert) -> None:
    with jax.enable_x64(True):
        _compare(tiny_bert, 1, jnp.float64, "captum_trapezoid", 12, 1e-12)


# --------------------------------------------------------------------------- every family


def _save_family(name: str, folder):
    """A tiny random checkpoint of each family the fast path serves besides BERT."""
    import transformers
    from decoder_fixtures import save_tiny_decoder
    from gemma3_fixtures import save_tiny_gemma3
    from test_parity_block_only import DISTIL, MODERN, MPNET, hf_config, randomise, save_model

    decoders = {"gpt2": ("gpt2", {}), "llama-gqa": ("llama", {"num_key_value_heads": 2}),
                "mistral-sliding": ("mistral", {"num_key_value_heads": 2, "sliding_window": 3}),
                "qwen2": ("qwen2", {"num_key_value_heads": 1})}
    if name in decoders:
        model_type, overrides = decoders[name]
        return save_tiny_decoder(folder, model_type, seed=5, **overrides)
    if name == "gemma3":
        return save_tiny_gemma3(folder, seed=5)
    model_type, kwargs = {"distilbert": ("distilbert", DISTIL), "mpnet": ("mpnet", MPNET),
                          "modernbert": ("modernbert", MODERN)}[name]
    model = transformers.AutoModel.from_config(hf_config(model_type, kwargs)).eval()
    randomise(model, 5)
    return save_model(folder, model)


FAMILIES = ["gpt2", "llama-gqa", "mistral-sliding", "qwen2", "gemma3", "distilbert", "mpnet",
            "modernbert"]


@pytest.fixture(scope="module")
def family_folders(tmp_path_factory):
    return {}


def _family(family_folders, tmp_path_factory, name):
    if name not in family_folders:
        family_folders[name] = _save_family(name, tmp_path_factory.mktemp(name))
    return family_folders[name]


@pytest.mark.parametrize("name", FAMILIES)
def test_fast_equals_direct_every_family(family_folders, tmp_path_factory, name) -> None:
    """Every family, both shared and per-target baselines, z→z and z→u, two layers."""
    folder = _family(family_folders, tmp_path_factory, name)
    for layer, rule, steps in [(0, "captum_trapezoid", 8), (1, "gauss_legendre", 5)]:
        _compare(folder, layer, jnp.float32, rule, steps, 1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_fast_equals_direct_every_family_float64(family_folders, tmp_path_factory, name) -> None:
    folder = _family(family_folders, tmp_path_factory, name)
    with jax.enable_x64(True):
        _compare(folder, 1, jnp.float64, "captum_trapezoid", 8, 1e-12)


@pytest.mark.parametrize("name", ["llama-gqa", "mistral-sliding", "gemma3", "modernbert",
                                  "mpnet"])
def test_blocked_sources_equal_direct_float64(family_folders, tmp_path_factory, monkeypatch,
                                              name) -> None:
    """Sources in blocks of 4 (the two-pass online softmax, causal and window masks
    skipping blocks, a padded last block) give the direct numbers too."""
    import lig_jax.attribution.itb as itb

    monkeypatch.setattr(itb, "BLOCK", 4)
    folder = _family(family_folders, tmp_path_factory, name)
    with jax.enable_x64(True):
        _compare(folder, 1, jnp.float64, "gauss_legendre", 6, 1e-12)
