"""Context-mixing measures through the interfaces: names, the JSON and .npz layout, the
CLI (explain --measures, --granularity none, correlate), word level, and the properties
every measure must have whatever the model (column sums, causality, rollout products)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lig_jax.cli import app
from lig_jax.errors import LIGError
from lig_jax.measures.names import measure_list
from lig_jax.measures.rollout import rollout, with_residual

runner = CliRunner()
TEXT = "The cat sat on the mat."


def test_measure_names_and_all():
    assert measure_list("all")[-1] == "rollout/lig"
    assert "rollout/lig" not in measure_list("all", lig=False)
    assert measure_list("alti, attention,alti") == ["alti", "attention"]
    assert measure_list(None) == [] and measure_list("") == []
    with pytest.raises(LIGError, match="Unknown measures 'bogus'. Allowed: all, alti"):
        measure_list("alti,bogus")


def test_rollout_is_the_ordered_product():
    rng = np.random.default_rng(0)
    maps = [rng.random((4, 4)) for _ in range(3)]
    got = rollout(maps)
    np.testing.assert_allclose(got[2], maps[0] @ maps[1] @ maps[2])
    a = rng.random((4, 4))
    a /= a.sum(axis=0, keepdims=True)
    np.testing.assert_allclose(with_residual(a), 0.5 * a + 0.5 * np.eye(4))


@pytest.fixture(scope="module")
def measured(tiny_llama):
    from lig_jax.api import explain_arrays

    return explain_arrays(TEXT, model=str(tiny_llama), granularity="none", measures="all")


def test_decoder_measures_are_causal_and_columns_sum_to_one(measured):
    s = len(measured.tokens)
    # [src, tgt]: below the diagonal the source comes after the target
    lower = np.tril(np.ones((s, s), bool), k=-1)
    for l, arrays in measured.layers.items():
        assert "z2z" not in arrays
        for name in ("attention", "alti", "value_zeroing", "rollout/attention",
                     "rollout/alti", "rollout/value_zeroing"):
            m = arrays[name]
            assert m.shape == (s, s)
            np.testing.assert_allclose(m.sum(axis=0), 1.0, rtol=1e-5, err_msg=name)
            assert np.all(m[lower] == 0.0), f"layer {l} {name}: a later source counts"
            assert np.all(m >= 0.0)
        assert arrays["attention_heads"].shape[1:] == (s, s)


def test_npz_round_trip_keeps_measures_and_rollouts(measured, tmp_path):
    from lig_jax.results import load_npz, save_npz
    from lig_jax.schema import load

    path = save_npz(measured, tmp_path / "m.npz")
    keys = set(np.load(path).files)
    assert "layers/1/alti" in keys and "rollout/alti/1" in keys
    back = load_npz(path)
    for l, arrays in measured.layers.items():
        assert set(back.layers[l]) == set(arrays)
        np.testing.assert_allclose(back.layers[l]["rollout/alti"], arrays["rollout/alti"],
                                   rtol=1e-6)
    obj = load(path)
    block = obj["layers"]["0"]["measures"]["alti"]
    assert np.asarray(block["matrix"]).shape == (len(measured.tokens),) * 2
    half = load_npz(save_npz(measured, tmp_path / "h.npz", "float16")).layers[1]
    assert half["alti"].dtype == np.float16
    assert half["value_zeroing_raw"].dtype == measured.layers[1]["value_zeroing_raw"].dtype


def test_cli_measures_json_and_correlate(tiny_bert, tmp_path):
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["explain", TEXT, "--model", str(tiny_bert), "--steps", "4",
                              "--granularity", "layer", "--measures", "attention,alti,"
                              "rollout/alti,rollout/lig", "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["config"]["measures"] == ["attention", "alti", "rollout/alti", "rollout/lig"]
    layer = r["layers"]["1"]
    assert set(layer["measures"]) == {"attention", "attention_heads", "alti", "rollout/alti",
                                      "rollout/lig"}
    assert len(layer["measures"]["alti"]["matrix"]) == len(r["tokens"])
    table = tmp_path / "rho.json"
    res = runner.invoke(app, ["correlate", str(out), "-o", str(table)])
    assert res.exit_code == 0, res.output
    assert "rollout/alti" in res.output and "layer 1" in res.output
    rows = json.loads(table.read_text())
    assert {(x["measure"], x["against"]) for x in rows} >= {("alti", "z2z"),
                                                            ("rollout/alti", "rollout/lig")}
    assert all(-1.0 <= x["spearman"] <= 1.0 for x in rows)
    fig = tmp_path / "beside.png"
    res = runner.invoke(app, ["plot", str(out), "-o", str(fig), "--measure", "rollout/alti",
                              "--layers", "0,1"])
    assert res.exit_code == 0, res.output
    assert fig.stat().st_size > 10_000
    res = runner.invoke(app, ["plot", str(out), "-o", str(fig), "--measure", "bogus"])
    assert res.exit_code == 2 and "has no measure 'bogus'" in res.output, res.output
    from lig_jax.view.plot import layers_figure

    figure = layers_figure(r, layers=[1], measure="alti")
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == ["layer 1: LIG z→z (direct)", "layer 1: alti"]
    shown = figure.axes[1].images[0].get_array()
    np.testing.assert_allclose(shown, np.asarray(layer["measures"]["alti"]["matrix"]))


@pytest.mark.parametrize("args,needle", [
    (["--measures", "bogus"], "Unknown --measures 'bogus'"),
    (["--granularity", "none"], "granularity none computes the measures alone"),
    (["--granularity", "att", "--measures", "rollout/lig"], "rollout/lig composes LIG"),
    (["--granularity", "layer", "--layers", "1", "--measures", "rollout/lig"],
     "composes LIG's z→z through layers 0..1: give --layers 0..1"),
    (["--measures", "all,bogus"], "Unknown --measures 'bogus'"),
])
def test_measure_errors_are_one_line(tiny_bert, args, needle):
    res = runner.invoke(app, ["explain", TEXT, "--model", str(tiny_bert), *args])
    assert res.exit_code == 2
    assert needle in res.output and "Traceback" not in res.output


def test_correlate_needs_lig_and_a_measure(tiny_bert, tmp_path):
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["explain", TEXT, "--model", str(tiny_bert), "--steps", "2",
                              "--granularity", "layer", "--layers", "0", "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["correlate", str(out)])
    assert res.exit_code == 2 and "no layer with both" in res.output


def test_word_level_measures_keep_column_sums(tiny_bert):
    from lig_jax.api import explain_arrays

    r = explain_arrays("Unbelievably, lighthouses glimmered.", model=str(tiny_bert),
                       granularity="none", measures="alti,value_zeroing", words=True)
    for arrays in r.layers.values():
        m = arrays["alti"]
        assert m.shape == (len(r.tokens),) * 2
        np.testing.assert_allclose(m.sum(axis=0), 1.0, rtol=1e-5)


def test_input_ids_give_the_text_s_result(tiny_bert):
    from lig_jax.api import explain_arrays, tokenize
    from lig_jax.loading import load_model

    ids, tokens = tokenize(load_model(str(tiny_bert)), TEXT)
    by_text = explain_arrays(TEXT, model=str(tiny_bert), granularity="none",
                             measures="alti")
    by_ids = explain_arrays(input_ids=ids, model=str(tiny_bert), granularity="none",
                            measures="alti")
    assert by_ids.tokens == tokens
    np.testing.assert_array_equal(by_ids.layers[1]["alti"], by_text.layers[1]["alti"])
    res = runner.invoke(app, ["explain", "--input-ids", ",".join(map(str, ids)), "--model",
                              str(tiny_bert), "--granularity", "none", "--measures",
                              "attention", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["tokens"] == tokens


@pytest.mark.parametrize("args,needle", [
    (["--input-ids", "101,99999999,102"], "input id 99999999 is out of range. Allowed: 0.."),
    (["--input-ids", "1,x"], "--input-ids takes comma-separated integers"),
    (["--input-ids", "101,102", "Some text"], "give TEXT or --input-ids, one of the two"),
    ([], "give TEXT or --input-ids, one of the two"),
])
def test_input_id_errors_are_one_line(tiny_bert, args, needle):
    res = runner.invoke(app, ["explain", "--model", str(tiny_bert), *args])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output


def test_explain_batch_keeps_measures_in_its_settings(tiny_bert, tmp_path):
    texts = tmp_path / "in.txt"
    texts.write_text("The cat sat.\nA dog barked at the moon.\n")
    out = tmp_path / "out.jsonl"
    args = ["explain-batch", str(texts), "-o", str(out), "--model", str(tiny_bert),
            "--granularity", "none", "-q"]
    res = runner.invoke(app, [*args, "--measures", "alti,rollout/alti"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["index"] for x in lines] == [0, 1]
    assert set(lines[1]["result"]["layers"]["1"]["measures"]) == {"alti", "rollout/alti"}
    res = runner.invoke(app, [*args, "--measures", "attention"])
    assert res.exit_code == 2 and "measures" in res.output, res.output


def test_all_measures_leave_out_lig_s_rollout_where_layers_skip(tiny_bert):
    from lig_jax.api import explain_arrays

    r = explain_arrays(TEXT, model=str(tiny_bert), granularity="layer", layers=[1],
                       num_steps=2, measures="all")
    assert "rollout/lig" not in r.meta["config"]["measures"]
    assert "rollout/alti" in r.layers[1] and "rollout/lig" not in r.layers[1]
    # rollouts compose every block below even where only a later layer is asked for
    full = explain_arrays(TEXT, model=str(tiny_bert), granularity="none",
                          measures="rollout/alti,alti")
    np.testing.assert_allclose(r.layers[1]["rollout/alti"], full.layers[1]["rollout/alti"],
                               rtol=1e-6)
    np.testing.assert_allclose(full.layers[1]["rollout/alti"],
                               full.layers[0]["alti"] @ full.layers[1]["alti"], rtol=1e-6)


def test_measures_only_result_in_csv_and_plot(tiny_bert, tmp_path):
    import csv

    table, out, fig = tmp_path / "t.csv", tmp_path / "r.json", tmp_path / "f.png"
    res = runner.invoke(app, ["explain", TEXT, "--model", str(tiny_bert), "--granularity",
                              "none", "--measures", "alti,attention", "-o", str(out),
                              "--csv", str(table), "-q"])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    s = len(r["tokens"])
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    alti = [x for x in rows if x["quantity"] == "alti" and x["layer"] == "1"]
    assert len(alti) == s * s
    want = np.asarray(r["layers"]["1"]["measures"]["alti"]["matrix"])
    for x in alti[:20]:
        assert abs(float(x["value"]) - want[int(x["source"]), int(x["target"])]) < 1e-6
    heads = {x["head"] for x in rows if x["quantity"] == "attention_heads"}
    assert heads == {str(h) for h in range(4)}
    res = runner.invoke(app, ["plot", str(out), "-o", str(fig), "--measure", "alti"])
    assert res.exit_code == 0, res.output
