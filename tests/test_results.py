"""Binary results (.npz), the memory budget and its one-line refusals."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from lig_jax import LIGError, explain
from lig_jax.api import explain_arrays
from lig_jax.cli import app
from lig_jax.results import load_npz, save_npz
from lig_jax.schema import explanation, load

TEXT = "The cat sat on the mat."


@pytest.fixture(scope="module")
def tiny_result(tiny_llama):
    return explain_arrays(TEXT, model=str(tiny_llama), num_steps=4,
                          baseline_att="itb_zero_ratio", baseline_mlp="att_itb_a0")


def test_npz_holds_the_json_content(tiny_result, tiny_llama, tmp_path) -> None:
    path = tmp_path / "r.npz"
    save_npz(tiny_result, path)
    with np.load(path) as data:
        keys = set(data.files)
        meta = json.loads(str(data["meta"]))
        s = len(meta["tokens"])
        assert data["layers/1/z2z"].shape == (s, s)
        assert data["layers/1/z2u"].shape == (s, 4, s)  # [T, H, S_src]
        assert data["layers/1/u2z"].shape == (s, 48)  # [T, w]
        assert data["layers/1/z2z_composed"].shape == (s, s)
    for q in ("z2z", "z2u", "u2z"):
        assert f"layers/0/{q}_completeness/ig_sum" in keys
    assert meta["model"] == str(tiny_llama) and meta["config"]["baseline_att"] == "itb_zero_ratio"
    # the dict made from the file is the dict `explain` returns for the same run
    direct = explanation(tiny_result)
    from_file = load(path, lists=True)
    assert json.dumps(from_file, sort_keys=True) == json.dumps(direct, sort_keys=True)
    # and a fresh explain gives the same numbers
    again = explain(TEXT, model=str(tiny_llama), num_steps=4, baseline_att="itb_zero_ratio",
                    baseline_mlp="att_itb_a0")
    np.testing.assert_allclose(np.asarray(again["layers"]["1"]["z2z"]["matrix"]),
                               load_npz(path).layers[1]["z2z"], rtol=1e-6, atol=1e-7)


def test_cli_writes_npz_and_reads_it_back(tiny_llama, tmp_path) -> None:
    runner = CliRunner()
    npz, js = tmp_path / "r.npz", tmp_path / "r.json"
    common = ["--model", str(tiny_llama), "--steps", "4", "--layers", "0", "-q"]
    assert runner.invoke(app, ["explain", TEXT, *common, "-o", str(npz)]).exit_code == 0
    assert runner.invoke(app, ["explain", TEXT, *common, "-o", str(js)]).exit_code == 0
    assert zipfile.is_zipfile(npz) and npz.stat().st_size < js.stat().st_size
    res = runner.invoke(app, ["compare", str(npz), str(js), "--tol", "1e-6"])
    assert res.exit_code == 0, res.output
    for cmd, out in (("view", tmp_path / "r.html"), ("plot", tmp_path / "r.png")):
        res = runner.invoke(app, [cmd, str(npz), "-o", str(out)])
        assert res.exit_code == 0, res.output
        assert out.stat().st_size > 1000


@pytest.mark.parametrize("content", [b"not a zip", b""])
def test_a_bad_npz_is_one_line(tmp_path, content) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(LIGError, match="not a readable .npz result"):
        load_npz(path)
    res = CliRunner().invoke(app, ["view", str(path), "-o", str(tmp_path / "x.html")])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "error:" in res.output


def test_an_npz_of_something_else_is_refused(tmp_path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(LIGError, match="not a lig-jax result"):
        load_npz(path)


def test_a_chunk_that_cannot_fit_is_refused_in_one_line() -> None:
    """The planner refuses when one target and one node exceed the budget."""
    from lig_jax.attribution.run import Dims, chunking, integrand_for

    dims = Dims(seq=32768, hidden=2048, heads=16, kv_heads=4, head_dim=128, ffn=8192,
                width=2048, l2=False)
    with pytest.raises(LIGError, match=r"needs about .* more than the memory budget of 64 MB"):
        chunking(integrand_for("z2u", "self_input_token"), dims, 32768, 16, 31, 64 * 2**20)
    plan = chunking(integrand_for("z2u", "self_input_token"), dims, 32768, 16, 31, 2**34)
    assert plan.bytes <= 2**34 and plan.targets_per_chunk >= 1


@pytest.mark.parametrize("value", ["lots", "12", "-5GB", "0.01MB"])
def test_a_bad_memory_budget_is_one_line(tiny_llama, value) -> None:
    res = CliRunner().invoke(app, ["explain", TEXT, "--model", str(tiny_llama),
                                   "--memory-budget", value, "-q"])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "memory budget must be" in res.output


def test_a_result_too_big_for_the_machine_is_refused(tiny_llama, monkeypatch) -> None:
    import lig_jax.api

    monkeypatch.setattr(lig_jax.api, "free_host_memory", lambda: 1000)
    with pytest.raises(LIGError, match="choose fewer --layers, --target-tokens"):
        explain(TEXT, model=str(tiny_llama), num_steps=4)


def test_completeness_summary_counts_only_columns_that_change() -> None:
    """The convergence delta per quantity: a column whose |Δf| is below 1e-3 of its layer's
    largest is not counted (its relative error is rounding); the worst counted column is
    located by layer, target token and head; unconverged columns are counted."""
    from lig_jax.results import completeness, completeness_summary, merge_summaries

    z2z = completeness("z2z", np.array([1.0, 2.1, 0.0]), np.array([1.0, 2.0, 1e-6]),
                       np.ones(3))  # column 2: Δf tiny, relative error 1 → not counted
    z2u = completeness("z2u", np.array([[1.0, 1.5], [3.0, 3.0]]),
                       np.array([[1.0, 1.0], [3.0, 3.0]]), np.ones((2, 2)),
                       np.full((2, 2), 16), np.array([[True, False], [True, True]]))
    layers = {4: {**z2z, **z2u}}
    s = completeness_summary(layers, targets=[2, 5], heads=[0, 3], tol=0.01)
    assert s["z2z"]["columns"] == 3 and s["z2z"]["counted"] == 2
    assert s["z2z"]["worst_relative_error"] == pytest.approx(0.05)
    assert s["z2z"]["worst_at"] == {"layer": 4, "target": 1}
    assert s["z2z"]["above_tolerance"] == 1 and s["z2z"]["unconverged"] is None
    assert s["z2u"]["worst_relative_error"] == pytest.approx(0.5)
    assert s["z2u"]["worst_at"] == {"layer": 4, "target": 2, "head": 3}
    assert s["z2u"]["unconverged"] == 1 and "u2z" not in s
    both = merge_summaries({0: s, 7: completeness_summary({1: z2z}, [0, 1, 2], [0], 0.01)})
    assert both["z2z"]["columns"] == 6 and both["z2z"]["above_tolerance"] == 2
    assert both["z2z"]["worst_at"] == {"index": 0, "layer": 4, "target": 1}
    assert both["z2u"]["unconverged"] == 1


def test_npz_float16_on_request(tiny_result, tmp_path) -> None:
    """--npz-dtype float16: the maps in float16 (within float16's rounding of the float32
    values), compressed, readable by every reader; a bad dtype is one line."""
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    save_npz(tiny_result, a)
    save_npz(tiny_result, b, "float16")
    half = load_npz(b)
    for l, arrays in tiny_result.layers.items():
        for k in ("z2z", "z2u", "u2z", "z2z_composed"):
            assert half.layers[l][k].dtype == np.float16
            ref = np.asarray(arrays[k], np.float32)
            np.testing.assert_allclose(half.layers[l][k].astype(np.float32), ref,
                                       rtol=2**-10, atol=6e-8)
        assert half.layers[l]["z2z_completeness/ig_sum"].dtype == np.float64
    assert b.stat().st_size < a.stat().st_size
    assert load(b)["tokens"] == tiny_result.tokens
    with pytest.raises(LIGError, match="Unknown npz dtype 'int8'"):
        save_npz(tiny_result, b, "int8")


def test_a_non_finite_column_counts_and_fails() -> None:
    """A NaN scalar change or error is never 'not counted': it is a column above the
    tolerance (so --strict fails), and the finite columns are still judged."""
    from lig_jax.results import completeness, completeness_summary

    z2z = completeness("z2z", np.array([1.0, 2.0, 1.0]), np.array([1.0, 2.0, np.nan]),
                       np.ones(3))
    s = completeness_summary({0: z2z}, targets=[0, 1, 2], heads=[0], tol=0.01)["z2z"]
    assert s["counted"] == 3 and s["above_tolerance"] == 1
