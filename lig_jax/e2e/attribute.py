"""`attribute()`: text → ids → target columns → every method's input scores [S_src, T].

The result (`Attribution`) holds JSON-able metadata and arrays

    methods/<name>            [S_src, T]     score of source token s for column t
    methods/<name>/layers     [L+1, S, T]    the same at every hidden state z^(0) … z^(L)
                                             (attnlrp: relevance; flows: the composed map)
    target/values             [T]            the target's value per column at the input

and is written as JSON (`to_json`) or .npz (`save`). Gradient methods run in one jitted
program per input (`gradients`); the flow methods read LIG's or the context-mixing measures'
rollouts, computed by `api.explain_arrays` on the same ids (`flows`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..config import LIGConfig
from ..errors import LIGError, choice_error
from ..files import write_atomic, write_text
from ..loading import LoadedModel, load_model
from ..memory import free_memory, memory_budget
from ..quadrature import RULES
from ..results import NPZ_ERRORS
from ..steps import relative_error, step_plan
from . import gradients as grads
from .names import (
    DEFAULT_IG_RULE,
    DEFAULT_IG_STEPS,
    DEFAULT_OUTPUT,
    DEFAULT_TARGET,
    DESCRIPTIONS,
    FLOW_METHODS,
    IG_BASELINES,
    method_list,
)
from .targets import Target, column_arrays, parse, resolve, with_columns

FORMAT = "lig-jax attribution"
DTYPES = {"float32": jnp.float32, "float64": jnp.float64}
VERSION = 1
Progress = Callable[[str], None]


@dataclass
class Attribution:
    """meta: JSON-able (text, tokens, model, target, per-method details); arrays: see the
    module doc."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.meta["methods"])

    def scores(self, method: str) -> np.ndarray:
        """[S_src, T] of one method."""
        return self.arrays[f"methods/{method}"]

    def to_json(self) -> dict[str, Any]:
        """The JSON dict: the metadata, with each method's `scores` (and `layers`)."""
        out = json.loads(json.dumps(self.meta))
        out["target"]["values"] = self.arrays["target/values"].tolist()
        for m, info in out["methods"].items():
            info["scores"] = self.arrays[f"methods/{m}"].tolist()
            if f"methods/{m}/layers" in self.arrays:
                info["layers"] = self.arrays[f"methods/{m}/layers"].tolist()
        return out


def save(att: Attribution, path: str | Path) -> Path:
    """Write `att` as .json (the `to_json` dict) or .npz (arrays + `meta`), atomically."""
    path = Path(path)
    if path.suffix == ".npz":
        arrays = {k: np.asarray(v) for k, v in att.arrays.items()}
        arrays["meta"] = np.asarray(json.dumps(att.meta, ensure_ascii=False))
        return write_atomic(path, lambda fh: np.savez_compressed(fh, **arrays))
    if path.suffix != ".json":
        raise LIGError(f"output file {path} must end in .json or .npz")
    return write_text(path, json.dumps(att.to_json(), ensure_ascii=False))


def load(path: str | Path) -> Attribution:
    """Read a file written by `save` (.json or .npz); one line for anything else."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {k: data[k] for k in data.files if k != "meta"}
        else:
            out = json.loads(path.read_text())
            arrays = {"target/values": np.asarray(out["target"].pop("values"), np.float64)}
            for m, info in out["methods"].items():
                arrays[f"methods/{m}"] = np.asarray(info.pop("scores"), np.float64)
                if "layers" in info:
                    arrays[f"methods/{m}/layers"] = np.asarray(info.pop("layers"), np.float64)
            meta = out
    except FileNotFoundError:
        raise LIGError(f"attribution file not found: {path}") from None
    except (*NPZ_ERRORS, KeyError, TypeError, AttributeError) as e:
        raise LIGError(f"{path} is not a readable lig-jax attribution ({type(e).__name__})"
                       ) from None
    if meta.get("format", {}).get("name") != FORMAT:
        raise LIGError(f"{path} is not a lig-jax attribution (format {FORMAT!r})")
    return Attribution(meta, arrays)


def is_attribution(path: str | Path) -> bool:
    """True for a file `save` wrote (checked by its format name, without the arrays)."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
        elif path.suffix == ".json":
            with open(path, encoding="utf-8") as fh:
                head = fh.read(200)
            return f'"name": "{FORMAT}"' in head
        else:
            return False
    except Exception:  # unreadable or not an .npz at all: not an attribution (a probe)
        return False
    return isinstance(meta, dict) and meta.get("format", {}).get("name") == FORMAT


