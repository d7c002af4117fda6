"""Decoder attributions: lig-jax `explain` vs an independent PyTorch computation.

tests/torch_lig_decoder.py computes z→z, z→u (signed, per head) and u→z with torch
autograd over HF's own GPT-2 / Llama / Gemma3 layers (explicit causal and sliding masks,
HF's rotary tables). Every baseline, all granularities, the reference's per-path rules and
a second rule; ≤ 1e-4 of each column's largest magnitude. Plus the decoder properties:
causality (exact zeros, and future rows cannot move past targets), completeness.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from decoder_fixtures import save_tiny_decoder
from flax import nnx
from gemma3_fixtures import save_tiny_gemma3
from torch_lig import quadrature
from torch_lig_decoder import TorchDecoderLIG

from lig_jax import explain
from lig_jax.api import tokenize
from lig_jax.attribution.run import integrand_for, program
from lig_jax.loading import load_model
from lig_jax.quadrature import make_rule

TEXT = "The cat sat on the mat today."
STEPS = 8
TOL = 1e-4
# (baseline_layer, baseline_att, baseline_mlp): together every baseline of docs/spec.md §6.
COMBOS = [("zero", "zero", "zero"),
          ("self_input_token", "self_input_token", "att_itb_a0"),
          ("itb_zero_ratio", "itb_zero_ratio", "zero"),
          ("self_input_token", "itb_map_ratio", "att_itb_a0")]
# The reference's rules (docs/spec.md §2) and one other rule per family.
FAMILIES = {
    "gpt2": ({"z2z": "captum_trapezoid", "z2u": "gauss_legendre", "u2z": "gauss_legendre"},
             "captum_trapezoid"),
    "llama": ({"z2z": "captum_trapezoid", "z2u": "gauss_legendre", "u2z": "gauss_legendre"},
              "captum_trapezoid"),
    "gemma3": ({"z2z": "captum_trapezoid", "z2u": "captum_trapezoid", "u2z": "captum_trapezoid"},
               "gauss_legendre"),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decoders")
    return {
        "gpt2": save_tiny_decoder(root / "gpt2", "gpt2", seed=1),
        "llama": save_tiny_decoder(root / "llama", "llama", seed=2, num_key_value_heads=2),
        "gemma3": save_tiny_gemma3(root / "gemma3", seed=3),
    }


def _close_columns(ours: np.ndarray, ref: np.ndarray, what: str, axis: int = 0,
                   scale: np.ndarray | None = None, extra: np.ndarray | float = 0.0) -> None:
    """|ours − ref| ≤ TOL × the largest |ref| of each column (columns along `axis`), or
    TOL × `scale` where given (the size of the summed terms, for sums that cancel), plus
    `extra` (what an input's allowed error becomes after a ratio fix)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, what
    if scale is None:
        scale = np.max(np.abs(ref), axis=axis, keepdims=True)
    err = np.abs(ours - ref)
    bad = err > TOL * np.maximum(scale, 1e-6) + extra
    assert not bad.any(), f"{what}: max error {err.max():.3g}, column scale {scale.max():.3g}"


def _zero_ratio_slack(itb: np.ndarray, zero: np.ndarray, j: int, dz: float) -> np.ndarray:
    """How far a zeroRatio-fixed column [S] may move when each zero-run entry may be off
    by dz (first-order propagation through est = z_j·O_c/O_z and γ = A/P, docs/spec.md §6).

    Behind a pre-norm the zero-baseline z→u scores are small remainders of cancelling
    terms, so est, a ratio of two of them, is far more sensitive than the raw scores.
    """
    o_c, o_z = itb.sum() - itb[j], zero.sum() - zero[j]
    if abs(o_z) <= 1e-8:
        return np.zeros_like(itb)
    est = zero[j] * o_c / o_z
    d_est = abs(o_c / o_z) * dz + abs(est / o_z) * dz * (len(zero) - 1)
    p = itb.copy()
    p[j] = est
    total = p.sum()
    gamma = itb.sum() / total if abs(total) > 1e-8 else 1.0
    slack = np.abs(p) * abs(gamma) * d_est / max(abs(total), 1e-8)
    slack[j] += abs(gamma) * d_est
    return slack


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
# the reference's rules in the default run; the same code under another rule: slow
@pytest.mark.parametrize("which_rule", ["reference", pytest.param("other", marks=pytest.mark.slow)])
def test_decoder_attributions_match_torch(folders, family: str, which_rule: str) -> None:
    folder = folders[family]
    ref_rules, other = FAMILIES[family]
    rules = ref_rules if which_rule == "reference" else dict.fromkeys(ref_rules, other)
    lm = load_model(str(folder))
    ids, _ = tokenize(lm, TEXT)
    torch_side = TorchDecoderLIG(folder, ids)
    layer = 1
    quads = {p: quadrature(r, STEPS) for p, r in rules.items()}
    for b_layer, b_att, b_mlp in COMBOS:
        r = explain(TEXT, model=str(folder), num_steps=STEPS, layers=[layer],
                    baseline_layer=b_layer, baseline_att=b_att, baseline_mlp=b_mlp,
                    rule="reference" if which_rule == "reference" else other)
        assert r["architecture"] == "decoder"
        entry = r["layers"][str(layer)]
        _close_columns(entry["z2z"]["matrix"], torch_side.z2z(layer, b_layer, quads["z2z"]),
                       f"{family} z2z {b_layer}")
        att = torch_side.z2u(layer, b_att, quads["z2u"])  # [T, H, S]
        att_scale = torch_side.z2u_term_scale(layer, b_att, quads["z2u"])  # [T, H, 1]
        contrib, total = torch_side.u2z(layer, b_mlp, quads["u2z"])
        if b_att == "itb_zero_ratio":
            itb_raw = torch_side.z2u_raw(layer, "self_input_token", quads["z2u"])[0]
            zero_raw, _, _, zero_terms = torch_side.z2u_raw(layer, "zero", quads["z2u"])
        for j, t in entry["targets"].items():
            j = int(j)
            ours = np.array([t["z2u"]["heads"][str(h)]["contributions"]
                             for h in range(torch_side.num_heads)])
            # Scale: the summed terms Σ_c |IG_{i,c}|. Under the zero baseline behind a
            # pre-norm, u(αz) ≈ u(z) except near α = 0, so the per-source sums cancel to a
            # remainder far below their terms (docs/method.md, pitfall 3) and float32 rounding
            # of either side is relative to the terms.
            extra = 0.0
            if b_att == "itb_zero_ratio":
                extra = np.stack([_zero_ratio_slack(itb_raw[j, h], zero_raw[j, h], j,
                                                    TOL * zero_terms[j, h].max())
                                  for h in range(torch_side.num_heads)])
            _close_columns(ours, att[j], f"{family} z2u {b_att} target {j}", axis=1,
                           scale=np.maximum(att_scale[j], np.abs(att[j]).max(1, keepdims=True)),
                           extra=extra)
        for j, t in entry["targets"].items():
            j = int(j)
            _close_columns(np.array(t["u2z"]["contributions"])[None], contrib[j][None],
                           f"{family} u2z {b_mlp} target {j}", axis=1)
            assert t["u2z"]["l2_total"] == pytest.approx(total[j], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_decoder_attributions_are_causal(folders, family: str) -> None:
    """Future sources get exactly 0 (no zeroing after the fact), in every granularity."""
    r = explain(TEXT, model=str(folders[family]), num_steps=4, layers=[0],
                baseline_layer="zero", baseline_att="zero")
    entry = r["layers"]["0"]
    m = np.array(entry["z2z"]["matrix"])
    s = m.shape[0]
    assert np.all(m[np.tril_indices(s, -1)] == 0.0)  # source i > target j
    assert np.all(np.abs(np.diag(m)) > 0)
    for j, t in entry["targets"].items():
        for head in t["z2u"]["heads"].values():
            c = np.array(head["contributions"])
            assert np.all(c[int(j) + 1:] == 0.0) and np.any(c[: int(j) + 1] != 0.0)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_future_rows_do_not_move_past_targets(folders, family: str) -> None:
    """Changing z at rows > j0 leaves every target ≤ j0 unchanged (z→z and z→u)."""
    lm = load_model(str(folders[family]))
    ids, _ = tokenize(lm, TEXT)
    z = lm.model.hidden_states(jnp.asarray(ids))[1]
    j0 = 3
    z_mod = z.at[j0 + 1:].add(100.0)
    graphdef, state = nnx.split(lm.model.layers[1])
    a, w = (jnp.asarray(v, jnp.float32) for v in make_rule("gauss_legendre", 6).without_zero_node())
    targets, heads = jnp.arange(j0 + 1), jnp.arange(lm.config.num_heads)
    every = jnp.arange(z.shape[0])
    for baseline in ("zero", "self_input_token"):
        m, mm = (program(graphdef, state, x, every, heads, a, w, per_step=3,
                         integrand=integrand_for("z2z", baseline))[0]
                 for x in (z, z_mod))  # [T, S]
        np.testing.assert_allclose(mm[: j0 + 1], m[: j0 + 1], rtol=1e-6, atol=0)
        u, um = (program(graphdef, state, x, targets, heads, a, w, per_step=3,
                         integrand=integrand_for("z2u", baseline)) for x in (z, z_mod))
        for got, want in zip(um, u, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
        assert not np.allclose(mm[-1], m[-1])  # a future target does move


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_decoder_completeness(folders, family: str) -> None:
    """Σ attributions per column → the scalar's change (Gauss–Legendre, 64 nodes)."""
    r = explain(TEXT, model=str(folders[family]), num_steps=64, layers=[1],
                rule="gauss_legendre", baseline_layer="self_input_token",
                baseline_att="self_input_token", baseline_mlp="att_itb_a0")
    entry = r["layers"]["1"]
    comp = entry["z2z"]["completeness"]
    np.testing.assert_allclose(np.array(comp["ig_sum"]), np.array(comp["scalar_change"]),
                               rtol=2e-2, atol=1e-6)
    for t in entry["targets"].values():
        assert abs(t["u2z"]["completeness"]["error"]) <= 2e-2 * t["u2z"]["l2_total"] + 1e-6
        for head in t["z2u"]["heads"].values():
            c = head["completeness"]
            assert abs(c["ig_sum"] - c["scalar_change"]) <= 2e-2 * abs(c["scalar_change"]) + 1e-6
            assert sum(head["contributions"]) == pytest.approx(c["ig_sum"], rel=1e-5, abs=1e-6)


def test_gemma3_json_fields(folders) -> None:
    r = explain(TEXT, model=str(folders["gemma3"]), num_steps=4, layers=[0],
                granularity="mlp", target_tokens=[2])
    u2z = r["layers"]["0"]["targets"]["2"]["u2z"]
    assert u2z["input_width"] == 96 and u2z["head_shape"] == [4, 24]
    assert len(u2z["contributions"]) == 96
    assert r["layers"]["0"].get("z2z") is None
    with jax.default_matmul_precision("float32"):
        assert "Gemma3 pre+post-LN block" in explain(
            TEXT, model=str(folders["gemma3"]), num_steps=4, layers=[0],
            granularity="layer")["layers"]["0"]["z2z"]["description"]


@pytest.mark.parametrize("baseline", ["zero", "self_input_token"])
def test_gemma3_reference_quirks_match_a_torch_replay(folders, baseline: str) -> None:
    """`reference_quirks` on Gemma3 (docs/spec.md §4, §6, §13-B3): z→u replays blocks 0..l−1 on
    the embeddings and integrates f = ‖u‖ (no baseline subtraction, so the α = 0 node is
    not zero by definition and is kept); u→z `att_itb_a0` takes the replayed u′. Against
    an independent PyTorch replay over HF's layers, ≤ 1e-5 of each column's scale."""
    folder = folders["gemma3"]
    lm = load_model(str(folder))
    ids, _ = tokenize(lm, TEXT)
    torch_side = TorchDecoderLIG(folder, ids)
    layer = 1
    quad = quadrature("captum_trapezoid", STEPS)
    with jax.default_matmul_precision("float32"):
        r = explain(TEXT, model=str(folder), num_steps=STEPS, layers=[layer],
                    granularity=["att", "mlp"], baseline_att=baseline,
                    baseline_mlp="att_itb_a0", reference_quirks=True)
    scores, ig_sum, change = torch_side.z2u_replay(layer, baseline, quad)
    contrib, total = torch_side.u2z(layer, "att_itb_a0", quad, replayed=True)
    entry = r["layers"][str(layer)]
    for j, t in entry["targets"].items():
        j = int(j)
        ours = np.array([t["z2u"]["heads"][str(h)]["contributions"]
                         for h in range(torch_side.num_heads)])
        scale = np.abs(scores[j]).max(1, keepdims=True)
        err = np.abs(ours - scores[j])
        assert (err <= 1e-5 * np.maximum(scale, 1e-6)).all(), (baseline, j, err.max())
        comp = [t["z2u"]["heads"][str(h)]["completeness"] for h in range(torch_side.num_heads)]
        # Σ_i of signed scores: rounding relative to the summed magnitudes
        np.testing.assert_allclose([c["ig_sum"] for c in comp], ig_sum[j], rtol=0,
                                   atol=1e-5 * np.abs(scores[j]).sum(-1).max())
        np.testing.assert_allclose([c["scalar_change"] for c in comp], change[j], rtol=1e-5,
                                   atol=1e-7)
        # u→z against the layer's scale (the causal first token has u = u′: all zero)
        c = np.array(t["u2z"]["contributions"])
        assert np.abs(c - contrib[j]).max() <= 1e-5 * np.abs(contrib).max()
        assert t["u2z"]["l2_total"] == pytest.approx(total[j], rel=1e-5,
                                                     abs=1e-5 * np.abs(total).max())
    # The test can tell: under ITB the same replay without the α = 0 node is far outside
    # the tolerance. (Under the zero baseline u(0) = 0 without biases, so f = ‖u‖ sits at
    # its kink at α = 0 and that node's term is 0 either way.)
    if baseline == "self_input_token":
        dropped = torch_side.z2u_replay(layer, baseline, quad, keep_zero=False)[0]
        assert np.abs(dropped - scores).max() > 100 * 1e-5 * np.abs(scores).max()
