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
from .quadrature import Rule, make_rule, resolve_rule

# The rule the reference uses on each path of the encoder family (spec §2).
REFERENCE_RULES = {"z2z": "captum_trapezoid", "z2u": "captum_trapezoid", "u2z": "captum_trapezoid"}

DESC_Z2Z = "Layer-whole IG (z -> z), L2-scalarized"
DESC_Z2U = "ATT IG (z -> u), L2-scalarized"
DESC_Z2U_FIX = {"itb_zero_ratio": " (ITB-zeroRatio)", "itb_map_ratio": " (ITB-mapRatio)"}
DESC_U2Z = "MLP IG (u -> z), L2-scalarized"
DESC_COMPOSED = "Composed z -> z: sum over heads of ATT IG (z -> u) x MLP IG (u -> z) slice"

Progress = Callable[[str], None]


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


def _completeness(sums: np.ndarray, change: np.ndarray, weight_sum: float) -> dict[str, Any]:
    """Σ attributions vs. the scalar's change × Σw, per column."""
    expected = np.asarray(change, np.float64) * weight_sum
    err = np.abs(np.asarray(sums, np.float64) - expected)
    rel = np.where(np.abs(expected) > 1e-8, err / np.maximum(np.abs(expected), 1e-30), err)
    return {"ig_sum": _floats(sums), "scalar_change": _floats(change), "weight_sum": weight_sum,
            "relative_error": _floats(rel), "max_relative_error": float(np.max(rel))}


class _Layer:
    """One block's state and the sentence's input to it."""

    def __init__(self, graphdef: nnx.GraphDef, state: nnx.State, z: jax.Array):
        self.graphdef, self.state, self.z = graphdef, state, z


def _z2z_block(layer: _Layer, baseline: str, rule: Rule, tokens: list[str],
               targets: list[int], method: str) -> dict[str, Any]:
    s, d = layer.z.shape
    alphas, weights = rule.without_zero_node()
    chunk = z2z_chunk(s, d, s, len(alphas))

    def run(b: str) -> tuple[np.ndarray, np.ndarray]:
        m, total = z2z(layer.graphdef, layer.state, layer.z, alphas, weights, baseline=b,
                       chunk=chunk, method=method)
        return np.asarray(m, np.float64), np.asarray(total, np.float64)

    if baseline == "itb_zero_ratio":
        m_itb, total = run("self_input_token")
        m_zero, _ = run("zero")
        cols = ratio.zero_ratio(m_itb.T, m_zero.T, np.arange(s))
        matrix, raw = cols.T, m_itb
    else:
        matrix, total = run(baseline)
        raw = matrix
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
        "rule": rule.name,
        "completeness": _completeness(raw.sum(axis=0), total, rule.weight_sum),
    }