def compare(a: Attribution, b: Attribution) -> list[dict[str, Any]]:
    """Rows {layer: method, quantity: scores | layers | target, n, max_abs, max_rel} for
    the arrays both hold (max_rel = max_abs / max |b|, as `lig_jax.compare`); one line if
    the inputs or targets differ."""
    if a.meta["input_ids"] != b.meta["input_ids"]:
        raise LIGError("the two attributions are of different inputs (input_ids differ)")
    if a.meta["target"]["spec"] != b.meta["target"]["spec"]:
        raise LIGError(f"the two attributions explain different targets "
                       f"({a.meta['target']['spec']!r} and {b.meta['target']['spec']!r})")
    rows = []
    for key in sorted(set(a.arrays) & set(b.arrays)):
        xa, xb = np.asarray(a.arrays[key], np.float64), np.asarray(b.arrays[key], np.float64)
        if xa.shape != xb.shape:
            raise LIGError(f"{key} has shape {xa.shape} in one and {xb.shape} in the other")
        diff = float(np.max(np.abs(xa - xb))) if xa.size else 0.0
        big = float(np.max(np.abs(xb))) if xb.size else 0.0
        rel = diff / big if big > 0 else (0.0 if diff == 0 else 1.0)
        parts = key.split("/")
        method = parts[1] if parts[0] == "methods" else "target"
        quantity = parts[2] if len(parts) > 2 else ("scores" if parts[0] == "methods"
                                                    else parts[1])
        rows.append({"layer": method, "quantity": quantity, "n": int(xa.size),
                     "max_abs": diff, "max_rel": rel})
    if not rows:
        raise LIGError("nothing to compare: the two attributions share no method")
    return rows


# ------------------------------------------------------------------------ the inputs


def input_of(lm: LoadedModel, text: str | None, input_ids: Sequence[int] | None
             ) -> tuple[list[int], str]:
    """(ids, text) from the text or pre-tokenised ids, checked as `explain` checks them."""
    from ..api import from_ids, tokenize

    if (text is None) == (input_ids is None):
        raise LIGError("give the text or input_ids (pre-tokenised), one of the two")
    if input_ids is not None:
        ids, _ = from_ids(lm, input_ids)
        return ids, lm.tokenizer.decode(ids)
    return tokenize(lm, text)[0], text


def target_for(lm: LoadedModel, ids: list[int], target: str | None, output: str) -> Target:
    """The resolved target of one input (the default by architecture where None); `next`
    gets the top token and `similarity` the other text's embedding from the model."""
    arch = lm.family.architecture
    spec = parse(target or DEFAULT_TARGET[arch], output)
    vocab = min(lm.config.vocab_size, len(lm.tokenizer))
    t = resolve(spec, lm, ids, architecture=arch, hidden_size=lm.config.hidden_size,
                vocab=vocab)
    if t.kind == "next":
        from ..lm_head import lm_head

        h = last_hidden(lm, list(t.ids))
        logits = np.asarray(lm_head(lm).logits(h[int(t.positions[0])][None]))[0]
        top = int(np.argmax(logits))
        t = with_columns(t, tokens=np.full(1, top, np.int32),
                         labels=(lm.tokenizer.convert_ids_to_tokens(top),))
    elif t.kind == "similarity":
        from ..api import tokenize

        other, _ = tokenize(lm, spec.arg)
        from .targets import mean_pool

        h = last_hidden(lm, other)
        ref = mean_pool(h, jnp.ones(len(other), bool))
        t = with_columns(t, reference=np.asarray(ref, np.float32))
    return t


def last_hidden(lm: LoadedModel, ids: list[int]) -> jax.Array:
    """HF's last hidden state [S, d] (final norm applied) of one input, computed padded
    (masked) to its length bucket, so inputs of new lengths reuse the compiled program."""
    from ..engine import bucket_length

    s = len(ids)
    length = bucket_length(s, lm.config.max_tokens)
    padded = jnp.asarray([*ids, *[lm.config.pad_token_id] * (length - s)], jnp.int32)
    graphdef, state = nnx.split(lm.model)
    return _final_states(graphdef, state, padded, jnp.arange(length) < s)[:s]


@partial(jax.jit, static_argnames=("graphdef",))
def _final_states(graphdef, state, ids, key_mask):
    model = nnx.merge(graphdef, state)
    return model.final_norm(model.hidden_states(ids, key_mask)[-1])


def pad_baseline(lm: LoadedModel, ids: list[int]) -> list[int]:
    """The `pad` baseline's ids: every token the pad token, special tokens kept."""
    special = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
    pad = lm.config.pad_token_id
    return [i if i in special else pad for i in ids]


# ------------------------------------------------------------------------ the methods


