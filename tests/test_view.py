"""The HTML viewer page (no browser): embedded data, escaping, self-containment, errors."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lig_jax import LIGError, explain
from lig_jax.view import result as R
from lig_jax.view.notebook import Explanation
from lig_jax.view.page import build_page, is_special, notebook_html, view_data, write_page

TEXT = "The cat sat on the mat."
DATA_RE = re.compile(r'<script type="application/json" id="lig-data">(.*?)</script>', re.DOTALL)
RTOL = 5e-6  # 6 significant digits


@pytest.fixture(scope="module")
def result(minilm) -> dict:
    return explain(TEXT, num_steps=4, layers=[0, 1])


def embedded(page: str) -> dict:
    """The data block of a page, parsed."""
    found = DATA_RE.findall(page)
    assert len(found) == 1
    return json.loads(found[0])


def close(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=RTOL, atol=1e-12)


def tiny_result(tokens: list[str], *, with_targets: bool = True) -> dict:
    """A hand-made result: S tokens, one layer with z2z, z2z_composed and 2 heads."""
    s = len(tokens)
    m = (np.arange(s * s, dtype=np.float64).reshape(s, s) + 1) / 7
    entry: dict = {"z2z": {"baseline": "zero", "matrix": m.tolist()},
                   "z2z_composed": {"baseline_att": "zero", "baseline_mlp": "zero",
                                    "target_token_idx": [s - 1],
                                    "matrix": (-m[:, -1:]).tolist()}}
    if with_targets:
        entry["targets"] = {"0": {"target_token": tokens[0], "z2u": {
            "baseline": "zero", "heads": {"0": {"contributions": [0.5] * s},
                                          "1": {"contributions": [0.25] * s}}},
            "u2z": {"baseline": "zero", "contributions": [1.0, 2.0, 3.0, 4.0]}}}
    return {"text": " ".join(tokens), "tokens": tokens, "model": "hand-made",
            "layers": {"4": entry}}


def test_page_embeds_the_results_numbers(result: dict) -> None:
    page = build_page(result)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    data = embedded(page)
    assert data["format"] == "lig-jax-view/1"
    assert data["tokens"] == result["tokens"]
    assert data["special"] == [1] + [0] * (len(result["tokens"]) - 2) + [1]
    assert data["layer_order"] == [0, 1]
    assert data["num_heads"] == 12
    for l in (0, 1):
        got = data["layers"][str(l)]
        assert got["direct"]["baseline"] == result["layers"][str(l)]["z2z"]["baseline"]
        close(got["direct"]["matrix"], R.z2z_matrix(result, l, "direct"))
        comp = result["layers"][str(l)]["z2z_composed"]
        assert got["composed"]["targets"] == comp["target_token_idx"]
        assert got["composed"]["baseline_att"] == comp["baseline_att"]
        close(got["composed"]["matrix"], R.z2z_matrix(result, l, "composed"))
        assert sorted(map(int, got["targets"])) == R.targets(result, l)
        for j in R.targets(result, l):
            t = got["targets"][str(j)]
            heads, z = R.z2u_heads(result, l, j)
            assert t["z2u"]["heads"] == heads
            close(t["z2u"]["matrix"], z)
            close(t["u2z"]["per_head"], R.u2z_per_head(result, l, j))
    # orientation kept: matrix[i][j] = source i → target j, as in token_to_token
    col = result["layers"]["1"]["z2z"]["token_to_token"][2]
    for c in col["contributions"]:
        close(data["layers"]["1"]["direct"]["matrix"][c["source_token_idx"]][2], c["value"])


def test_page_is_self_contained(result: dict) -> None:
    page = build_page(result)
    assert '<link rel="icon" href="data:,">' in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    assert not re.search(r"<(script|link|img|iframe)[^>]*\ssrc=", page)
    assert "@import" not in page and "url(" not in page
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert 'id="lig-app"' in page


def test_rounding_to_six_significant_digits() -> None:
    r = tiny_result(["[CLS]", "a", "b", "[SEP]"])
    r["layers"]["4"]["z2z"]["matrix"][1][2] = 0.123456789
    r["layers"]["4"]["z2z"]["matrix"][2][1] = -1.23456789e-8
    m = embedded(build_page(r))["layers"]["4"]["direct"]["matrix"]
    assert m[1][2] == 0.123457 and m[2][1] == -1.23457e-8


def test_script_breaking_tokens_are_escaped() -> None:
    tokens = ["<s>", "</script>", "<!--", "</SCRIPT >", "a&b\"'", "\u2028", "</s>"]
    page = build_page(tiny_result(tokens), title="</script><b>x</b>")
    assert page.lower().count("</script") == 2
    assert "<!--" not in page
    assert "<title>&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;</title>" in page
    data = embedded(page)
    assert data["tokens"] == tokens
    assert data["title"] == "</script><b>x</b>"
    assert data["special"] == [1, 1, 0, 1, 0, 0, 1]


def test_partial_layers_keep_what_is_there() -> None:
    r = tiny_result(["[CLS]", "x", "y", "[SEP]"])
    only_z2z = {"z2z": r["layers"]["4"]["z2z"]}
    only_targets = {"targets": r["layers"]["4"]["targets"]}
    r["layers"] = {"0": only_z2z, "1": only_targets}
    data = embedded(build_page(r))
    assert set(data["layers"]["0"]) == {"direct"}
    assert set(data["layers"]["1"]) == {"targets"}
    t = data["layers"]["1"]["targets"]["0"]
    assert t["z2u"]["heads"] == [0, 1] and t["z2u"]["matrix"] == [[0.5] * 4, [0.25] * 4]
    assert t["u2z"]["per_head"] == [3, 7]  # 4 contributions, 2 heads: [1+2, 3+4]
    only = embedded(build_page(r, layers=[1]))
    assert only["layer_order"] == [1] and list(only["layers"]) == ["1"]


def test_write_page_and_notebook_html(tmp_path: Path, result: dict) -> None:
    out = write_page(result, tmp_path / "sub" / "flow.html")
    page = out.read_text(encoding="utf-8")
    assert page == build_page(result)
    src = tmp_path / "r.json"
    src.write_text(json.dumps(result), encoding="utf-8")
    assert build_page(src) == page  # a path works as well as a dict
    frame = notebook_html(result, height=500)
    m = re.fullmatch(r'<iframe srcdoc="([^"]*)" style="[^"]*height:500px[^"]*" '
                     r'sandbox="allow-scripts" title="[^"]*"></iframe>', frame)
    assert m is not None
    assert html.unescape(m.group(1)) == page
    assert Explanation(result)._repr_html_() == notebook_html(result)  # the notebook face


@pytest.mark.parametrize("bad, message", [
    ({"foo": 1}, "is not a lig result"),
    ({"tokens": ["a"], "layers": {}}, "has no layers"),
    ({"tokens": [], "layers": {"0": {}}}, "no top-level 'tokens' list"),
    ({"tokens": ["a", "b"], "layers": {"0": {"z2z": {"matrix": [[1.0, 2.0]]}}}},
     "layers['0'].z2z.matrix is 1×2, expected 2×2"),
    ({"tokens": ["a", "b"], "layers": {"0": {"z2z": {"matrix": [[1.0, 2.0], [0.0]]}}}},
     "layers['0'].z2z.matrix is not a numeric array"),
    ({"tokens": ["a"], "layers": {"0": {"z2z": {"matrix": [[float("nan")]]}}}},
     "holds non-finite numbers"),
    ({"tokens": ["a", "b"], "layers": {"0": {"layer_idx": 0}}}, "nothing to view"),
])
def test_bad_results_give_one_line_errors(bad: dict, message: str) -> None:
    with pytest.raises(LIGError) as e:
        build_page(bad)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_layer_and_files_give_one_line_errors(tmp_path: Path) -> None:
    r = tiny_result(["a", "b"])
    with pytest.raises(LIGError, match="no layer 7; layers present: 4"):
        build_page(r, layers=[7])
    with pytest.raises(LIGError, match="no layers selected"):
        build_page(r, layers=[])
    bad = tmp_path / "notes.txt"
    bad.write_text("not json\nat all", encoding="utf-8")
    for source in (bad, tmp_path / "missing.json"):
        with pytest.raises(LIGError) as e:
            write_page(source, tmp_path / "out.html")
        assert "\n" not in str(e.value)
    r["layers"]["4"]["z2z_composed"]["target_token_idx"] = [5]
    with pytest.raises(LIGError, match="out of range"):
        view_data(r)


def test_special_tokens() -> None:
    for t in ("[CLS]", "[SEP]", "<s>", "</s>", "<pad>", "[unused3]", "<|endoftext|>"):
        assert is_special(t)
    for t in ("cat", "Ġthe", "▁mat", "<", "[", "a]", ".", ""):
        assert not is_special(t)


def test_explain_result_is_a_dict_that_shows_itself_in_a_notebook(result: dict) -> None:
    import json

    from lig_jax.view.notebook import Explanation

    assert isinstance(result, Explanation) and isinstance(result, dict)
    assert json.loads(json.dumps(result)) == json.loads(json.dumps(dict(result)))
    html = result._repr_html_()
    assert html.startswith("<iframe") and "lig-data" in html
