"""Context-mixing measures: per-layer time next to one LIG layer, and value zeroing
against a per-source PyTorch loop, side by side in one run (`bench.py --only measures`,
or `python scripts/bench_measures.py`).

Rows, per model (all-MiniLM-L6-v2, SmolLM2-135M) and sentence length:

- per layer (layer 0, warm, best of `repeats`): attention + attention norms + ALTI
  together, value zeroing, all four measures together, and one LIG z→z layer under the
  ITB baseline (the reference's rule, 32 steps) — with the ratio all measures / LIG;
- value zeroing over every layer (one sentence, warm);
- the per-source loop in PyTorch (what Inseq does): per zeroed source one forward pass of
  the whole model in which every layer reads the clean input of its own layer and the
  source's value row is zeroed (hooks), the layers' outputs compared by cosine; per-layer
  time = its wall time / L. At long lengths `torch_sources` sources are timed and the
  time scaled to all S (the cost per source does not depend on which source), said in
  the row.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CHEAP = ["attention", "attention_norm", "alti"]
ALL = [*CHEAP, "value_zeroing"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def best(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time of `fn` after one warm-up call."""
    fn()
    out = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t)
    return out


def jax_rows(model: str, length: int, repeats: int, all_layers: bool) -> dict[str, Any]:
    import jax.numpy as jnp
    from bench_decoders import text_of

    from lig_jax import engine
    from lig_jax.api import tokenize
    from lig_jax.loading import load_model
    from lig_jax.memory import memory_budget
    from lig_jax.quadrature import resolve_rule
    from lig_jax.steps import step_plan

    lm = load_model(model)
    ids = tokenize(lm, text_of(lm, length))[0]
    budget = memory_budget(None)

    def layers_of(which: list[int]) -> Any:
        return engine.sentence_layers(lm, ids, which, dtype=jnp.float32, budget=budget)

    one = layers_of([0])
    rule = dict(lm.family.reference_rules)["z2z"]
    plan = step_plan(resolve_rule("reference", rule), 32)
    row = {"tokens": len(ids),
           "cheap_s": best(lambda: engine.measures(one, CHEAP), repeats),
           "value_zeroing_s": best(lambda: engine.measures(one, ["value_zeroing"]), repeats),
           "all_s": best(lambda: engine.measures(one, ALL), repeats),
           "lig_z2z_itb_s": best(lambda: engine.z2z_columns(one, "self_input_token", plan,
                                                            "fast"), max(1, repeats - 1))}
    row["all_over_lig"] = row["all_s"] / row["lig_z2z_itb_s"]
    if all_layers:
        every = layers_of(list(range(lm.config.num_layers)))
        row["value_zeroing_all_layers_s"] = best(
            lambda: engine.measures(every, ["value_zeroing"]), repeats)
    return row


def torch_model(model: str) -> tuple[Any, Any, Any]:
    """(HF torch base model, its block list, value-projection name) for `model`."""
    import torch
    import transformers

    from lig_jax.loading import default_model_folder, smollm2_gguf

    if model == "smollm2-135m":
        path = smollm2_gguf()
        hf = transformers.AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32,
            attn_implementation="eager").eval().model
        return hf, hf.layers, "self_attn.v_proj"
    hf = transformers.AutoModel.from_pretrained(str(default_model_folder()),
                                                attn_implementation="eager").eval()
    return hf, hf.encoder.layer, "attention.self.value"


