"""`explain --words` (sub-words aggregated to the text's words) and `--csv` (a tidy table)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lig_jax.api import explain_arrays
from lig_jax.cli import app

runner = CliRunner()
TEXT = "The cat's unbelievable sat."


@pytest.fixture(scope="module", params=["tiny_bert", "tiny_llama"])
def both(request):
    """(token-level result, word-level result) of one model, every granularity."""
    folder = request.getfixturevalue(request.param)
    options = {"model": str(folder), "num_steps": 4, "layers": [1]}
    return explain_arrays(TEXT, **options), explain_arrays(TEXT, words=True, **options)


def test_word_ids_follow_whitespace_words(both) -> None:
    tok, word = both
    words, ids = tok.meta["words"], tok.meta["word_ids"]
    assert words == ["The", "cat's", "unbelievable", "sat."]
    assert len(ids) == len(tok.tokens)
    spelled = {}
    for t, w in zip(tok.tokens, ids, strict=True):
        if w >= 0:
            spelled.setdefault(w, []).append(t)
    assert sorted(spelled) == [0, 1, 2, 3]  # every word has tokens, in order
    assert [w for w in ids if w >= 0] == sorted(w for w in ids if w >= 0)
    units = word.meta["word_level"]["unit_word"]
    assert [word.tokens[u] for u, w in enumerate(units) if w >= 0] == words


def test_word_maps_are_sums_over_sources_and_means_over_targets(both) -> None:
    """Recomputed with loops from the token-level arrays (an independent aggregation)."""
    tok, word = both
    unit_word = word.meta["word_level"]["unit_word"]
    ids = tok.meta["word_ids"]
    members, last = [], None  # tokens of each unit, in order
    for k, w in enumerate(ids):
        if w < 0 or w != last:
            members.append([])
        members[-1].append(k)
        last = w if w >= 0 else None
    assert len(members) == len(unit_word) == len(word.tokens)
    a, b = tok.layers[1], word.layers[1]
    n = len(members)
    z2z = np.zeros((n, n))
    for p, src in enumerate(members):
        for q, tgt in enumerate(members):
            z2z[p, q] = sum(a["z2z"][i, j] for i in src for j in tgt) / len(tgt)
    np.testing.assert_allclose(b["z2z"], z2z, rtol=1e-5, atol=1e-7)
    z2u = np.zeros((n, a["z2u"].shape[1], n))  # targets: every token here
    for q, tgt in enumerate(members):
        for p, src in enumerate(members):
            z2u[q, :, p] = sum(a["z2u"][j, :, i] for i in src for j in tgt) / len(tgt)
    np.testing.assert_allclose(b["z2u"], z2u, rtol=1e-5, atol=1e-7)
    u2z = np.stack([a["u2z"][tgt].mean(axis=0) for tgt in members])
    np.testing.assert_allclose(b["u2z"], u2z, rtol=1e-5, atol=1e-7)
    worst = [a["z2z_completeness/relative_error"][tgt].max() for tgt in members]
    np.testing.assert_array_equal(b["z2z_completeness/relative_error"], worst)


def test_cli_words_and_csv(tiny_llama, tmp_path) -> None:
    """--words writes word tokens into the JSON; --csv a tidy table whose pivot is the
    matrix; view and plot read the word-level result."""
    out, table = tmp_path / "w.json", tmp_path / "w.csv"
    res = runner.invoke(app, ["explain", TEXT, "--model", str(tiny_llama), "--steps", "4",
                              "--layers", "0", "--words", "-o", str(out), "--csv",
                              str(table), "-q"])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["tokens"] == ["The", "cat's", "unbelievable", "sat."]
    assert r["config"]["words"] is True and "word_level" in r
    m = np.asarray(r["layers"]["0"]["z2z"]["matrix"])
    with table.open() as fh:
        rows = list(csv.DictReader(fh))
    direct = [x for x in rows if x["quantity"] == "z2z" and x["layer"] == "0"]
    back = np.zeros_like(m)
    for x in direct:
        back[int(x["source"]), int(x["target"])] = float(x["value"])
    np.testing.assert_allclose(back, m, rtol=1e-8, atol=1e-12)
    assert {x["quantity"] for x in rows} == {"z2z", "z2z_composed", "z2u"}
    assert {x["head"] for x in rows if x["quantity"] == "z2u"} == {"0", "1", "2", "3"}
    for cmd in (["view", str(out), "-o", str(tmp_path / "w.html")],
                ["plot", str(out), "-o", str(tmp_path / "w.png")]):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 0, res.output


def test_words_with_a_target_subset_take_whole_words(tiny_llama) -> None:
    """--words with --target-tokens: a chosen sub-word brings its whole word in, so a word
    column is the mean over all its sub-words (as without a subset)."""
    options = {"model": str(tiny_llama), "num_steps": 4, "layers": [1], "words": True}
    full = explain_arrays(TEXT, **options)
    tok = explain_arrays(TEXT, model=str(tiny_llama), num_steps=4, layers=[1])
    last = max(j for j, w in enumerate(tok.meta["word_ids"]) if w == 2)  # in "unbelievable"
    part = explain_arrays(TEXT, target_tokens=[last], **options)
    unit = full.meta["word_level"]["unit_word"].index(2)
    assert part.meta["config"]["target_tokens"] == [unit]
    np.testing.assert_allclose(part.layers[1]["u2z"][0], full.layers[1]["u2z"][unit],
                               rtol=1e-5, atol=1e-6)
