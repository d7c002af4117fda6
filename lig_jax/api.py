"""`explain()`: text → tokens → hidden states → per-layer attributions → JSON dict.

The output keeps the reference's schema (spec §9): every reference key with the same
meaning and orientation (`matrix[i][j]` = source i → target j). Extra keys:
`quadrature`, `completeness` blocks, `z2z_composed`, `timings`, `versions`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from . import __version__
from .attribution import compose, ratio
from .attribution.u2z import u2z
from .attribution.z2u import chunk_for as z2u_chunk
from .attribution.z2u import self_attention_probs, z2u
from .attribution.z2z import chunk_for as z2z_chunk
from .attribution.z2z import z2z
from .boundaries import boundaries_from_config
from .config import LIGConfig, check_indices, granularity_list, validate
from .errors import LIGError
from .loading import LoadedModel, load_model
from .quadrature import Rule, resolve_rule
from .steps import StepPlan, StepResult, make_plan, relative_error

# The rule the reference uses on each path of the encoder family (spec §2).
REFERENCE_RULES = {"z2z": "captum_trapezoid", "z2u": "captum_trapezoid", "u2z": "captum_trapezoid"}

DESC_Z2Z = "Layer-whole IG (z -> z), L2-scalarized"
DESC_Z2U = "ATT IG (z -> u), L2-scalarized"
DESC_Z2U_FIX = {"itb_zero_ratio": " (ITB-zeroRatio)", "itb_map_ratio": " (ITB-mapRatio)"}
DESC_U2Z = "MLP IG (u -> z), L2-scalarized"
DESC_COMPOSED = "Composed z -> z: sum over heads of ATT IG (z -> u) x MLP IG (u -> z) slice"

Progress = Callable[[str], None]
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _device_context(device: str | None):
    if device is None:
        return nullcontext()
    platform = {"cuda": "gpu"}.get(device.split(":")[0], device.split(":")[0])
    index = int(device.split(":")[1]) if ":" in device else 0
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        devices = []
    if index >= len(devices):
        allowed = sorted({d.platform for d in jax.devices()} | {"cpu"})
        raise LIGError(f"device {device!r} is not available. Allowed: {', '.join(allowed)}")
    return jax.default_device(devices[index])


def tokenize(lm: LoadedModel, text: str) -> tuple[list[int], list[str]]:
    """Token ids and strings with the model's special tokens; refuses over-long text."""
    if not isinstance(text, str) or not text.strip():
        raise LIGError("text is empty: give at least one word to explain")
    ids = lm.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"]
    limit = lm.config.max_tokens
    if len(ids) > limit:
        raise LIGError(
            f"text is {len(ids)} tokens long, more than the model's maximum of {limit}; "
            "shorten it (lig-jax refuses rather than truncating)"
        )
    return list(ids), lm.tokenizer.convert_ids_to_tokens(ids)


def _floats(a: np.ndarray) -> list:
    return np.asarray(a, np.float64).tolist()


def _completeness(sums: np.ndarray, change: np.ndarray, res: StepResult) -> dict[str, Any]:
    """Σ attributions vs. the scalar's change × Σw, per column (arrays over columns)."""
    rel = relative_error(sums, change, res.weight_sum)
    out = {"ig_sum": _floats(sums), "scalar_change": _floats(change),
           "weight_sum": _scalar_or_list(res.weight_sum),
           "relative_error": _floats(rel), "max_relative_error": float(np.max(rel))}
    if res.converged is not None:
        out["steps_used"] = res.steps.tolist()
        out["converged"] = res.converged.tolist()
    return out


def _scalar_or_list(a: np.ndarray) -> float | list:
    a = np.asarray(a, np.float64)
    return float(a[0]) if np.all(a == a[0]) else a.tolist()


class _Layer:
    """One block (graphdef, state in the compute dtype) and the sentence's input to it.

    z [S_b, d] is padded to the length bucket S_b; the first `length` rows are the
    sentence, `key_mask` [S_b] marks them. `pad_targets` are extra target columns computed
    only to keep array shapes (and so compiled programs) fixed per bucket; every result is
    cut back to the real tokens before it leaves this module.
    """

    def __init__(self, graphdef: nnx.GraphDef, state: nnx.State, z: jax.Array,
                 key_mask: jax.Array, length: int, pad_targets: list[int]):
        self.graphdef, self.state, self.z = graphdef, state, z
        self.key_mask, self.length, self.pad_targets = key_mask, length, pad_targets

    def compute_targets(self, targets: list[int]) -> jax.Array:
        return jnp.asarray(targets + self.pad_targets)

    def nodes(self, rule: Rule) -> tuple[jax.Array, jax.Array]:
        alphas, weights = rule.without_zero_node()
        return jnp.asarray(alphas, self.z.dtype), jnp.asarray(weights, self.z.dtype)


