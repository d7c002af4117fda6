"""`lig_jax.compare` and the `lig-jax compare` command on hand-built and real result files."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lig_jax.cli import app
from lig_jax.compare import compare_files, compare_results, format_table
from lig_jax.errors import LIGError

TOKENS = ["[CLS]", "cat", "[SEP]"]

runner = CliRunner()


def _layer(l: int) -> dict[str, Any]:
    """One layer entry: a 3×3 z2z matrix and targets 0..2 with 2 heads and a 4-wide u2z."""
    s = len(TOKENS)
    matrix = [[0.1 * (l + 1) * (i + 1) - 0.05 * j for j in range(s)] for i in range(s)]
    targets = {}
    for j in range(s):
        heads = {}
        for h in range(2):
            contrib = [0.2 * (h + 1) + 0.01 * i + 0.1 * j + l for i in range(s)]
            heads[str(h)] = {"contributions": contrib,
                             "token_l2_norm": sum(c * c for c in contrib) ** 0.5}
        u2z = [0.5 - 0.1 * c + 0.01 * j + l for c in range(4)]
        targets[str(j)] = {
            "target_token_idx": j, "target_token": TOKENS[j],
            "z2u": {"baseline": "self_input_token", "description": "ATT", "heads": heads},
            "u2z": {"baseline": "zero", "description": "MLP", "contributions": u2z,
                    "l2_total": sum(u2z), "completeness": {"error": 0.0,
                                                           "mean_abs_error": 0.0}},
        }
    return {"layer_idx": l,
            "z2z": {"baseline": "self_input_token", "description": "layer", "shape": [s, s],
                    "matrix": matrix},
            "targets": targets}


def make_result() -> dict[str, Any]:
    """A small synthetic result in the docs/spec.md §9 schema: 2 layers, 3 tokens."""
    return {"text": "cat", "tokens": list(TOKENS), "model": "synthetic", "model_type": "bert",
            "layers": {str(l): _layer(l) for l in range(2)}}


def write(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def row(rows: list[dict[str, Any]], layer: str, quantity: str) -> dict[str, Any]:
    found = [r for r in rows if r["layer"] == layer and r["quantity"] == quantity]
    assert len(found) == 1, (layer, quantity, rows)
    return found[0]


def error_line(result: Any) -> str:
    """The CLI's stderr (separate in click ≥ 8.2, mixed into `output` before)."""
    try:
        return result.stderr
    except ValueError:
        return result.output


