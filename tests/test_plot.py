"""Static figures (`lig_jax.view.plot`): formats, layout, exact image data, errors.

The result is a small hand-built dict (5 tokens, 3 layers, asymmetric matrices, a composed
block over 3 of the 5 targets), so any transpose or column mix-up shows; the comparison CSV
is the 24 pairs of docs/spec.md §10 with distinct numbers, written by the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from lig_jax.errors import LIGError  # noqa: E402
from lig_jax.experiment import flow  # noqa: E402
from lig_jax.view import plot  # noqa: E402

TOKENS = ["[CLS]", "a", "$x$", "b\nc", "[SEP]"]  # "$x$" must not turn into mathtext
LABELS = ["[CLS]", "a", "$x$", "b\\nc", "[SEP]"]  # how the figure shows them
COMPOSED_TARGETS = [1, 3, 4]
MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-", ".svg": b"<?xml"}


def _matrices() -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """direct [S, S] per layer 0..2 and composed [S, 3] per layer 0..1, all asymmetric."""
    rng = np.random.default_rng(7)
    s, t = len(TOKENS), len(COMPOSED_TARGETS)
    direct = {l: rng.normal(size=(s, s)) for l in range(3)}
    direct[0][0, 1] = 9.0  # source 0 → target 1 is the largest value anywhere
    composed = {l: rng.normal(size=(s, t)) for l in range(2)}
    return direct, composed


def _result() -> dict:
    direct, composed = _matrices()
    layers = {}
    for l, m in direct.items():
        entry = {"layer_idx": l, "z2z": {"baseline": "self_input_token", "matrix": m.tolist()}}
        if l in composed:
            entry["z2z_composed"] = {"baseline_att": "ITB_raw", "baseline_mlp": "zero",
                                     "target_token_idx": COMPOSED_TARGETS,
                                     "matrix": composed[l].tolist()}
        layers[str(l)] = entry
    return {"text": "a $x$ b c", "tokens": TOKENS, "model": "tiny-test", "layers": layers}


def _heatmaps(fig) -> list:
    return [ax for ax in fig.axes if ax.images]


def _texts(labels) -> list[str]:
    return [t.get_text() for t in labels]


def _flow_rows() -> list[dict]:
    """The 24 pairs of docs/spec.md §10 with distinct l2 / corr values."""
    rows = []
    for k, (lv, a, m) in enumerate(flow.pairs()):
        rows.append({
            "pair_name": f"LIG({lv.label}) | ATT({a.label})+MLP({m.label})",
            "pair_key": f"{lv.tag}_{a.tag}_{m.tag}", "layer_ig_baseline_group": lv.group,
            "layer_ig_baseline": lv.reference_name, "att_ig_baseline": a.reference_name,
            "mlp_ig_baseline": m.reference_name,
            "split": "demo", "sample_start": 0, "sample_end": 9,
            "layer_ig_dir_suffix": f"x_{lv.reference_name}",
            "composed_dir_suffix": f"y_{a.reference_name}_{m.reference_name}",
            "n_pairs": 400, "n_samples": 10, "l2_mean": 1.0 + 0.25 * k, "l2_std": 0.1 + 0.01 * k,
            "corr_mean": -0.9 + 0.075 * k, "corr_std": 0.05,
        })
    return rows


@pytest.fixture()
def flow_csv(tmp_path) -> Path:
    path = tmp_path / "flow.csv"
    path.write_text(flow.rows_to_csv(_flow_rows()), encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", plot.SUFFIXES)
def test_figures_are_written_in_the_suffix_format(tmp_path, flow_csv, suffix):
    out = plot.plot_layers(_result(), tmp_path / "sub" / f"layers{suffix}")
    assert out.read_bytes().startswith(MAGIC[suffix])
    out = plot.plot_flow(flow_csv, tmp_path / f"flow{suffix}")
    assert out.read_bytes().startswith(MAGIC[suffix])
    if suffix == ".svg":
        assert b"<svg" in out.read_bytes()[:2000]


def test_all_layers_by_default_from_a_json_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_result()), encoding="utf-8")
    fig = plot.layers_figure(path)
    assert [ax.get_title() for ax in _heatmaps(fig)] == ["layer 0", "layer 1", "layer 2"]


def test_layer_subset_ticks_are_tokens_and_image_is_the_matrix(tmp_path):
    direct, _ = _matrices()
    fig = plot.layers_figure(_result(), layers=[2, 0])
    heat = _heatmaps(fig)
    assert [ax.get_title() for ax in heat] == ["layer 2", "layer 0"]
    for ax, l in zip(heat, (2, 0), strict=True):
        assert _texts(ax.get_xticklabels()) == LABELS  # columns = targets j
        assert _texts(ax.get_yticklabels()) == LABELS  # rows = sources i
        data = np.asarray(ax.images[0].get_array())
        assert data.shape == direct[l].shape and np.array_equal(data, direct[l])
    assert np.asarray(heat[1].images[0].get_array())[0, 1] == 9.0  # source 0 → target 1
    assert heat[0].get_ylabel() == "source i" and heat[1].get_xlabel() == "target j"
    norm = heat[0].images[0].norm
    assert (norm.vmin, norm.vmax) == (-9.0, 9.0) and plot.SIGNED_CMAP == heat[0].images[0].cmap.name
    title = fig.get_suptitle()
    assert "direct" in title and "self_input_token" in title and "tiny-test" in title
    assert "a $x$ b c" in title
    fig.savefig(tmp_path / "x.png")  # "$x$" / a newline token render without mathtext errors


def test_composed_route_has_its_target_columns():
    _, composed = _matrices()
    fig = plot.layers_figure(_result(), route="composed")  # layers 0, 1 have it; 2 does not
    assert [ax.get_title() for ax in _heatmaps(fig)] == ["layer 0", "layer 1"]
    heat = _heatmaps(plot.layers_figure(_result(), layers=[1], route="composed"))
    assert len(heat) == 1
    data = np.asarray(heat[0].images[0].get_array())
    assert data.shape == (5, 3) and np.array_equal(data, composed[1])
    assert _texts(heat[0].get_xticklabels()) == [LABELS[j] for j in COMPOSED_TARGETS]
    assert _texts(heat[0].get_yticklabels()) == LABELS
    title = fig.get_suptitle()
    assert "composed" in title and "ITB_raw" in title and "MLP baseline zero" in title


def test_absolute_uses_magnitudes_and_a_sequential_scale():
    direct, _ = _matrices()
    heat = _heatmaps(plot.layers_figure(_result(), layers=[0, 1], absolute=True))
    for ax, l in zip(heat, (0, 1), strict=True):
        assert np.array_equal(np.asarray(ax.images[0].get_array()), np.abs(direct[l]))
    image = heat[0].images[0]
    assert image.norm.vmin == 0.0 and image.norm.vmax == 9.0
    assert image.cmap.name == plot.ABSOLUTE_CMAP


@pytest.mark.parametrize(("call", "message"), [
    (lambda d: plot.plot_layers(_result(), d / "fig.jpg"), r"\.png, \.pdf, \.svg"),
    (lambda d: plot.plot_layers(_result(), d / "fig"), "allowed"),
    (lambda d: plot.plot_layers(_result(), d / "f.png", layers=[0, 7]), "no layer 7"),
    (lambda d: plot.plot_layers(_result(), d / "f.png", layers=[2], route="composed"),
     "layer 2 has no composed"),
    (lambda d: plot.plot_layers(_result(), d / "f.png", route="both"), "unknown route"),
    (lambda d: plot.plot_layers({"rows": []}, d / "f.png"), "not a lig result"),
    (lambda d: plot.plot_flow(_flow_rows(), d / "flow.gif"), r"\.png, \.pdf, \.svg"),
    (lambda d: plot.plot_flow([{"pair_name": "x"}], d / "flow.png"), "missing columns"),
])
def test_errors_are_one_line(tmp_path, call, message):
    with pytest.raises(LIGError, match=message) as info:
        call(tmp_path)
    assert "\n" not in str(info.value)
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_non_lig_json_file_and_a_non_comparison_csv_are_refused(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(LIGError, match="not a lig result"):
        plot.plot_layers(path, tmp_path / "f.png")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(LIGError, match="not a comparison CSV"):
        plot.plot_flow(bad, tmp_path / "f.png")


def test_flow_bars_are_the_csv_means(flow_csv):
    rows = flow.read_rows(flow_csv)
    fig = plot.flow_figure(flow_csv)
    l2_ax, corr_ax = fig.axes[:2]
    for ax, column in ((l2_ax, "l2_mean"), (corr_ax, "corr_mean")):
        heights = {p.get_gid(): p.get_height() for p in ax.patches if p.get_gid()}
        assert heights == {r["pair_key"]: float(r[column]) for r in rows}
    labels = _texts(corr_ax.get_xticklabels())
    assert len(labels) == 24 and labels[0] == "ATT(Zero)+MLP(Zero)"
    title = fig.get_suptitle()
    assert "split demo" in title and "0–9" in title and "n_samples 10" in title
    # grouped by layer-direct baseline: the first 8 bars are the LIG(Zero) group
    first = sorted(l2_ax.patches[:24], key=lambda p: p.get_x())[:8]
    assert all(p.get_gid().startswith("lig_zero_") for p in first)
