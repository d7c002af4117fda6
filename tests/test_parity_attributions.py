"""Parity of lig-jax's attributions with an independent PyTorch implementation.

The PyTorch side (`torch_lig.py`) runs HF's own PyTorch submodules with torch autograd,
takes z from HF's `hidden_states`, and re-derives the quadrature, the ratio fixes and
the composition from docs/spec.md. lig-jax is driven through `explain` (its JSON) and,
for the remaining rules, through the attribution functions on the same z.

Tolerance, for every column (one target, or one (target, head)):
max_i |a_i − b_i| ≤ 1e-4 · max_i |b_i|.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch_lig as tl

RTOL = 1e-4
TEXT = "The cat sat on the mat."
RULES = ("captum_trapezoid", "gauss_legendre")
# Step counts per rule. Both give the same number of evaluated nodes (the trapezoid's
# α = 0 node is dropped), so one jit compilation serves both rules (keeps runtime low).
TINY_STEPS = {"captum_trapezoid": 8, "gauss_legendre": 7}
MINILM_STEPS = 32  # the reference's default (rule "reference" = captum_trapezoid here)
MINILM_GL_STEPS = 31
MINILM_GL_LAYERS = (1, 4)

# One `explain` run per combination and rule; together they cover every baseline.
COMBOS: tuple[dict[str, Any], ...] = (
    dict(baseline_layer="zero", baseline_att="zero", baseline_mlp="zero",
         include_residual_connection=True, granularity="all"),
    dict(baseline_layer="self_input_token", baseline_att="self_input_token",
         baseline_mlp="att_itb_a0", include_residual_connection=True, granularity="all"),
    dict(baseline_layer="itb_zero_ratio", baseline_att="itb_zero_ratio",
         baseline_mlp="zero", include_residual_connection=False, granularity="all"),
    dict(baseline_layer="zero", baseline_att="itb_map_ratio", baseline_mlp="att_itb_a0",
         include_residual_connection=False, granularity=["att", "mlp"]),
)


# --------------------------------------------------------------------------- helpers


def column_errors(actual: np.ndarray, expected: np.ndarray, axis: int) -> np.ndarray:
    """Per column: max |a − b| / max |b| along `axis` (inf where b ≡ 0 but a is not)."""
    a = np.asarray(actual, np.float64)
    b = np.asarray(expected, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))
    err = np.max(np.abs(a - b), axis=axis)
    scale = np.max(np.abs(b), axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, err / np.where(scale > 0, scale, 1.0),
                        np.where(err > 0, np.inf, 0.0))


def assert_columns_close(actual: np.ndarray, expected: np.ndarray, axis: int,
                         what: str) -> None:
    """max_i |a − b| ≤ RTOL · max_i |b| for every column along `axis`."""
    rel = column_errors(actual, expected, axis)
    worst = np.unravel_index(int(np.argmax(rel)), rel.shape)
    assert rel[worst] <= RTOL, (
        f"{what}: column {tuple(int(w) for w in worst)} differs by {rel[worst]:.3g} "
        f"of its largest magnitude (tolerance {RTOL})"
    )


@functools.cache
def torch_side(folder: str) -> tl.TorchLIG:
    return tl.TorchLIG(folder, TEXT)


@functools.cache
def jax_explain(folder: str, rule: str, num_steps: int, combo: int,
                layers: tuple[int, ...] | None = None) -> dict[str, Any]:
    import lig_jax

    return lig_jax.explain(TEXT, model=folder, num_steps=num_steps, rule=rule,
                           layers=None if layers is None else list(layers), **COMBOS[combo])


def combo_with(**wanted: Any) -> int:
    """Index of the first combination whose options include `wanted`."""
    for k, combo in enumerate(COMBOS):
        if all(combo[key] == value for key, value in wanted.items()):
            return k
    raise KeyError(wanted)


def z2z_matrix(result: dict[str, Any], layer: int) -> np.ndarray:
    return np.asarray(result["layers"][str(layer)]["z2z"]["matrix"], np.float64)


def z2u_scores(result: dict[str, Any], layer: int, heads: int) -> np.ndarray:
    """[T, H, S] from the JSON."""
    targets = result["layers"][str(layer)]["targets"]
    return np.asarray([[targets[str(j)]["z2u"]["heads"][str(h)]["contributions"]
                        for h in range(heads)] for j in range(len(targets))], np.float64)


def u2z_arrays(result: dict[str, Any], layer: int) -> tuple[np.ndarray, np.ndarray]:
    """(contributions [T, d], l2_total [T]) from the JSON."""
    targets = result["layers"][str(layer)]["targets"]
    blocks = [targets[str(j)]["u2z"] for j in range(len(targets))]
    return (np.asarray([b["contributions"] for b in blocks], np.float64),
            np.asarray([b["l2_total"] for b in blocks], np.float64))


@pytest.fixture(scope="module")
def sharp_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with peaked attention (weights drawn with std 0.2).

    `tiny_bert` (std 0.02) has near-uniform attention (max A ≈ 0.12 ≈ 1/S) and its ATT
    output barely depends on the other tokens (|u − u′| ≈ 1 % of |u| under att_itb_a0),
    so an attention bug would hardly show and float32 cancellation alone reaches ~1e-4.
    """
    from conftest import save_tiny

    return save_tiny(tmp_path_factory.mktemp("sharp_bert"), "bert", seed=1,
                     initializer_range=0.2)


