"""Targets: which scalar of the model's output each attribution column explains.

A target spec (`--target`) names a kind and its arguments (`names.TARGET_FORMS`):

    decoders  next                  the top next-token logit at the last position (the
                                    whole vocabulary, special tokens included)
              token:<id or token>   a given next token at the last position
              contrast:<a>,<b>      token a minus token b at the last position
              continuation:<text>   each token of <text>, teacher-forced: the text is
                                    appended and column t reads token t at the row before it
    encoders  hidden:<pos>:<dim>    one coordinate of the last hidden state
              hidden_sum:<pos>      the sum over the width of one row of it
              pooled                ‖mean over the tokens of the last hidden state‖₂
              similarity:<text>     cos(mean-pooled embedding, that of <text>)

Decoder targets read `--output` logit | prob | logprob of the LM head (`lm_head`). The last
hidden state is HF's: z^(L) through the model's final norm. `resolve` checks a spec against
a model and an input and returns a `Target`: its columns as arrays, so one compiled value
function (`values`) serves every input and every perturbation of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import LIGError
from .names import DECODER_TARGETS, OUTPUTS, TARGET_FORMS, TARGET_KINDS

POOLED = ("pooled", "similarity")


@dataclass(frozen=True)
class TargetSpec:
    """A parsed `--target`: kind, its argument text (None for next / pooled), output."""

    spec: str
    kind: str
    arg: str | None
    output: str


def _unquote(s: str) -> str:
    s = s.strip() if s.strip()[:1] in "\"'" else s
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return s


def parse(spec: str, output: str = "logit") -> TargetSpec:
    """Parse a target spec; one line naming the allowed forms otherwise."""
    if output not in OUTPUTS:
        raise LIGError(f"Unknown output {output!r}. Allowed: {', '.join(OUTPUTS)}")
    if not isinstance(spec, str) or not spec.strip():
        raise LIGError(f"target is empty. Allowed: {', '.join(TARGET_FORMS)}")
    kind, sep, arg = spec.strip().partition(":")
    kind = kind.strip()
    if kind not in TARGET_KINDS:
        raise LIGError(f"Unknown target {spec!r}. Allowed: {', '.join(TARGET_FORMS)}")
    needs_arg = kind not in ("next", "pooled")
    if needs_arg and not (sep and arg.strip()):
        form = TARGET_FORMS[TARGET_KINDS.index(kind)]
        raise LIGError(f"target {kind!r} needs an argument: {form}")
    if not needs_arg and sep:
        raise LIGError(f"target {kind!r} takes no argument. Got: {spec!r}")
    if kind not in DECODER_TARGETS and output != "logit":
        raise LIGError(f"--output {output} applies to the decoder targets "
                       f"({', '.join(DECODER_TARGETS)}); {kind!r} reads the hidden state")
    return TargetSpec(spec.strip(), kind, _unquote(arg) if needs_arg else None, output)


@dataclass(frozen=True)
class Target:
    """A target resolved for one input of S tokens (T columns).

    ids: the attributed sequence (the input, plus the continuation for continuation:);
    positions [T]: the row each column reads (−1 = all rows: pooled, similarity);
    tokens / others [T]: vocabulary ids read (and subtracted: contrast), −1 where none;
    dim: the coordinate of hidden:; reference: the other text's pooled embedding [d];
    labels [T]: a name per column."""

    spec: TargetSpec
    ids: tuple[int, ...]
    positions: np.ndarray
    tokens: np.ndarray
    others: np.ndarray
    labels: tuple[str, ...]
    dim: int = 0
    reference: np.ndarray | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def num_columns(self) -> int:
        return len(self.labels)

    def describe(self) -> dict:
        """JSON-able: spec, kind, output and per column label, position, token ids."""
        cols = []
        for t, label in enumerate(self.labels):
            col = {"label": label, "position": int(self.positions[t])}
            if self.tokens[t] >= 0:
                col["token_id"] = int(self.tokens[t])
            if self.others[t] >= 0:
                col["minus_token_id"] = int(self.others[t])
            cols.append(col)
        out = {"spec": self.spec.spec, "kind": self.kind, "output": self.spec.output,
               "columns": cols}
        if self.kind == "hidden":
            out["dim"] = self.dim
        return out


def _token_id(tok, text: str, vocab: int, what: str) -> int:
    """A vocabulary id from an integer string, an exact vocabulary entry, or a text that
    tokenises to exactly one token."""
    s = text.strip()
    if s.lstrip("-").isdigit():
        i = int(s)
        if not 0 <= i < vocab:
            raise LIGError(f"{what} id {i} is out of range. Allowed: 0..{vocab - 1}")
        return i
    exact = tok.convert_tokens_to_ids(text)
    unk = getattr(tok, "unk_token_id", None)
    if isinstance(exact, int) and exact >= 0 and exact != unk and exact < vocab:
        return exact
    pieces = tok(text, add_special_tokens=False)["input_ids"]
    if len(pieces) != 1 or not 0 <= pieces[0] < vocab:
        shown = tok.convert_ids_to_tokens(pieces)
        raise LIGError(f"{what} {text!r} is not one token of the model's vocabulary (it "
                       f"tokenises to {shown}); give a token id or a single token")
    return int(pieces[0])


def _position(arg: str, s: int, kind: str) -> int:
    try:
        p = int(arg.strip())
    except ValueError:
        raise LIGError(f"target {kind}: position {arg!r} is not an integer") from None
    if not -s <= p < s:
        raise LIGError(f"target {kind}: position {p} is out of range. Allowed: 0..{s - 1} "
                       f"(or −{s}..−1) for this {s}-token input")
    return p % s


def resolve(spec: TargetSpec, lm, ids: list[int], *, architecture: str,
            hidden_size: int, vocab: int) -> Target:
    """Check `spec` against the model (architecture, vocabulary, width) and the input ids;
    `next` is left with token −1 (`with_next` fills it in from the model's output)."""
    s, kind, tok = len(ids), spec.kind, lm.tokenizer
    none = np.full(1, -1, np.int32)
    if kind in DECODER_TARGETS and architecture != "decoder":
        raise LIGError(f"target {kind!r} needs a decoder (a causal LM); this model is an "
                       f"encoder. Allowed here: hidden:<pos>:<dim>, hidden_sum:<pos>, pooled, "
                       f"similarity:<text>")
    last = np.full(1, s - 1, np.int32)
    if kind == "next":
        return Target(spec, tuple(ids), last, none, none, ("next",))
    if kind == "token":
        t = _token_id(tok, spec.arg, vocab, "target token")
        return Target(spec, tuple(ids), last, np.full(1, t, np.int32), none,
                      (tok.convert_ids_to_tokens(t),))
    if kind == "contrast":
        a, sep, b = spec.arg.partition(",")
        if not sep or not a.strip() or not b.strip():
            raise LIGError(f"target contrast needs two tokens: contrast:<a>,<b>. Got: "
                           f"{spec.spec!r}")
        ta, tb = _token_id(tok, a, vocab, "contrast token"), _token_id(tok, b, vocab,
                                                                       "contrast token")
        label = f"{tok.convert_ids_to_tokens(ta)} − {tok.convert_ids_to_tokens(tb)}"
        return Target(spec, tuple(ids), last, np.full(1, ta, np.int32),
                      np.full(1, tb, np.int32), (label,))
    if kind == "continuation":
        cont = list(tok(spec.arg, add_special_tokens=False)["input_ids"])
        if not cont:
            raise LIGError("target continuation: the text gives no tokens")
        full = [*ids, *cont]
        if len(full) > lm.config.max_tokens:
            raise LIGError(f"input and continuation are {len(full)} tokens, more than the "
                           f"model's maximum of {lm.config.max_tokens}")
        t = len(cont)
        return Target(spec, tuple(full), np.arange(s - 1, s - 1 + t, dtype=np.int32),
                      np.asarray(cont, np.int32), np.full(t, -1, np.int32),
                      tuple(tok.convert_ids_to_tokens(cont)))
    if kind == "hidden":
        pos, sep, dim = spec.arg.partition(":")
        if not sep:
            raise LIGError(f"target hidden needs a position and a dimension: "
                           f"hidden:<pos>:<dim>. Got: {spec.spec!r}")
        p = _position(pos, s, kind)
        try:
            d = int(dim.strip())
        except ValueError:
            raise LIGError(f"target hidden: dimension {dim!r} is not an integer") from None
        if not 0 <= d < hidden_size:
            raise LIGError(f"target hidden: dimension {d} is out of range. Allowed: "
                           f"0..{hidden_size - 1}")
        return Target(spec, tuple(ids), np.full(1, p, np.int32), none, none,
                      (f"hidden[{p}, {d}]",), dim=d)
    if kind == "hidden_sum":
        p = _position(spec.arg, s, kind)
        return Target(spec, tuple(ids), np.full(1, p, np.int32), none, none,
                      (f"Σ hidden[{p}]",))
    if kind == "pooled":
        return Target(spec, tuple(ids), np.full(1, -1, np.int32), none, none, ("‖pooled‖",))
    return Target(spec, tuple(ids), np.full(1, -1, np.int32), none, none,  # similarity
                  (f"cos(·, {spec.arg!r})",))


def with_columns(target: Target, **changes) -> Target:
    """A copy with some fields replaced (next's token, similarity's reference)."""
    from dataclasses import replace

    return replace(target, **changes)


# --------------------------------------------------------------------------- values


def mean_pool(h: jax.Array, key_mask: jax.Array) -> jax.Array:
    """Rows h [S, d] → their mean over the real rows (key_mask [S] bool), [d]."""
    w = key_mask.astype(h.dtype)
    return jnp.sum(h * w[:, None], axis=0) / jnp.maximum(jnp.sum(w), 1.0)


def _norm(x: jax.Array) -> jax.Array:
    """‖x‖₂ with a finite gradient at 0."""
    sq = jnp.sum(x * x)
    safe = jnp.where(sq > 0, sq, 1.0)
    return jnp.where(sq > 0, jnp.sqrt(safe), 0.0)


def values(kind: str, output: str, h: jax.Array, key_mask: jax.Array, cols: dict,
           head=None) -> jax.Array:
    """The target's scalars [T] from the last hidden state h [S, d] (final-normed).

    cols: positions, tokens, others [T] int32, dim (int32 scalar), reference [d];
    head: the `lm_head.LMHead` (decoder targets). Pure and jit-able: `kind` and `output`
    are static, everything else is data."""
    if kind in DECODER_TARGETS:
        logits = head.logits(h[cols["positions"]])  # [T, V]
        if output == "prob":
            logits = jax.nn.softmax(logits, axis=-1)
        elif output == "logprob":
            logits = jax.nn.log_softmax(logits, axis=-1)
        take = lambda ids: jnp.take_along_axis(  # noqa: E731
            logits, jnp.maximum(ids, 0)[:, None], axis=-1)[:, 0]
        v = take(cols["tokens"])
        if kind == "contrast":
            v = v - take(cols["others"])
        return v
    if kind == "hidden":
        return h[cols["positions"][0], cols["dim"]][None]
    if kind == "hidden_sum":
        return jnp.sum(h[cols["positions"][0]])[None]
    pooled = mean_pool(h, key_mask)
    if kind == "pooled":
        return _norm(pooled)[None]
    ref = cols["reference"]
    return (jnp.sum(pooled * ref) / (_norm(pooled) * _norm(ref)))[None]


def column_arrays(target: Target, hidden_size: int) -> dict:
    """The arrays `values` reads for `target` (numpy; the caller puts them on devices)."""
    ref = target.reference if target.reference is not None else np.zeros(hidden_size)
    return {"positions": np.asarray(target.positions, np.int32),
            "tokens": np.asarray(target.tokens, np.int32),
            "others": np.asarray(target.others, np.int32),
            "dim": np.int32(target.dim), "reference": np.asarray(ref)}