def _z2z_run(layer: _Layer, baseline: str, plan: StepPlan, method: str) -> StepResult:
    """arrays = (columns [S_tgt, S_src], L [S_tgt]) for one raw baseline."""
    sb, d = layer.z.shape
    s = layer.length

    def at(rule: Rule) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        alphas, weights = layer.nodes(rule)
        m, total = z2z(layer.graphdef, layer.state, layer.z, alphas, weights, baseline=baseline,
                       chunk=z2z_chunk(sb, d, sb, len(alphas)), method=method,
                       key_mask=layer.key_mask)
        cols = np.asarray(m, np.float64)[:s, :s].T
        total = np.asarray(total, np.float64)[:s]
        return (cols, total), relative_error(cols.sum(axis=1), total, rule.weight_sum)

    return plan.run(at)


def _z2z_block(layer: _Layer, baseline: str, plan: StepPlan, tokens: list[str],
               targets: list[int], method: str) -> dict[str, Any]:
    s = layer.length
    raw = _z2z_run(layer, "self_input_token" if baseline == "itb_zero_ratio" else baseline,
                   plan, method)
    cols, total = raw.arrays
    if baseline == "itb_zero_ratio":
        zero_cols = _z2z_run(layer, "zero", plan, method).arrays[0]
        matrix = ratio.zero_ratio(cols, zero_cols, np.arange(s)).T
    else:
        matrix = cols.T
    return {
        "baseline": baseline,
        "description": DESC_Z2Z,
        "shape": [s, s],
        "matrix": _floats(matrix),
        "token_to_token": [
            {"target_token_idx": j, "target_token": tokens[j], "contributions": [
                {"source_token_idx": i, "source_token": tokens[i], "value": float(matrix[i, j])}
                for i in targets]}
            for j in targets
        ],
        "rule": raw.rule,
        "completeness": _completeness(cols.sum(axis=1), total, raw),
    }


def _z2u_run(layer: _Layer, baseline: str, plan: StepPlan, targets: list[int],
             heads: list[int], method: str) -> StepResult:
    """arrays = (scores [T·Hs, S], signed Σ IG [T·Hs], f [T·Hs]), columns (target, head)."""
    sb, d = layer.z.shape
    s, t = layer.length, len(targets)
    t_arr, h_arr = layer.compute_targets(targets), jnp.asarray(heads)

    def at(rule: Rule) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        alphas, weights = layer.nodes(rule)
        out = z2u(layer.graphdef, layer.state, layer.z, t_arr, h_arr, alphas, weights,
                  baseline=baseline, method=method, key_mask=layer.key_mask,
                  chunk=z2u_chunk(sb, d, len(t_arr), len(heads), len(alphas)))
        scores, signed, f = (np.asarray(o, np.float64)[:t] for o in out)
        scores, signed, f = scores[..., :s].reshape(-1, s), signed.reshape(-1), f.reshape(-1)
        return (scores, signed, f), relative_error(signed, f, rule.weight_sum)

    return plan.run(at)


def _z2u_scores(layer: _Layer, baseline: str, plan: StepPlan, targets: list[int],
                heads: list[int], method: str) -> tuple[np.ndarray, StepResult]:
    """Scores [T, Hs, S] after any ratio fix, and the raw run (completeness data)."""
    t, hs, s = len(targets), len(heads), layer.length
    raw = _z2u_run(layer, "zero" if baseline == "zero" else "self_input_token", plan,
                   targets, heads, method)
    scores = raw.arrays[0].reshape(t, hs, s).copy()
    if baseline != "zero":
        scores[np.arange(t), :, targets] = 0.0  # s_j := 0 (exactly 0 already)
    j_idx = np.broadcast_to(np.asarray(targets)[:, None], (t, hs))
    if baseline == "itb_zero_ratio":
        zero_scores = _z2u_run(layer, "zero", plan, targets, heads, method).arrays[0]
        scores = ratio.zero_ratio(scores, zero_scores.reshape(t, hs, s), j_idx)
    elif baseline == "itb_map_ratio":
        diag = np.asarray(self_attention_probs(layer.graphdef, layer.state, layer.z,
                                               layer.key_mask), np.float64)
        alpha = diag[np.asarray(heads)][:, np.asarray(targets)].T  # [T, Hs]
        scores = ratio.map_ratio(scores, alpha, j_idx)
    return scores, raw