def test_identical_all_zero_and_cli_exit_0(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", make_result())
    b = write(tmp_path / "b.json", make_result())
    rows = compare_files(a, b)
    assert {(r["layer"], r["quantity"]) for r in rows} == {
        (l, q) for l in ("0", "1")
        for q in ("z2z", "z2u", "token_l2_norm", "u2z", "u2z.l2_total")}
    assert all(r["max_abs"] == 0.0 and r["max_rel"] == 0.0 for r in rows)
    assert row(rows, "0", "z2z")["n"] == 9
    assert row(rows, "1", "z2u")["n"] == 3 * 2 * 3
    assert row(rows, "1", "token_l2_norm")["n"] == 6
    assert row(rows, "0", "u2z")["n"] == 3 * 4
    assert row(rows, "0", "u2z.l2_total")["n"] == 3

    result = runner.invoke(app, ["compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert "z2z" in result.stdout and "max_rel" in result.stdout
    assert "OK" in error_line(result)


def test_perturbed_entry(tmp_path: Path) -> None:
    base = make_result()
    other = copy.deepcopy(base)
    # a = base + 1e-3 at layer 1, target 2, head 1, source 0.
    entry = other["layers"]["1"]["targets"]["2"]["z2u"]["heads"]["1"]["contributions"]
    entry[0] += 1e-3
    rows = compare_results(other, base)
    denom = max(abs(c) for t in base["layers"]["1"]["targets"].values()
                for h in t["z2u"]["heads"].values() for c in h["contributions"])
    r = row(rows, "1", "z2u")
    assert r["max_abs"] == pytest.approx(1e-3, rel=1e-9)
    assert r["max_rel"] == pytest.approx(1e-3 / denom, rel=1e-9)
    assert all(x["max_abs"] == 0.0 for x in rows if x is not r)

    a = write(tmp_path / "a.json", other)
    b = write(tmp_path / "b.json", base)
    out = tmp_path / "rows.json"
    small = runner.invoke(app, ["compare", str(a), str(b), "--tol", "1e-6", "-o", str(out)])
    assert small.exit_code == 1, small.output
    assert "FAIL" in error_line(small)
    assert json.loads(out.read_text()) == rows
    large = runner.invoke(app, ["compare", str(a), str(b), "--tol", "1e-2"])
    assert large.exit_code == 0, large.output


def test_z2z_and_u2z_perturbations_land_on_their_rows() -> None:
    a, b = make_result(), make_result()
    a["layers"]["0"]["z2z"]["matrix"][2][1] -= 0.5
    a["layers"]["1"]["targets"]["0"]["u2z"]["l2_total"] *= 2
    rows = compare_results(a, b)
    z = row(rows, "0", "z2z")
    assert z["max_abs"] == pytest.approx(0.5)
    m = max(abs(v) for line in b["layers"]["0"]["z2z"]["matrix"] for v in line)
    assert z["max_rel"] == pytest.approx(0.5 / m)
    t = row(rows, "1", "u2z.l2_total")
    totals = [t["u2z"]["l2_total"] for t in b["layers"]["1"]["targets"].values()]
    assert t["max_abs"] == pytest.approx(totals[0])
    assert t["max_rel"] == pytest.approx(totals[0] / max(abs(x) for x in totals))
    changed = {(r["layer"], r["quantity"]) for r in rows if r["max_abs"] > 0}
    assert changed == {("0", "z2z"), ("1", "u2z.l2_total")}


def test_only_common_keys_and_missing_layers() -> None:
    a, b = make_result(), make_result()
    # Our extra key on one side only is ignored; a missing target/head is skipped.
    a["layers"]["0"]["z2z_composed"] = {"matrix": [[1.0] * 3] * 3}
    del b["layers"]["0"]["targets"]["2"]
    del b["layers"]["0"]["targets"]["1"]["z2u"]["heads"]["0"]
    del b["layers"]["1"]
    rows = compare_results(a, b)
    assert row(rows, "0", "z2u")["n"] == 3 * 3  # (target 0: 2 heads) + (target 1: 1 head)
    assert row(rows, "0", "u2z")["n"] == 2 * 4
    assert not [r for r in rows if r["quantity"] == "z2z_composed"]
    assert row(rows, "1", "missing_in_b") == {"layer": "1", "quantity": "missing_in_b", "n": 0,
                                              "max_abs": 0.0, "max_rel": 0.0}
    assert row(compare_results(b, a), "1", "missing_in_a")["n"] == 0

    b["layers"]["0"]["z2z_composed"] = {"matrix": [[1.0] * 3] * 3}
    assert row(compare_results(a, b), "0", "z2z_composed")["n"] == 9


def test_relative_difference_with_zero_reference() -> None:
    a, b = make_result(), make_result()
    for res in (a, b):
        res["layers"]["0"]["z2z"]["matrix"] = [[0.0] * 3 for _ in range(3)]
    assert row(compare_results(a, b), "0", "z2z")["max_rel"] == 0.0
    a["layers"]["0"]["z2z"]["matrix"][0][0] = 1e-9
    r = row(compare_results(a, b), "0", "z2z")
    assert r["max_abs"] == pytest.approx(1e-9) and r["max_rel"] == 1.0


def test_shape_mismatch_raises() -> None:
    a, b = make_result(), make_result()
    b["layers"]["1"]["z2z"]["matrix"] = [line[:2] for line in b["layers"]["1"]["z2z"]["matrix"]]
    with pytest.raises(LIGError, match=r"b: layers\['1'\]\.z2z\.matrix is 3×2, expected 3×3"
                       ) as info:
        compare_results(a, b)
    assert "\n" not in str(info.value)

    a, b = make_result(), make_result()
    b["layers"]["0"]["targets"]["1"]["u2z"]["contributions"].append(0.0)
    with pytest.raises(LIGError, match=r"layer 0 u2z.*\[4\].*\[5\]"):
        compare_results(a, b)


def test_token_mismatch_raises(tmp_path: Path) -> None:
    a, b = make_result(), make_result()
    b["tokens"][1] = "dog"
    with pytest.raises(LIGError, match="tokens differ at index 1"):
        compare_results(a, b)
    b["tokens"].append("x")
    pa, pb = write(tmp_path / "a.json", a), write(tmp_path / "b.json", b)
    result = runner.invoke(app, ["compare", str(pa), str(pb)])
    assert result.exit_code == 2
    assert "b.json: layers['0'].z2z.matrix is 3×3, expected 4×4" in error_line(result)


@pytest.mark.parametrize("content, problem", [
    ("this is { not json", "not valid JSON"),
    (json.dumps({"tokens": ["a"], "text": "a"}), "'layers'"),
    (json.dumps({"layers": {}, "text": "a"}), "'tokens'"),
    (json.dumps([1, 2, 3]), "not a lig result"),
])
def test_bad_file_exit_2(tmp_path: Path, content: str, problem: str) -> None:
    good = write(tmp_path / "good.json", make_result())
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(LIGError, match=problem):
        compare_files(good, bad)
    for args in (["compare", str(bad), str(good)], ["compare", str(good), str(bad)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        err = error_line(result).strip()
        assert err.startswith("error: ") and "\n" not in err
        assert "bad.json" in err and problem in err


def test_missing_file_exit_2(tmp_path: Path) -> None:
    good = write(tmp_path / "good.json", make_result())
    result = runner.invoke(app, ["compare", str(good), str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    err = error_line(result).strip()
    assert err.startswith("error: result file not found") and "nope.json" in err
    assert "\n" not in err


def test_nothing_in_common_raises() -> None:
    a, b = make_result(), make_result()
    del a["layers"]["1"]
    del b["layers"]["0"]
    with pytest.raises(LIGError, match="nothing to compare"):
        compare_results(a, b)


def test_format_table() -> None:
    rows = [{"layer": "0", "quantity": "z2z", "n": 9, "max_abs": 1.5e-7, "max_rel": 2e-8},
            {"layer": "11", "quantity": "u2z.l2_total", "n": 12, "max_abs": 0.0,
             "max_rel": 0.0}]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["layer", "quantity", "n", "max_abs", "max_rel"]
    assert lines[1].split() == ["0", "z2z", "9", "1.500e-07", "2.000e-08"]
    assert lines[2].split() == ["11", "u2z.l2_total", "12", "0.000e+00", "0.000e+00"]
    assert len({len(line) for line in lines}) == 1  # aligned columns
    assert format_table([]).split() == ["layer", "quantity", "n", "max_abs", "max_rel"]


def test_real_round_trip(tiny_bert: Path, tmp_path: Path) -> None:
    import lig_jax

    result = lig_jax.explain("The cat sat.", model=str(tiny_bert), num_steps=4, layers=[0])
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    b.write_text(json.dumps(json.loads(a.read_text(encoding="utf-8"))), encoding="utf-8")
    rows = compare_files(a, b)
    quantities = {r["quantity"] for r in rows}
    assert quantities == {"z2z", "z2u", "token_l2_norm", "u2z", "u2z.l2_total", "z2z_composed"}
    assert all(r["layer"] == "0" and r["n"] > 0 for r in rows)
    assert all(r["max_abs"] == 0.0 and r["max_rel"] == 0.0 for r in rows)
    cli = runner.invoke(app, ["compare", str(a), str(b), "--tol", "0"])
    assert cli.exit_code == 0, cli.output
