"""The gradient methods of an output: IG on the word embeddings, gradient × input, AttnLRP.

All three differentiate the same function of the word embeddings w [S, e]

    F(w) = target values [T] of  final_norm(B_{L−1}(… B_0(embed_words(w, ids)) …))

(`targets.values`), one reverse pass per column (a `vjp` vmapped over the T cotangents):

    grad_x_input   score[s, t] = Σ_e w[s, e] · ∂F_t/∂w[s, e]
    ig             score[s, t] = Σ_e (w − w′)[s, e] · Σ_k ω_k ∂F_t/∂w (w′ + α_k (w − w′))
                   (quadrature nodes α_k, weights ω_k; `lig_jax.quadrature`), and its
                   completeness: Σ_s score[s, t] against Σω · (F_t(w) − F_t(w′))
    attnlrp        the same gradient × input, traced under AttnLRP's rules
                   (`models.rules`), plus the relevance of every hidden state z^(l):
                   R_l[s, t] = Σ_d z^(l)[s, d] · ∂̃F_t/∂z^(l)[s, d], taken with zero probes
                   added after the embedding and after every block

The model's parameters enter as a split NNX state (one compiled program per family shape,
input length and column count); the IG nodes are dealt in chunks sized by the memory budget.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..models import rules
from .targets import values


def _stack(model: Any, words: jax.Array, ids: jax.Array, key_mask: jax.Array,
           probes: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """(z^(L) [S, d], z^(0) … z^(L) [L+1, S, d]) from the word embeddings."""
    z = model.embed_words(words, ids)
    if probes is not None:
        z = z + probes[0]
    states = [z]
    for l, block in enumerate(model.layers):
        z = block(z, key_mask)
        if probes is not None:
            z = z + probes[l + 1]
        states.append(z)
    return z, jnp.stack(states)


def _function(graphdef, state, unembed, ids, key_mask, cols, kind, output, softcap, lrp):
    """F(w, probes) → (values [T], hidden states [L+1, S, d])."""
    from ..lm_head import LMHead

    head = None if unembed is None else LMHead(unembed, softcap)

    def f(words, probes):
        with rules.attnlrp() if lrp else nullcontext():
            model = nnx.merge(graphdef, state)
            z, states = _stack(model, words, ids, key_mask, probes)
            return values(kind, output, model.final_norm(z), key_mask, cols, head), states
    return f


@partial(jax.jit, static_argnames=("graphdef", "kind", "output", "softcap", "lrp"))
def gradients(graphdef, state, unembed, words, ids, key_mask, cols, probes=None, *,
              kind: str, output: str, softcap: float | None, lrp: bool = False):
    """At one point w [S, e]: (values [T], ∂F/∂w [T, S, e], hidden states [L+1, S, d],
    ∂F/∂z^(l) [T, L+1, S, d]); `probes`: zeros [L+1, S, d], or None to skip the last."""
    f = _function(graphdef, state, unembed, ids, key_mask, cols, kind, output, softcap, lrp)
    if probes is not None:
        v, vjp, states = jax.vjp(f, words, probes, has_aux=True)
        gw, gp = jax.vmap(vjp)(jnp.eye(v.shape[0], dtype=v.dtype))
        return v, gw, states, gp
    v, vjp, states = jax.vjp(lambda w: f(w, None), words, has_aux=True)
    (gw,) = jax.vmap(vjp)(jnp.eye(v.shape[0], dtype=v.dtype))
    return v, gw, states, None


@partial(jax.jit, static_argnames=("graphdef", "kind", "output", "softcap"))
def ig_chunk(graphdef, state, unembed, base, delta, alphas, weights, ids, key_mask, cols, *,
             kind: str, output: str, softcap: float | None):
    """Σ_k ω_k ∂F/∂w (w′ + α_k Δ) over one chunk of nodes → [T, S, e] (ω = 0 pads)."""
    f = _function(graphdef, state, unembed, ids, key_mask, cols, kind, output, softcap,
                  False)

    def grad_at(alpha):
        v, vjp, _ = jax.vjp(lambda w: f(w, None), base + alpha * delta, has_aux=True)
        return jax.vmap(vjp)(jnp.eye(v.shape[0], dtype=v.dtype))[0]
    g = jax.vmap(grad_at)(alphas)  # [c, T, S, e]
    return jnp.einsum("c,ctse->tse", weights, g)


@partial(jax.jit, static_argnames=("graphdef", "kind", "output", "softcap"))
def target_values(graphdef, state, unembed, words, ids, key_mask, cols, *, kind: str,
                  output: str, softcap: float | None):
    """F(w) [T] (the forward pass only)."""
    f = _function(graphdef, state, unembed, ids, key_mask, cols, kind, output, softcap,
                  False)
    return f(words, None)[0]


def node_bytes(cfg: Any, s: int, columns: int) -> int:
    """A rough working set of one IG node: the forward's residuals and T reverse passes
    (float32): per layer the attention probabilities and MLP activations of S rows."""
    per_layer = s * (3 * cfg.num_heads * s + 4 * cfg.intermediate_size + 12 * cfg.hidden_size)
    return 4 * cfg.num_layers * per_layer * (1 + columns)


def integrated(graphdef, state, unembed, words: jax.Array, baseline: jax.Array, ids, key_mask,
               cols, rule, *, kind: str, output: str, softcap: float | None, chunk: int
               ) -> np.ndarray:
    """Σ_e Δ ⊙ Σ_k ω_k ∂F/∂w(w′ + α_k Δ) → scores [S, T] (float64 on the host)."""
    delta = words - baseline
    alphas = np.asarray(rule.alphas, np.float32)
    weights = np.asarray(rule.weights, np.float32)
    n = len(alphas)
    chunk = max(1, min(chunk, n))
    total = None
    for start in range(0, n, chunk):
        a = np.zeros(chunk, np.float32)
        w = np.zeros(chunk, np.float32)
        part = slice(start, min(start + chunk, n))
        a[: part.stop - part.start] = alphas[part]
        w[: part.stop - part.start] = weights[part]
        g = ig_chunk(graphdef, state, unembed, baseline, delta, jnp.asarray(a),
                     jnp.asarray(w), ids, key_mask, cols, kind=kind, output=output,
                     softcap=softcap)
        total = g if total is None else total + g
    return np.asarray(jnp.einsum("tse,se->st", total, delta), np.float64)
