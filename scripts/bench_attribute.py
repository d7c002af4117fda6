"""Input attributions and faithfulness: lig-jax against what users write today, side by
side in one run (`bench.py --only attribute`, or `python scripts/bench_attribute.py`).

Rows (SmolLM2-135M, this machine):

- `attribute`, per method and sentence length (warm: the second call of the same shape):
  ig (50 Gauss–Legendre steps), grad_x_input, attnlrp, the three measure rollouts and
  lig_flow (LIG's 30 layers; up to `flow_max` tokens);
- faithfulness on the first `sentences` sentences of the demo corpus with method ig and
  target next, both sides doing the same work per sentence — IG (50 steps, pad
  baseline), the
  comprehensiveness and sufficiency perturbations at 10 … 100 %, leave-one-out, and the
  greedy AOPC bounds (4 searches): lig-jax (`faithfulness`, batched jitted calls; cold:
  compiling included, as in a first run; warm: the same run again, as with the CLI's
  persistent compilation cache) against the loop in PyTorch
  (Captum's LayerIntegratedGradients on the embedding layer, then one `torch.no_grad`
  forward pass per perturbation), with the ratio.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODEL = "smollm2-135m"
METHODS = ("ig", "grad_x_input", "attnlrp", "attention_rollout", "alti_rollout",
           "value_zeroing_rollout", "lig_flow")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def attribute_rows(lengths: Sequence[int], flow_max: int) -> list[dict[str, Any]]:
    from bench_decoders import text_of

    from lig_jax.api import tokenize
    from lig_jax.e2e.attribute import attribute
    from lig_jax.loading import load_model

    lm = load_model(MODEL)
    rows = []
    for length in lengths:
        ids = tokenize(lm, text_of(lm, length))[0]
        row: dict[str, Any] = {"tokens": len(ids)}
        for m in METHODS:
            if m == "lig_flow" and length > flow_max:
                continue
            attribute(input_ids=ids, model=MODEL, methods=m)  # compile
            t = time.perf_counter()
            attribute(input_ids=ids, model=MODEL, methods=m)
            row[m] = time.perf_counter() - t
            log(f"  attribute {m} at {len(ids)} tokens: {row[m]:.2f} s")
        rows.append(row)
    return rows


def torch_faithfulness(texts: Sequence[str], steps: int) -> float:
    """Seconds of the PyTorch loop over `texts` (see the module doc)."""
    import torch
    import transformers
    from captum.attr import LayerIntegratedGradients

    from lig_jax.e2e.faithfulness import level_sizes
    from lig_jax.loading import load_model, smollm2_gguf

    lm = load_model(MODEL)  # the same pad token and special ids as lig-jax's pad baseline
    pad, special = lm.config.pad_token_id, set(lm.tokenizer.all_special_ids)

    path = smollm2_gguf()
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32,
        attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    t0 = time.perf_counter()
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        x = torch.tensor([ids])
        with torch.no_grad():
            top = int(hf(x).logits[0, -1].argmax())

        def f(i, top=top):
            return hf(input_ids=i).logits[:, -1, top]
        lig = LayerIntegratedGradients(f, hf.get_input_embeddings())
        base = torch.tensor([[pad if t not in special else t for t in ids]])
        scores = lig.attribute(x, baselines=base, n_steps=steps,
                               method="gausslegendre").sum(-1)[0].detach().tolist()

        def value(keep, ids=ids, top=top):
            with torch.no_grad():
                kept = [t for t, k in zip(ids, keep, strict=True) if k]
                return float(hf(torch.tensor([kept])).logits[0, -1, top])
        v = value([True] * len(ids))
        cand = list(range(1, len(ids)))
        order = sorted(cand, key=lambda r: (-scores[r], r))
        for m in level_sizes(len(cand)):
            top_m = set(order[:m])
            value([i not in top_m for i in range(len(ids))])
            value([i == 0 or i in top_m for i in range(len(ids))])
        for r in cand:
            value([i != r for i in range(len(ids))])
        for kind in ("comp", "suff"):
            for sign in (1, -1):
                chosen: list[int] = []
                for _ in cand:
                    best = None
                    for r in cand:
                        if r in chosen:
                            continue
                        sel = set(chosen) | {r}
                        keep = [(i not in sel) if kind == "comp" else (i == 0 or i in sel)
                                for i in range(len(ids))]
                        d = v - value(keep)
                        if best is None or sign * d > sign * best[0]:
                            best = (d, r)
                    chosen.append(best[1])
    return time.perf_counter() - t0


def faithfulness_row(sentences: int, steps: int) -> dict[str, Any]:
    from lig_jax.data.readers import read_corpus
    from lig_jax.e2e.faithrun import faithfulness

    texts = [" ".join(s.words) for s in read_corpus("demo").sentences[:sentences]]
    folder = Path(tempfile.mkdtemp(prefix="bench_faith_"))
    times = []
    try:  # cold: compiling included; warm: the same run again (its programs compiled)
        for run in ("cold", "warm"):
            t = time.perf_counter()
            faithfulness("demo", out=folder / run, model=MODEL, methods="ig",
                         limit=sentences, num_steps=steps, baseline="pad")
            times.append(time.perf_counter() - t)
            log(f"  faithfulness, lig-jax ({run}): {times[-1]:.1f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    loop = torch_faithfulness(texts, steps)
    log(f"  faithfulness, PyTorch loop: {loop:.1f} s")
    return {"sentences": sentences, "lig_jax_cold_s": times[0], "lig_jax_warm_s": times[1],
            "torch_loop_s": loop, "speedup_cold": loop / times[0],
            "speedup_warm": loop / times[1]}


def run(lengths: Sequence[int] = (23, 129, 512), flow_max: int = 129, sentences: int = 10,
        steps: int = 50) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    return {"attribute": attribute_rows(lengths, flow_max),
            "faithfulness": faithfulness_row(sentences, steps)}


def _attribute_table(rows: list[dict[str, Any]]) -> list[str]:
    head = "| method | " + " | ".join(f"{r['tokens']} tokens" for r in rows) + " |"
    lines = ["SmolLM2-135M, `attribute` per method (s, warm):", "", head,
             "|---|" + "---|" * len(rows)]
    for m in METHODS:
        cells = [f"{r[m]:.2f}" if m in r else "—" for r in rows]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def markdown(res: dict[str, Any]) -> str:
    lines = _attribute_table(res["attribute"]) if res["attribute"] else []
    f = res["faithfulness"]
    lines += [f"Faithfulness, {f['sentences']} demo sentences, ig (pad baseline), target "
              f"next: PyTorch loop {f['torch_loop_s']:.1f} s; lig-jax cold (compiling) "
              f"{f['lig_jax_cold_s']:.1f} s → {f['speedup_cold']:.2f}×, warm "
              f"{f['lig_jax_warm_s']:.1f} s → {f['speedup_warm']:.2f}×"]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", default="23,129,512", help="'' = the faithfulness row only")
    p.add_argument("--flow-max", type=int, default=129)
    p.add_argument("--sentences", type=int, default=10)
    p.add_argument("--steps", type=int, default=50)
    a = p.parse_args()
    res = run([int(x) for x in a.lengths.split(",") if x], a.flow_max, a.sentences, a.steps)
    print(markdown(res))
