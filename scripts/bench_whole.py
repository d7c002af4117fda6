"""Whole-model figures: a full explain (every layer, every granularity, the defaults) with
its time, its FLOPs and the share of this machine's matmul rate they ran at.

    python scripts/bench_whole.py [--quick] [--json whole.json]
    (also `python scripts/bench.py --only whole`)

Rows: all-MiniLM-L6-v2 at 29, 128 and 512 tokens and SmolLM2-135M at 128, 512 and 2,048
tokens (`--quick`: MiniLM 29 and 128, SmolLM2 128). Time: `explain_arrays` of the whole
model, warm (the best of `--repeats` calls after one that compiles). FLOPs: XLA's count
of every raw run the defaults need (`baselines`: z→z and z→u under ITB, u→z under the
zero baseline, the reference's rule on each path, 32 steps), per layer exactly as the
engine chunks it (`plan.layer_flops`, block loops unrolled over the blocks the targets
see), times the layers (blocks of one structure); the hidden-states forward is left out
(under 0.1 % here). The achieved rate is FLOPs / time, next to a float32 matmul's rate
measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FULL = (("default", 29), ("default", 128), ("default", 512), ("smollm2-135m", 128),
        ("smollm2-135m", 512), ("smollm2-135m", 2048))
QUICK = (("default", 29), ("default", 128), ("smollm2-135m", 128))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def whole_flops(lm: Any, ids: list[int], steps: int) -> float:
    """XLA-counted FLOPs of every default raw run at every layer, as the engine runs it."""
    import jax.numpy as jnp
    from bench_decoders import _flops, _nodes
    from flax import nnx

    from lig_jax import baselines
    from lig_jax.attribution.run import Dims, chunking, integrand_for
    from lig_jax.config import LIGConfig
    from lig_jax.engine import bucket_length
    from lig_jax.memory import memory_budget
    from lig_jax.plan import layer_flops

    block = lm.model.layers[0]
    gd, st = nnx.split(block)
    sb = bucket_length(len(ids), lm.config.max_tokens)
    causal = lm.family.architecture == "decoder"
    dims = Dims.of(block, lm.config.intermediate_size, sb, 4)
    total = 0.0
    for quantity, name in (("z2z", LIGConfig.baseline_layer), ("z2u", LIGConfig.baseline_att),
                           ("u2z", LIGConfig.baseline_mlp)):
        for raw in baselines.get(quantity, name).runs:
            integ = integrand_for(quantity, raw)
            alphas, weights = _nodes(lm, quantity, steps)
            plan = chunking(integ, dims, sb, block.num_heads, alphas.shape[0],
                            memory_budget(None))
            total += layer_flops(integ, gd, st, sb, block.num_heads, jnp.asarray(alphas),
                                 jnp.asarray(weights), plan, causal=causal, count=_flops)
    return total * lm.config.num_layers


def text_of(lm: Any, length: int) -> str:
    """Common words repeated until the tokenizer gives `length` tokens (or the closest
    shorter text; special tokens included)."""
    from bench_decoders import WORDS

    text, i = "", 0
    while True:
        cand = (text + " " + WORDS[i % len(WORDS)]).strip()
        if len(lm.tokenizer(cand)["input_ids"]) > length:
            return text
        text, i = cand, i + 1


def row(model: str, length: int, steps: int, repeats: int, rate: float) -> dict[str, Any]:
    from lig_jax.api import explain_arrays, tokenize
    from lig_jax.loading import load_model

    lm = load_model(None if model == "default" else model)
    text = text_of(lm, length)
    ids, _ = tokenize(lm, text)
    log(f"{model}, {len(ids)} tokens: compiling")
    t0 = time.perf_counter()
    explain_arrays(text, model=model, granularity="all", num_steps=steps)
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        explain_arrays(text, model=model, granularity="all", num_steps=steps)
        best = min(best, time.perf_counter() - t0)
    flops = whole_flops(lm, ids, steps)
    out = {"model": model, "tokens": len(ids), "layers": lm.config.num_layers,
           "first_s": first, "seconds": best, "gflop": flops / 1e9,
           "gflops_per_s": flops / 1e9 / best, "matmul_share": flops / 1e9 / best / rate}
    log(f"  {best:.2f} s warm ({first:.1f} s first), {out['gflop']:.0f} GFLOP, "
        f"{out['gflops_per_s']:.1f} GFLOP/s = {100 * out['matmul_share']:.0f} % of matmul")
    return out


def markdown(rows: list[dict[str, Any]], rate: float) -> str:
    lines = [f"float32 matmul rate (2048², jnp): {rate:.1f} GFLOP/s", "",
             "| model | tokens | layers | explain, every granularity (warm) | first call | "
             "GFLOP | GFLOP/s | % of matmul |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['tokens']} | {r['layers']} | {r['seconds']:.2f} s | "
                     f"{r['first_s']:.1f} s | {r['gflop']:.0f} | {r['gflops_per_s']:.1f} | "
                     f"{100 * r['matmul_share']:.0f} % |")
    return "\n".join(lines)


def run(quick: bool, steps: int = 32, repeats: int = 2) -> dict[str, Any]:
    import jax

    jax.config.update("jax_default_matmul_precision", "float32")
    from bench import matmul_rate

    rate = matmul_rate()
    rows = [row(m, n, steps, repeats, rate) for m, n in (QUICK if quick else FULL)]
    return {"matmul_gflops": rate, "rows": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the short rows only")
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    res = run(args.quick, args.steps, args.repeats)
    print(markdown(res["rows"], res["matmul_gflops"]))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