def attribute(text: str | None = None, *, input_ids: Sequence[int] | None = None,
              model: str | None = None, target: str | Target | None = None,
              output: str = DEFAULT_OUTPUT, methods: str | Sequence[str] | None = None,
              num_steps: int | str = DEFAULT_IG_STEPS, rule: str = DEFAULT_IG_RULE,
              baseline: str = "zero", auto_tol: float = LIGConfig.auto_tol,
              max_steps: int = LIGConfig.max_steps,
              lig_steps: int | str = LIGConfig.num_steps, memory_budget: int | str | None = None,
              dtype: str = "float32", bucket: bool = False,
              progress: Progress | None = None) -> Attribution:
    """Input attributions of one output of `model` for `text` (or `input_ids`).

    target: a spec of `targets` (default: `next` for decoders, `pooled` for encoders), or a
    `Target` already resolved by `target_for` for these ids (a corpus run resolves once);
    output: logit | prob | logprob (decoder targets); methods: names of `names.METHODS`
    or "all" (default ig, grad_x_input, attnlrp); num_steps, rule, baseline (zero | pad),
    auto_tol, max_steps: IG's quadrature (`num_steps="auto"` doubles until each column's
    completeness error is below auto_tol); lig_steps: the steps of LIG's per-layer maps
    (lig_flow); dtype: float32, or float64 for checks (needs 64-bit JAX:
    JAX_ENABLE_X64=1 or `jax.enable_x64`); bucket: pad (masked) to a length bucket, so
    inputs of new lengths reuse compiled programs (a corpus). Returns an `Attribution`."""
    say = progress or (lambda _m: None)
    names = method_list(methods)
    if baseline not in IG_BASELINES:
        raise choice_error("IG baseline", baseline, IG_BASELINES)
    if rule not in RULES:
        raise choice_error("quadrature rule", rule, RULES)
    plan = step_plan(rule, num_steps, auto_tol, max_steps)
    if dtype not in DTYPES:
        raise choice_error("dtype", dtype, DTYPES)
    if jnp.zeros((), DTYPES[dtype]).dtype != DTYPES[dtype]:
        raise LIGError("dtype float64 needs 64-bit JAX: set JAX_ENABLE_X64=1")
    t0 = time.perf_counter()
    say(f"loading {model or 'default'}")
    lm = load_model(model)
    ids, text = input_of(lm, text, input_ids)
    if isinstance(target, Target):
        if list(target.ids) != list(ids):
            raise LIGError("the resolved target was made for other input ids")
        tgt = target
    else:
        tgt = target_for(lm, ids, target, output)
    timings = {"load_s": time.perf_counter() - t0}
    arrays, info = {}, {}
    state = _Inputs(lm, tgt, budget=memory_budget, dtype=DTYPES[dtype], bucket=bucket)
    arrays["target/values"] = state.values()
    for m in names:
        t1 = time.perf_counter()
        say(f"{m}")
        if m == "ig":
            arrays["methods/ig"], info["ig"] = state.ig(plan, baseline)
        elif m == "grad_x_input":
            arrays["methods/grad_x_input"] = state.grad_x_input()
            info[m] = {}
        elif m == "attnlrp":
            scores, layers, cons = state.attnlrp()
            arrays["methods/attnlrp"], arrays["methods/attnlrp/layers"] = scores, layers
            info[m] = {"conservation": cons}
        timings[f"{m}_s"] = time.perf_counter() - t1
    flows = [m for m in names if m in FLOW_METHODS]
    if flows:
        from .flows import flow_scores

        t1 = time.perf_counter()
        for m, (scores, layers) in flow_scores(lm, model, tgt, flows, lig_steps,
                                                memory_budget, say, bucket).items():
            arrays[f"methods/{m}"], arrays[f"methods/{m}/layers"] = scores, layers
            info[m] = {}
        timings["flows_s"] = time.perf_counter() - t1
    for m in names:
        info[m] = {"description": DESCRIPTIONS[m], **info[m]}
    timings["total_s"] = time.perf_counter() - t0
    tokens = lm.tokenizer.convert_ids_to_tokens(list(tgt.ids))
    meta = {"format": {"name": FORMAT, "version": VERSION}, "model": lm.name,
            "model_type": lm.model_type, "architecture": lm.family.architecture,
            "text": text, "tokens": tokens, "input_ids": list(tgt.ids),
            "num_input_tokens": len(ids), "target": tgt.describe(),
            "methods": {m: info[m] for m in names}, "timings": timings,
            "versions": _versions(lm)}
    return Attribution(meta, arrays)


def _versions(lm: LoadedModel) -> dict[str, str]:
    from ..api import _versions as v

    return v(lm)


