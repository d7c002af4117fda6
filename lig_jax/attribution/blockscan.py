"""The ITB machinery for every premap: its decomposition, the coefficients along a path and
the scan over source blocks (`itb.py` builds the integrands on it).

Under the ITB baseline target j's path is x_i(α) = z_j + α D_ij, D_ij = z_i − z_j, for
every row i: nothing is shared between targets, and a generic implementation projects
all S rows per (target, node). Here the premap is decomposed once per sentence
(docs/method.md, "ITB for any premap"):

    input norm     h_i(α) = a_ji(α) n_j + b_ji(α) (n_i − n_j) + β
                   n = γ ⊙ centred z (LayerNorm) | γ ⊙ z (RMSNorm) | z (none, a = 1, b = α);
                   a = 1/σ_ji(α), b = α/σ_ji(α), σ² = the norm's variance of z_j + α D_ij,
                   read from the Gram matrix of the (centred) rows
    projections    k̃_i = a N_j + b (N_i − N_j) + c_K,  N = n W_K,  c_K = β W_K + b_K  (v alike)
    k norm         k̂_i = k̃_i / ρ_ji(α), ρ² from the Gram of N per kv group (Gemma3)
    RoPE           k_i = R_i k̂_i; q_j is fixed along j's own path (row j does not move)

so every score is s^h_ji(α) = τ(κ_a Q^j + κ_b (Q^i − Q^j) + κ_c Q^c) with three α-free
arrays Q^j = ⟨q_j, R_i N_j⟩, Q^i = ⟨q_j, R_i N_i⟩, Q^c = ⟨q_j, R_i c_K⟩ per (head, j, i),
made once per target chunk, and scalar coefficients κ(α) per (j, i). A node then costs
O(H·T·S·d_h) (the context and one cotangent contraction) plus one one-token pass of the
post-attention map per target, whatever the length. The terms are the zero baseline's,
G_ij = Σ_h A^h_ji V̇^h_ji + β^h_ji K̇^h_ji, with the α-derivatives of the coefficients from
one forward-mode pass of a scalar function of α; G_jj = 0 exactly (Δ_j = 0). Sources run
in blocks (two passes, online softmax), and blocks no target of a chunk sees are skipped.

Shapes: targets T (one chunk), sources S, selected heads Hs, head width e, k nodes of a
step; per-head arrays are head-major ([Hs, k, T, S]) for head-batched matmuls.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp

from ..models.common import PRECISION
from ..models.premap import Premap
from ..models.rope import rotate_half
from .norm import safe_norm


def _es(spec: str, *xs: jax.Array) -> jax.Array:
    return jnp.einsum(spec, *xs, precision=PRECISION)


def layer_pieces(pm: Premap, z: jax.Array) -> dict[str, jax.Array]:
    """What every target of one sentence shares: the (centred) rows, their squared norms,
    n W_K and n W_V per kv group, the projected norm bias c_K, c_V and the queries of z."""
    zc = z
    if pm.norm is not None and pm.norm.kind == "layer":
        zc = z - jnp.mean(z, axis=-1, keepdims=True)
    n = zc if pm.norm is None else zc * pm.norm.gamma
    g, e = pm.wk.shape[1:]
    out = {"zc": zc, "sq": jnp.sum(zc * zc, axis=-1),
           "nk": _es("sd,dge->sge", n, pm.wk), "nv": _es("sd,dge->sge", n, pm.wv),
           "q": pm(z)[0]}
    for name, w, b in (("ck", pm.wk, pm.bk), ("cv", pm.wv, pm.bv)):
        c = jnp.zeros((g, e), z.dtype)
        if pm.norm is not None and pm.norm.bias is not None:
            c = c + _es("d,dge->ge", pm.norm.bias.astype(z.dtype), w)
        out[name] = c if b is None else c + b
    return out


BLOCK = 128  # sources per block of the two-pass (online-softmax) evaluation


def _fold(x: jax.Array) -> jax.Array:
    """[..., e] → [..., e/2]: the two halves summed. RoPE's cos/sin tables repeat their
    e/2 frequencies in both halves, so Σ_e x_e cos_ie = Σ_f fold(x)_f cos_if."""
    half = x.shape[-1] // 2
    return x[..., :half] + x[..., half:]


def chunk_pieces(pm: Premap, shared: dict, targets: jax.Array, heads: jax.Array,
                 s: int, tau: float, mask, bias) -> dict[str, jax.Array]:
    """One target chunk's arrays: target-side pieces, the source-side rows it reads, and
    the α-free τQ^j, τ(Q^i − Q^j), τQ^c [Hs, T, S] and Gram rows [T, S] (see the module doc;
    Q^j, Q^c are [Hs, T, 1] without RoPE), filled only for the source blocks the chunk's
    targets see. Source arrays are padded to whole blocks (padded sources hidden)."""
    grp = heads // pm.repeat  # kv group of each selected head
    q = shared["q"][targets][:, heads]  # [T, Hs, e]
    nk, ck = shared["nk"][:, grp], shared["ck"][grp]  # [S, Hs, e], [Hs, e]
    k1 = nk if pm.k_norm is None else nk * pm.k_norm.gamma
    c1 = ck if pm.k_norm is None else ck * pm.k_norm.gamma
    k1_t = k1[targets]
    rope = pm.rope(s)
    zc, sq = shared["zc"], shared["sq"]
    nv = shared["nv"][:, grp]  # [S, Hs, e]
    t = targets.shape[0]
    if mask is None and -(-s // BLOCK) * BLOCK != s and s > BLOCK:
        mask = jnp.ones((1, t, s), bool)  # padded sources must be hidden
    out = {"targets": targets, "heads": heads, "q": q, "sq_t": sq[targets], "sq_i": sq,
           "nv": jnp.transpose(nv, (1, 0, 2)), "nv_t": jnp.transpose(nv[targets], (1, 0, 2)),
           "cv": shared["cv"][grp], "mask": mask, "bias": bias, "zc_t": zc[targets],
           "zc": zc}
    if rope is None:
        out["qj"] = tau * _es("the,the->ht", q, k1_t)[..., None]
        out["qc"] = tau * _es("the,he->ht", q, c1)[..., None]
        out["kr"] = k1
    else:
        cos, sin = (jnp.asarray(a, z_dtype(shared)) for a in rope)
        half = cos.shape[-1] // 2
        c1b = jnp.broadcast_to(c1, q.shape)
        out["uj"] = tau * jnp.stack([_fold(q * k1_t), _fold(q * rotate_half(k1_t))])
        out["uc"] = tau * jnp.stack([_fold(q * c1b), _fold(q * rotate_half(c1b))])
        out["cosf"], out["sinf"] = cos[:, :half], sin[:, :half]
        out["kr"] = k1 * cos[:, None] + rotate_half(k1) * sin[:, None]  # R_i N_i
    if pm.k_norm is not None:
        ksq, kc = _es("she,she->hs", nk, nk), _es("she,he->hs", nk, ck)  # ⟨N_i, N_i⟩, ⟨N_i, c_K⟩
        out.update(nk_t=nk[targets], nk=nk, ksq_i=ksq, ksq_t=ksq[:, targets], kc_i=kc,
                   kc_t=kc[:, targets], cc=_es("he,he->h", ck, ck))
    out = pad_sources(out, _blocks_of(s)[2])
    return _fill_sources(out, tau)


def _fill_sources(chunk: dict, tau: float) -> dict:
    """τQ^j (with RoPE), τ(Q^i − Q^j), τQ^c (with RoPE), the Gram rows and (k norm) the Gram
    of N, block by block over the visible source blocks (the rest stays 0, never read)."""
    hs, t, _ = chunk["nv_t"].shape
    padded = chunk["sq_i"].shape[0]
    dtype = chunk["nv_t"].dtype
    rope = "uj" in chunk
    names = ["qd", "gram"] + (["qj", "qc"] if rope else []) + (["kgram"] if "nk" in chunk
                                                                else [])
    shapes = {n: (t, padded) if n == "gram" else (hs, t, padded) for n in names}
    bufs = {n: jnp.zeros(sh, dtype) for n, sh in shapes.items()}
    chunk = {**chunk, "gram": bufs["gram"]}  # a placeholder with the source axis (blocks)

    def block(v):
        qi = tau * _es("the,ihe->hti", chunk["q"], v["kr"])
        vals = {"gram": _es("td,sd->ts", chunk["zc_t"], v["zc"])}
        if rope:
            def rdot(u):
                return _es("thf,if->hti", u[0], v["cosf"]) + _es("thf,if->hti", u[1], v["sinf"])

            vals["qj"], vals["qc"] = rdot(chunk["uj"]), rdot(chunk["uc"])
            vals["qd"] = qi - vals["qj"]
        else:
            vals["qd"] = qi - chunk["qj"]
        if "nk" in chunk:
            vals["kgram"] = _es("the,ihe->hti", chunk["nk_t"], v["nk"])
        return vals

    def body(v, c):
        bufs, b = c
        vals = _fenced(b >= 0, block, v)
        return {n: put_block(bufs[n], v, vals[n]) for n in bufs}, b + 1

    bufs, _ = _over_blocks(chunk, body, (bufs, jnp.asarray(_first_block(chunk))))
    return {**chunk, **bufs}


# The arrays of a chunk that run along the sources (axis, and whether it may be 1 wide).
SOURCE_AXES = {"qj": 2, "qd": 2, "qc": 2, "gram": 1, "sq_i": 0, "nv": 1, "kgram": 2,
               "ksq_i": 1, "kc_i": 1, "mask": 2, "bias": 2, "kq": 2, "kr": 0, "zc": 0,
               "cosf": 0, "sinf": 0, "nk": 0,
               # a step's node coefficients (`with_coefficients`): [k, T, S] / [Hs, k, T, S]
               "a": 2, "b": 2, "da": 2, "db": 2, "ka": 3, "kb": 3, "kc": 3, "dka": 3,
               "dkb": 3, "dkc": 3}
COEFFICIENTS = ("a", "b", "ka", "kb", "kc")


def source_view(chunk: dict, start, size: int) -> dict:
    """The chunk restricted to sources [start, start + size): every source-axis array
    sliced (a 1-wide axis — Q^j, Q^c without RoPE — stays as it is); `src` their indices."""
    out = {}
    for k, v in chunk.items():
        axis = SOURCE_AXES.get(k)
        if v is None or axis is None or v.shape[axis] == 1:
            out[k] = v
        else:
            out[k] = jax.lax.dynamic_slice_in_dim(v, start, size, axis)
    out["src"] = start + jnp.arange(size)
    return out


def pad_sources(chunk: dict, size: int) -> dict:
    """Pad every source-axis array to `size` sources (hidden: mask False, Gram 0)."""
    out = dict(chunk)
    for k, axis in SOURCE_AXES.items():
        v = chunk.get(k)
        if v is None or v.shape[axis] == 1 or v.shape[axis] == size:
            continue
        pad = [(0, 0)] * v.ndim
        pad[axis] = (0, size - v.shape[axis])
        out[k] = jnp.pad(v, pad, constant_values=False if k == "mask" else 0)
    return out


def z_dtype(shared: dict) -> jnp.dtype:
    return shared["zc"].dtype


def coefficients(pm: Premap, v: dict, alpha: jax.Array, d: int) -> dict:
    """a, b [T, B] of the input norm at node α for the view's sources and, with a k norm,
    κ_a, κ_b, κ_c [Hs, T, B] of the keys (without one the keys' coefficients are a, b, 1)."""
    gji = v["gram"]
    if pm.norm is None:
        a = jnp.ones(gji.shape, gji.dtype)
        b = jnp.full(gji.shape, alpha, gji.dtype)
    else:
        gjj, gii = v["sq_t"][:, None], v["sq_i"][None, :]
        ms = (gjj + 2 * alpha * (gji - gjj) + alpha * alpha * (gii - 2 * gji + gjj)) / d
        a = 1.0 / jnp.sqrt(ms + pm.norm.eps)
        b = alpha * a
    if pm.k_norm is None:
        return {"a": a, "b": b}
    kjj, kji, kii = v["ksq_t"][..., None], v["kgram"], v["ksq_i"][:, None, :]
    cj, ci = v["kc_t"][..., None], v["kc_i"][:, None, :]
    e = pm.wk.shape[-1]
    a_, b_ = a[None], b[None]
    norm2 = (a_ * a_ * kjj + 2 * a_ * b_ * (kji - kjj) + b_ * b_ * (kii - 2 * kji + kjj)
             + 2 * a_ * cj + 2 * b_ * (ci - cj) + v["cc"][:, None, None])
    inv = 1.0 / jnp.sqrt(norm2 / e + pm.k_norm.eps)
    return {"a": a, "b": b, "ka": a_ * inv, "kb": b_ * inv, "kc": inv}


def node_coefficients(pm: Premap, v: dict, alphas: jax.Array, d: int,
                      tangents: bool = True) -> tuple[dict, dict | None]:
    """The coefficients at k nodes and their α-derivatives (one forward-mode pass):
    a, b [k, T, B]; κ [Hs, k, T, B] (head-major, like every per-head array here)."""
    def one(alpha):
        if not tangents:
            return coefficients(pm, v, alpha, d), None
        return jax.jvp(lambda al: coefficients(pm, v, al, d), (alpha,),
                       (jnp.ones_like(alpha),))

    co, dco = jax.vmap(one)(alphas)

    def heads_first(c: dict | None) -> dict | None:
        if c is None:
            return None
        return {k: (jnp.swapaxes(x, 0, 1) if k in ("ka", "kb", "kc") else x)
                for k, x in c.items()}

    return heads_first(co), heads_first(dco)


def with_coefficients(pm: Premap, chunk: dict, alphas: jax.Array, d: int,
                      tangents: bool = True) -> dict:
    """The chunk plus one step's coefficients (and α-derivatives, "d…") along all its
    sources, computed once per step: block loops then only slice them (computed inside
    the loops' fused kernels, they would be re-evaluated for every head)."""
    co, dco = node_coefficients(pm, chunk, alphas, d, tangents)
    out = {**chunk, **co}
    if dco is not None:
        out.update({f"d{k}": v for k, v in dco.items()})
    return out


def _co(v: dict, prefix: str = "") -> dict:
    """The coefficients (prefix "") or their tangents ("d") of a view."""
    return {k: v[prefix + k] for k in COEFFICIENTS if prefix + k in v}


def _scores(v: dict, co: dict) -> jax.Array:
    """τ s^h_ji at k nodes (or its α-derivative, given the tangents) [Hs, k, T, B], with
    the score bias and the mask (hidden keys: the most negative float)."""
    qj, qd, qc = v["qj"][:, None], v["qd"][:, None], v["qc"][:, None]
    if "ka" in co:
        s = co["ka"] * qj + co["kb"] * qd + co["kc"] * qc
    else:
        s = co["a"][None] * qj + co["b"][None] * qd + qc
    if v.get("bias") is not None:
        s = s + v["bias"][:, None]
    if v.get("mask") is not None:
        s = jnp.where(v["mask"][:, None], s, jnp.finfo(s.dtype).min)
    return s


def _dscores(v: dict, dco: dict) -> jax.Array:
    """∂(τ s)/∂α [Hs, k, T, B]."""
    qj, qd = v["qj"][:, None], v["qd"][:, None]
    if "ka" in dco:
        return dco["ka"] * qj + dco["kb"] * qd + dco["kc"] * v["qc"][:, None]
    return dco["a"][None] * qj + dco["b"][None] * qd


def _rows(x: jax.Array) -> jax.Array:
    """[Hs, k, T, …] → [Hs, k·T, …] (free: contiguous), for head-batched matmuls."""
    return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])