@pytest.fixture(scope="module")
def tiny(sharp_bert: Path) -> tl.TorchLIG:
    return torch_side(str(sharp_bert))


@pytest.fixture(scope="module")
def mini(minilm: Path) -> tl.TorchLIG:
    return torch_side(str(minilm))


# --------------------------------------------------------------------------- quadrature


@pytest.mark.parametrize("rule", ["captum_trapezoid", "trapezoid", "gauss_legendre", "midpoint"])
@pytest.mark.parametrize("n", [2, 7, 32])
def test_quadrature_matches_spec_definitions(rule: str, n: int) -> None:
    from lig_jax.quadrature import make_rule

    ours = tl.quadrature(rule, n)
    theirs = make_rule(rule, n)
    np.testing.assert_allclose(theirs.alphas, ours.alphas, rtol=0, atol=1e-7)
    np.testing.assert_allclose(theirs.weights, ours.weights, rtol=0, atol=1e-7)
    expected_sum = 1.0 - 1.0 / n if rule == "captum_trapezoid" else 1.0
    assert abs(float(np.sum(ours.weights, dtype=np.float64)) - expected_sum) < 1e-6


@pytest.mark.parametrize(("rule", "method"), [("captum_trapezoid", "riemann_trapezoid"),
                                              ("gauss_legendre", "gausslegendre")])
def test_quadrature_matches_captum(rule: str, method: str) -> None:
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters(method)
    ours = tl.quadrature(rule, 32)
    np.testing.assert_allclose(ours.alphas, alphas(32), rtol=0, atol=1e-7)
    np.testing.assert_allclose(ours.weights, step_sizes(32), rtol=0, atol=1e-7)


# --------------------------------------------------------------------------- torch vs Captum


@pytest.mark.parametrize("model", ["sharp_bert", "minilm"])
@pytest.mark.parametrize("baseline", ["zero", "self_input_token"])
def test_torch_z2z_column_matches_captum(request: pytest.FixtureRequest, model: str,
                                         baseline: str) -> None:
    """Our batched autograd IG = Captum's IntegratedGradients (Gauss–Legendre: no α = 0)."""
    folder = str(request.getfixturevalue(model))
    side = torch_side(folder)
    tiny = model == "sharp_bert"
    n = TINY_STEPS["gauss_legendre"] if tiny else MINILM_GL_STEPS
    layer = side.num_layers - 1 if tiny else MINILM_GL_LAYERS[0]
    matrix, _ = side.z2z_raw(layer, baseline, tl.quadrature("gauss_legendre", n))
    for target in (2, side.seq_len - 1):
        captum_col = side.z2z_column_captum(layer, target, baseline, n, "gausslegendre")
        assert_columns_close(matrix[:, target], captum_col, 0,
                             f"torch vs Captum z2z {model} l{layer} j{target} {baseline}")


# --------------------------------------------------------------------------- z → z


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("baseline", ["zero", "self_input_token", "itb_zero_ratio"])
def test_z2z_tiny(tiny: tl.TorchLIG, sharp_bert: Path, rule: str, baseline: str) -> None:
    res = jax_explain(str(sharp_bert), rule, TINY_STEPS[rule], combo_with(baseline_layer=baseline))
    assert res["tokens"] == tiny.tokens
    quad = tl.quadrature(rule, TINY_STEPS[rule])
    for layer in range(tiny.num_layers):
        assert_columns_close(z2z_matrix(res, layer), tiny.z2z(layer, baseline, quad), 0,
                             f"z2z tiny l{layer} {baseline} {rule}")
        raw_base = "zero" if baseline == "zero" else "self_input_token"
        _, change = tiny.z2z_raw(layer, raw_base, quad)
        jax_change = res["layers"][str(layer)]["z2z"]["completeness"]["scalar_change"]
        assert_columns_close(np.asarray(jax_change), change, 0, f"z2z L_j tiny l{layer}")