def torch_loop(hf: Any, blocks: Any, value: str, ids: list[int], causal: bool,
               sources: int) -> float:
    """Seconds of the per-source loop over `sources` of the S sources, all layers."""
    import torch

    def module(block: Any) -> Any:
        m = block
        for part in value.split("."):
            m = getattr(m, part)
        return m

    x = torch.tensor([ids])
    clean_out: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, a, o: clean_out.append(
        (o[0] if isinstance(o, tuple) else o).detach())) for b in blocks]
    with torch.no_grad():
        states = hf(x, output_hidden_states=True).hidden_states
    for h in hooks:
        h.remove()
    clean_in = [states[l] for l in range(len(blocks))]
    raw = torch.zeros(len(blocks), len(ids), len(ids))
    t = time.perf_counter()
    for j in range(sources):
        got: list[torch.Tensor] = []

        def zero(m, a, o, j=j):
            o = o.clone()
            o[:, j] = 0.0
            return o

        def feed(m, args, kwargs, l):
            if args:
                return (clean_in[l], *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": clean_in[l]}

        hooks = [module(b).register_forward_hook(zero) for b in blocks]
        hooks += [b.register_forward_pre_hook(lambda m, a, k, l=l: feed(m, a, k, l),
                                              with_kwargs=True)
                  for l, b in enumerate(blocks)]
        hooks += [b.register_forward_hook(lambda m, a, o, got=got: got.append(
            (o[0] if isinstance(o, tuple) else o).detach())) for b in blocks]
        with torch.no_grad():
            hf(x)
        for h in hooks:
            h.remove()
        for l, out in enumerate(got):
            dist = 1.0 - torch.nn.functional.cosine_similarity(out[0], clean_out[l][0], -1)
            if causal:
                dist[:j] = 0.0
            raw[l, :, j] = dist  # [layer, target, source], as Inseq returns it transposed
    return time.perf_counter() - t


def run(lengths: Sequence[int] = (23, 129, 512), repeats: int = 2, torch_sources: int = 16,
        models: Sequence[str] = ("all-MiniLM-L6-v2", "smollm2-135m")) -> dict[str, Any]:
    """Every row (module doc): {model: {length: row}}."""
    from bench_decoders import text_of

    from lig_jax.api import tokenize
    from lig_jax.loading import load_model

    out: dict[str, Any] = {}
    for model in models:
        lm = load_model(model)
        hf, blocks, value = torch_model(model)
        causal = lm.family.architecture == "decoder"
        out[model] = {}
        for length in lengths:
            # a text of exactly `length` tokens must fit: the longest is max_tokens − 1
            # (text_of stops before the first word that would overflow)
            length = min(length, lm.config.max_tokens - 1)
            log(f"measures: {model}, {length} tokens")
            row = jax_rows(model, length, repeats, all_layers=length <= 32)
            ids = tokenize(lm, text_of(lm, length))[0]
            k = min(len(ids), torch_sources)
            torch_loop(hf, blocks, value, ids, causal, 1)  # warm
            loop = torch_loop(hf, blocks, value, ids, causal, k) * len(ids) / k
            row["torch_loop_per_layer_s"] = loop / len(blocks)
            row["torch_sources_timed"] = k
            row["torch_over_ours"] = row["torch_loop_per_layer_s"] / row["value_zeroing_s"]
            out[model][length] = row
    return out


def markdown(res: dict[str, Any]) -> str:
    lines = ["| model | tokens | attn+norm+ALTI (s/layer) | value zeroing (s/layer) | all "
             "measures (s/layer) | LIG z→z ITB (s/layer) | all / LIG | VZ all layers (s) | "
             "torch per-source loop (s/layer) | loop / ours |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model, rows in res.items():
        for _, r in sorted(rows.items()):
            scaled = ("" if r["torch_sources_timed"] == r["tokens"]
                      else f" ({r['torch_sources_timed']} of {r['tokens']} sources timed)")
            all_layers = r.get("value_zeroing_all_layers_s")
            lines.append(
                f"| {model} | {r['tokens']} | {r['cheap_s']:.4f} | {r['value_zeroing_s']:.4f} | "
                f"{r['all_s']:.4f} | {r['lig_z2z_itb_s']:.3f} | {r['all_over_lig']:.2f} | "
                f"{'' if all_layers is None else f'{all_layers:.3f}'} | "
                f"{r['torch_loop_per_layer_s']:.4f}{scaled} | {r['torch_over_ours']:.1f}× |")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse
    import json

    sys.path.insert(0, str(HERE))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", default="23,129,512")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--torch-sources", type=int, default=16)
    p.add_argument("--models", default="all-MiniLM-L6-v2,smollm2-135m")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    import jax

    jax.config.update("jax_default_matmul_precision", "float32")
    res = run([int(x) for x in a.lengths.split(",")], a.repeats, a.torch_sources,
              a.models.split(","))
    print(markdown(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