def _u2z_block(layer: _Layer, baseline: str, plan: StepPlan, targets: list[int],
               residual: bool) -> tuple[np.ndarray, list[dict[str, Any]]]:
    def at(rule: Rule) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        alphas, weights = layer.nodes(rule)
        contrib, total, _ = u2z(layer.graphdef, layer.state, layer.z,
                                layer.compute_targets(targets), alphas, weights,
                                baseline=baseline, residual=residual, key_mask=layer.key_mask)
        t = len(targets)
        contrib, total = np.asarray(contrib, np.float64)[:t], np.asarray(total, np.float64)[:t]
        return (contrib, total), relative_error(contrib.sum(axis=1), total, rule.weight_sum)

    res = plan.run(at)
    contrib, total = res.arrays
    rel = relative_error(contrib.sum(axis=1), total, res.weight_sum)
    blocks = []
    for t in range(len(targets)):
        err = float(contrib[t].sum() - total[t])
        completeness = {"error": err, "mean_abs_error": abs(err),
                        "expected": float(total[t] * res.weight_sum[t]),
                        "relative_error": float(rel[t]),
                        "weight_sum": float(res.weight_sum[t])}
        if res.converged is not None:
            completeness.update(steps_used=int(res.steps[t]),
                                converged=bool(res.converged[t]))
        blocks.append({
            "baseline": baseline,
            "description": DESC_U2Z,
            "contributions": _floats(contrib[t]),
            "l2_total": float(total[t]),
            "completeness": completeness,
            "rule": res.rule,
        })
    return contrib, blocks