def _blocks_of(s: int) -> tuple[int, int, int]:
    """(block size, number of blocks, padded length) for S sources."""
    if s <= BLOCK:
        return s, 1, s
    nb = -(-s // BLOCK)
    return BLOCK, nb, nb * BLOCK


def _blocks(chunk: dict) -> tuple[int, int, int]:
    """(block size, number of blocks, padded length) for the chunk's (padded) sources."""
    return _blocks_of(chunk["sq_i"].shape[0])


def visible_blocks(chunk: dict, size: int, nb: int) -> tuple[jax.Array, jax.Array]:
    """[lo, hi): the blocks holding a key any target of the chunk sees (causal, window and
    padding masks let a chunk skip the rest: their probabilities are exactly 0)."""
    mask = chunk.get("mask")
    if mask is None or nb == 1:
        return jnp.asarray(0), jnp.asarray(nb)
    seen = jnp.any(mask.reshape(-1, nb, size), axis=(0, 2))  # [nb]
    lo = jnp.argmax(seen)
    hi = nb - jnp.argmax(seen[::-1])
    return lo, hi


# (lo, hi) while lowering a program for XLA's cost analysis (which counts a loop body
# once): the block loops are then unrolled over that static range (`unrolled_blocks`).
_UNROLL: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "unroll", default=None)