@pytest.mark.parametrize("baseline", ["zero", "self_input_token", "itb_zero_ratio"])
def test_z2z_minilm_gauss_legendre(mini: tl.TorchLIG, minilm: Path, baseline: str) -> None:
    combo = combo_with(baseline_layer=baseline)
    res = jax_explain(str(minilm), "gauss_legendre", MINILM_GL_STEPS, combo, MINILM_GL_LAYERS)
    assert res["tokens"] == mini.tokens
    quad = tl.quadrature("gauss_legendre", MINILM_GL_STEPS)
    for layer in MINILM_GL_LAYERS:
        assert_columns_close(z2z_matrix(res, layer), mini.z2z(layer, baseline, quad), 0,
                             f"z2z MiniLM l{layer} {baseline} gauss_legendre")


def test_z2z_minilm_reference_all_layers(mini: tl.TorchLIG, minilm: Path) -> None:
    """MiniLM, "The cat sat on the mat.", defaults (rule reference = TRAP, 32 steps).

    Prints the max abs difference per baseline (run with -s) and asserts the tolerance.
    """
    quad = tl.quadrature("captum_trapezoid", MINILM_STEPS)
    report = []
    for baseline in ("zero", "self_input_token", "itb_zero_ratio"):
        res = jax_explain(str(minilm), "reference", MINILM_STEPS,
                          combo_with(baseline_layer=baseline))
        assert res["tokens"] == mini.tokens
        assert res["quadrature"]["z2z"]["rule"] == "captum_trapezoid"
        diffs, rels, scale = [], [], 0.0
        for layer in range(mini.num_layers):
            ours = mini.z2z(layer, baseline, quad)
            theirs = z2z_matrix(res, layer)
            diffs.append(float(np.max(np.abs(theirs - ours))))
            rels.append(float(np.max(column_errors(theirs, ours, 0))))
            scale = max(scale, float(np.max(np.abs(ours))))
        report.append((baseline, diffs, rels, scale))
    print(f"\nMiniLM z2z, lig-jax vs PyTorch ({MINILM_STEPS} steps, captum_trapezoid, "
          f"{len(mini.tokens)} tokens)")
    for baseline, diffs, rels, scale in report:
        per_layer = " ".join(f"{d:.2e}" for d in diffs)
        print(f"  {baseline:17s} max|diff| = {max(diffs):.3e} (max|M| = {scale:.3g}; "
              f"worst column rel. {max(rels):.2e}); per layer: {per_layer}")
    for baseline, _, rels, _ in report:
        assert max(rels) <= RTOL, f"z2z MiniLM {baseline}: {max(rels):.3g} > {RTOL}"


# --------------------------------------------------------------------------- z → u


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize(
    "baseline", ["zero", "self_input_token", "itb_zero_ratio", "itb_map_ratio"]
)
def test_z2u_tiny(tiny: tl.TorchLIG, sharp_bert: Path, rule: str, baseline: str) -> None:
    res = jax_explain(str(sharp_bert), rule, TINY_STEPS[rule], combo_with(baseline_att=baseline))
    quad = tl.quadrature(rule, TINY_STEPS[rule])
    heads = tiny.num_heads
    for layer in range(tiny.num_layers):
        # per (target, head) column over sources
        assert_columns_close(z2u_scores(res, layer, heads), tiny.z2u(layer, baseline, quad), -1,
                             f"z2u tiny l{layer} {baseline} {rule}")
        raw_base = "zero" if baseline == "zero" else "self_input_token"
        _, ig_sum, change = tiny.z2u_raw(layer, raw_base, quad)
        targets = res["layers"][str(layer)]["targets"]
        comp = [[targets[str(j)]["z2u"]["heads"][str(h)]["completeness"]
                 for h in range(heads)] for j in range(tiny.seq_len)]
        jax_sum = np.asarray([[c["ig_sum"] for c in row] for row in comp])
        jax_change = np.asarray([[c["scalar_change"] for c in row] for row in comp])
        assert_columns_close(jax_sum, ig_sum, -1, f"z2u IG sum tiny l{layer} {baseline}")
        assert_columns_close(jax_change, change, -1, f"z2u Δf tiny l{layer} {baseline}")


