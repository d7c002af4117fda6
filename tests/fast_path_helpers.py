"""Shared by the fast-path tests: compare the structured (fast) integrands with the
straightforward jacrev/grad ones (`method="direct"`) on one layer of a saved model."""

from __future__ import annotations

from functools import cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lig_jax.attribution.blockscan as blockscan
from lig_jax.attribution.integrand import integrate
from lig_jax.attribution.norm import safe_norm
from lig_jax.attribution.run import integrand_for
from lig_jax.loading import load_model
from lig_jax.quadrature import make_rule

TEXT = "The quick brown fox jumps over the lazy dog."


def _rel(a, b, scale: float | None = None) -> float:
    """max |a − b| relative to max |b| (or to `scale`, when that is larger)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), scale or 0.0))


@cache
def _loaded(folder: str):
    """The model in `folder` and its hidden states on TEXT, loaded once per process."""
    lm = load_model(folder)
    ids = jnp.asarray(lm.tokenizer(TEXT)["input_ids"])
    return lm, lm.model.hidden_states(ids)


def _setup(folder, layer: int, dtype):
    lm, hidden = _loaded(str(folder))
    z = hidden[layer]
    graphdef, state = nnx.split(lm.model.layers[layer])
    state = jax.tree.map(lambda a: a.astype(dtype), state)
    return graphdef, state, z.astype(dtype), lm.config.num_heads


def _term_scale(block, z, targets, heads, a, w) -> jax.Array:
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

    jacs = jax.vmap(lambda ak: jax.jacrev(scalars)(ak * z))(a)  # [k, T, Hs, S, d]
    jac = jnp.tensordot(w, jacs, axes=1)
    return jnp.abs(jac * z).sum(-1).max()


QUANTITIES = ("z2z", "z2u")
BASELINES = ("zero", "self_input_token")
METHODS = ("fast", "direct")


@partial(jax.jit, static_argnames=("graphdef", "with_term_scale", "block_size"))
def _integrate_all(graphdef, state, z, targets, heads, a, w, *, with_term_scale: bool,
                   block_size: int) -> dict:
    """Every (quantity, baseline, method) integrand on one block, and the zero-baseline
    z→u term scale when `with_term_scale`, as ONE compiled program per (block structure,
    shapes, dtype): XLA's fixed cost per compilation dominates on these tiny blocks, and
    layers of the same structure share the program. `block_size` (blockscan.BLOCK, read while
    tracing) is part of the cache key, so a test that changes it gets its own program."""
    del block_size
    block = nnx.merge(graphdef, state)
    out = {f"{q}/{b}/{m}": integrate(integrand_for(q, b, m), block, z, targets, heads, a, w, 3)
           for q in QUANTITIES for b in BASELINES for m in METHODS}
    if with_term_scale:
        out["term_scale"] = _term_scale(block, z, targets, heads, a, w)
    return out


def compare(folder, layer, dtype, rule, steps, tol):
    """fast = direct on `layer` of the saved model in `folder`, both baselines, z→z and z→u,
    to `tol` relative to each output's largest magnitude (zero-baseline z→u behind a pre-norm:
    to the terms' scale, see `_term_scale`)."""
    graphdef, state, z, n_heads = _setup(folder, layer, dtype)
    block = nnx.merge(graphdef, state)
    a, w = make_rule(rule, steps).without_zero_node()
    a, w = jnp.asarray(a, dtype), jnp.asarray(w, dtype)
    targets = jnp.asarray([0, 3, z.shape[0] - 1])
    heads = jnp.asarray(sorted({0, n_heads // 2, n_heads - 1}))
    norm_first = block.premap_parts().norm is not None
    out = _integrate_all(graphdef, state, z, targets, heads, a, w, with_term_scale=norm_first,
                         block_size=blockscan.BLOCK)

    for baseline in BASELINES:
        fast, direct = (out[f"z2z/{baseline}/{m}"] for m in METHODS)
        for f, d in zip(fast, direct, strict=True):
            assert _rel(f, d) <= tol, ("z2z", baseline)
        fast, direct = (out[f"z2u/{baseline}/{m}"] for m in METHODS)
        scale = None
        if baseline == "zero" and norm_first:
            scale = float(out["term_scale"])
        for name, f, d in zip(("scores", "signed", "f"), fast, direct, strict=True):
            sc = None if name == "f" or (name == "scores" and block.z2u_score == "l2") else scale
            assert _rel(f, d, sc) <= tol, ("z2u", baseline, name)


def save_family(name: str, folder):
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


DECODER_FAMILIES = ["gpt2", "llama-gqa", "mistral-sliding", "qwen2", "gemma3"]
ENCODER_FAMILIES = ["distilbert", "mpnet", "modernbert"]


def family_folder(cache: dict, tmp_path_factory, name: str):
    """The tiny checkpoint of family `name`, saved once per module (`cache`)."""
    if name not in cache:
        cache[name] = save_family(name, tmp_path_factory.mktemp(name))
    return cache[name]


def check_family(cache: dict, tmp_path_factory, name: str) -> None:
    """Both shared and per-target baselines, z→z and z→u, two layers in float32 (the same
    node count, so layers of one structure share their compiled programs)."""
    folder = family_folder(cache, tmp_path_factory, name)
    for layer, rule, steps in [(0, "captum_trapezoid", 8), (1, "gauss_legendre", 7)]:
        compare(folder, layer, jnp.float32, rule, steps, 1e-5)


def float64_cases(families: list[str], blocked: list[str]) -> list:
    """The float64 cases of `families`: those in `blocked` (sources in blocks of 4) in the
    default run; the others, whose single-block float64 path is the same code with one
    block (and checked in float32 on every family), marked `slow`."""
    return [name if name in blocked else pytest.param(name, marks=pytest.mark.slow)
            for name in families]


def check_family_float64(cache: dict, tmp_path_factory, monkeypatch, name: str,
                         blocked: bool) -> None:
    """float64 to 1e-12 on layer 1. `blocked`: sources in blocks of 4 (the two-pass online
    softmax, causal and window masks skipping blocks, a padded last block) — the families
    that have such masks are checked this way; the single-block path, the same code with
    one block, is checked in float64 on the others and in float32 on all."""
    folder = family_folder(cache, tmp_path_factory, name)
    rule, steps = ("captum_trapezoid", 8)
    if blocked:
        monkeypatch.setattr(blockscan, "BLOCK", 4)
        rule, steps = ("gauss_legendre", 6)
    with jax.enable_x64(True):
        compare(folder, 1, jnp.float64, rule, steps, 1e-12)
