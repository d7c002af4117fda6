"""`explain()`: text → tokens → hidden states → per-layer attributions → JSON dict.

The output keeps the reference's schema (docs/spec.md §9): every reference key with the same
meaning and orientation (`matrix[i][j]` = source i → target j). Extra keys:
`quadrature`, `completeness` blocks, `z2z_composed`, `timings`, `versions`. It is a plain
dict here; `lig_jax.explain` wraps it as an `Explanation` (view/notebook.py), which shows
itself as the flow viewer in Jupyter.
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import fields
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import baselines, engine, results, schema
from .attribution import compose
from .baselines import GRANULARITY_QUANTITY
from .boundaries import boundaries_from_config
from .config import LIGConfig, check_indices, granularity_list, validate
from .errors import BadText, LIGError
from .loading import LoadedModel, load_model
from .measures.names import (
    check_lig_rollout,
    lig_rollout_possible,
    measure_list,
    measure_outputs,
)
from .memory import free_host_memory, memory_budget
from .mesh import make_mesh, rows
from .quadrature import resolve_rule
from .steps import StepResult, step_plan
from .version import __version__
from .wordlevel import to_word_level

# Families whose reference u→z ignores include_residual_connection and reports the IG sum
# as l2_total (docs/spec.md §5, §13-B3); reproduced only under `reference_quirks`.
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


def from_ids(lm: LoadedModel, input_ids: Sequence[int]) -> tuple[list[int], list[str]]:
    """Pre-tokenised input (ids from another tool) checked against the model: integers in
    [0, vocab size), at least one, at most the model's maximum; (ids, token strings)."""
    # the embedding table may be padded beyond the tokenizer's vocabulary: ids there have
    # no token to show
    vocab, limit = min(lm.config.vocab_size, len(lm.tokenizer)), lm.config.max_tokens
    ids = list(input_ids) if not isinstance(input_ids, str | bytes) else None
    if ids is None or any(isinstance(i, bool) or not isinstance(i, int | np.integer)
                          for i in ids):
        raise LIGError(f"input_ids must be a list of integer token ids in [0, {vocab - 1}]")
    if not ids:
        raise LIGError("input_ids is empty: give at least one token id")
    bad = next((i for i in ids if not 0 <= i < vocab), None)
    if bad is not None:
        raise LIGError(f"input id {bad} is out of range. Allowed: 0..{vocab - 1} (the "
                       "model's vocabulary)")
    if len(ids) > limit:
        raise LIGError(f"input_ids has {len(ids)} tokens, more than the model's maximum of "
                       f"{limit}; shorten it (lig-jax refuses rather than truncating)")
    ids = [int(i) for i in ids]
    return ids, lm.tokenizer.convert_ids_to_tokens(ids)


def word_ids(lm: LoadedModel, text: str, num_tokens: int
             ) -> tuple[list[str], list[int]] | None:
    """(words, word index per token): the text's whitespace-separated words, and for each
    of `tokenize`'s tokens the word its first non-space character lies in (−1 for a special
    token, whose span is empty; a token of spaces only belongs to the word after it). None
    where the tokenizer gives no character offsets (a slow tokenizer)."""
    source = text
    if dict(lm.family.tokenizer_kwargs).get("add_prefix_space") and not text.startswith(" "):
        source = " " + text
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", source)]
    words = [source[a:b] for a, b in spans]
    try:
        offsets = lm.tokenizer(source, add_special_tokens=lm.family.add_special_tokens,
                               truncation=False, return_offsets_mapping=True
                               )["offset_mapping"]
    except (NotImplementedError, ValueError, TypeError, KeyError):
        offsets = None
    if offsets is None or len(offsets) != num_tokens or not words:
        return None
    starts = [a for a, _ in spans]
    out = []
    for start, end in offsets:
        if end <= start:  # a special token
            out.append(-1)
            continue
        first = start
        while first < end and source[first].isspace():
            first += 1
        if first == end:  # spaces only: the word that follows
            out.append(min(bisect.bisect_left(starts, end), len(words) - 1))
        else:
            out.append(max(0, bisect.bisect_right(starts, first) - 1))
    return words, out


