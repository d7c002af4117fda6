"""Per-source L2 z→u scores (the encoder convention, docs/spec.md §4): ‖Δ_i ⊙ T_ijh‖₂ with
T_ijh = Σ_k w_k ∇_{x_i} f_jh(x(α_k)) ∈ R^d, for any premap of `models.premap`.

The gradient of f_jh = ‖u_jh − u′_jh‖ with respect to source row i runs through the
premap: with y_v = A_ji p_jh (value side), y_k = τ β_ji R_iᵀ q_jh (key side) and, for
i = j under the zero baseline, y_q = τ R_jᵀ Σ_i′ β_ji′ k_i′ (query side),

    ∇_{x_i} f_jh = J_N(x_i)ᵀ (W_V y_v + W_K y_k [+ W_Q y_q]),
    J_N(x)ᵀ u = (1/σ) [γ⊙u − mean(γ⊙u) − x̂ ⟨x̂, γ⊙u⟩ / d],   x̂ = x̄ / σ

(LayerNorm; RMSNorm drops the mean; no norm: J = I, σ = 1). The node sum cannot be taken
inside J_N, whose σ and x̂ move with α, but every α-dependent part is a scalar per
(j, i, h) or a known row vector: x̄ is a combination of z̄_j and z̄_i (ITB: x̄ = z̄_j +
α(z̄_i − z̄_j); zero: x̄ = α z̄_i), and ⟨x̄ ⊙ γ, W y⟩ = ⟨x̄ γ W, y⟩ is a product of head-space
vectors the integrand already has. So the node sum keeps head-space accumulators
(acc_v, the key vectors: [T, S, Hs, e]) and a few scalar ones ([Hs, T, S]), and `scores`
maps them to R^d once per target: T = W̃_V acc_v + W̃_K R_iᵀ acc_k − m·1 − c_j z̄_j − c_i z̄_i
(+ the query part on the diagonal), W̃ = diag(γ) W. Cost per node O(T·S·Hs·e); the d-wide
assembly happens once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..models.common import PRECISION
from ..models.premap import Premap
from ..models.rope import rotate_half

# one target's gradient block is S × Hs × d floats; keep a batch of them near 64 MB
ASSEMBLY_BYTES = 64 * 2**20


def _es(spec: str, *xs: jax.Array) -> jax.Array:
    return jnp.einsum(spec, *xs, precision=PRECISION)


def check_premap(pm: Premap) -> None:
    """The decomposition below covers an input norm, projections and RoPE (every encoder
    family); q/k norms would need their own Jacobians."""
    if pm.q_norm is not None or pm.k_norm is not None:
        raise NotImplementedError("per-source L2 z→u behind q/k norms")


def rotate(x: jax.Array, cos: jax.Array, sin: jax.Array, inverse: bool = False
           ) -> jax.Array:
    """R_i x (or R_iᵀ x) for x [S, H, e] at positions i (cos, sin [S, e])."""
    sign = -1.0 if inverse else 1.0
    return x * cos[:, None] + sign * rotate_half(x) * sin[:, None]


def pieces(pm: Premap, shared: dict, heads: jax.Array, s: int) -> dict:
    """Per-layer arrays of the assembly: W̃_V, W̃_K, W̃_Q [d, Hs, e], the mean rows w̄
    [Hs, e] (LayerNorm), and the rotated per-position copies the scalars need."""
    check_premap(pm)
    grp = heads // pm.repeat
    gamma = 1.0 if pm.norm is None else pm.norm.gamma[:, None, None]
    out = {"groups": grp, "wv": (gamma * pm.wv)[:, grp], "wk": (gamma * pm.wk)[:, grp],
           "wq": (gamma * pm.wq)[:, heads]}
    rope = pm.rope(s)
    dtype = shared["zc"].dtype
    if rope is not None:
        out["cos"], out["sin"] = (jnp.asarray(a, dtype) for a in rope)
    if pm.norm is not None and pm.norm.kind == "layer":
        out["mv"], out["mk"], out["mq"] = (jnp.mean(out[k], axis=0) for k in ("wv", "wk", "wq"))
    return out


def _rot(lp: dict, x: jax.Array, inverse: bool = False) -> jax.Array:
    return x if "cos" not in lp else rotate(x, lp["cos"], lp["sin"], inverse)


def _at(lp: dict, x: jax.Array, s: int) -> jax.Array:
    """A per-head row x [Hs, e] placed at every position and rotated: R_i x, [S, Hs, e]."""
    return _rot(lp, jnp.broadcast_to(x, (s, *x.shape)))


def scores(pm: Premap, lp: dict, zc: jax.Array, delta: jax.Array, js: jax.Array,
           acc_v: jax.Array, key: jax.Array | tuple[jax.Array, jax.Array],
           mean: jax.Array | None, c_j: jax.Array | None, c_i: jax.Array | None,
           query: jax.Array | None) -> jax.Array:
    """A batch of b targets' scores [Hs, b, S] from their accumulators (head-major
    throughout, so the d-wide norm runs along the last axis of the matmul's output).

    js [b]: the targets; acc_v: [b, S, Hs, e]; key: [b, S, Hs, e] (before the inverse
    rotation R_iᵀ), or, where the key side is one row per head scaled per source (ITB
    without RoPE: τ β_ji q_j), the pair (scale [Hs, b, S], row [b, Hs, e]) — then W̃_K is
    applied to the row once, not to every source (half the assembly's matmul work); mean,
    c_j, c_i: [Hs, b, S] coefficients of 1, z̄_j and z̄_i (None where the norm has no such
    term); query: [b, Hs, d], added on the diagonal i = j (None: no query part); delta:
    Δ [b, S, d] of each target's path, or [S, d] shared by all.
    """
    g = _es("tihe,dhe->htid", acc_v, lp["wv"])
    if isinstance(key, tuple):
        scale, row = key
        g = g + scale[..., None] * _es("dhe,the->htd", lp["wk"], row)[:, :, None]
    else:
        g = g + _es("tihe,dhe->htid", _rot(lp, key, inverse=True), lp["wk"])
    if mean is not None:
        g = g - mean[..., None]
    if c_j is not None:
        g = g - c_j[..., None] * zc[js][None, :, None, :]
    if c_i is not None:
        g = g - c_i[..., None] * zc[None, None]
    if query is not None:
        g = g.at[:, jnp.arange(js.shape[0]), js].add(jnp.swapaxes(query, 0, 1))
    return jnp.linalg.norm(g * (delta[None] if delta.ndim == 3 else delta), axis=-1)


def batch_size(t: int, s: int, heads: int, d: int) -> int:
    return max(1, min(t, ASSEMBLY_BYTES // max(1, 12 * s * heads * d)))


def in_batches(fn, targets: jax.Array, size: int) -> jax.Array:
    """fn(idx [b], js [b]) → [Hs, b, S] over every target in batches of `size` (a
    `lax.map`; the last batch repeats its final target) → [T, Hs, S]."""
    t = targets.shape[0]
    nb = -(-t // size)
    idx = jnp.minimum(jnp.arange(nb * size), t - 1)
    out = jax.lax.map(lambda a: fn(*a), (idx.reshape(nb, size), targets[idx].reshape(nb, size)))
    out = jnp.transpose(out, (0, 2, 1, 3))  # [nb, b, Hs, S]
    return out.reshape(nb * size, *out.shape[2:])[:t]


# ------------------------------------------------------------------------------ ITB


def itb_reduce(pm: Premap, lp: dict, chunk: dict, tau: float, d: int, weights, v) -> dict:
    """Contract a step of k ITB nodes' factors into the accumulators. Head-major node
    values: probs, beta, pvi [Hs, k, T, S], p [Hs, k, T, e], pvj [Hs, k, T, 1], signed
    [Hs, k, T]; ca [k, T, S] (1/σ), alpha [k]."""
    wa = weights[:, None, None] * v["ca"]  # [k, T, S]: w_k / σ_ji(α_k)
    acc = {"signed": _es("k,hkt->ht", weights, v["signed"]),
           "v": _es("hkti,hkte->tihe", v["probs"] * wa[None], v["p"]),
           "b": tau * _es("kti,hkti->hti", wa, v["beta"])}
    if "mv" in lp:
        pm_v = _es("hkte,he->hkt", v["p"], lp["mv"])[..., None]
        acc["m"] = _es("kti,hkti->hti", wa, v["probs"] * pm_v
                       + tau * v["beta"] * chunk["kq"][:, None])
    if pm.norm is not None:
        al = v["alpha"][None, :, None, None]
        t = (v["probs"] * (v["pvj"] + al * (v["pvi"] - v["pvj"]))
             + v["beta"] * (chunk["qj"][:, None] + al * chunk["qd"][:, None]))  # τ is in q
        w3 = wa * v["ca"] ** 2 / d
        acc["xj"] = _es("kti,hkti->hti", w3, t)
        acc["xd"] = _es("kti,hkti->hti", w3 * v["alpha"][:, None, None], t)
    return acc


def itb_pieces(pm: Premap, shared: dict, chunk: dict, heads: jax.Array, s: int
               ) -> tuple[dict, jax.Array | None]:
    """The assembly pieces and, for LayerNorm, ⟨R_i w̄_K, q_j⟩ [Hs, T, S] (fixed along j's
    path; it runs along the sources, so it belongs with the chunk's source arrays)."""
    lp = pieces(pm, shared, heads, s)
    kq = None
    if "mk" in lp:
        kq = _es("the,ihe->hti", chunk["q"], _at(lp, lp["mk"], s))
    return lp, kq


def itb_scores(pm: Premap, lp: dict, chunk: dict, z: jax.Array, zc: jax.Array, acc: dict
               ) -> jax.Array:
    """[T, Hs, S] from the ITB accumulators (Δ_i = z_i − z_j; the target's own score is
    0 as Δ_j = 0)."""
    targets, q = chunk["targets"], chunk["q"]
    s, d = z.shape
    norm = pm.norm is not None

    def batch(t, js):
        if "cos" in lp:  # R_iᵀ differs per source: the key vectors acc_b · q_j [b, S, Hs, e]
            key = jnp.transpose(acc["b"][:, t], (1, 2, 0))[..., None] * q[t][:, None]
        else:  # W̃_K (acc_b q_j) = acc_b · (W̃_K q_j): one row per head
            key = (acc["b"][:, t], q[t])
        return scores(pm, lp, zc, z[None] - z[js][:, None], js, acc["v"][t], key,
                      acc["m"][:, t] if "m" in acc else None,
                      (acc["xj"][:, t] - acc["xd"][:, t]) if norm else None,
                      acc["xd"][:, t] if norm else None, None)

    return in_batches(batch, targets, batch_size(targets.shape[0], s, q.shape[1], d))


# ----------------------------------------------------------------------------- zero


def zero_pieces(pm: Premap, shared: dict, heads: jax.Array, z: jax.Array) -> dict:
    """The rotated normalised rows the zero-baseline scalars read: R_i N^K_i, R_j N^Q_j
    [S, Hs, e] (norm-first premaps), R_i w̄_K, R_j w̄_Q (LayerNorm)."""
    s = z.shape[0]
    lp = pieces(pm, shared, heads, s)
    if pm.norm is not None:
        n = shared["zc"] * pm.norm.gamma
        lp["rnk"] = _rot(lp, shared["nk"][:, lp["groups"]])
        lp["rnq"] = _rot(lp, _es("sd,dhe->she", n, pm.wq[:, heads]))
    if "mk" in lp:
        lp["rmk"], lp["rmq"] = _at(lp, lp["mk"], s), _at(lp, lp["mq"], s)
    return lp


def zero_node_parts(pm: Premap, lp: dict, shared: dict, targets, alpha, q_t, p, probs, beta,
                    tbk) -> dict:
    """The per-node factors of the zero-baseline accumulators (x_i(α) = α z_i).

    q_t, p, τΣ_i β k_i (`tbk`): [T, Hs, e] at this node; probs, beta: [Hs, T, S]."""
    v = {"alpha": alpha, "probs": probs, "beta": beta, "p": p, "q": q_t, "tbk": tbk}
    if pm.norm is not None:
        d = shared["zc"].shape[-1]
        ms = alpha * alpha * shared["sq"] / d  # the norm's variance of α z_i, [S]
        v["ca"] = 1.0 / jnp.sqrt(ms + pm.norm.eps)
        v["pv"] = _es("the,ihe->hti", p, shared["nv"][:, lp["groups"]])
        v["qnk"] = _es("the,ihe->hti", q_t, lp["rnk"])
        v["qnq"] = _es("the,the->ht", lp["rnq"][targets], tbk)
    if "rmk" in lp:
        v["pmv"] = _es("the,he->ht", p, lp["mv"])
        v["kq"] = _es("the,ihe->hti", q_t, lp["rmk"])
        v["qb"] = _es("the,the->ht", lp["rmq"][targets], tbk)
    return v


def zero_reduce(pm: Premap, lp: dict, targets, tau: float, d: int, weights, v) -> dict:
    """Contract a chunk of zero-baseline nodes' factors into the accumulators."""
    k = weights.shape[0]
    s = v["probs"].shape[-1]
    ca = v["ca"] if "ca" in v else jnp.ones((k, s), weights.dtype)
    wi = weights[:, None] * ca  # [k, S]
    wt = wi[:, targets]  # [k, T]
    acc = {"signed": _es("k,kht->ht", weights, v["signed"]),
           "v": _es("khti,kthe->tihe", v["probs"] * wi[:, None, None], v["p"]),
           "k": tau * _es("khti,kthe->tihe", v["beta"] * wi[:, None, None], v["q"]),
           "q": _es("kt,kthe->the", wt, v["tbk"])}
    if "pmv" in v:
        acc["m"] = _es("ki,khti->hti", wi, v["probs"] * v["pmv"][..., None]
                       + tau * v["beta"] * v["kq"])
        acc["mq"] = _es("kt,kht->ht", wt, v["qb"])
    if "ca" in v:
        w3 = wi * (v["alpha"][:, None] * ca) ** 2 / d
        acc["x"] = _es("ki,khti->hti", w3, v["probs"] * v["pv"] + tau * v["beta"] * v["qnk"])
        acc["xq"] = _es("kt,kht->ht", w3[:, targets], v["qnq"])
    return acc


def zero_scores(pm: Premap, lp: dict, targets, z: jax.Array, zc: jax.Array, acc: dict
                ) -> jax.Array:
    """[T, Hs, S] from the zero-baseline accumulators (Δ_i = z_i)."""
    s, d = z.shape
    hs = acc["q"].shape[1]

    def batch(t, js):
        y_q = acc["q"][t]  # [b, Hs, e]: R_jᵀ τ Σ_i β k_i after the inverse rotation
        if "cos" in lp:
            y_q = rotate(y_q, lp["cos"][js], lp["sin"][js], inverse=True)
        query = _es("dhe,the->thd", lp["wq"], y_q)  # [b, Hs, d]
        if "mq" in acc:
            query = query - acc["mq"][:, t].T[..., None]
        if "xq" in acc:
            query = query - acc["xq"][:, t].T[..., None] * zc[js][:, None, :]
        return scores(pm, lp, zc, z, js, acc["v"][t], acc["k"][t],
                      acc["m"][:, t] if "m" in acc else None, None,
                      acc["x"][:, t] if "x" in acc else None, query)

    return in_batches(batch, targets, batch_size(targets.shape[0], s, hs, d))
