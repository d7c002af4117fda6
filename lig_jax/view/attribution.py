"""The page of an input attribution (`lig-jax view ATTRIBUTION -o page.html`): the tokens
coloured by each method's scores for a chosen target column, and, for the methods with
per-layer scores (lig_flow, the rollouts, attnlrp), the same tokens at a chosen hidden
state z^(l) — the flow followed layer by layer. One self-contained file, no network."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from ..e2e.attribute import Attribution
from ..files import write_text

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>%(title)s</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:70em;color:#222}
.m{margin:1.2em 0}.m h3{margin:.2em 0;font-size:1em}.m p{margin:.2em 0;color:#666;
font-size:.85em}.tok{display:inline-block;padding:.15em .3em;margin:.1em;border-radius:3px;
font-family:ui-monospace,monospace;font-size:.9em}
label{margin-right:1em}
</style></head><body>
<main id="lig-app">
<h2>%(title)s</h2>
<div>target <b id="spec"></b> &middot; column
<select id="col"></select> &middot; value <b id="val"></b></div>
<div id="methods"></div>
</main>
<script id="data" type="application/json">%(data)s</script>
<script>
const D = JSON.parse(document.getElementById('data').textContent);
const colSel = document.getElementById('col');
D.columns.forEach((c, i) => { const o = document.createElement('option');
  o.value = i; o.textContent = i + ': ' + c.label; colSel.appendChild(o); });
document.getElementById('spec').textContent = D.spec + ' (' + D.output + ')';
function colour(v, big) {
  const a = big > 0 ? Math.min(1, Math.abs(v) / big) : 0;
  return v >= 0 ? `rgba(214,39,40,${a})` : `rgba(31,119,180,${a})`;
}
function tokens(el, scores) {
  el.innerHTML = '';
  const big = Math.max(...scores.map(Math.abs));
  D.tokens.forEach((t, s) => { const sp = document.createElement('span');
    sp.className = 'tok'; sp.textContent = t; sp.style.background = colour(scores[s], big);
    sp.title = t + ': ' + scores[s].toPrecision(4); sp.dataset.score = scores[s];
    el.appendChild(sp); });
}
function draw() {
  const c = +colSel.value;
  document.getElementById('val').textContent = D.values[c].toPrecision(6);
  const box = document.getElementById('methods'); box.innerHTML = '';
  for (const m of D.methods) {
    const div = document.createElement('div'); div.className = 'm'; div.dataset.method = m.name;
    div.innerHTML = `<h3>${m.name}</h3><p>${m.description}</p>`;
    const row = document.createElement('div'); row.className = 'final'; div.appendChild(row);
    tokens(row, m.scores.map(r => r[c]));
    if (m.layers) {
      const L = m.layers.length - 1;
      const ctl = document.createElement('div');
      ctl.innerHTML = `<label>hidden state z<sup>(<span>${L}</span>)</sup>
        <input type="range" min="0" max="${L}" value="${L}"></label>`;
      const lay = document.createElement('div'); lay.className = 'layer';
      const slider = ctl.querySelector('input'), shown = ctl.querySelector('span');
      const at = () => { shown.textContent = slider.value;
        tokens(lay, m.layers[+slider.value].map(r => r[c])); };
      slider.addEventListener('input', at); div.appendChild(ctl); div.appendChild(lay); at();
    }
    box.appendChild(div);
  }
}
colSel.addEventListener('change', draw); draw();
document.getElementById('lig-app').dataset.ready = '1';
</script></body></html>
"""


def page_data(att: Attribution) -> dict:
    """What the page shows, as JSON-able data."""
    meta = att.meta
    methods = []
    for m in att.methods:
        entry = {"name": m, "description": meta["methods"][m].get("description", ""),
                 "scores": np.asarray(att.scores(m), float).tolist()}
        if f"methods/{m}/layers" in att.arrays:
            entry["layers"] = np.asarray(att.arrays[f"methods/{m}/layers"], float).tolist()
        methods.append(entry)
    return {"tokens": meta["tokens"], "spec": meta["target"]["spec"],
            "output": meta["target"]["output"], "columns": meta["target"]["columns"],
            "values": np.asarray(att.arrays["target/values"], float).tolist(),
            "methods": methods}


def write_attribution_page(att: Attribution, path: str | Path) -> Path:
    data = json.dumps(page_data(att), ensure_ascii=False).replace("</", "<\\/")
    title = html.escape(f"{att.meta['model']}: {att.meta['text']}"[:200])
    return write_text(path, PAGE % {"title": title, "data": data})