def explain(
    text: str,
    *,
    model: str = LIGConfig.model,
    num_steps: int | str = 32,
    granularity: str | Sequence[str] = "all",
    baseline_att: str = "self_input_token",
    baseline_mlp: str = "zero",
    baseline_layer: str = "self_input_token",
    layers: Sequence[int] | None = None,
    target_tokens: Sequence[int] | None = None,
    target_head: int | None = None,
    device: str | None = None,
    include_residual_connection: bool = True,
    rule: str = "reference",
    method: str = "fast",
    dtype: str = "float32",
    auto_tol: float = 0.01,
    max_steps: int = 512,
    bucket: bool = True,
    config: LIGConfig | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Layer-wise IG of `text` under `model`; returns the reference's JSON schema as a dict.

    If `config` is given the other keyword options are ignored (as in the reference).
    `method`: "fast" (structure-exploiting integrands) or "direct" (one reverse pass per
    target); both compute the same numbers. `num_steps="auto"` doubles the steps per
    column (from 16 up to `max_steps`) until its completeness error is below `auto_tol`.
    `dtype="bfloat16"` runs the attributions in bfloat16 (completeness shows the cost).
    `bucket`: pad to a length bucket (masked) so new lengths reuse compiled programs.
    `progress` receives short status lines (the CLI prints them on stderr).
    """
    cfg = config or LIGConfig(
        model=model, num_steps=num_steps, granularity=granularity, baseline_att=baseline_att,
        baseline_mlp=baseline_mlp, baseline_layer=baseline_layer, layers=layers,
        target_tokens=target_tokens, target_head=target_head, device=device,
        include_residual_connection=include_residual_connection, rule=rule, method=method,
        dtype=dtype, auto_tol=auto_tol, max_steps=max_steps, bucket=bucket,
    )
    validate(cfg)
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    with _device_context(cfg.device):
        say(f"loading {cfg.model}")
        lm = load_model(cfg.model)
        timings["load_s"] = time.perf_counter() - t0
        return _explain_loaded(lm, text, cfg, say, timings, t0)


def _explain_loaded(lm: LoadedModel, text: str, cfg: LIGConfig, say: Progress,
                    timings: dict[str, float], t0: float) -> dict[str, Any]:
    grans = granularity_list(cfg.granularity)
    ids, tokens = tokenize(lm, text)
    s = len(ids)
    n_layers, n_heads = lm.config.num_layers, lm.config.num_heads
    layer_list = check_indices("layers", cfg.layers, n_layers)
    targets = check_indices("target_tokens", cfg.target_tokens, s)
    if cfg.target_head is not None:
        heads = check_indices("target_head", [cfg.target_head], n_heads)
    else:
        heads = list(range(n_heads))
    plans = {p: make_plan(resolve_rule(cfg.rule, r), cfg.num_steps, cfg.auto_tol, cfg.max_steps)
             for p, r in REFERENCE_RULES.items()}
    dtype = COMPUTE_DTYPES[cfg.dtype]

    sb = bucket_length(s, lm.config.max_tokens) if cfg.bucket else s
    pad_targets = list(range(s, sb)) if cfg.target_tokens is None else []
    key_mask = jnp.arange(sb) < s
    padded = jnp.asarray(ids + [lm.config.pad_token_id] * (sb - s), jnp.int32)

    t = time.perf_counter()
    graphdef, state = nnx.split(lm.model)
    hidden = _hidden_states(graphdef, state, padded, key_mask)
    timings["hidden_states_s"] = time.perf_counter() - t
    block_graphdef, _ = nnx.split(lm.model.layers[0])

    info = boundaries_from_config(lm.hf_config.to_dict(), cfg.model)
    boundaries = {**info["nodes"], **info}  # spec §9: z, u, z_next, then the boundary keys
    out_layers: dict[str, Any] = {}
    for step, l in enumerate(layer_list):
        say(f"layer {l} ({step + 1}/{len(layer_list)}): {', '.join(grans)}")
        _, block_state = nnx.split(lm.model.layers[l])
        block_state = jax.tree.map(lambda a: a.astype(dtype), block_state)
        layer = _Layer(block_graphdef, block_state, hidden[l].astype(dtype), key_mask, s,
                       pad_targets)
        entry: dict[str, Any] = {"layer_idx": l}
        if "layer" in grans:
            t = time.perf_counter()
            entry["z2z"] = _z2z_block(layer, cfg.baseline_layer, plans["z2z"], tokens, targets,
                                      cfg.method)
            timings["z2z_s"] = timings.get("z2z_s", 0.0) + time.perf_counter() - t
        att_scores = mlp_contrib = None
        if "att" in grans or "mlp" in grans:
            entry["targets"] = {str(j): {"target_token_idx": j, "target_token": tokens[j]}
                                for j in targets}
        if "att" in grans:
            t = time.perf_counter()
            att_scores, raw = _z2u_scores(layer, cfg.baseline_att, plans["z2u"], targets, heads,
                                          cfg.method)
            _, signed, change = raw.arrays
            rel = relative_error(signed, change, raw.weight_sum).reshape(len(targets), -1)
            signed, change = signed.reshape(rel.shape), change.reshape(rel.shape)
            wsum = raw.weight_sum.reshape(rel.shape)
            steps = raw.steps.reshape(rel.shape)
            desc = DESC_Z2U + DESC_Z2U_FIX.get(cfg.baseline_att, "")
            for ti, j in enumerate(targets):
                heads_out = {}
                for hi, h in enumerate(heads):
                    sc = att_scores[ti, hi]
                    comp = {"ig_sum": float(signed[ti, hi]), "scalar_change": float(change[ti, hi]),
                            "relative_error": float(rel[ti, hi])}
                    if raw.converged is not None:
                        comp.update(steps_used=int(steps[ti, hi]), weight_sum=float(wsum[ti, hi]),
                                    converged=bool(raw.converged.reshape(rel.shape)[ti, hi]))
                    heads_out[str(h)] = {
                        "contributions": _floats(sc),
                        "token_l2_norm": float(np.linalg.norm(sc)),
                        "completeness": comp,
                    }
                entry["targets"][str(j)]["z2u"] = {
                    "baseline": cfg.baseline_att, "description": desc, "heads": heads_out,
                    "rule": raw.rule, "weight_sum": _scalar_or_list(wsum[ti]),
                }
            timings["z2u_s"] = timings.get("z2u_s", 0.0) + time.perf_counter() - t
        if "mlp" in grans:
            t = time.perf_counter()
            mlp_contrib, blocks = _u2z_block(layer, cfg.baseline_mlp, plans["u2z"], targets,
                                             cfg.include_residual_connection)
            for j, b in zip(targets, blocks, strict=True):
                entry["targets"][str(j)]["u2z"] = b
            timings["u2z_s"] = timings.get("u2z_s", 0.0) + time.perf_counter() - t
        if att_scores is not None and mlp_contrib is not None and len(heads) == n_heads:
            per_slice = compose.head_slices(mlp_contrib, n_heads)  # [T, H]
            prod = compose.compose(np.transpose(att_scores, (1, 2, 0)), per_slice)  # [S, T]
            entry["z2z_composed"] = {
                "baseline_att": cfg.baseline_att, "baseline_mlp": cfg.baseline_mlp,
                "description": DESC_COMPOSED, "shape": [s, len(targets)],
                "target_token_idx": targets, "matrix": _floats(prod),
            }
        out_layers[str(l)] = entry
    timings["total_s"] = time.perf_counter() - t0
    return {
        "text": text,
        "tokens": tokens,
        "model": cfg.model,
        "model_type": lm.model_type,
        "config": {
            "num_steps": cfg.num_steps, "granularity": grans,
            "baseline_att": cfg.baseline_att, "baseline_mlp": cfg.baseline_mlp,
            "baseline_layer": cfg.baseline_layer, "layers": layer_list,
            "target_tokens": targets, "target_head": cfg.target_head,
            "include_residual_connection": cfg.include_residual_connection, "rule": cfg.rule,
            "method": cfg.method, "dtype": cfg.dtype,
        },
        "boundaries": boundaries,
        "layers": out_layers,
        "quadrature": {p: plan.describe() for p, plan in plans.items()},
        "timings": timings,
        "versions": _versions(lm),
    }


@jax.jit(static_argnames=("graphdef",))
def _hidden_states(graphdef: nnx.GraphDef, state: nnx.State, ids: jax.Array,
                   key_mask: jax.Array) -> jax.Array:
    return nnx.merge(graphdef, state).hidden_states(ids, key_mask)


BUCKETS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def bucket_length(length: int, limit: int) -> int:
    """The padded length a sentence of `length` tokens is computed at (≤ `limit`).

    Sentences of the same bucket share compiled programs, so a new sentence length does
    not recompile; the padding costs at most ~1.5× the work of the sentence itself.
    """
    return min(next((b for b in BUCKETS if b >= length), length), max(limit, length))


def _versions(lm: LoadedModel) -> dict[str, str]:
    import flax
    import transformers

    return {"lig_jax": __version__, "jax": jax.__version__, "flax": flax.__version__,
            "transformers": transformers.__version__, "checkpoint_sha256": lm.checkpoint_hash}


def explain_batch(
    texts: Sequence[str],
    *,
    config: LIGConfig | None = None,
    progress: Progress | None = None,
    on_result: Callable[[int, dict[str, Any]], None] | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """`explain` for many sentences with one model load and shared compiled programs.

    Sentences are padded to length buckets, so each bucket compiles once; they are run
    shortest bucket first and returned in input order. `on_result(i, result)` is called as
    soon as sentence i is done (to write it out before the next one starts). Options as
    for `explain` (keywords, or `config`).
    """
    cfg = config or LIGConfig(**kwargs)
    validate(cfg)
    say = progress or (lambda _msg: None)
    with _device_context(cfg.device):
        lm = load_model(cfg.model)
        lengths = [len(tokenize(lm, t)[0]) for t in texts]
        order = sorted(range(len(texts)),
                       key=lambda i: (bucket_length(lengths[i], lm.config.max_tokens), i))
        results: list[dict[str, Any] | None] = [None] * len(texts)
        for done, i in enumerate(order):
            say(f"sentence {done + 1}/{len(texts)} ({lengths[i]} tokens)")
            t0 = time.perf_counter()
            results[i] = _explain_loaded(lm, texts[i], cfg, lambda _m: None, {}, t0)
            if on_result is not None:
                on_result(i, results[i])
    return results  # type: ignore[return-value]


def explain_to_json(text: str, **kwargs: Any) -> str:
    """`json.dumps(explain(text, **kwargs), indent=2, ensure_ascii=False)`."""
    return json.dumps(explain(text, **kwargs), indent=2, ensure_ascii=False)