_D = LIGConfig  # every keyword's default is the config's


def explain(
    text: str | None = None,
    *,
    input_ids: Sequence[int] | None = None,
    model: str = _D.model,
    num_steps: int | str = _D.num_steps,
    granularity: str | Sequence[str] = _D.granularity,
    measures: str | Sequence[str] | None = _D.measures,
    baseline_att: str = _D.baseline_att,
    baseline_mlp: str = _D.baseline_mlp,
    baseline_layer: str = _D.baseline_layer,
    layers: Sequence[int] | None = _D.layers,
    target_tokens: Sequence[int] | None = _D.target_tokens,
    target_head: int | None = _D.target_head,
    device: str | None = _D.device,
    include_residual_connection: bool = _D.include_residual_connection,
    rule: str = _D.rule,
    method: str = _D.method,
    dtype: str = _D.dtype,
    auto_tol: float = _D.auto_tol,
    max_steps: int = _D.max_steps,
    bucket: bool = _D.bucket,
    reference_quirks: bool = _D.reference_quirks,
    memory_budget: int | str | None = _D.memory_budget,
    mesh: str | None = _D.mesh,
    words: bool = _D.words,
    config: LIGConfig | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Layer-wise IG of `text` under `model`; returns the reference's JSON schema as a dict.

    `input_ids` instead of `text`: pre-tokenised input (the ids other tools hand over,
    special tokens included as given); the result's text is their decoding.

    If `config` is given the other keyword options are ignored (as in the reference).
    `method`: "fast" (structure-exploiting integrands) or "direct" (one reverse pass per
    target); both compute the same numbers. `num_steps="auto"` doubles the steps per
    column (from 16 up to `max_steps`) until its completeness error is below `auto_tol`.
    `dtype="bfloat16"` runs the attributions in bfloat16 (completeness shows the cost).
    `bucket`: pad to a length bucket (masked) so new lengths reuse compiled programs.
    `reference_quirks`: the reference's decoder inconsistencies (docs/spec.md §13-B3) instead of
    the consistent definitions (see `LIGConfig`).
    `memory_budget`: bytes (or "4GB") one chunk of the computation may use; default a
    share of the free memory. A job that cannot fit even one chunk is refused.
    `mesh`: "DxM" runs on a (data, model) mesh of the first D·M devices: each block split
    over M of them (tensor parallel), each chunk's targets over D; same numbers.
    `measures`: context-mixing measures computed beside LIG on the same forward pass
    ("all", or names of `lig_jax.measures.names.CHOICES`: attention, attention_norm,
    alti, value_zeroing and their rollouts `rollout/<name>`, `rollout/lig`), reported as
    `layers[l]["measures"][name]["matrix"]` [S_src, S_tgt]; with `granularity="none"`
    only the measures are computed.
    `words`: aggregate sub-word tokens to the text's words (`wordlevel.py`: sum over
    sources, mean over targets); `tokens` are then the words and special tokens.
    `progress` receives short status lines (the CLI prints them on stderr).
    """
    given = locals()
    cfg = config or LIGConfig(**{f.name: given[f.name] for f in fields(LIGConfig)})
    return schema.explanation(_explain(text, cfg, progress, as_lists=True, input_ids=input_ids))


# A float in a Python list costs ~32 bytes (the float object and its pointer), 4× numpy's.
LIST_BYTES_PER_FLOAT = 32


def explain_arrays(text: str | None = None, *, input_ids: Sequence[int] | None = None,
                   config: LIGConfig | None = None, progress: Progress | None = None,
                   **kwargs: Any) -> results.Result:
    """`explain` as arrays (`results.Result`: the JSON schema's metadata and per-layer numpy
    arrays), for large inputs and `.npz` files; `schema.explanation(result)` gives the dict.
    Options as for `explain` (keywords, or `config`)."""
    return _explain(text, config or LIGConfig(**kwargs), progress, as_lists=False,
                    input_ids=input_ids)


def _explain(text: str | None, cfg: LIGConfig, progress: Progress | None, as_lists: bool,
             input_ids: Sequence[int] | None = None) -> results.Result:
    validate(cfg)
    if (text is None) == (input_ids is None):
        raise LIGError("give the text or input_ids (pre-tokenised), one of the two")
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    mesh = make_mesh(cfg.mesh) if cfg.mesh is not None else None
    with _device_context(cfg.device):
        say(f"loading {cfg.model}")
        lm = load_model(cfg.model, mesh)
        timings["load_s"] = time.perf_counter() - t0
        return _explain_loaded(lm, text, cfg, say, timings, t0, as_lists, mesh,
                               input_ids=input_ids)


def _check_host_memory(lm: LoadedModel, s: int, layers: int, targets: int, heads: int,
                       grans: list[str], as_lists: bool, names: Sequence[str] = ()) -> None:
    """Refuse, in one line, a result that would not fit the machine's free memory:
    float64 arrays (twice, for the ratio fixes), or Python lists for the JSON dict."""
    d = lm.config.hidden_size
    per_layer = (("layer" in grans) * s * s + ("att" in grans) * targets * heads * s
                 + ("mlp" in grans) * targets * 2 * d  # u_MLP is d (or H·d_h ≤ 2d) wide
                 + ("att" in grans and "mlp" in grans) * s * targets
                 + sum(len(measure_outputs(m, lm.config.num_heads)) for m in names) * s * s)
    need = 2 * 8 * layers * per_layer * (LIST_BYTES_PER_FLOAT // 8 if as_lists else 1)
    free = free_host_memory()
    if need > 0.8 * free:
        what = "as a JSON dict (an .npz needs a quarter: -o result.npz)" if as_lists else ""
        raise LIGError(f"the result needs about {need / 2**30:.1f} GB {what}, more than the "
                       f"{free / 2**30:.1f} GB of free memory; choose fewer --layers, "
                       "--target-tokens or --granularity")


def _explain_loaded(lm: LoadedModel, text: str, cfg: LIGConfig, say: Progress,
                    timings: dict[str, float], t0: float, as_lists: bool = False,
                    mesh: jax.sharding.Mesh | None = None, share: int = 1,
                    input_ids: Sequence[int] | None = None) -> results.Result:
    # share: sentences running at once in this process's memory (host-memory devices)
    grans = granularity_list(cfg.granularity)
    if input_ids is not None:
        ids, tokens = from_ids(lm, input_ids)
        text = lm.tokenizer.decode(ids)
    else:
        ids, tokens = tokenize(lm, text)
    s = len(ids)
    n_layers, n_heads = lm.config.num_layers, lm.config.num_heads
    layer_list = check_indices("layers", cfg.layers, n_layers)
    targets = check_indices("target_tokens", cfg.target_tokens, s)
    names = measure_list(cfg.measures, lig=lig_rollout_possible("layer" in grans, layer_list))
    check_lig_rollout(names, "layer" in grans, layer_list)
    words = word_ids(lm, text, s) if input_ids is None else None
    if cfg.words:
        if input_ids is not None:
            raise LIGError("--words needs the text (its words), not --input-ids")
        if words is None:
            raise LIGError("--words needs a tokenizer with character offsets (a fast "
                           "tokenizer); this model's gives none")
        # a word is a target with all its sub-words (its column is their mean)
        chosen = {words[1][j] for j in targets if words[1][j] >= 0}
        targets = [j for j in range(s) if j in targets or words[1][j] in chosen]
    if cfg.target_head is not None:
        heads = check_indices("target_head", [cfg.target_head], n_heads)
    else:
        heads = list(range(n_heads))
    plans = {p: step_plan(resolve_rule(cfg.rule, r), cfg.num_steps, cfg.auto_tol, cfg.max_steps)
             for p, r in lm.family.reference_rules}
    _check_host_memory(lm, s, len(layer_list), len(targets), len(heads), grans, as_lists,
                       names)
    decoder = lm.family.architecture == "decoder"
    quirky_u2z = cfg.reference_quirks and lm.model_type in QUIRKY_U2Z_TYPES
    residual = cfg.include_residual_connection or quirky_u2z

    t = time.perf_counter()
    layers = engine.sentence_layers(
        lm, ids, layer_list, dtype=COMPUTE_DTYPES[cfg.dtype],
        budget=memory_budget(cfg.memory_budget) // share, mesh=mesh, bucket=cfg.bucket,
        pad_targets=cfg.target_tokens is None, progress=say)
    timings["hidden_states_s"] = time.perf_counter() - t
    sb = layers.padded_length
    say(f"{s} tokens (bucket {sb}), layers {layer_list}: {', '.join(grans) or 'measures only'}")

    wanted = {q: [getattr(cfg, f"baseline_{g}")] for g, q in GRANULARITY_QUANTITY.items()
              if g in grans}
    replayed = cfg.reference_quirks and lm.model_type in GEMMA3_TYPES
    done = engine.compute(layers, wanted, plans, targets, heads, cfg.method, residual,
                          replayed)
    timings.update(done.seconds)
    z2z = att = mlp = None
    if "layer" in grans:
        z2z = (done.maps[f"z2z/{cfg.baseline_layer}"], done.raw[f"z2z/{_raw('z2z', cfg)}"])
    if "att" in grans:
        att = (done.maps[f"z2u/{cfg.baseline_att}"], done.raw[f"z2u/{_raw('z2u', cfg)}"])
    if "mlp" in grans:
        mlp = done.raw[f"u2z/{_raw('u2z', cfg)}"]
    measured: dict[int, dict[str, np.ndarray]] = {}
    if names:
        t = time.perf_counter()
        measured = engine.measures(layers, names, None if z2z is None else
                                   {l: z2z[0][pos] for pos, l in enumerate(layer_list)})
        timings["measures_s"] = time.perf_counter() - t

    info = boundaries_from_config(lm.hf_config.to_dict(), cfg.model)
    result = results.Result({
        "text": text, "tokens": tokens, "model": cfg.model, "model_type": lm.model_type,
        **({"architecture": "decoder"} if decoder else {}),
        "config": {
            "num_steps": cfg.num_steps, "granularity": grans,
            "baseline_att": cfg.baseline_att, "baseline_mlp": cfg.baseline_mlp,
            "baseline_layer": cfg.baseline_layer, "layers": layer_list,
            "target_tokens": targets, "target_head": cfg.target_head, "measures": names,
            "include_residual_connection": cfg.include_residual_connection, "rule": cfg.rule,
            "method": cfg.method, "dtype": cfg.dtype,
            "reference_quirks": cfg.reference_quirks,
        },
        "boundaries": {**info["nodes"], **info},  # docs/spec.md §9: z, u, z_next, then the keys
        "quadrature": {p: plan.describe() for p, plan in plans.items()},
        "timings": timings,
        "versions": _versions(lm),
        "format": {"name": results.FORMAT, "version": results.VERSION,
                   "layout": lm.family.layout, "num_heads": n_heads, "heads": heads,
                   "ig_sum_as_total": quirky_u2z},
    })
    for pos, l in enumerate(layer_list):
        arrays: dict[str, np.ndarray] = {}
        if z2z is not None:
            raw = _layer_of(z2z[1], pos)
            cols, total = raw.arrays
            arrays["z2z"] = z2z[0][pos]
            arrays.update(results.completeness("z2z", cols.sum(axis=1), total, raw.weight_sum,
                                               raw.steps, raw.converged))
        if att is not None:
            raw = _layer_of(att[1], pos)
            arrays["z2u"] = att[0][pos]
            arrays.update(results.completeness("z2u", raw.arrays[1], raw.arrays[2],
                                               raw.weight_sum, raw.steps, raw.converged))
        if mlp is not None:
            raw = _layer_of(mlp, pos)
            contrib, total = raw.arrays
            arrays["u2z"] = contrib
            arrays.update(results.completeness("u2z", contrib.sum(axis=1), total,
                                               raw.weight_sum, raw.steps, raw.converged))
        if att is not None and mlp is not None and len(heads) == n_heads:
            arrays["z2z_composed"] = compose.composed(att[0][pos], mlp.arrays[0][pos])
        arrays.update(measured.get(l, {}))
        result.layers[l] = arrays
    result.meta["completeness"] = results.completeness_summary(result.layers, targets, heads,
                                                               cfg.auto_tol)
    if words is not None:
        result.meta["words"], result.meta["word_ids"] = words
    if cfg.words:
        result = to_word_level(result)
    timings["total_s"] = time.perf_counter() - t0
    return result


def _raw(quantity: str, cfg: LIGConfig) -> str:
    """The raw run behind the configured baseline of `quantity` (its completeness)."""
    name = getattr(cfg, f"baseline_{ {'z2z': 'layer', 'z2u': 'att', 'u2z': 'mlp'}[quantity]}")
    return baselines.get(quantity, name).raw


def _layer_of(res: StepResult, l: int) -> StepResult:
    """The slice of a layer-stacked result for layer position l."""
    return StepResult(tuple(a[l] for a in res.arrays), res.steps[l], res.weight_sum[l],
                      None if res.converged is None else res.converged[l], res.rule)


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
    skip_bad: bool = False,
    on_bad: Callable[[int, str], None] | None = None,
    between: Callable[[], None] = lambda: None,
    **kwargs: Any,
) -> list[dict[str, Any] | None]:
    """`explain` for many sentences with one model load and shared compiled programs.

    Every text is tokenised before any is computed: one that cannot be explained (empty,
    longer than the model allows) raises `BadText` ("text K: …", K its 0-based position)
    unless `skip_bad`; then `on_bad(K, message)` is called and its slot of the returned
    list is None. Sentences are padded to length buckets, so each bucket compiles once (the
    programs stay cached, whatever the order); they are returned in input order.
    `on_result(i, result)` is called, in input order, as soon as sentence i and those
    before it are done (to write it out), then `between()` (where a caller raises a stop;
    the sentences already running still finish and reach `on_result`). With `mesh` "DxM"
    the data axis deals sentences: D run at once, each on its own M devices. Options as
    for `explain` (keywords, or `config`).
    """
    cfg = config or LIGConfig(**kwargs)
    validate(cfg)
    say = progress or (lambda _msg: None)
    mesh = make_mesh(cfg.mesh) if cfg.mesh is not None else None
    with _device_context(cfg.device):
        lm = load_model(cfg.model, mesh)
        lengths: list[int | None] = []
        for i, text in enumerate(texts):
            try:
                lengths.append(len(tokenize(lm, text)[0]))
            except LIGError as e:
                if not skip_bad:
                    raise BadText(i, str(e)) from None
                lengths.append(None)
                if on_bad is not None:
                    on_bad(i, str(e))
        good = sum(n is not None for n in lengths)
        out: list[dict[str, Any] | None] = [None] * len(texts)
        todo = [i for i, n in enumerate(lengths) if n is not None]
        # the data axis deals sentences: one worker per data row, each on its 1×M mesh
        # (a single sentence keeps the whole mesh: its targets are dealt instead)
        row_meshes = [mesh] if mesh is None or len(todo) == 1 else rows.data_rows(mesh)
        workers = [(rows.model_on_row(lm, mesh, r) if r is not None else lm, r)
                   for r in row_meshes]
        share = len(workers) if jax.devices()[0].platform == "cpu" else 1
        begun = itertools.count(1)

        def work(worker: tuple[LoadedModel, Any], i: int) -> dict[str, Any]:
            row_lm, row = worker
            say(f"sentence {next(begun)}/{good} ({lengths[i]} tokens)")
            return schema.explanation(_explain_loaded(
                row_lm, texts[i], cfg, lambda _m: None, {}, time.perf_counter(), True,
                row, share))

        flushed = [0]  # results go out in input order

        def keep(i: int, result: dict[str, Any]) -> None:
            out[i] = result
            while flushed[0] < len(todo) and out[todo[flushed[0]]] is not None:
                if on_result is not None:
                    on_result(todo[flushed[0]], out[todo[flushed[0]]])
                flushed[0] += 1

        rows.over_rows(workers, todo, work, keep, between)
    return out


def explain_to_json(text: str, **kwargs: Any) -> str:
    """`json.dumps(explain(text, **kwargs), indent=2, ensure_ascii=False)`."""
    return json.dumps(explain(text, **kwargs), indent=2, ensure_ascii=False)
