/* lig-jax flow viewer: plain JavaScript, no dependencies, no network.
 *
 * Inlined by lig_jax/view/page.py after the JSON data block #lig-data (format
 * "lig-jax-view/1", described in page.py).
 * Orientation, as in the JSON and never transposed: matrix[i][j] = source token i → target
 * token j (composed route: column c is target token targets[c]).
 *
 * Only the selected layer is rendered, and only the active view (flow or heatmap) of it.
 * State is mirrored on #lig-app as data attributes (data-layer, data-route, data-view,
 * data-selected, ...) for tests and scripts.
 */
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("lig-data").textContent);
  const tokens = data.tokens;
  const S = tokens.length;
  const special = data.special.map(Boolean);
  const layerKeys = data.layer_order.map(String);
  const ROUTES = ["direct", "composed"];
  const POS = [178, 24, 43];
  const NEG = [33, 102, 172];
  const ABS = [84, 39, 143];
  const app = document.getElementById("lig-app");

  const compact = data.compact || null;
  const state = {
    layer: layerKeys[0],
    route: null,
    routePref: "direct",
    measure: "",
    view: compact ? "heatmap" : "flow",
    cell: 0,
    query: "",
    match: -1,
    selected: null,
    threshold: 0,
    topk: S > 32 ? 3 : 0,
    edgeScale: 1,
    nodeScale: 1,
    normalize: false,
    signed: true,
    hideSpecial: false,
    layout: "auto",
    timer: null,
  };
  const sumCache = new Map();

  /* ---------- helpers ---------- */

  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => (
      { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  function clamp(x, lo, hi) {
    return Math.max(lo, Math.min(hi, x));
  }

  function $(id) {
    return document.getElementById(id);
  }

  /** A short display of v (3 significant digits). */
  function short(v) {
    if (!Number.isFinite(v)) return "–";
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e-3 && a < 1e5) return String(Number(v.toPrecision(3)));
    return v.toExponential(2);
  }

  /** The full value as stored in the data (6 significant digits). */
  function full(v) {
    return v === null || v === undefined ? "null" : String(v);
  }

  function label(i) {
    const t = tokens[i];
    return t.length > 14 ? t.slice(0, 13) + "…" : t;
  }

  function tokText(i) {
    return i + ": " + tokens[i];
  }

  function hidden(i) {
    return state.hideSpecial && special[i];
  }

  function visibleTokens() {
    const out = [];
    for (let i = 0; i < S; i++) if (!hidden(i)) out.push(i);
    return out;
  }

  function colour(v, max, floor) {
    const t = max > 0 ? clamp(Math.abs(v) / max, 0, 1) : 0;
    const base = !state.signed ? ABS : v < 0 ? NEG : POS;
    const f = floor === undefined ? 0.06 : floor;
    const mix = (k) => Math.round(255 + (base[k] - 255) * (f + (1 - f) * t));
    return "rgb(" + mix(0) + "," + mix(1) + "," + mix(2) + ")";
  }

  function solid(v) {
    const base = !state.signed ? ABS : v < 0 ? NEG : POS;
    return "rgb(" + base.join(",") + ")";
  }

  function num(v) {
    return v === null || v === undefined ? NaN : v;
  }

  /* ---------- data access ---------- */

  function layerData() {
    return data.layers[state.layer];
  }

  function routesOf(ld) {
    return ROUTES.filter((r) => ld[r]);
  }

  /** Rows [nRows] of Float64Array(nCols) from a compact block's top-k per column (the
   * sources left out are 0); `sparse.idx[c]` / `sparse.val[c]` list column c's sources. */
  function densify(sparse, nRows, nCols) {
    const rows = [];
    for (let i = 0; i < nRows; i++) rows.push(new Float32Array(nCols));
    sparse.idx.forEach((list, c) => {
      list.forEach((i, k) => {
        rows[i][c] = num(sparse.val[c][k]);
      });
    });
    return rows;
  }

  /** Rows of a side-file matrix: base64 little-endian float32, row-major [S][T]. */
  function decodeRows(blob) {
    const bin = atob(blob.f32);
    const bytes = new Uint8Array(bin.length);
    for (let k = 0; k < bin.length; k++) bytes[k] = bin.charCodeAt(k);
    const f32 = new Float32Array(bytes.buffer);
    const [nRows, nCols] = blob.shape;
    const rows = [];
    for (let i = 0; i < nRows; i++) rows.push(f32.subarray(i * nCols, (i + 1) * nCols));
    return rows;
  }

  /** A route block's matrix, made dense on first use when the page is compact (only the
   * current layer's dense matrices are kept: 16 MB each at 2,048 tokens). */
  function matrixOf(block, nCols) {
    if (!block.matrix) {
      for (const k of layerKeys) {
        if (k === state.layer) continue;
        for (const r of ROUTES) {
          const b = data.layers[k][r];
          if (b && b.approx) {
            delete b.matrix;
            delete b.approx;
          }
        }
      }
      block.matrix = densify(block.sparse, S, nCols);
      block.approx = true;
    }
    return block.matrix;
  }

  /** The current layer/route matrix: {m [S][T], cols [T] target tokens, sums [T], colOf}. */
  function currentMatrix() {
    const ld = layerData();
    const block = state.route ? ld[state.route] : null;
    if (!block) return null;
    const cols = state.route === "direct" ? tokens.map((_, i) => i) : block.targets;
    matrixOf(block, cols.length);
    const key = state.layer + "/" + state.route;
    let sums = sumCache.get(key);
    if (!sums && block.sums && block.approx) sums = block.sums.map(num);
    if (!sums) {
      sums = cols.map((_, c) => {
        let s = 0;
        for (let i = 0; i < S; i++) {
          const v = num(block.matrix[i][c]);
          if (Number.isFinite(v)) s += Math.abs(v);
        }
        return s;
      });
    }
    sumCache.set(key, sums);
    const colOf = new Map(cols.map((j, c) => [j, c]));
    return { m: block.matrix, cols, sums, colOf, block };
  }

  /** The displayed value of cell (i, c): normalised per column and/or absolute. */
  function shown(mv, i, c) {
    let v = num(mv.m[i][c]);
    if (!Number.isFinite(v)) return NaN;
    if (state.normalize) v = mv.sums[c] > 0 ? v / mv.sums[c] : 0;
    return state.signed ? v : Math.abs(v);
  }

  /* ---------- skeleton ---------- */

  app.innerHTML = `
<header class="lig-header">
  <h1 id="lig-title"></h1>
  <p class="lig-meta" id="lig-meta"></p>
  <p class="lig-orientation" id="lig-orientation">Orientation: <b>source i → target j:
    matrix[i][j] (as in the JSON)</b>, never transposed. Flow view: sources on top (or left),
    targets below (or right). Heatmap: rows are sources, columns are targets.</p>
</header>
<section class="lig-controls" id="lig-controls">
  <div class="lig-group"><span class="lig-label">Layer</span>
    <button id="lig-prev" type="button" title="previous layer (←)">◀</button>
    <select id="lig-layer" aria-label="layer"></select>
    <button id="lig-next" type="button" title="next layer (→)">▶</button>
    <button id="lig-play" type="button" title="step through the layers">Play</button>
  </div>
  <div class="lig-group" id="lig-routes"><span class="lig-label">Route</span>
    <button id="lig-route-direct" class="lig-seg" type="button">direct z→z</button>
    <button id="lig-route-composed" class="lig-seg" type="button">composed z→u × u→z</button>
    <span id="lig-baseline" class="lig-baseline"></span>
  </div>
  <div class="lig-group"><span class="lig-label">View</span>
    <button id="lig-view-flow" class="lig-seg" type="button">flow</button>
    <button id="lig-view-heatmap" class="lig-seg" type="button">heatmap</button>
  </div>
  <div class="lig-group" id="lig-measures"><span class="lig-label">Beside</span>
    <select id="lig-measure" aria-label="context-mixing measure shown beside LIG"
      title="a context-mixing measure of the same layer, drawn beside LIG"></select>
  </div>
  <div class="lig-group"><span class="lig-label">Find</span>
    <input id="lig-search" type="search" placeholder="token text" aria-label="find a token"
      title="tokens containing this text; Enter selects the next match">
    <output id="lig-search-out"></output>
  </div>
</section>
<p class="lig-compact" id="lig-compact" hidden></p>
<section class="lig-options" id="lig-options">
  <label title="hide edges whose |shown value| is below this fraction of the layer's largest">
    threshold <input id="lig-threshold" type="range" min="0" max="1" step="0.01" value="0">
    <output id="lig-threshold-out">0</output>× max</label>
  <label title="draw only the k strongest sources of each target (0: all)">top-k per target
    <input id="lig-topk" type="number" min="0" step="1"></label>
  <label>edge width <input id="lig-edge-scale" type="range" min="0.2" max="4" step="0.1"
    value="1"></label>
  <label>node size <input id="lig-node-scale" type="range" min="0.2" max="3" step="0.1"
    value="1"></label>
  <label title="divide each target column by the sum of |values| over all its sources">
    <input id="lig-normalize" type="checkbox"> normalise per target (÷ Σ|column|)</label>
  <label><input id="lig-signed" type="checkbox" checked> signed
    (<span class="lig-pos">+</span> / <span class="lig-neg">−</span>)</label>
  <label title="[CLS], [SEP], &lt;s&gt;, &lt;/s&gt;, &lt;pad&gt;, [..], &lt;..&gt;">
    <input id="lig-hide-special" type="checkbox"> hide special tokens</label>
  <label title="heatmap cell size in pixels (0: fit the width)">cell px
    <input id="lig-cell" type="number" min="0" max="48" step="1" value="0"></label>
  <label>layout <select id="lig-layout">
    <option value="auto">auto</option><option value="rows">rows</option>
    <option value="columns">columns</option></select></label>
</section>
<div class="lig-tokens" id="lig-tokens" aria-label="tokens (click to select)"></div>
<div class="lig-body">
  <main class="lig-main" id="lig-main">
    <div class="lig-legend" id="lig-legend"></div>
    <p class="lig-empty" id="lig-empty" hidden></p>
    <div class="lig-pair">
      <div class="lig-pair-main">
        <div class="lig-scroll" id="lig-flow-wrap"><svg id="lig-flow"
          xmlns="http://www.w3.org/2000/svg"></svg></div>
        <div class="lig-scroll" id="lig-heatmap-wrap" hidden><svg id="lig-heatmap"
          xmlns="http://www.w3.org/2000/svg"></svg><canvas id="lig-canvas" hidden></canvas></div>
      </div>
      <section id="lig-measure-panel" class="lig-panel lig-measure-panel" hidden>
        <h3 id="lig-measure-title"></h3>
        <div class="lig-scroll"><svg id="lig-measure-map"
          xmlns="http://www.w3.org/2000/svg"></svg></div>
      </section>
    </div>
    <section id="lig-target-panel" class="lig-panel lig-target-panel"></section>
  </main>
  <aside class="lig-side">
    <section id="lig-values" class="lig-panel"></section>
  </aside>
</div>
<div id="lig-tooltip" class="lig-tooltip" hidden></div>`;

  const el = {};
  for (const id of ["title", "meta", "prev", "layer", "next", "play", "route-direct",
    "route-composed", "baseline", "view-flow", "view-heatmap", "threshold", "threshold-out",
    "topk", "edge-scale", "node-scale", "normalize", "signed", "hide-special", "layout",
    "tokens", "legend", "empty", "flow-wrap", "flow", "heatmap-wrap", "heatmap", "values",
    "target-panel", "tooltip", "routes", "search", "search-out", "compact", "cell",
    "canvas", "measures", "measure", "measure-panel", "measure-title", "measure-map"]) {
    el[id] = $("lig-" + id);
  }

  el.title.textContent = data.title;
  {
    const cfg = data.config || {};
    const parts = [];
    if (data.model) parts.push("model " + data.model);
    if (cfg.num_steps !== undefined) parts.push(cfg.num_steps + " steps");
    if (cfg.rule) parts.push("rule " + cfg.rule);
    parts.push(S + " tokens");
    parts.push(layerKeys.length + " layer" + (layerKeys.length === 1 ? "" : "s"));
    let text = data.text || "";
    if (text.length > 160) {
      el.meta.title = text;
      text = text.slice(0, 159) + "…";
    }
    el.meta.textContent = (text ? "“" + text + "” · " : "") + parts.join(" · ");
  }
  el.layer.innerHTML = layerKeys.map((k) => `<option value="${esc(k)}">${esc(k)}</option>`)
    .join("");
  el.topk.max = String(S);
  el.topk.value = String(state.topk);
  el.tokens.innerHTML = tokens.map((t, i) =>
    `<button type="button" class="lig-token${special[i] ? " lig-special" : ""}" ` +
    `data-token="${i}" title="token ${i}">${esc(t)}</button>`).join("");
  for (const r of ROUTES) {
    if (!layerKeys.some((k) => data.layers[k][r])) el["route-" + r].remove();
  }
  {
    const names = [];
    for (const k of layerKeys) {
      for (const n of Object.keys(data.layers[k].measures || {})) {
        if (!names.includes(n)) names.push(n);
      }
    }
    if (names.length) {
      el.measure.innerHTML = `<option value="">none</option>` +
        names.map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join("");
    } else {
      el.measures.remove();
    }
  }

  if (compact) {
    el.compact.hidden = false;
    el.compact.innerHTML = `Long input (${S} tokens): this page keeps the ` +
      `${compact.top_k} strongest sources of each target column (and ${compact.top_k_z2u} ` +
      `per head for z→u); the others show as 0, per-target normalisation uses the exact ` +
      `column sums.` + (compact.full_files
      ? ` <button id="lig-load-full" type="button">load this layer's full matrices</button>` +
        ` <span id="lig-full-note">(side files <code>${esc(compact.full_files[layerKeys[0]])}` +
        `</code>, … beside this page)</span>` : "");
    const btn = $("lig-load-full");
    if (btn) {
      btn.addEventListener("click", () => {
        const layer = state.layer;
        const name = compact.full_files[layer];
        btn.disabled = true;
        const tag = document.createElement("script");
        tag.src = name;
        tag.onload = () => {
          const routes = (window.LIG_FULL || {})[layer] || {};
          for (const [r, blob] of Object.entries(routes)) {
            const b = data.layers[layer][r];
            if (b) {
              b.sparse = null;
              b.matrix = decodeRows(blob);
              b.approx = false;
            }
          }
          delete (window.LIG_FULL || {})[layer];
          sumCache.clear();
          app.dataset.full = (app.dataset.full ? app.dataset.full + "," : "") + layer;
          btn.disabled = false;
          render();
        };
        tag.onerror = () => {
          $("lig-full-note").textContent = `${name} could not be loaded (missing, or the ` +
            `page is not opened as a file)`;
          app.dataset.full = "error";
          btn.disabled = false;
        };
        document.head.appendChild(tag);
      });
    }
  }

  /* ---------- flow view ---------- */

  function renderFlow(mv) {
    const vis = visibleTokens();
    const vcols = [];
    for (let c = 0; c < mv.cols.length; c++) if (!hidden(mv.cols[c])) vcols.push(c);
    const n = vis.length;
    const nc = mv.cols.length;
    const d = new Float64Array(S * nc);
    let max = 0;
    for (const i of vis) {
      for (const c of vcols) {
        const v = shown(mv, i, c);
        d[i * nc + c] = v;
        if (Number.isFinite(v)) max = Math.max(max, Math.abs(v));
      }
    }
    // edges: per target column, the sources above the threshold, top-k of them
    const sel = state.selected;
    const cut = state.threshold * max;
    const edges = [];
    let candidates = 0;
    for (const c of vcols) {
      const j = mv.cols[c];
      const list = [];
      for (const i of vis) {
        const v = d[i * nc + c];
        if (Number.isFinite(v) && v !== 0 && Math.abs(v) >= cut) list.push(i);
      }
      candidates += list.length;
      list.sort((a, b) => Math.abs(d[b * nc + c]) - Math.abs(d[a * nc + c]));
      list.forEach((i, rank) => {
        const keep = state.topk <= 0 || rank < state.topk || i === sel || j === sel;
        if (keep) edges.push([i, c]);
      });
    }
    // node totals (sum of |shown| over the visible cells)
    const srcTot = new Float64Array(S);
    const tgtTot = new Float64Array(S);
    for (const i of vis) {
      for (const c of vcols) {
        const a = Math.abs(d[i * nc + c]);
        if (Number.isFinite(a)) {
          srcTot[i] += a;
          tgtTot[mv.cols[c]] += a;
        }
      }
    }
    let maxTot = 0;
    for (let i = 0; i < S; i++) maxTot = Math.max(maxTot, srcTot[i], tgtTot[i]);

    const mode = state.layout === "auto" ? (n <= 40 ? "rows" : "columns") : state.layout;
    const wrapW = Math.max(360, el["flow-wrap"].clientWidth - 4);
    let maxChars = 1;
    for (const i of vis) maxChars = Math.max(maxChars, label(i).length);
    const rMax = 11.5 * state.nodeScale;
    const idx = new Map(vis.map((t, k) => [t, k]));
    let W;
    let H;
    let srcXY;
    let tgtXY;
    let curve;
    let srcLabel;
    let tgtLabel;
    if (mode === "rows") {
      const sp = clamp((wrapW - 80) / Math.max(1, n - 1), Math.max(22, 2 * rMax + 2), 96);
      const rotate = sp < maxChars * 7 + 6;
      const labelH = rotate ? maxChars * 6.6 * 0.82 + 10 : 18;
      const gap = clamp(Math.max(n * 14, window.innerHeight * 0.36), 200, 380);
      const ySrc = labelH + rMax + 8;
      const yTgt = ySrc + gap;
      const span = sp * Math.max(0, n - 1);
      W = Math.max(wrapW, span + 80 + (rotate ? labelH * 0.7 : 0));
      H = yTgt + rMax + labelH + 12;
      const x0 = Math.max(40, (W - span - (rotate ? labelH * 0.7 : 0)) / 2);
      srcXY = (t) => [x0 + idx.get(t) * sp, ySrc];
      tgtXY = (t) => [x0 + idx.get(t) * sp, yTgt];
      const ym = (ySrc + yTgt) / 2;
      curve = (a, b) => `M${a[0]},${a[1]}C${a[0]},${ym} ${b[0]},${ym} ${b[0]},${b[1]}`;
      srcLabel = (r) => rotate
        ? `<text x="3" y="${-r - 5}" transform="rotate(-55 3 ${-r - 5})">`
        : `<text x="0" y="${-r - 6}" text-anchor="middle">`;
      tgtLabel = (r) => rotate
        ? `<text x="-3" y="${r + 12}" transform="rotate(55 -3 ${r + 12})">`
        : `<text x="0" y="${r + 16}" text-anchor="middle">`;
    } else {
      const sp = Math.max(18, 2 * rMax + 1);
      const labelW = maxChars * 7 + 14;
      const xSrc = labelW + rMax + 8;
      const xTgt = xSrc + clamp(wrapW - 2 * labelW - 2 * rMax - 24, 220, 520);
      W = xTgt + rMax + labelW + 12;
      H = 16 + n * sp;
      srcXY = (t) => [xSrc, 10 + sp / 2 + idx.get(t) * sp];
      tgtXY = (t) => [xTgt, 10 + sp / 2 + idx.get(t) * sp];
      const xm = (xSrc + xTgt) / 2;
      curve = (a, b) => `M${a[0]},${a[1]}C${xm},${a[1]} ${xm},${b[1]} ${b[0]},${b[1]}`;
      srcLabel = (r) => `<text x="${-r - 5}" y="4" text-anchor="end">`;
      tgtLabel = (r) => `<text x="${r + 5}" y="4">`;
    }

    const hl = (i, j) => (sel === null ? "" : i === sel ? " lig-hl-out" : j === sel
      ? " lig-hl-in" : " lig-dim");
    edges.sort((a, b) => {
      const ha = sel !== null && (a[0] === sel || mv.cols[a[1]] === sel) ? 1 : 0;
      const hb = sel !== null && (b[0] === sel || mv.cols[b[1]] === sel) ? 1 : 0;
      return ha - hb || Math.abs(d[a[0] * nc + a[1]]) - Math.abs(d[b[0] * nc + b[1]]);
    });
    const parts = [];
    parts.push(`<g class="lig-edges">`);
    for (const [i, c] of edges) {
      const j = mv.cols[c];
      const v = d[i * nc + c];
      const t = max > 0 ? Math.abs(v) / max : 0;
      const w = ((0.6 + 5.4 * t) * state.edgeScale).toFixed(2);
      const op = (0.18 + 0.72 * t).toFixed(3);
      parts.push(`<path class="lig-edge${v < 0 ? " lig-neg" : ""}${hl(i, j)}" ` +
        `d="${curve(srcXY(i), tgtXY(j))}" stroke="${solid(v)}" stroke-width="${w}" ` +
        `stroke-opacity="${op}" data-src="${i}" data-tgt="${j}" ` +
        `data-value="${full(mv.m[i][c])}" data-shown="${v}"></path>`);
    }
    parts.push(`</g><g class="lig-nodes">`);
    const node = (role, t, xy, tot, isOff) => {
      const r = isOff ? 2.5 * state.nodeScale
        : (2.5 + 9 * Math.sqrt(maxTot > 0 ? tot / maxTot : 0)) * state.nodeScale;
      const cls = "lig-node" + (isOff ? " lig-off" : "") + (special[t] ? " lig-special" : "") +
        (t === sel ? " lig-selected" : "");
      const lab = role === "src" ? srcLabel(r) : tgtLabel(r);
      return `<g class="${cls}" data-role="${role}" data-token="${t}" data-total="${tot}" ` +
        `transform="translate(${xy[0].toFixed(1)},${xy[1].toFixed(1)})">` +
        `<circle r="${r.toFixed(2)}"></circle>${lab}${esc(label(t))}</text></g>`;
    };
    for (const i of vis) parts.push(node("src", i, srcXY(i), srcTot[i], false));
    for (const j of vis) parts.push(node("tgt", j, tgtXY(j), tgtTot[j], !mv.colOf.has(j)));
    parts.push("</g>");
    const svg = el.flow;
    svg.setAttribute("width", Math.ceil(W));
    svg.setAttribute("height", Math.ceil(H));
    svg.setAttribute("viewBox", `0 0 ${Math.ceil(W)} ${Math.ceil(H)}`);
    svg.setAttribute("data-edges", String(edges.length));
    svg.setAttribute("data-layout", mode);
    svg.innerHTML = parts.join("");
    return { max, drawn: edges.length, candidates };
  }

  /* ---------- heatmap view ---------- */

  const CANVAS_FROM = 40000;  // cells; beyond, the heatmap is drawn on a canvas

  /** The heatmap as canvas pixels (long inputs): rows = sources, columns = targets; a
   * click selects the source token, hovering names the cell. */
  function renderCanvas(mv, vis, vcols, max) {
    const wrapW = Math.max(360, el["heatmap-wrap"].clientWidth - 4);
    const margin = 48;
    const fit = Math.floor((wrapW - margin) / Math.max(1, vcols.length));
    // a canvas side stays ≤ 16,384 px and its area ≤ 1.2e8 px (browsers' limits)
    const n = Math.max(vis.length, vcols.length, 1);
    const most = Math.max(1, Math.min(Math.floor(16384 / n),
      Math.floor(Math.sqrt(1.2e8 / Math.max(1, vis.length * vcols.length)))));
    const cell = Math.min(most, state.cell > 0 ? state.cell : clamp(fit, 1, 48));
    const W = margin + cell * vcols.length;
    const H = margin + cell * vis.length;
    const cv = el.canvas;
    cv.width = W;
    cv.height = H;
    const ctx = cv.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, W, H);
    const img = ctx.createImageData(cell * vcols.length, cell * vis.length);
    const px = img.data;
    const rowW = cell * vcols.length;
    const col = [0, 0, 0];
    const rgb = (v) => {  // colour(v, max, 0) as numbers
      if (!Number.isFinite(v)) {
        col[0] = col[1] = col[2] = 204;
        return;
      }
      const t = max > 0 ? Math.min(1, Math.abs(v) / max) : 0;
      const base = !state.signed ? ABS : v < 0 ? NEG : POS;
      for (let q = 0; q < 3; q++) col[q] = Math.round(255 + (base[q] - 255) * t);
    };
    for (let r = 0; r < vis.length; r++) {
      const i = vis[r];
      for (let k = 0; k < vcols.length; k++) {
        rgb(shown(mv, i, vcols[k]));
        for (let dy = 0; dy < cell; dy++) {
          let o = ((r * cell + dy) * rowW + k * cell) * 4;
          for (let dx = 0; dx < cell; dx++, o += 4) {
            px[o] = col[0];
            px[o + 1] = col[1];
            px[o + 2] = col[2];
            px[o + 3] = 255;
          }
        }
      }
    }
    ctx.putImageData(img, margin, margin);
    ctx.fillStyle = "#333";
    ctx.font = "10px sans-serif";
    const every = Math.max(1, Math.ceil(40 / cell));
    vcols.forEach((c, k) => {
      if (k % every === 0) ctx.fillText(String(mv.cols[c]), margin + k * cell, margin - 6);
    });
    vis.forEach((i, r) => {
      if (r % every === 0) ctx.fillText(String(i), 2, margin + r * cell + Math.min(cell, 10));
    });
    const sel = state.selected;
    if (sel !== null) {
      ctx.strokeStyle = "#000";
      const r = vis.indexOf(sel);
      if (r >= 0) ctx.strokeRect(margin, margin + r * cell, rowW, cell);
      const k = vcols.findIndex((c) => mv.cols[c] === sel);
      if (k >= 0) ctx.strokeRect(margin + k * cell, margin, cell, cell * vis.length);
    }
    const at = (e) => {
      const b = cv.getBoundingClientRect();
      const r = Math.floor((e.clientY - b.top - margin) / cell);
      const k = Math.floor((e.clientX - b.left - margin) / cell);
      return r >= 0 && r < vis.length && k >= 0 && k < vcols.length ? [vis[r], vcols[k]] : null;
    };
    cv.onclick = (e) => {
      const hit = at(e);
      if (hit) select(hit[0]);
    };
    cv.onmousemove = (e) => {
      const hit = at(e);
      if (!hit) return;
      const [i, c] = hit;
      el.tooltip.textContent = `${tokText(i)} → ${tokText(mv.cols[c])}: ${full(mv.m[i][c])}`;
      el.tooltip.hidden = false;
      el.tooltip.style.left = e.clientX + 14 + "px";
      el.tooltip.style.top = e.clientY + 14 + "px";
    };
    cv.setAttribute("data-cells", String(vis.length * vcols.length));
    cv.setAttribute("data-cell", String(cell));
  }

  function renderHeatmap(mv) {
    const vis = visibleTokens();
    const vcols = [];
    for (let c = 0; c < mv.cols.length; c++) if (!hidden(mv.cols[c])) vcols.push(c);
    let max = 0;
    for (const i of vis) {
      for (const c of vcols) {
        const v = shown(mv, i, c);
        if (Number.isFinite(v)) max = Math.max(max, Math.abs(v));
      }
    }
    const big = vis.length * vcols.length > CANVAS_FROM;
    el.canvas.hidden = !big;
    el.heatmap.style.display = big ? "none" : "";
    if (big) {
      el.heatmap.innerHTML = "";
      renderCanvas(mv, vis, vcols, max);
      return { max };
    }
    let rowChars = 1;
    for (const i of vis) rowChars = Math.max(rowChars, label(i).length);
    let colChars = 1;
    for (const c of vcols) colChars = Math.max(colChars, label(mv.cols[c]).length);
    const wrapW = Math.max(360, el["heatmap-wrap"].clientWidth - 4);
    const labelW = rowChars * 6.6 + 26;
    const cell = clamp(Math.floor((wrapW - labelW - 40) / Math.max(1, vcols.length)), 8, 48);
    const font = Math.min(12, cell - 1);
    const labelH = colChars * font * 0.6 * 0.82 + 14;
    const x0 = labelW;
    const y0 = labelH;
    const W = x0 + cell * vcols.length + labelH * 0.6 + 10;
    const H = y0 + cell * vis.length + 10;
    const sel = state.selected;
    const parts = [];
    parts.push(`<g class="lig-hm-labels" font-size="${font}">`);
    vis.forEach((i, r) => {
      parts.push(`<text class="lig-hm-label${i === sel ? " lig-selected" : ""}" ` +
        `data-role="src" data-token="${i}" x="${x0 - 5}" y="${y0 + r * cell + cell / 2 + font / 3}" ` +
        `text-anchor="end">${esc(label(i))}</text>`);
    });
    vcols.forEach((c, k) => {
      const j = mv.cols[c];
      const x = x0 + k * cell + cell / 2 + font / 3;
      const y = y0 - 5;
      parts.push(`<text class="lig-hm-label${j === sel ? " lig-selected" : ""}" ` +
        `data-role="tgt" data-token="${j}" x="${x}" y="${y}" ` +
        `transform="rotate(-55 ${x} ${y})">${esc(label(j))}</text>`);
    });
    parts.push(`</g><g class="lig-cells">`);
    const text = cell >= 34 && vcols.length <= 24;
    const texts = [];
    vis.forEach((i, r) => {
      vcols.forEach((c, k) => {
        const v = shown(mv, i, c);
        const x = x0 + k * cell;
        const y = y0 + r * cell;
        parts.push(`<rect class="lig-cell" x="${x}" y="${y}" width="${cell}" ` +
          `height="${cell}" fill="${Number.isFinite(v) ? colour(v, max, 0) : "#ccc"}" ` +
          `data-src="${i}" data-tgt="${mv.cols[c]}" data-value="${full(mv.m[i][c])}" ` +
          `data-shown="${v}"></rect>`);
        if (text) {
          const dark = max > 0 && Math.abs(v) / max > 0.55;
          texts.push(`<text x="${x + cell / 2}" y="${y + cell / 2 + 3}" ` +
            `class="lig-cell-text${dark ? " lig-on-dark" : ""}">${short(v)}</text>`);
        }
      });
    });
    parts.push("</g>");
    if (texts.length) parts.push(`<g class="lig-cell-texts">${texts.join("")}</g>`);
    if (sel !== null) {
      const r = vis.indexOf(sel);
      if (r >= 0) {
        parts.push(`<rect class="lig-hm-sel" data-sel="row" x="${x0}" y="${y0 + r * cell}" ` +
          `width="${cell * vcols.length}" height="${cell}"></rect>`);
      }
      const k = vcols.findIndex((c) => mv.cols[c] === sel);
      if (k >= 0) {
        parts.push(`<rect class="lig-hm-sel" data-sel="col" x="${x0 + k * cell}" y="${y0}" ` +
          `width="${cell}" height="${cell * vis.length}"></rect>`);
      }
    }
    const svg = el.heatmap;
    svg.setAttribute("width", Math.ceil(W));
    svg.setAttribute("height", Math.ceil(H));
    svg.setAttribute("viewBox", `0 0 ${Math.ceil(W)} ${Math.ceil(H)}`);
    svg.setAttribute("data-cells", String(vis.length * vcols.length));
    svg.innerHTML = parts.join("");
    return { max };
  }

  /* ---------- a measure beside LIG ---------- */

  const MEASURE_MAX = 256;  // tokens: beyond, an SVG of S² cells is too slow to draw

  /** The selected context-mixing measure of this layer as its own heatmap (rows sources,
   * columns targets, as LIG's), on its own scale: |value| / the largest shown. */
  function renderMeasure() {
    const ld = layerData();
    const block = state.measure && ld.measures ? ld.measures[state.measure] : null;
    el["measure-panel"].hidden = !block;
    if (!block) {
      el["measure-map"].innerHTML = "";
      return;
    }
    const vis = visibleTokens();
    if (vis.length > MEASURE_MAX) {
      el["measure-map"].innerHTML = "";
      el["measure-title"].textContent = `${state.measure}, layer ${state.layer}: the panel ` +
        `draws up to ${MEASURE_MAX} tokens (${vis.length} shown); plot it with ` +
        `lig-jax plot --measure ${state.measure} --window i:j`;
      return;
    }
    if (!block.matrix) block.matrix = densify(block.sparse, S, S);
    let max = 0;
    for (const i of vis) {
      for (const j of vis) {
        const v = Math.abs(num(block.matrix[i][j]));
        if (Number.isFinite(v)) max = Math.max(max, v);
      }
    }
    let chars = 1;
    for (const i of vis) chars = Math.max(chars, label(i).length);
    const cell = clamp(Math.floor(420 / Math.max(1, vis.length)), 3, 24);
    const font = Math.min(11, cell - 1);
    const x0 = chars * 6 + 20;
    const y0 = chars * font * 0.5 + 14;
    const parts = [];
    if (font >= 6) {
      parts.push(`<g font-size="${font}">`);
      vis.forEach((i, r) => {
        parts.push(`<text x="${x0 - 4}" y="${y0 + r * cell + cell / 2 + font / 3}" ` +
          `text-anchor="end">${esc(label(i))}</text>`);
        const x = x0 + r * cell + cell / 2 + font / 3;
        parts.push(`<text x="${x}" y="${y0 - 4}" transform="rotate(-55 ${x} ${y0 - 4})">` +
          `${esc(label(i))}</text>`);
      });
      parts.push("</g>");
    }
    vis.forEach((i, r) => {
      vis.forEach((j, k) => {
        const v = num(block.matrix[i][j]);
        const fill = Number.isFinite(v) ? colourAbs(v, max) : "#ccc";
        parts.push(`<rect class="lig-mcell" x="${x0 + k * cell}" y="${y0 + r * cell}" ` +
          `width="${cell}" height="${cell}" fill="${fill}" data-src="${i}" data-tgt="${j}" ` +
          `data-value="${full(v)}"><title>${esc(label(i))} → ${esc(label(j))}: ` +
          `${full(v)}</title></rect>`);
      });
    });
    const W = x0 + cell * vis.length + y0 * 0.6 + 10;
    const H = y0 + cell * vis.length + 10;
    const svg = el["measure-map"];
    svg.setAttribute("width", Math.ceil(W));
    svg.setAttribute("height", Math.ceil(H));
    svg.setAttribute("viewBox", `0 0 ${Math.ceil(W)} ${Math.ceil(H)}`);
    svg.setAttribute("data-cells", String(vis.length * vis.length));
    svg.innerHTML = parts.join("");
    el["measure-title"].textContent = `${state.measure}, layer ${state.layer} ` +
      `(rows sources, columns targets; max ${short(max)})` +
      (block.approx || block.sparse ? `, top ${compact ? compact.top_k : ""} per target` : "");
  }

  function colourAbs(v, max) {
    const t = max > 0 ? clamp(Math.abs(v) / max, 0, 1) : 0;
    const mix = (k) => Math.round(255 + (ABS[k] - 255) * (0.04 + 0.96 * t));
    return "rgb(" + mix(0) + "," + mix(1) + "," + mix(2) + ")";
  }

  /* ---------- side panels ---------- */

  function valueTable(id, rows, mv, caption) {
    let maxAbs = 0;
    for (const r of rows) if (Number.isFinite(r.v)) maxAbs = Math.max(maxAbs, Math.abs(r.v));
    rows.sort((a, b) => (Math.abs(num(b.v)) || 0) - (Math.abs(num(a.v)) || 0));
    const showCol = state.normalize || !state.signed;
    const body = rows.map((r) => {
      const w = maxAbs > 0 && Number.isFinite(r.v) ? (100 * Math.abs(r.v) / maxAbs) : 0;
      const other = r.src === state.selected ? r.tgt : r.src;
      return `<tr data-src="${r.src}" data-tgt="${r.tgt}" data-value="${full(r.raw)}"` +
        `${hidden(other) ? ' class="lig-hidden-row"' : ""}>` +
        `<td class="lig-tok" data-token="${other}">${esc(tokText(other))}</td>` +
        `<td class="lig-val">${full(r.raw)}</td>` +
        (showCol ? `<td class="lig-shown">${short(r.v)}</td>` : "") +
        `<td class="lig-bar"><span class="${r.v < 0 ? "lig-neg" : "lig-pos"}" ` +
        `style="width:${w.toFixed(1)}%"></span></td></tr>`;
    }).join("");
    return `<table id="${id}" class="lig-table"><caption>${caption}</caption>` +
      `<thead><tr><th>${id.endsWith("in") ? "source i" : "target j"}</th>` +
      `<th>matrix[i][j]</th>${showCol ? "<th>shown</th>" : ""}<th></th></tr></thead>` +
      `<tbody>${body}</tbody></table>`;
  }

  function renderValues(mv) {
    const k = state.selected;
    if (k === null) {
      el.values.innerHTML = `<h2>Values</h2><p class="lig-hint">Click a token (in the token ` +
        `strip, the flow graph or the heatmap) to see its incoming and outgoing flows.</p>`;
      return;
    }
    let h = `<h2>Values: token ${esc(tokText(k))}</h2>`;
    if (!mv) {
      el.values.innerHTML = h + `<p class="lig-hint">Layer ${esc(state.layer)} has no z→z ` +
        `matrix.</p>`;
      return;
    }
    h += `<p class="lig-note">layer ${esc(state.layer)}, ${state.route} route; ` +
      `matrix[i][j] = source i → target j, full stored precision.</p>`;
    const c = mv.colOf.get(k);
    if (c === undefined) {
      h += `<p class="lig-hint" id="lig-values-in-missing">Token ${k} is not a target column ` +
        `of this route.</p>`;
    } else {
      const rows = [];
      for (let i = 0; i < S; i++) {
        rows.push({ src: i, tgt: k, raw: mv.m[i][c], v: shown(mv, i, c) });
      }
      h += valueTable("lig-values-in", rows, mv,
        `incoming: column j = ${k} (sources → ${esc(tokens[k])})`);
    }
    const out = mv.cols.map((j, cc) => ({ src: k, tgt: j, raw: mv.m[k][cc], v: shown(mv, k, cc) }));
    h += valueTable("lig-values-out", out, mv,
      `outgoing: row i = ${k} (${esc(tokens[k])} → targets)`);
    el.values.innerHTML = h;
  }

  function renderTargetPanel() {
    const ld = layerData();
    const k = state.selected;
    let h = "<h2>Per target: z→u per head and u→z per head</h2>";
    const tg = ld.targets;
    if (!tg) {
      el["target-panel"].innerHTML = h + `<p class="lig-hint">Layer ${esc(state.layer)} has ` +
        `no per-target blocks (explain with granularity att / mlp).</p>`;
      return;
    }
    if (k === null) {
      el["target-panel"].innerHTML = h + `<p class="lig-hint">Click a token to see its ` +
        `per-head z→u (heads × sources) and u→z per head.</p>`;
      return;
    }
    const t = tg[String(k)];
    if (!t) {
      const have = Object.keys(tg).join(", ");
      el["target-panel"].innerHTML = h + `<p class="lig-hint">Token ${k} has no per-target ` +
        `block in layer ${esc(state.layer)} (targets: ${esc(have)}).</p>`;
      return;
    }
    h = `<h2>Per target ${esc(tokText(k))}, layer ${esc(state.layer)}: z→u per head and ` +
      `u→z per head</h2>`;
    h += `<div class="lig-charts">`;
    if (t.z2u) h += `<div class="lig-chart">${z2uChart(t.z2u, k)}</div>`;
    if (t.u2z) h += `<div class="lig-chart">${u2zChart(t.u2z, k)}</div>`;
    h += `</div>`;
    if (!t.z2u && !t.u2z) h += `<p class="lig-hint">No z→u / u→z in this block.</p>`;
    el["target-panel"].innerHTML = h;
  }

  function z2uChart(z, k) {
    const vis = visibleTokens();
    const heads = z.heads;
    if (!z.matrix) {  // compact page: top-k sources per head, the others 0
      const rows = densify(z.sparse, S, heads.length);  // [S][H']
      z.matrix = heads.map((_, r) => Float64Array.from(rows, (row) => row[r]));
    }
    let max = 0;
    for (let r = 0; r < heads.length; r++) {
      for (const i of vis) {
        const v = num(z.matrix[r][i]);
        if (Number.isFinite(v)) max = Math.max(max, Math.abs(v));
      }
    }
    const cell = clamp(Math.floor(520 / Math.max(1, vis.length)), 4, 30);
    const rowH = clamp(cell, 10, 14);
    const labelW = 30;
    const showCols = cell >= 9;
    let colChars = 1;
    for (const i of vis) colChars = Math.max(colChars, label(i).length);
    const labelH = showCols ? colChars * 5.2 + 10 : 6;
    const W = labelW + cell * vis.length + (showCols ? labelH * 0.6 : 0) + 6;
    const H = labelH + rowH * heads.length + 4;
    const p = [];
    heads.forEach((hd, r) => {
      p.push(`<text x="${labelW - 4}" y="${labelH + r * rowH + rowH / 2 + 4}" ` +
        `text-anchor="end">h${hd}</text>`);
      vis.forEach((i, c) => {
        const v = num(z.matrix[r][i]);
        p.push(`<rect class="lig-z2u-cell" x="${labelW + c * cell}" y="${labelH + r * rowH}" ` +
          `width="${cell}" height="${rowH}" ` +
          `fill="${Number.isFinite(v) ? colour(state.signed ? v : Math.abs(v), max, 0) : "#ccc"}" ` +
          `data-head="${hd}" data-src="${i}" data-tgt="${k}" data-value="${full(z.matrix[r][i])}">` +
          `</rect>`);
      });
    });
    if (showCols) {
      vis.forEach((i, c) => {
        const x = labelW + c * cell + cell / 2 + 3;
        const y = labelH - 4;
        p.push(`<text class="lig-small" x="${x}" y="${y}" transform="rotate(-55 ${x} ${y})">` +
          `${esc(label(i))}</text>`);
      });
    }
    return `<h3>z→u per head <span class="lig-note">(baseline ${esc(z.baseline)}; ` +
      `heads × sources, max |v| ${short(max)})</span></h3>` +
      `<div class="lig-scroll-x"><svg id="lig-z2u" width="${Math.ceil(W)}" ` +
      `height="${Math.ceil(H)}" data-heads="${heads.length}">${p.join("")}</svg></div>`;
  }

  function u2zChart(u, k) {
    const vals = u.per_head.map(num);
    let max = 0;
    let neg = false;
    for (const v of vals) {
      if (Number.isFinite(v)) {
        max = Math.max(max, Math.abs(v));
        if (v < 0) neg = true;
      }
    }
    const labelW = 30;
    const barW = 190;
    const rowH = 15;
    const zero = labelW + (neg ? barW / 2 : 0);
    const scale = max > 0 ? (neg ? barW / 2 : barW) / max : 0;
    const p = [];
    vals.forEach((v, h) => {
      const y = 4 + h * rowH;
      const w = Number.isFinite(v) ? Math.abs(v) * scale : 0;
      const x = v < 0 ? zero - w : zero;
      p.push(`<text x="${labelW - 4}" y="${y + 10}" text-anchor="end">h${h}</text>` +
        `<rect class="lig-u2z-bar" x="${x.toFixed(2)}" y="${y + 1}" width="${w.toFixed(2)}" ` +
        `height="${rowH - 3}" fill="${solid(v)}" data-head="${h}" data-tgt="${k}" ` +
        `data-value="${full(u.per_head[h])}"></rect>` +
        `<text class="lig-small" x="${labelW + barW + 6}" y="${y + 10}">${short(v)}</text>`);
    });
    p.push(`<line x1="${zero}" x2="${zero}" y1="2" y2="${4 + vals.length * rowH}" ` +
      `class="lig-axis"></line>`);
    const H = 8 + vals.length * rowH;
    return `<h3>u→z per head <span class="lig-note">(baseline ${esc(u.baseline)}; summed ` +
      `over the ${vals.length} contiguous d/H slices of u)</span></h3>` +
      `<svg id="lig-u2z" width="${labelW + barW + 60}" height="${H}" ` +
      `data-heads="${vals.length}">${p.join("")}</svg>`;
  }

  /* ---------- render ---------- */

  function syncControls(ld) {
    const have = routesOf(ld);
    for (const r of ROUTES) {
      const b = el["route-" + r];
      if (!b) continue;
      b.hidden = !ld[r];
      b.classList.toggle("lig-on", state.route === r);
      b.setAttribute("aria-pressed", String(state.route === r));
    }
    el.routes.classList.toggle("lig-none", have.length === 0);
    for (const v of ["flow", "heatmap"]) {
      el["view-" + v].classList.toggle("lig-on", state.view === v);
      el["view-" + v].setAttribute("aria-pressed", String(state.view === v));
    }
    el.layer.value = state.layer;
    const at = layerKeys.indexOf(state.layer);
    el.prev.disabled = at <= 0;
    el.next.disabled = at >= layerKeys.length - 1;
    el.play.textContent = state.timer ? "Pause" : "Play";
    el["threshold-out"].textContent = state.threshold.toFixed(2);
    let b = "";
    if (state.route === "direct") b = "baseline: " + ld.direct.baseline;
    else if (state.route === "composed") {
      b = "baseline_att: " + ld.composed.baseline_att + ", baseline_mlp: " +
        ld.composed.baseline_mlp;
    }
    el.baseline.textContent = b;
    for (const btn of el.tokens.children) {
      const i = Number(btn.dataset.token);
      btn.classList.toggle("lig-selected", i === state.selected);
      btn.classList.toggle("lig-hidden-tok", hidden(i));
    }
  }

  function render() {
    const t0 = performance.now();
    const ld = layerData();
    if (!state.route || !ld[state.route]) {
      state.route = ld[state.routePref] ? state.routePref : routesOf(ld)[0] || null;
    }
    syncControls(ld);
    const mv = currentMatrix();
    el.empty.hidden = !!mv;
    el["flow-wrap"].hidden = !mv || state.view !== "flow";
    el["heatmap-wrap"].hidden = !mv || state.view !== "heatmap";
    let legend = "";
    if (!mv) {
      el.empty.textContent = `Layer ${state.layer} has no z→z matrix (explain with ` +
        `granularity layer, or att and mlp with all heads, for one). Per-target blocks, if ` +
        `any, are on the right.`;
      el.flow.innerHTML = "";
      el.heatmap.innerHTML = "";
    } else if (state.view === "flow") {
      el.heatmap.innerHTML = "";
      const info = renderFlow(mv);
      legend = `${info.drawn} of ${info.candidates} edges drawn` +
        (state.topk > 0 ? ` (top ${state.topk} per target` : " (all") +
        (state.threshold > 0 ? `, |value| ≥ ${state.threshold.toFixed(2)} × max)` : ")") +
        ` · max |shown| ${short(info.max)}`;
    } else {
      el.flow.innerHTML = "";
      const info = renderHeatmap(mv);
      legend = `max |shown| ${short(info.max)}`;
    }
    if (mv) {
      const scale = state.signed
        ? `<span class="lig-swatch lig-grad-signed"></span> − … 0 … +`
        : `<span class="lig-swatch lig-grad-abs"></span> 0 … |max|`;
      legend = `<span>${scale}</span><span>${legend}</span>` +
        (state.normalize ? "<span>columns normalised (÷ Σ|column|)</span>" : "") +
        (mv.block.approx ? `<span>top ${compact.top_k} sources per target</span>` : "");
    }
    el.legend.innerHTML = legend;
    renderValues(mv);
    renderTargetPanel();
    renderMeasure();
    app.dataset.measure = state.measure;
    app.dataset.layer = state.layer;
    app.dataset.route = state.route || "none";
    app.dataset.view = state.view;
    app.dataset.selected = state.selected === null ? "" : String(state.selected);
    app.dataset.normalize = String(state.normalize);
    app.dataset.signed = String(state.signed);
    app.dataset.hideSpecial = String(state.hideSpecial);
    app.dataset.playing = String(!!state.timer);
    app.dataset.renderMs = (performance.now() - t0).toFixed(1);
    app.dataset.renders = String(Number(app.dataset.renders || 0) + 1);
    if (app.dataset.ready !== "1") {  // ms from the start of navigation to the first view
      app.dataset.readyMs = performance.now().toFixed(0);
    }
    app.dataset.ready = "1";
  }

  let pending = 0;
  function renderSoon() {
    if (!pending) {
      pending = requestAnimationFrame(() => {
        pending = 0;
        render();
      });
    }
  }

  /* ---------- interaction ---------- */

  function setLayer(key) {
    if (!(key in data.layers)) return;
    state.layer = key;
    render();
  }

  function step(delta) {
    const at = layerKeys.indexOf(state.layer) + delta;
    if (at >= 0 && at < layerKeys.length) setLayer(layerKeys[at]);
  }

  function stopPlay() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
  }

  function togglePlay() {
    if (state.timer) {
      stopPlay();
      render();
      return;
    }
    if (layerKeys.indexOf(state.layer) >= layerKeys.length - 1) state.layer = layerKeys[0];
    state.timer = setInterval(() => {
      const at = layerKeys.indexOf(state.layer);
      if (at >= layerKeys.length - 1) {
        stopPlay();
        render();
      } else {
        setLayer(layerKeys[at + 1]);
      }
    }, 1200);
    render();
  }

  function select(i) {
    state.selected = state.selected === i ? null : i;
    render();
  }

  el.prev.addEventListener("click", () => step(-1));
  el.next.addEventListener("click", () => step(1));
  el.play.addEventListener("click", togglePlay);
  el.layer.addEventListener("change", () => setLayer(el.layer.value));
  for (const r of ROUTES) {
    if (!el["route-" + r]) continue;
    el["route-" + r].addEventListener("click", () => {
      state.route = r;
      state.routePref = r;
      render();
    });
  }
  if (el.measure) {
    el.measure.addEventListener("change", () => {
      state.measure = el.measure.value;
      renderSoon();
    });
  }
  for (const v of ["flow", "heatmap"]) {
    el["view-" + v].addEventListener("click", () => {
      state.view = v;
      render();
    });
  }
  el.threshold.addEventListener("input", () => {
    state.threshold = Number(el.threshold.value) || 0;
    renderSoon();
  });
  el.topk.addEventListener("input", () => {
    state.topk = Math.max(0, Math.floor(Number(el.topk.value) || 0));
    renderSoon();
  });
  el["edge-scale"].addEventListener("input", () => {
    state.edgeScale = Number(el["edge-scale"].value) || 1;
    renderSoon();
  });
  el["node-scale"].addEventListener("input", () => {
    state.nodeScale = Number(el["node-scale"].value) || 1;
    renderSoon();
  });
  el.normalize.addEventListener("change", () => {
    state.normalize = el.normalize.checked;
    render();
  });
  el.signed.addEventListener("change", () => {
    state.signed = el.signed.checked;
    render();
  });
  el["hide-special"].addEventListener("change", () => {
    state.hideSpecial = el["hide-special"].checked;
    render();
  });
  el.layout.addEventListener("change", () => {
    state.layout = el.layout.value;
    render();
  });
  el.cell.addEventListener("input", () => {
    state.cell = clamp(Math.floor(Number(el.cell.value) || 0), 0, 48);
    renderSoon();
  });

  /** Tokens whose text contains the query (case-insensitive; the tokenizers' word marks
   * Ġ ▁ ## ignored). */
  function matches(query) {
    const q = query.trim().toLowerCase();
    if (!q) return [];
    const out = [];
    tokens.forEach((t, i) => {
      if (t.replace(/^(Ġ|▁|##)/, "").toLowerCase().includes(q)) out.push(i);
    });
    return out;
  }

  function findNext() {
    const hits = matches(state.query);
    app.dataset.matches = String(hits.length);
    el["search-out"].textContent = state.query ? `${hits.length} match` +
      (hits.length === 1 ? "" : "es") : "";
    const hit = new Set(hits);
    for (const btn of el.tokens.children) {
      btn.classList.toggle("lig-match", hit.has(Number(btn.dataset.token)));
    }
    if (!hits.length) return;
    state.match = (state.match + 1) % hits.length;
    const i = hits[state.match];
    state.selected = i;
    render();
    const btn = el.tokens.children[i];
    if (btn && btn.scrollIntoView) btn.scrollIntoView({ block: "nearest" });
  }

  let searchTimer = 0;  // typing: search once the keys pause
  el.search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      state.query = el.search.value;
      state.match = -1;
      findNext();
    }, 250);
  });
  el.search.addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    clearTimeout(searchTimer);
    if (state.query !== el.search.value) {
      state.query = el.search.value;
      state.match = -1;
    }
    findNext();
  });

  app.addEventListener("click", (e) => {
    const hit = e.target.closest("[data-token]");
    if (hit && app.contains(hit)) select(Number(hit.getAttribute("data-token")));
  });

  document.addEventListener("keydown", (e) => {
    const tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") return;
    if (e.key === "ArrowLeft") step(-1);
    else if (e.key === "ArrowRight") step(1);
    else if (e.key === "Escape" && state.selected !== null) select(state.selected);
  });

  /* tooltips, computed from the data attributes of the hovered element */
  function tipFor(t) {
    const g = (a) => t.getAttribute(a);
    if (t.matches(".lig-edge, .lig-cell")) {
      const i = Number(g("data-src"));
      const j = Number(g("data-tgt"));
      const sh = Number(g("data-shown"));
      const raw = g("data-value");
      let s = `${tokText(i)} → ${tokText(j)}: ${raw}`;
      if (state.normalize || !state.signed) s += ` (shown ${short(sh)})`;
      return s;
    }
    if (t.matches(".lig-z2u-cell")) {
      return `head ${g("data-head")}: ${tokText(Number(g("data-src")))} → u of ` +
        `${tokText(Number(g("data-tgt")))}: ${g("data-value")}`;
    }
    if (t.matches(".lig-u2z-bar")) {
      return `u slice ${g("data-head")} → z of ${tokText(Number(g("data-tgt")))}: ` +
        `${g("data-value")}`;
    }
    if (t.matches(".lig-node")) {
      const role = g("data-role") === "src" ? "source" : "target";
      return `${role} ${tokText(Number(g("data-token")))} · Σ|shown| ` +
        `${short(Number(g("data-total")))} · click to select`;
    }
    return null;
  }

  document.addEventListener("mousemove", (e) => {
    if (e.target === el.canvas) return;  // the canvas names its cells itself
    const t = e.target.closest &&
      e.target.closest(".lig-edge, .lig-cell, .lig-z2u-cell, .lig-u2z-bar, .lig-node");
    const text = t ? tipFor(t) : null;
    if (!text) {
      el.tooltip.hidden = true;
      return;
    }
    el.tooltip.textContent = text;
    el.tooltip.hidden = false;
    const pad = 14;
    const r = el.tooltip.getBoundingClientRect();
    let x = e.clientX + pad;
    let y = e.clientY + pad;
    if (x + r.width > window.innerWidth - 4) x = e.clientX - r.width - pad;
    if (y + r.height > window.innerHeight - 4) y = e.clientY - r.height - pad;
    el.tooltip.style.left = Math.max(2, x) + "px";
    el.tooltip.style.top = Math.max(2, y) + "px";
  });

  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(render, 150);
  });

  render();
})();