# --------------------------------------------------------------------------- u → z


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("baseline", ["zero", "att_itb_a0"])
def test_u2z_tiny(tiny: tl.TorchLIG, sharp_bert: Path, rule: str, residual: bool,
                  baseline: str) -> None:
    combo = combo_with(baseline_mlp=baseline, include_residual_connection=residual)
    res = jax_explain(str(sharp_bert), rule, TINY_STEPS[rule], combo)
    quad = tl.quadrature(rule, TINY_STEPS[rule])
    for layer in range(tiny.num_layers):
        contrib, total = tiny.u2z(layer, baseline, quad, residual)
        jax_contrib, jax_total = u2z_arrays(res, layer)
        assert_columns_close(jax_contrib, contrib, -1,
                             f"u2z tiny l{layer} {baseline} residual={residual} {rule}")
        assert_columns_close(jax_total, total, 0, f"u2z l2_total tiny l{layer} {baseline}")


# --------------------------------------------------------------------------- composed z → z


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("combo", range(len(COMBOS)))
def test_composed_tiny(tiny: tl.TorchLIG, sharp_bert: Path, rule: str, combo: int) -> None:
    opts = COMBOS[combo]
    res = jax_explain(str(sharp_bert), rule, TINY_STEPS[rule], combo)
    quad = tl.quadrature(rule, TINY_STEPS[rule])
    for layer in range(tiny.num_layers):
        att = tiny.z2u(layer, opts["baseline_att"], quad)
        mlp, _ = tiny.u2z(layer, opts["baseline_mlp"], quad, opts["include_residual_connection"])
        ours = tl.compose(att, mlp, tiny.num_heads)
        theirs = np.asarray(res["layers"][str(layer)]["z2z_composed"]["matrix"], np.float64)
        assert_columns_close(theirs, ours, 0, f"composed tiny l{layer} combo {combo} {rule}")


# --------------------------------------------------------------------------- lower level


@pytest.mark.parametrize(("rule", "n"), [("trapezoid", 8), ("midpoint", 7)])
def test_attribution_functions_on_torch_z(tiny: tl.TorchLIG, sharp_bert: Path, rule: str,
                                          n: int) -> None:
    """The jitted functions fed HF's own z, under the two rules `explain` tests skip."""
    import jax.numpy as jnp
    from flax import nnx

    from lig_jax.attribution.run import integrand_for, program
    from lig_jax.loading import load_model
    from lig_jax.quadrature import make_rule

    layer = 1
    alphas, weights = make_rule(rule, n).without_zero_node()
    quad = tl.quadrature(rule, n)
    lm = load_model(str(sharp_bert))
    graphdef, state = nnx.split(lm.model.layers[layer])
    z = jnp.asarray(tiny.hidden[layer].numpy())
    s = tiny.seq_len
    targets = jnp.arange(s)
    heads = jnp.arange(tiny.num_heads)

    def evaluate(quantity: str, baseline: str, residual: bool = True) -> tuple:
        return program(graphdef, state, z, targets, heads, alphas, weights, per_step=8,
                       integrand=integrand_for(quantity, baseline, residual=residual))

    for baseline in ("zero", "self_input_token"):
        cols, total = evaluate("z2z", baseline)
        ours_m, ours_total = tiny.z2z_raw(layer, baseline, quad)
        assert_columns_close(np.asarray(cols).T, ours_m, 0, f"z2z fn {baseline} {rule}")
        assert_columns_close(np.asarray(total), ours_total, 0, f"z2z fn L_j {baseline}")
        scores, ig_sum, f = evaluate("z2u", baseline)
        ours_scores, ours_sum, ours_f = tiny.z2u_raw(layer, baseline, quad)
        assert_columns_close(np.asarray(scores), ours_scores, -1, f"z2u fn {baseline} {rule}")
        assert_columns_close(np.asarray(ig_sum), ours_sum, -1, f"z2u fn IG sum {baseline}")
        assert_columns_close(np.asarray(f), ours_f, -1, f"z2u fn Δf {baseline}")
    for baseline in ("zero", "att_itb_a0"):
        for residual in (True, False):
            contrib, l2 = evaluate("u2z", baseline, residual)
            ours_c, ours_l2 = tiny.u2z(layer, baseline, quad, residual)
            assert_columns_close(np.asarray(contrib), ours_c, -1,
                                 f"u2z fn {baseline} residual={residual} {rule}")
            assert_columns_close(np.asarray(l2), ours_l2, 0, f"u2z fn l2 {baseline}")