class _Inputs:
    """One input's arrays on the device and the model split for the jitted programs."""

    def __init__(self, lm: LoadedModel, target: Target, budget: int | str | None = None,
                 dtype: Any = jnp.float32, bucket: bool = False):
        from ..lm_head import lm_head

        self.lm, self.target = lm, target
        self.graphdef, self.state = nnx.split(lm.model)
        head = lm_head(lm) if target.kind in ("next", "token", "contrast",
                                              "continuation") else None
        self.unembed = None if head is None else head.unembed.astype(dtype)
        self.state = jax.tree.map(
            lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating)
            and a.dtype != dtype else a,
            self.state)
        self.softcap = None if head is None else head.softcap
        self.s = s = len(target.ids)
        length = s
        if bucket:  # pad (masked) to a length bucket: new lengths reuse compiled programs
            from ..engine import bucket_length

            length = bucket_length(s, lm.config.max_tokens)
        padded = [*target.ids, *[lm.config.pad_token_id] * (length - s)]
        self.ids = jnp.asarray(padded, jnp.int32)
        self.key_mask = jnp.arange(length) < s
        self.cols = {k: jnp.asarray(v) for k, v in
                     column_arrays(target, lm.config.hidden_size).items()}
        self.words = lm.model.word_embed(self.ids).astype(dtype)
        self.dtype = dtype
        self.static = dict(kind=target.kind, output=target.spec.output, softcap=self.softcap)
        s, t = len(target.ids), target.num_columns
        need = grads.node_bytes(lm.config, s, t)
        if need > free_memory():
            raise LIGError(f"one gradient of this {s}-token input needs about "
                           f"{need / 2**30:.1f} GiB, more than the free memory "
                           f"({free_memory() / 2**30:.1f} GiB); shorten the text")
        self.chunk = max(1, memory_budget(budget) // need)

    def _args(self):
        return (self.graphdef, self.state, self.unembed)

    def values(self, words: jax.Array | None = None) -> np.ndarray:
        w = self.words if words is None else words
        return np.asarray(grads.target_values(*self._args(), w, self.ids, self.key_mask,
                                              self.cols, **self.static), np.float64)

    def grad_x_input(self) -> np.ndarray:
        _, gw, _, _ = grads.gradients(*self._args(), self.words, self.ids, self.key_mask,
                                      self.cols, **self.static)
        return np.asarray(jnp.einsum("tse,se->st", gw, self.words), np.float64)[: self.s]

    def baseline(self, name: str) -> jax.Array:
        if name == "zero":
            return jnp.zeros_like(self.words)
        pads = jnp.asarray(pad_baseline(self.lm, np.asarray(self.ids).tolist()), jnp.int32)
        return self.lm.model.word_embed(pads).astype(self.dtype)

    def ig(self, plan, baseline: str) -> tuple[np.ndarray, dict]:
        base = self.baseline(baseline)
        change = self.values() - self.values(base)

        def compute(rule):
            scores = grads.integrated(*self._args(), self.words, base, self.ids,
                                      self.key_mask, self.cols, rule, chunk=self.chunk,
                                      **self.static)[: self.s]
            err = relative_error(scores.sum(axis=0), change, rule.weight_sum)
            return (scores.T,), err
        res = plan.run(compute)
        scores = res.arrays[0].T
        sums = scores.sum(axis=0)
        info = {"baseline": baseline, "quadrature": plan.describe(),
                "completeness": {
                    "sum": sums.tolist(), "change": change.tolist(),
                    "weight_sum": res.weight_sum.tolist(),
                    "relative_error": relative_error(sums, change, res.weight_sum).tolist(),
                    "steps": res.steps.tolist()}}
        if res.converged is not None:
            info["completeness"]["converged"] = res.converged.tolist()
        return scores, info

    def attnlrp(self) -> tuple[np.ndarray, np.ndarray, dict]:
        n = self.lm.config.num_layers + 1
        probes = jnp.zeros((n, len(self.ids), self.lm.config.hidden_size),
                           self.words.dtype)
        v, gw, states, gp = grads.gradients(*self._args(), self.words, self.ids,
                                            self.key_mask, self.cols, probes, lrp=True,
                                            **self.static)
        scores = np.asarray(jnp.einsum("tse,se->st", gw, self.words), np.float64)[: self.s]
        layers = np.asarray(jnp.einsum("tlsd,lsd->lst", gp, states), np.float64)[:, : self.s]
        v = np.asarray(v, np.float64)
        sums = layers.sum(axis=1)  # [L+1, T]
        err = np.abs(sums - v) / np.maximum(np.abs(v), 1e-30)
        cons = {"value": v.tolist(), "input_sum": scores.sum(axis=0).tolist(),
                "layer_sums": sums.tolist(), "relative_error": err.tolist()}
        return scores, layers, cons
