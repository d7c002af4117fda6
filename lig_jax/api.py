"""`explain()`: text → tokens → hidden states → per-layer attributions → JSON dict.

The output keeps the reference's schema (spec §9): every reference key with the same
meaning and orientation (`matrix[i][j]` = source i → target j). Extra keys:
`quadrature`, `completeness` blocks, `z2z_composed`, `timings`, `versions`. It is a dict
(an `Explanation`, a dict subclass that shows itself as the flow viewer in Jupyter).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from . import __version__, engine, report
from .boundaries import boundaries_from_config
from .config import LIGConfig, check_indices, granularity_list, validate
from .errors import LIGError
from .loading import LoadedModel, load_model
from .quadrature import resolve_rule
from .steps import make_plan
from .view.notebook import Explanation

# Families whose reference u→z ignores include_residual_connection and reports the IG sum
# as l2_total (spec §5, §13-B3); reproduced only under `reference_quirks`.
QUIRKY_U2Z_TYPES = ("gpt2", "llama", "mistral", "qwen2")
GEMMA3_TYPES = ("gemma3", "gemma3_text")

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
    family = lm.family
    source = text
    if dict(family.tokenizer_kwargs).get("add_prefix_space") and not text.startswith(" "):
        # GPT-2's byte-level BPE with add_prefix_space=True (the reference's setting) adds
        # exactly this one space before the first word.
        source = " " + text
    ids = lm.tokenizer(source, add_special_tokens=family.add_special_tokens,
                       truncation=False)["input_ids"]
    if not ids:
        raise LIGError("text gives no tokens: give at least one word to explain")
    limit = lm.config.max_tokens
    if len(ids) > limit:
        raise LIGError(
            f"text is {len(ids)} tokens long, more than the model's maximum of {limit}; "
            "shorten it (lig-jax refuses rather than truncating)"
        )
    return list(ids), lm.tokenizer.convert_ids_to_tokens(ids)


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
    reference_quirks: bool = False,
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
    `reference_quirks`: the reference's decoder inconsistencies (spec §13-B3) instead of
    the consistent definitions (see `LIGConfig`).
    `progress` receives short status lines (the CLI prints them on stderr).
    """
    cfg = config or LIGConfig(
        model=model, num_steps=num_steps, granularity=granularity, baseline_att=baseline_att,
        baseline_mlp=baseline_mlp, baseline_layer=baseline_layer, layers=layers,
        target_tokens=target_tokens, target_head=target_head, device=device,
        include_residual_connection=include_residual_connection, rule=rule, method=method,
        dtype=dtype, auto_tol=auto_tol, max_steps=max_steps, bucket=bucket,
        reference_quirks=reference_quirks,
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
             for p, r in lm.family.reference_rules}
    decoder = lm.family.architecture == "decoder"
    quirky_u2z = cfg.reference_quirks and lm.model_type in QUIRKY_U2Z_TYPES
    residual = cfg.include_residual_connection or quirky_u2z

    sb = bucket_length(s, lm.config.max_tokens) if cfg.bucket else s
    pad_targets = list(range(s, sb)) if cfg.target_tokens is None else []
    key_mask = jnp.arange(sb) < s
    padded = jnp.asarray(ids + [lm.config.pad_token_id] * (sb - s), jnp.int32)

    t = time.perf_counter()
    graphdef, state = nnx.split(lm.model)
    hidden = _hidden_states(graphdef, state, padded, key_mask)
    timings["hidden_states_s"] = time.perf_counter() - t
    stack = engine.LayerStack.build([lm.model.layers[l] for l in layer_list],
                                    hidden[jnp.asarray(layer_list)], key_mask, s, pad_targets,
                                    COMPUTE_DTYPES[cfg.dtype])
    say(f"{s} tokens (bucket {sb}), layers {layer_list}: {', '.join(grans)}")

    def timed(key: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        out = fn()
        timings[key] = time.perf_counter() - t
        return out

    z2z = att = mlp = None
    if "layer" in grans:
        z2z = timed("z2z_s", lambda: engine.z2z_matrices(stack, cfg.baseline_layer, plans["z2z"],
                                                         cfg.method))
    replay = None
    if cfg.reference_quirks and lm.model_type in GEMMA3_TYPES:
        replay = engine.Replay.build(lm.model, hidden[0], key_mask, layer_list, pad_targets,
                                     COMPUTE_DTYPES[cfg.dtype])
    if "att" in grans:
        att = timed("z2u_s", lambda: engine.z2u_scores(stack, cfg.baseline_att, plans["z2u"],
                                                       targets, heads, cfg.method, replay))
    if "mlp" in grans:
        mlp = timed("u2z_s", lambda: engine.u2z_contributions(
            stack, cfg.baseline_mlp, plans["u2z"], targets, residual, replay))

    info = boundaries_from_config(lm.hf_config.to_dict(), cfg.model)
    boundaries = {**info["nodes"], **info}  # spec §9: z, u, z_next, then the boundary keys
    out_layers: dict[str, Any] = {}
    for pos, l in enumerate(layer_list):
        entry: dict[str, Any] = {"layer_idx": l}
        if z2z is not None:
            entry["z2z"] = report.z2z_block(z2z[0][pos], report.layer_of(z2z[1], pos),
                                            cfg.baseline_layer, tokens, targets, lm.family.layout)
        if att is not None or mlp is not None:
            entry["targets"] = {str(j): {"target_token_idx": j, "target_token": tokens[j]}
                                for j in targets}
        if att is not None:
            blocks = report.z2u_blocks(att[0][pos], report.layer_of(att[1], pos),
                                       cfg.baseline_att, targets, heads, decoder)
            for j, b in zip(targets, blocks, strict=True):
                entry["targets"][str(j)]["z2u"] = b
        if mlp is not None:
            u2z = report.u2z_blocks(report.layer_of(mlp, pos), cfg.baseline_mlp,
                                    lm.family.layout, n_heads, quirky_u2z)
            for j, b in zip(targets, u2z, strict=True):
                entry["targets"][str(j)]["u2z"] = b
        if att is not None and mlp is not None and len(heads) == n_heads:
            entry["z2z_composed"] = report.composed_block(
                att[0][pos], mlp.arrays[0][pos], n_heads, cfg.baseline_att, cfg.baseline_mlp,
                targets)
        out_layers[str(l)] = entry
    timings["total_s"] = time.perf_counter() - t0
    head = {"text": text, "tokens": tokens, "model": cfg.model, "model_type": lm.model_type}
    if decoder:
        head["architecture"] = "decoder"
    return Explanation({
        **head,
        "config": {
            "num_steps": cfg.num_steps, "granularity": grans,
            "baseline_att": cfg.baseline_att, "baseline_mlp": cfg.baseline_mlp,
            "baseline_layer": cfg.baseline_layer, "layers": layer_list,
            "target_tokens": targets, "target_head": cfg.target_head,
            "include_residual_connection": cfg.include_residual_connection, "rule": cfg.rule,
            "method": cfg.method, "dtype": cfg.dtype,
            "reference_quirks": cfg.reference_quirks,
        },
        "boundaries": boundaries,
        "layers": out_layers,
        "quadrature": {p: plan.describe() for p, plan in plans.items()},
        "timings": timings,
        "versions": _versions(lm),
    })


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
