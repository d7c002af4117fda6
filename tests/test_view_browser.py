"""The HTML viewer in a real headless Chromium (Selenium): values, routes, layers, no network.

Skipped only when the environment variable CI is unset and Chromium, chromedriver or
selenium is missing; in CI a missing browser fails. With LIG_JAX_SCREENSHOT_DIR set, the
screenshot (flow view, one token clicked) is also written there as viewer.png.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lig_jax.view import result as R
from lig_jax.view.page import write_page

TEXT = "The cat sat on the mat."
RTOL = 5e-6  # the page holds 6 significant digits
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1400,1100")


def _tools() -> tuple[str | None, str | None, list[str]]:
    """(chromium path, chromedriver path, what is missing)."""
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install selenium)")
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None:
        missing.append("chromium (apt-get install chromium)")
    if driver is None:
        missing.append("chromedriver (apt-get install chromium-driver)")
    return browser, driver, missing


class Page:
    """A Chromium session on one viewer page, collecting console and network logs."""

    def __init__(self, driver: Any):
        self.d = driver
        self.console: list[dict] = []
        self.requests: list[str] = []

    def open(self, path: Path) -> None:
        """Load the page; the logs start afresh (the browser's own start page is dropped)."""
        self.d.get("about:blank")
        self.d.get_log("browser")
        self.d.get_log("performance")
        self.console, self.requests = [], []
        self.url = path.resolve().as_uri()
        self.d.get(self.url)
        self.wait(lambda: self.app("data-ready") == "1")

    def collect(self) -> None:
        self.console += self.d.get_log("browser")
        for entry in self.d.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                self.requests.append(msg["params"]["request"]["url"])

    def assert_clean(self) -> None:
        """No console errors, no request but the page itself, data: and about: URLs."""
        self.collect()
        severe = [e for e in self.console if e.get("level") == "SEVERE"]
        assert not severe, severe
        foreign = [u for u in self.requests
                   if u != self.url and not u.startswith(("data:", "about:"))]
        assert not foreign, foreign
        assert self.url in self.requests

    def app(self, attribute: str) -> str | None:
        return self.d.find_element("id", "lig-app").get_attribute(attribute)

    def wait(self, cond: Callable[[], bool], timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting; app state: {self.state()}")
            time.sleep(0.05)

    def state(self) -> dict[str, str]:
        return self.d.execute_script("return Object.assign({}, "
                                     "document.getElementById('lig-app').dataset);")

    def click(self, css: str) -> None:
        self.d.find_element("css selector", css).click()

    def rows(self, table: str) -> list[tuple[int, int, float]]:
        """(source, target, shown full value) of each row of a values table."""
        return [(int(s), int(t), float(v)) for s, t, v in self.d.execute_script(
            "return [...document.querySelectorAll(arguments[0] + ' tbody tr')].map(r => "
            "[r.dataset.src, r.dataset.tgt, r.querySelector('.lig-val').textContent]);",
            "#" + table)]

    def items(self, css: str, *attrs: str) -> list[list[str]]:
        return self.d.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => "
            "arguments[1].map(a => e.getAttribute(a)));", css, list(attrs))

    def fit_window(self, width: int = 1400) -> None:
        """Make the window tall enough to show the whole page (for the screenshot)."""
        self.d.execute_script("document.activeElement.blur();")
        for _ in range(4):
            inner, extra, height = self.d.execute_script(
                "return [window.innerHeight, window.outerHeight - window.innerHeight, "
                "document.documentElement.scrollHeight];")
            if height <= inner:
                break
            renders = self.app("data-renders")
            self.d.set_window_size(width, extra + height)
            self.wait(lambda r=renders: self.app("data-renders") != r)

    def select_layer(self, layer: int) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.d.find_element("id", "lig-layer")).select_by_value(str(layer))
        self.wait(lambda: self.app("data-layer") == str(layer))


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    browser, chromedriver, missing = _tools()
    if missing:
        why = "the browser test needs " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(why + " (CI must install them)")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        yield Page(driver)
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def cli_page(minilm, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """The acceptance commands: `lig-jax explain TEXT -o r.json && lig-jax view r.json -o
    r.html` (8 steps to keep it quick), run as the CLI; (the JSON, the page)."""
    import json
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("cli_view")
    run = [sys.executable, "-m", "lig_jax.cli"]
    for args in (["explain", TEXT, "--steps", "8", "-q", "-o", str(folder / "r.json")],
                 ["view", str(folder / "r.json"), "-o", str(folder / "r.html")]):
        done = subprocess.run(run + args, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    return json.loads((folder / "r.json").read_text(encoding="utf-8")), folder / "r.html"


@pytest.fixture(scope="module")
def result(cli_page: tuple[dict, Path]) -> dict:
    return cli_page[0]


def close(a: Any, b: Any) -> None:
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=RTOL, atol=1e-12)


def check_column(page: Page, matrix: np.ndarray, cols: list[int], token: int) -> None:
    """The values panel of `token`: incoming = its column of `matrix` (target columns
    `cols`), outgoing = its row, each value as in the JSON (no transposition)."""
    rows = page.rows("lig-values-in")
    assert sorted(s for s, _, _ in rows) == list(range(matrix.shape[0]))
    for s, t, v in rows:
        assert t == token
        close(v, matrix[s, cols.index(token)])
    out = page.rows("lig-values-out")
    assert sorted(t for _, t, _ in out) == sorted(cols)
    for s, t, v in out:
        assert s == token
        close(v, matrix[token, cols.index(t)])


def test_viewer_in_chromium(page: Page, result: dict, cli_page: tuple[dict, Path],
                            tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    t0 = time.perf_counter()
    path = cli_page[1]
    page.open(path)
    opened = time.perf_counter() - t0
    S = len(result["tokens"])
    assert page.state()["layer"] == "0" and page.state()["route"] == "direct"
    assert page.state()["view"] == "flow"
    assert "matrix[i][j]" in page.d.find_element("id", "lig-orientation").text
    page.assert_clean()

    # click "cat": its incoming column and outgoing row, exactly as in the JSON
    cat = 2
    page.click(f'#lig-tokens [data-token="{cat}"]')
    page.wait(lambda: page.app("data-selected") == str(cat))
    direct0 = R.z2z_matrix(result, 0, "direct")
    everyone = list(range(S))
    check_column(page, direct0, everyone, cat)

    # every drawn edge goes from source node i (top row) to target node j (bottom row)
    edges = page.d.execute_script("""
        const pos = (role, t) => document.querySelector(
            `#lig-flow g.lig-node[data-role="${role}"][data-token="${t}"]`)
            .getAttribute('transform').match(/[-\\d.]+/g).map(Number);
        return [...document.querySelectorAll('#lig-flow path.lig-edge')].map(p => {
            const i = +p.dataset.src, j = +p.dataset.tgt;
            const d = p.getAttribute('d').match(/[-\\d.]+/g).map(Number);
            return [i, j, +p.dataset.value, d[0], d[1], d[d.length - 2], d[d.length - 1],
                    ...pos('src', i), ...pos('tgt', j)];
        });""")
    assert edges and int(page.d.find_element("id", "lig-flow").get_attribute("data-edges")) \
        == len(edges)
    for i, j, v, x1, y1, x2, y2, sx, sy, tx, ty in edges:
        close(v, direct0[i, j])
        assert abs(x1 - sx) < 0.2 and abs(y1 - sy) < 0.2 and abs(x2 - tx) < 0.2 \
            and abs(y2 - ty) < 0.2
        assert y1 < y2  # rows layout: sources on top
    highlighted = page.items("#lig-flow path.lig-hl-in", "data-src", "data-tgt")
    assert highlighted and all(int(t) == cat for _, t in highlighted)

    # per-target panel: z→u heads × sources and u→z per head of "cat" in layer 0
    heads, z = R.z2u_heads(result, 0, cat)
    cells = page.items("#lig-z2u rect.lig-z2u-cell", "data-head", "data-src", "data-value")
    assert len(cells) == len(heads) * S
    for h, s, v in cells:
        close(float(v), z[heads.index(int(h)), int(s)])
    bars = page.items("#lig-u2z rect.lig-u2z-bar", "data-head", "data-value")
    close([float(v) for _, v in bars], R.u2z_per_head(result, 0, cat))

    # screenshot: flow view, direct route, layer 2, "cat" clicked
    page.select_layer(2)
    shot = tmp_path / "viewer.png"
    page.fit_window()
    page.d.save_screenshot(str(shot))
    page.d.set_window_size(1400, 1100)
    assert shot.stat().st_size > 10_000
    if os.environ.get("LIG_JAX_SCREENSHOT_DIR"):
        out = Path(os.environ["LIG_JAX_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, out / "viewer.png")
    check_column(page, R.z2z_matrix(result, 2, "direct"), everyone, cat)

    # route switch: composed z→u × u→z, its own matrix and baselines
    page.select_layer(0)
    page.click("#lig-route-composed")
    page.wait(lambda: page.app("data-route") == "composed")
    comp0 = R.z2z_matrix(result, 0, "composed")
    cols = result["layers"]["0"]["z2z_composed"]["target_token_idx"]
    check_column(page, comp0, cols, cat)
    assert not np.allclose(comp0[:, cols.index(cat)], direct0[:, cat])
    assert "baseline_mlp" in page.d.find_element("id", "lig-baseline").text

    # layer switch keeps the route and the token, shows that layer's numbers
    page.select_layer(3)
    assert page.app("data-route") == "composed" and page.app("data-selected") == str(cat)
    comp3 = R.z2z_matrix(result, 3, "composed")
    check_column(page, comp3, cols, cat)
    assert not np.allclose(comp3, comp0)
    page.click("#lig-prev")
    page.wait(lambda: page.app("data-layer") == "2")

    # heatmap: one cell per (source, target column), rows = sources, no transposition
    page.click("#lig-route-direct")
    page.click("#lig-view-heatmap")
    page.wait(lambda: page.app("data-view") == "heatmap")
    direct2 = R.z2z_matrix(result, 2, "direct")
    cells = page.items("#lig-heatmap rect.lig-cell", "data-src", "data-tgt", "data-value", "y")
    assert len(cells) == S * S
    for s, t, v, _ in cells:
        close(float(v), direct2[int(s), int(t)])
    ys = {int(s): float(y) for s, _, _, y in cells}
    assert [ys[i] for i in range(S)] == sorted(ys.values())  # source i is row i

    # hover tooltip on a heatmap cell: "source → target: value"
    cell = page.d.find_element("css selector", '#lig-heatmap rect.lig-cell[data-src="1"]'
                                               '[data-tgt="3"]')
    ActionChains(page.d).move_to_element(cell).perform()
    tip = page.d.find_element("id", "lig-tooltip")
    page.wait(lambda: tip.is_displayed())
    assert tip.text.startswith("1: the → 3: sat: ")
    close(float(tip.text.rsplit(": ", 1)[1]), direct2[1, 3])

    # normalisation per target column: shown = value / Σ|column|
    page.click("#lig-normalize")
    page.wait(lambda: page.app("data-normalize") == "true")
    shown = page.items('#lig-heatmap rect.lig-cell[data-tgt="4"]', "data-src", "data-shown")
    col = direct2[:, 4] / np.abs(direct2[:, 4]).sum()
    for s, v in shown:
        close(float(v), col[int(s)])
    page.click("#lig-normalize")

    # hide special tokens: [CLS] / [SEP] rows and columns disappear
    page.click("#lig-hide-special")
    page.wait(lambda: page.app("data-hide-special") == "true")
    assert len(page.items("#lig-heatmap rect.lig-cell", "data-src")) == (S - 2) ** 2
    page.click("#lig-view-flow")
    page.wait(lambda: page.app("data-view") == "flow")
    assert not page.items('#lig-flow g.lig-node[data-token="0"]', "data-token")
    page.click("#lig-hide-special")

    # top-k: 1 strongest source per target (plus the selected token's flows)
    page.click(f'#lig-tokens [data-token="{cat}"]')  # deselect
    page.wait(lambda: page.app("data-selected") == "")
    topk = page.d.find_element("id", "lig-topk")
    topk.clear()
    topk.send_keys("1")
    page.wait(lambda: page.d.find_element("id", "lig-flow").get_attribute("data-edges")
              == str(S))
    for i, j, _ in page.items("#lig-flow path.lig-edge", "data-src", "data-tgt", "data-value"):
        assert np.argmax(np.abs(direct2[:, int(j)])) == int(i)

    # threshold: only edges with |shown| ≥ 0.5 × the layer's largest |shown|
    topk.clear()
    topk.send_keys("0")
    page.d.execute_script("const e = document.getElementById('lig-threshold'); "
                          "e.value = '0.5'; e.dispatchEvent(new Event('input'));")
    cut = 0.5 * np.abs(direct2).max()
    expected = int((np.abs(direct2) >= cut).sum())
    page.wait(lambda: page.d.find_element("id", "lig-flow").get_attribute("data-edges")
              == str(expected))
    for _, _, v in page.items("#lig-flow path.lig-edge", "data-src", "data-tgt", "data-shown"):
        assert abs(float(v)) >= cut * (1 - RTOL)

    # absolute values: every shown value is |matrix[i][j]|
    page.click("#lig-signed")
    page.wait(lambda: page.app("data-signed") == "false")
    for i, j, v in page.items("#lig-flow path.lig-edge", "data-src", "data-tgt", "data-shown"):
        close(float(v), abs(direct2[int(i), int(j)]))
    page.click("#lig-signed")

    # play steps through the layers, pause stops
    page.select_layer(0)
    page.click("#lig-play")
    page.wait(lambda: page.app("data-layer") == "1", timeout=5)
    assert page.app("data-playing") == "true"
    page.click("#lig-play")
    page.wait(lambda: page.app("data-playing") == "false")

    page.assert_clean()
    print(f"page opened in {opened:.2f} s (incl. writing)")


def synthetic(S: int = 128, L: int = 12, H: int = 12, d: int = 384) -> dict:
    """A random 128-token, 12-layer result with every block, for the load-time check."""
    rng = np.random.default_rng(0)
    tokens = ["[CLS]"] + [f"w{i}" for i in range(S - 2)] + ["[SEP]"]
    layers = {str(l): {
        "z2z": {"baseline": "zero", "matrix": rng.random((S, S)).tolist()},
        "z2z_composed": {"baseline_att": "zero", "baseline_mlp": "zero",
                         "target_token_idx": list(range(S)),
                         "matrix": rng.normal(size=(S, S)).tolist()},
        "targets": {str(j): {
            "target_token": tokens[j],
            "z2u": {"baseline": "zero", "heads": {str(h): {"contributions": row}
                                                  for h, row in enumerate(
                                                      rng.random((H, S)).tolist())}},
            "u2z": {"baseline": "zero", "contributions": rng.normal(size=d).tolist()}}
            for j in range(S)}}
        for l in range(L)}
    return {"text": " ".join(tokens), "tokens": tokens, "model": "synthetic", "layers": layers}


def test_large_result_opens_fast(page: Page, tmp_path: Path) -> None:
    r = synthetic()
    t0 = time.perf_counter()
    path = write_page(r, tmp_path / "big.html")
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    page.open(path)
    opened = time.perf_counter() - t0
    assert page.state()["layer"] == "0"
    edges = int(page.d.find_element("id", "lig-flow").get_attribute("data-edges"))
    assert edges == 3 * 128  # top 3 per target by default when S > 32
    assert len(page.items("#lig-flow g.lig-node", "data-token")) == 2 * 128
    render_ms = float(page.app("data-render-ms"))
    page.click('#lig-tokens [data-token="5"]')
    page.wait(lambda: page.app("data-selected") == "5")
    close([v for _, _, v in sorted(page.rows("lig-values-in"))],
          np.asarray(r["layers"]["0"]["z2z"]["matrix"])[:, 5])
    page.select_layer(11)
    page.assert_clean()
    print(f"128 tokens x 12 layers: {path.stat().st_size / 1e6:.1f} MB, built in {built:.2f} s, "
          f"opened in {opened:.2f} s, first render {render_ms:.0f} ms")
    assert opened < 15 and render_ms < 2000


def test_partial_result_hides_missing_routes(page: Page, tmp_path: Path) -> None:
    """Layer 0: direct z→z only; layer 1: per-target blocks only (no z→z at all)."""
    tokens = ["<s>", "a", "</script>", "</s>"]
    m = [[0.0, 1.5, -2.0, 0.25], [3.0, 0.0, 0.5, 1.0], [-1.0, 2.0, 0.0, 0.125],
         [0.5, 0.75, 1.25, 0.0]]
    r = {"text": "a </script>", "tokens": tokens, "model": "hand-made", "layers": {
        "0": {"z2z": {"baseline": "zero", "matrix": m}},
        "1": {"targets": {"2": {"target_token": "</script>", "z2u": {
            "baseline": "zero", "heads": {"0": {"contributions": [0.1, 0.2, 0.3, 0.4]},
                                          "1": {"contributions": [0.5, 0.6, 0.7, 0.8]}}}}}}}}
    page.open(write_page(r, tmp_path / "partial.html"))
    assert page.app("data-route") == "direct"
    assert not page.items("#lig-route-composed", "id")  # no layer has it
    page.click('#lig-tokens [data-token="2"]')
    check_column(page, np.asarray(m), list(range(4)), 2)
    assert page.d.find_element("css selector", '#lig-tokens [data-token="2"]').text \
        == "</script>"
    page.click("#lig-next")
    page.wait(lambda: page.app("data-layer") == "1")
    assert page.app("data-route") == "none"
    assert page.d.find_element("id", "lig-empty").is_displayed()
    assert not page.d.find_element("id", "lig-flow-wrap").is_displayed()
    cells = page.items("#lig-z2u rect.lig-z2u-cell", "data-head", "data-src", "data-value")
    assert {(int(h), int(s)): float(v) for h, s, v in cells}[(1, 3)] == 0.8
    assert not page.items("#lig-u2z", "id")
    page.click("#lig-prev")
    page.wait(lambda: page.app("data-layer") == "0")
    assert page.app("data-route") == "direct"
    page.assert_clean()


def long_result(s: int = 2048, heads: int = 9, width: int = 576) -> dict:
    """A one-layer result of a 2,048-token SmolLM2 explain's shapes (every granularity),
    with random numbers and one real word to search for; arrays as an .npz loads them."""
    rng = np.random.default_rng(7)
    tokens = ["<s>"] + [f"Ġw{i % 97}" for i in range(1, s)]
    tokens[1500] = "Ġlighthouse"
    direct = np.tril(rng.normal(size=(s, s))).T  # causal: source i ≤ target j
    composed = np.tril(rng.normal(size=(s, s))).T
    targets = {}
    for j in range(s):
        z = np.zeros((heads, s))
        z[:, : j + 1] = rng.normal(size=(heads, j + 1))
        targets[str(j)] = {
            "target_token_idx": j, "target_token": tokens[j],
            "z2u": {"baseline": "self_input_token", "heads": {
                str(h): {"contributions": z[h]} for h in range(heads)}},
            "u2z": {"baseline": "att_itb_a0", "contributions": rng.normal(size=width)}}
    return {"text": "synthetic", "tokens": tokens, "model": "smollm2-135m",
            "boundaries": {"num_heads": heads},
            "layers": {"0": {"layer_idx": 0,
                             "z2z": {"baseline": "self_input_token", "matrix": direct},
                             "z2z_composed": {"baseline_att": "self_input_token",
                                              "baseline_mlp": "att_itb_a0",
                                              "target_token_idx": list(range(s)),
                                              "matrix": composed},
                             "targets": targets}}}


def test_a_2048_token_page_is_compact_and_usable(page: Page, tmp_path: Path) -> None:
    """2,048 tokens, one layer, every granularity: the page is under 10 MB, opens (ready)
    within 5 s, draws the heatmap on a canvas, the search finds and selects a token, the
    kept top-k values are the matrix's own, and the full matrices load from the side file."""
    r = long_result()
    out = write_page(r, tmp_path / "long.html")
    size = out.stat().st_size
    assert size < 10 * 2**20, size
    side = tmp_path / "long.html.full.0.js"
    assert side.is_file() and side.stat().st_size > size
    page.open(out)
    assert int(page.app("data-ready-ms")) < 5000  # navigation start → first view drawn
    assert page.app("data-view") == "heatmap"
    cells = page.items("#lig-canvas", "data-cells")[0][0]
    assert cells == str(2048 * 2048)
    box = page.d.find_element("id", "lig-search")
    box.send_keys("lighthouse")
    page.wait(lambda: page.app("data-selected") == "1500")
    assert page.app("data-matches") == "1"
    direct = np.asarray(r["layers"]["0"]["z2z"]["matrix"])
    rows = page.rows("lig-values-in")  # incoming of token 1500: its top-32 sources kept
    top = sorted(np.argsort(-np.abs(direct[:, 1500]))[:32])
    kept = sorted(s for s, _, v in rows if v != 0.0)
    assert kept == [int(i) for i in top]
    for s, _, v in rows:
        close(v, direct[s, 1500] if s in top else 0.0)
    page.click("#lig-load-full")
    page.wait(lambda: page.app("data-full") == "0")
    page.wait(lambda: page.app("data-selected") == "1500")
    for s, _, v in page.rows("lig-values-in"):  # float32 in the side file
        np.testing.assert_allclose(v, direct[s, 1500], rtol=1e-6, atol=1e-12)
    page.collect()
    severe = [e for e in page.console if e.get("level") == "SEVERE"]
    assert not severe, severe


def test_a_measure_beside_lig(page: Page, minilm, tmp_path: Path) -> None:
    """`explain --measures …` then `view`: the page's measure selector draws the chosen
    measure of the selected layer beside LIG's heatmap, with the result's exact values."""
    from selenium.webdriver.support.ui import Select

    from lig_jax.api import explain

    res = explain(TEXT, layers=[0, 1], granularity="layer", num_steps=4,
                  measures="alti,value_zeroing,rollout/alti")
    write_page(res, tmp_path / "m.html")
    page.open(tmp_path / "m.html")
    page.wait(lambda: page.app("data-ready") == "1")
    options = [o.get_attribute("value") for o in
               page.d.find_elements("css selector", "#lig-measure option")]
    assert options == ["", "alti", "value_zeroing", "rollout/alti"]
    assert page.d.find_element("id", "lig-measure-panel").get_attribute("hidden") is not None
    page.click("#lig-view-heatmap")
    page.wait(lambda: page.app("data-view") == "heatmap")
    Select(page.d.find_element("id", "lig-measure")).select_by_value("alti")
    page.wait(lambda: page.app("data-measure") == "alti")
    page.select_layer(1)
    s = len(res["tokens"])
    cells = page.items("#lig-measure-map rect.lig-mcell", "data-src", "data-tgt", "data-value")
    assert len(cells) == s * s
    want = np.asarray(res["layers"]["1"]["measures"]["alti"]["matrix"])
    for src, tgt, value in cells:
        close(float(value), want[int(src), int(tgt)])
    lig, beside = page.d.execute_script(
        "return [document.getElementById('lig-heatmap').getBoundingClientRect().toJSON(), "
        "document.getElementById('lig-measure-panel').getBoundingClientRect().toJSON()];")
    assert beside["left"] >= lig["right"] - 1 and beside["top"] < lig["bottom"], (lig, beside)
    assert "alti, layer 1" in page.d.find_element("id", "lig-measure-title").text
    page.assert_clean()


def test_a_long_measure_panel_says_how_to_see_it(page: Page, tmp_path: Path) -> None:
    """Beyond 256 tokens the measure panel does not draw S² cells; it names the plot
    command instead, and the page stays usable."""
    from selenium.webdriver.support.ui import Select

    s = 300
    r = {"text": "synthetic", "tokens": [f"w{i}" for i in range(s)], "model": "m",
         "layers": {"0": {"layer_idx": 0,
                          "z2z": {"baseline": "zero", "matrix": np.eye(s)},
                          "measures": {"alti": {"matrix": np.eye(s)}}}}}
    page.open(write_page(r, tmp_path / "m300.html"))
    page.wait(lambda: page.app("data-ready") == "1")
    Select(page.d.find_element("id", "lig-measure")).select_by_value("alti")
    page.wait(lambda: page.app("data-measure") == "alti")
    assert page.items("#lig-measure-map rect", "data-src") == []
    title = page.d.find_element("id", "lig-measure-title").text
    assert "draws up to 256 tokens (300 shown)" in title and "--measure alti" in title
    page.collect()
    assert not [e for e in page.console if e.get("level") == "SEVERE"]


def test_an_input_attribution_page(page: Page, tmp_path: Path) -> None:
    """`view` of an `attribute` result: per method the tokens carry the exact scores of the
    chosen target column; the layer slider of a flow shows that hidden state's scores."""
    from selenium.webdriver.support.ui import Select

    from lig_jax.e2e.attribute import attribute
    from lig_jax.view.attribution import write_attribution_page

    a = attribute(TEXT, target="hidden_sum:2", methods="grad_x_input,attention_rollout")
    write_attribution_page(a, tmp_path / "a.html")
    page.open(tmp_path / "a.html")
    Select(page.d.find_element("id", "col")).select_by_value("0")
    for m in ("grad_x_input", "attention_rollout"):
        spans = page.d.find_elements("css selector", f"div[data-method='{m}'] .final .tok")
        assert [s.text for s in spans] == a.meta["tokens"]
        for s, want in zip(spans, a.scores(m)[:, 0], strict=True):
            close(float(s.get_attribute("data-score")), want)
    slider = page.d.find_element("css selector",
                                 "div[data-method='attention_rollout'] input[type=range]")
    page.d.execute_script("arguments[0].value = 1; arguments[0].dispatchEvent("
                          "new Event('input'));", slider)
    spans = page.d.find_elements("css selector",
                                 "div[data-method='attention_rollout'] .layer .tok")
    for s, want in zip(spans, a.arrays["methods/attention_rollout/layers"][1, :, 0],
                       strict=True):
        close(float(s.get_attribute("data-score")), want)
    page.assert_clean()