@contextlib.contextmanager
def unrolled_blocks(lo: int, hi: int):
    """Trace the block loops as a Python loop over blocks [lo, hi) (for FLOP counting:
    `scripts/bench.py` lowers a chunk this way with the blocks its targets see)."""
    token = _UNROLL.set((lo, hi))
    try:
        yield
    finally:
        _UNROLL.reset(token)


def _over_blocks(chunk: dict, body, carry):
    """carry = body(view, carry) for every visible block of the chunk's sources."""
    size, nb, _ = _blocks(chunk)
    if nb == 1:
        return body(source_view(chunk, 0, size), carry)
    static = _UNROLL.get()
    if static is not None:
        for b in range(*static):
            carry = body(source_view(chunk, b * size, size), carry)
        return carry
    lo, hi = visible_blocks(chunk, size, nb)
    return jax.lax.fori_loop(lo, hi, lambda b, c: body(source_view(chunk, b * size, size), c),
                             carry)


def _first_block(chunk: dict):
    """The index of the first block `_over_blocks` visits."""
    size, nb, _ = _blocks(chunk)
    if nb == 1:
        return 0
    static = _UNROLL.get()
    return static[0] if static is not None else visible_blocks(chunk, size, nb)[0]


def _plain_scores(v: dict, co: dict, alphas: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(r, τ s): without a k norm the score is s = a (Q^j + α (Q^i − Q^j)) + Q^c (b = α a),
    r = Q^j + α (Q^i − Q^j) [Hs, k, T, B]; with one, r = None and s from the κ's."""
    if "ka" in co:
        return None, _scores(v, co)
    r = v["qj"][:, None] + alphas[None, :, None, None] * v["qd"][:, None]
    s = co["a"][None] * r + v["qc"][:, None]
    if v.get("bias") is not None:
        s = s + v["bias"][:, None]
    if v.get("mask") is not None:
        s = jnp.where(v["mask"][:, None], s, jnp.finfo(s.dtype).min)
    return r, s


def _fenced(pred: jax.Array, fn, *args):
    """fn(*args) behind a `lax.cond` (`pred` is always true where this is used, but not
    known to the compiler): a conditional is a fusion boundary, so the block's work is not
    fused into the dynamic-update-slice that stores it — XLA:CPU runs such fusions on one
    thread (measured 2× slower here)."""
    shapes = jax.eval_shape(fn, *args)
    return jax.lax.cond(pred, fn, lambda *_: jax.tree.map(
        lambda o: jnp.zeros(o.shape, o.dtype), shapes), *args)


def contexts(pm: Premap, chunk: dict, alphas: jax.Array, d: int, keep: bool = False) -> dict:
    """Pass 1: each target's context at k nodes, [Hs, k, T, e], by an online softmax over
    the visible source blocks; the softmax's final max m and 1/sum [Hs, k, T]; with
    `keep`, also every block's exponentials `w` [Hs, k, T, S] and the running max they
    were taken against, `mb` [blocks, Hs, k, T] (so pass 2 need not recompute them).

    With b = α a, the context is Σ_i A_ji (a_ji (N_j + α (N_i − N_j))) + c_V: one head-
    batched matmul of (w ⊙ a) with N^V per block."""
    hs, t, e = chunk["nv_t"].shape
    k = alphas.shape[0]
    dtype = chunk["nv_t"].dtype
    size, nb, padded = _blocks(chunk)
    al = alphas[None, :, None]

    def block(v, m, l, num, num_a):
        co = _co(v)
        _, s = _plain_scores(v, co, alphas)
        m_new = jnp.maximum(m, jnp.max(s, -1))
        scale = jnp.exp(m - m_new)
        w = jnp.exp(s - m_new[..., None])
        wa = w * co["a"][None]
        num = num * scale[..., None] + _es("hri,hie->hre", _rows(wa), v["nv"]).reshape(hs, k, t, e)
        return m_new, l * scale + jnp.sum(w, -1), num, num_a * scale + jnp.sum(wa, -1), w

    def body(v, c):
        m, l, num, num_a, w_all, mb, b = c
        m, l, num, num_a, w = _fenced(b < nb, block, v, m, l, num, num_a)
        if keep:
            w_all = put_block(w_all, v, w)
            mb = mb.at[b].set(m)
        return m, l, num, num_a, w_all, mb, b + 1

    zeros = jnp.zeros((hs, k, t), dtype)
    m0 = jnp.full((hs, k, t), -jnp.inf, dtype)
    w0 = jnp.zeros((hs, k, t, padded) if keep else (0,), dtype)
    mb0 = jnp.full((nb, hs, k, t) if keep else (0,), -jnp.inf, dtype)
    lo = _first_block(chunk)
    if "a" not in chunk:
        chunk = with_coefficients(pm, chunk, alphas, d, tangents=False)
    m, l, num, num_a, w_all, mb, _ = _over_blocks(
        chunk, body, (m0, zeros, jnp.zeros((hs, k, t, e), dtype), zeros, w0, mb0,
                      jnp.asarray(lo)))
    inv = 1.0 / l
    # Σ_i A a (N_j + α(N_i − N_j)) = (1 − α) Σ A a · N_j + α Σ A a N_i
    ctx = (al[..., None] * num * inv[..., None]
           + ((1.0 - al) * num_a * inv)[..., None] * chunk["nv_t"][:, None]
           + chunk["cv"][:, None, None])
    return {"ctx": ctx, "m": m, "inv_l": inv, "w": w_all, "mb": mb}


def step_blocks(pm: Premap, chunk: dict, alphas: jax.Array, d: int, cotangent, emit,
                out: dict, axes: dict) -> dict:
    """Pass 2: the per-head source terms of every target at k nodes, block by block.

    cotangent(ctx [Hs, k, T, e]) → p of the same shape (the gradient of each target's
    scalar(s) w.r.t. its own context). emit(view, terms [Hs, k, T, B], parts) → a dict of
    the block's values, added into the accumulators `out` along the source axis
    `axes[name]` (None: added whole). The target's own source is not zeroed here
    (Δ_j = 0 makes its term 0: callers set it); parts: probs A, β, p, ⟨p, N^V⟩ (pvi,
    pvj), coefficients a — what the L2 scores need.

    With b = α a, g = ⟨p, N^V_j⟩ + α ⟨p, N^V_i − N^V_j⟩ and r as in `_plain_scores`:
    β = A (a g + ⟨p, c_V − c_j⟩), V̇ = ȧ g + a ⟨p, N^V_i − N^V_j⟩, K̇ = ȧ r + a τ(Q^i − Q^j).
    """
    hs, t, e = chunk["nv_t"].shape
    k = alphas.shape[0]
    chunk = with_coefficients(pm, chunk, alphas, d)
    pass1 = contexts(pm, chunk, alphas, d, keep=True)
    ctx = pass1["ctx"]
    p = cotangent(ctx)
    pvj = jnp.sum(p * chunk["nv_t"][:, None], -1)[..., None]  # ⟨p_jh, N^V_j⟩ [Hs, k, T, 1]
    c0 = jnp.sum(p * (chunk["cv"][:, None, None] - ctx), -1)[..., None]  # ⟨p, c_V − c_j⟩
    size, nb, _ = _blocks(chunk)
    al = alphas[None, :, None, None]

    def block(v, b):
        co, dco = _co(v), _co(v, "d")
        w = jax.lax.dynamic_slice_in_dim(pass1["w"], v["src"][0], size, 3)
        a = w * (jnp.exp(pass1["mb"][b] - pass1["m"]) * pass1["inv_l"])[..., None]
        pvi = _es("hre,hie->hri", _rows(p), v["nv"]).reshape(hs, k, t, -1)  # ⟨p_jh, N^V_i⟩
        u = pvi - pvj  # ⟨p_jh, N^V_i − N^V_j⟩
        ca, da = co["a"][None], dco["a"][None]
        if "ka" in co:  # a k norm: the κ's carry the key side
            beta = a * (ca * pvj + co["b"][None] * u + c0)
            terms = a * (da * pvj + dco["b"][None] * u) + beta * _dscores(v, dco)
        else:
            g = pvj + al * u
            r = v["qj"][:, None] + al * v["qd"][:, None]
            beta = a * (ca * g + c0)
            terms = a * (da * g + ca * u) + beta * (da * r + ca * v["qd"][:, None])
        parts = {"probs": a, "beta": beta, "p": p, "pvi": pvi, "pvj": pvj, "ca": co["a"]}
        return emit(v, terms, parts)

    def body(v, c):
        acc, b = c
        vals = _fenced(b < nb, block, v, b)
        acc = {name: (acc[name] + val if axes[name] is None
                      else add_block(acc[name], v, val, axes[name]))
               for name, val in vals.items()}
        return acc, b + 1

    return _over_blocks(chunk, body, (out, jnp.asarray(_first_block(chunk))))[0]


def node_sum(x: jax.Array, weights: jax.Array) -> jax.Array:
    """Σ_k w_k x[:, k] for x [Hs, k, …]: unrolled over the (few) nodes of a step, because a
    reduction over a middle axis compiles to a slow loop on XLA:CPU (10× here)."""
    return sum(x[:, i] * weights[i] for i in range(x.shape[1]))


def add_block(acc: jax.Array, v: dict, block: jax.Array, axis: int = -1) -> jax.Array:
    """acc with `block` added at the view's sources along `axis` (the block comes out of a
    `_fenced` computation, so only the addition fuses into the update)."""
    axis = axis % acc.ndim
    start = v["src"][0]
    cur = jax.lax.dynamic_slice_in_dim(acc, start, block.shape[axis], axis)
    return jax.lax.dynamic_update_slice_in_dim(acc, cur + block, start, axis)


def put_block(out: jax.Array, v: dict, block: jax.Array, axis: int = -1) -> jax.Array:
    """out with `block` written at the view's sources along `axis`. Each block of a step is
    written once into a fresh buffer, so this is a plain dynamic-update-slice: reading
    `out` there as well (+=) would fuse the block's whole computation into the update,
    which XLA:CPU runs on one thread."""
    return jax.lax.dynamic_update_slice_in_dim(out, block, v["src"][0], axis % out.ndim)


def endpoints(pm: Premap, chunk: dict, d: int) -> jax.Array:
    """The targets' contexts at α = 0 (the baseline) and α = 1 (z), [2, T, Hs, e], from one
    batched evaluation (so that where they agree in exact arithmetic, e.g. a causal first
    token that sees only itself, they agree in floating point)."""
    ctx = contexts(pm, chunk, jnp.asarray([0.0, 1.0], chunk["nv_t"].dtype), d)["ctx"]
    return jnp.transpose(ctx, (1, 2, 0, 3))


def chunk_masks(block, s: int, key_mask, targets: jax.Array, heads: jax.Array):
    """The targets' mask rows [1, T, S] (or None) and score-bias rows [Hs, T, S] (or None)."""
    mask = block.attention_mask(s, key_mask)
    if mask is not None:
        mask = jnp.broadcast_to(mask, (s, s))[targets][None]
    bias = block.attention_bias(s)
    if bias is not None:
        bias = bias[heads][:, targets]
    return mask, bias


def safe_cotangent(base: jax.Array):
    """p = ∇_c ‖c − c′‖ per (target, head) at k nodes: (c − c′)/‖c − c′‖, 0 where they are
    equal. base: c′ [T, Hs, e]; c: [Hs, k, T, e]."""
    ref = jnp.transpose(base, (1, 0, 2))[:, None]

    def cot(c: jax.Array) -> jax.Array:
        return jax.grad(lambda cc: jnp.sum(safe_norm(cc - ref)))(c)

    return cot