def _z2u_scores(layer: _Layer, baseline: str, rule: Rule, targets: list[int],
                heads: list[int], method: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Scores [T, Hs, S] after any ratio fix, and the raw run's completeness data."""
    s, d = layer.z.shape
    alphas, weights = rule.without_zero_node()
    chunk = z2u_chunk(s, d, len(targets), len(heads), len(alphas))
    t_arr, h_arr = jnp.asarray(targets), jnp.asarray(heads)

    def run(b: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = z2u(layer.graphdef, layer.state, layer.z, t_arr, h_arr, alphas, weights,
                  baseline=b, chunk=chunk, method=method)
        return tuple(np.asarray(o, np.float64) for o in out)

    base = "zero" if baseline == "zero" else "self_input_token"
    scores, ig_sum, change = run(base)
    if base == "self_input_token":
        scores[np.arange(len(targets)), :, targets] = 0.0  # s_j := 0 (exactly 0 already)
    j_idx = np.broadcast_to(np.asarray(targets)[:, None], scores.shape[:2])
    if baseline == "itb_zero_ratio":
        zero_scores, _, _ = run("zero")
        scores = ratio.zero_ratio(scores, zero_scores, j_idx)
    elif baseline == "itb_map_ratio":
        diag = np.asarray(self_attention_probs(layer.graphdef, layer.state, layer.z), np.float64)
        alpha = diag[np.asarray(heads)][:, np.asarray(targets)].T  # [T, Hs]
        scores = ratio.map_ratio(scores, alpha, j_idx)
    return scores, {"ig_sum": ig_sum, "change": change}


def _u2z_block(layer: _Layer, baseline: str, rule: Rule, targets: list[int],
               residual: bool) -> tuple[np.ndarray, list[dict[str, Any]]]:
    alphas, weights = rule.without_zero_node()
    contrib, total, _ = u2z(layer.graphdef, layer.state, layer.z, jnp.asarray(targets),
                            alphas, weights, baseline=baseline, residual=residual)
    contrib = np.asarray(contrib, np.float64)
    total = np.asarray(total, np.float64)
    blocks = []
    for t in range(len(targets)):
        err = float(contrib[t].sum() - total[t])
        comp = _completeness(contrib[t].sum(keepdims=True), total[t : t + 1], rule.weight_sum)
        blocks.append({
            "baseline": baseline,
            "description": DESC_U2Z,
            "contributions": _floats(contrib[t]),
            "l2_total": float(total[t]),
            "completeness": {"error": err, "mean_abs_error": abs(err),
                             "expected": comp["scalar_change"][0] * rule.weight_sum,
                             "relative_error": comp["relative_error"][0],
                             "weight_sum": rule.weight_sum},
            "rule": rule.name,
        })
    return contrib, blocks


def explain(
    text: str,
    *,
    model: str = LIGConfig.model,
    num_steps: int = 32,
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
    config: LIGConfig | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Layer-wise IG of `text` under `model`; returns the reference's JSON schema as a dict.

    If `config` is given the other keyword options are ignored (as in the reference).
    `method`: "fast" (structure-exploiting integrands) or "direct" (one reverse pass per
    target); both compute the same numbers.
    `progress` receives short status lines (the CLI prints them on stderr).
    """
    cfg = config or LIGConfig(
        model=model, num_steps=num_steps, granularity=granularity, baseline_att=baseline_att,
        baseline_mlp=baseline_mlp, baseline_layer=baseline_layer, layers=layers,
        target_tokens=target_tokens, target_head=target_head, device=device,
        include_residual_connection=include_residual_connection, rule=rule, method=method,
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
    rules = {p: make_rule(resolve_rule(cfg.rule, r), cfg.num_steps)
             for p, r in REFERENCE_RULES.items()}

    t = time.perf_counter()
    graphdef, state = nnx.split(lm.model)
    hidden = _hidden_states(graphdef, state, jnp.asarray(ids, jnp.int32))
    timings["hidden_states_s"] = time.perf_counter() - t
    block_graphdef, _ = nnx.split(lm.model.layers[0])

    info = boundaries_from_config(lm.hf_config.to_dict(), cfg.model)
    boundaries = {**info["nodes"], **info}  # spec §9: z, u, z_next, then the boundary keys
    out_layers: dict[str, Any] = {}
    for step, l in enumerate(layer_list):
        say(f"layer {l} ({step + 1}/{len(layer_list)}): {', '.join(grans)}")
        _, block_state = nnx.split(lm.model.layers[l])
        layer = _Layer(block_graphdef, block_state, hidden[l])
        entry: dict[str, Any] = {"layer_idx": l}
        if "layer" in grans:
            t = time.perf_counter()
            entry["z2z"] = _z2z_block(layer, cfg.baseline_layer, rules["z2z"], tokens, targets,
                                      cfg.method)
            timings["z2z_s"] = timings.get("z2z_s", 0.0) + time.perf_counter() - t
        att_scores = mlp_contrib = None
        if "att" in grans or "mlp" in grans:
            entry["targets"] = {str(j): {"target_token_idx": j, "target_token": tokens[j]}
                                for j in targets}
        if "att" in grans:
            t = time.perf_counter()
            att_scores, comp = _z2u_scores(layer, cfg.baseline_att, rules["z2u"], targets, heads,
                                           cfg.method)
            desc = DESC_Z2U + DESC_Z2U_FIX.get(cfg.baseline_att, "")
            for ti, j in enumerate(targets):
                heads_out = {}
                for hi, h in enumerate(heads):
                    sc = att_scores[ti, hi]
                    c = _completeness(comp["ig_sum"][ti, hi : hi + 1],
                                      comp["change"][ti, hi : hi + 1], rules["z2u"].weight_sum)
                    heads_out[str(h)] = {
                        "contributions": _floats(sc),
                        "token_l2_norm": float(np.linalg.norm(sc)),
                        "completeness": {"ig_sum": c["ig_sum"][0],
                                         "scalar_change": c["scalar_change"][0],
                                         "relative_error": c["relative_error"][0]},
                    }
                entry["targets"][str(j)]["z2u"] = {
                    "baseline": cfg.baseline_att, "description": desc, "heads": heads_out,
                    "rule": rules["z2u"].name, "weight_sum": rules["z2u"].weight_sum,
                }
            timings["z2u_s"] = timings.get("z2u_s", 0.0) + time.perf_counter() - t
        if "mlp" in grans:
            t = time.perf_counter()
            mlp_contrib, blocks = _u2z_block(layer, cfg.baseline_mlp, rules["u2z"], targets,
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
            "method": cfg.method,
        },
        "boundaries": boundaries,
        "layers": out_layers,
        "quadrature": {p: {"rule": r.name, "num_steps": r.num_steps, "weight_sum": r.weight_sum}
                       for p, r in rules.items()},
        "timings": timings,
        "versions": _versions(lm),
    }


def _hidden_states(graphdef: nnx.GraphDef, state: nnx.State, ids: jax.Array) -> jax.Array:
    return _hidden_states_jit(graphdef, state, ids)


@jax.jit(static_argnames=("graphdef",))
def _hidden_states_jit(graphdef: nnx.GraphDef, state: nnx.State, ids: jax.Array) -> jax.Array:
    return nnx.merge(graphdef, state).hidden_states(ids)


def _versions(lm: LoadedModel) -> dict[str, str]:
    import flax
    import transformers

    return {"lig_jax": __version__, "jax": jax.__version__, "flax": flax.__version__,
            "transformers": transformers.__version__, "checkpoint_sha256": lm.checkpoint_hash}


def explain_to_json(text: str, **kwargs: Any) -> str:
    """`json.dumps(explain(text, **kwargs), indent=2, ensure_ascii=False)`."""
    return json.dumps(explain(text, **kwargs), indent=2, ensure_ascii=False)
