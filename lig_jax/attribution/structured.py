"""Structure-exploiting integrands (../shared/FAST_PATH.md) for blocks of the form

    B(x)_j = postmap(x_j, ctx_j),   ctx = softmax-mix(premap(x)),

with `premap` and `postmap` token-wise. Tokens meet only inside the softmax mixing, so
per integration node the whole source × target matrix follows from one forward-mode pass
of `premap`, one reverse pass of `postmap` and O(S²·d) attention algebra, instead of one
reverse pass per target. Shapes: q, k, v [S, H, e] (e = d_h), A [H, S_q, S_k].

Notation in comments: j target (query), i source (key), h head, τ the score scale.
`direct` implementations (z2z.py, z2u.py) stay the readable definition; tests check both
agree (≤ 1e-5 relative in float32, ≤ 1e-12 in float64).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..ig import node_stack, node_sum, safe_norm
from ..models.common import PRECISION, attention_mix

# Targets of the generic (per-target) ITB paths are mapped in batches whose working set
# (chunk nodes × a premap tangent per row) stays near this many bytes.
TARGET_BATCH_BYTES = 96 * 2**20


def _es(spec: str, *xs: jax.Array) -> jax.Array:
    return jnp.einsum(spec, *xs, precision=PRECISION)


def _attention_terms(a, p, q, k, v, c, kd, vd, tau):
    """Shared-path pieces for cotangents p [T, H, e] of each target's context.

    a, q, c are the targets' rows ([H, T, S], [T, H, e], [T, H, e]); k, v, k̇, v̇ all
    sources' ([S, H, e]). Returns (per-head source→target terms [H, j, i] without the query
    term, β [H, j, i], Σ_i β k [j, H, e]); β = ∂(Σ_j L_j)/∂scores and the term is
    A_ji ⟨p_j, v̇_i⟩ + β_ji τ⟨q_j, k̇_i⟩.
    """
    vdot = _es("jhe,ihe->hji", p, vd)
    pv = _es("jhe,ihe->hji", p, v)
    rho = _es("jhe,jhe->hj", p, c)
    kdot = tau * _es("jhe,ihe->hji", q, kd)
    beta = a * (pv - rho[..., None])
    return a * vdot + beta * kdot, beta, _es("hji,ihe->jhe", beta, k)


def _masked(scores, mask_row):
    """Hidden keys (padding, future, outside the window) get the most negative score."""
    if mask_row is None:
        return scores
    return jnp.where(mask_row, scores, jnp.finfo(scores.dtype).min)


def _mix_inputs(block, s, key_mask, heads=None):
    """The block's attention mask as a full bool [S_q, S_k] (or None) and its additive
    score bias [H(s), S, S] (or None), restricted to `heads` if given."""
    mask = block.attention_mask(s, key_mask)
    if mask is not None:
        mask = jnp.broadcast_to(mask, (s, s))
    bias = block.attention_bias(s)
    if bias is not None and heads is not None:
        bias = bias[heads]
    return mask, bias


def _row(mask, bias, j):
    """Mask row [S] and bias rows [H, S] of query j (None where absent)."""
    return (None if mask is None else mask[j]), (None if bias is None else bias[:, j])


def _row_mix(q_j, k, v, tau, mask_row, bias_row):
    """Attention of one query: q_j [H, e], k, v [S, H, e] → (A [H, 1, S], c [1, H, e])."""
    return attention_mix(q_j[None], k, v, tau,
                         None if mask_row is None else mask_row[None],
                         None if bias_row is None else bias_row[:, None])


def _target_batch(s, d, chunk):
    """Targets per batch of a generic ITB path (one premap tangent [S, d] per node)."""
    return max(1, TARGET_BATCH_BYTES // (4 * 12 * s * d * chunk))


def z2z_zero(block, z, alphas, weights, chunk, key_mask=None):
    """Layer-direct z→z, zero baseline: (M [S_src, S_tgt], L [S_tgt])."""
    tau = block.attention_scale
    mask, bias = _mix_inputs(block, z.shape[0], key_mask)
    x_base = jnp.zeros_like(z)
    y_base = block(x_base, key_mask)
    delta = z - x_base

    def node(alpha):
        x = x_base + alpha * delta
        (q, k, v), (qd, kd, vd) = jax.jvp(block.premap, (x,), (delta,))
        a, c = attention_mix(q, k, v, tau, mask, bias)

        def total(xr, cc):
            return jnp.sum(safe_norm(block.postmap(xr, cc) - y_base))

        r, p = jax.grad(total, argnums=(0, 1))(x, c)
        terms, _, beta_k = _attention_terms(a, p, q, k, v, c, kd, vd, tau)
        e = jnp.sum(terms, axis=0).T  # [S_src, S_tgt]
        diag = jnp.sum(r * delta, axis=-1) + tau * _es("jhe,jhe->j", qd, beta_k)
        return e + jnp.diag(diag)

    m = node_sum(node, alphas, weights, chunk)
    return m, safe_norm(block(z, key_mask) - y_base)


def _affine_projections(block, z):
    """Biased q, k, v [S, H, e] of z and the bias-free k̃, ṽ (W z) for straight-line paths."""
    q, k, v = block.premap(z)
    _, wk, wv = block.premap_kernels()
    return q, k, v, _es("sd,dhe->she", z, wk), _es("sd,dhe->she", z, wv)


def z2z_itb(block, z, alphas, weights, chunk, key_mask=None):
    """Layer-direct z→z, ITB baseline: the affine form where the premap allows it."""
    if not block.affine_premap:
        return z2z_itb_generic(block, z, alphas, weights, chunk, key_mask)
    return z2z_itb_affine(block, z, alphas, weights, chunk, key_mask)


def z2z_itb_affine(block, z, alphas, weights, chunk, key_mask=None):
    """Layer-direct z→z, ITB baseline, for affine premaps (post-LN encoders).

    Target j's path x_i(α) = z_j + α(z_i − z_j) keeps row j fixed, so q_j is constant
    and keys/values are affine in α: k_i(α) = k_j + α(k̃_i − k̃_j). The score offset
    τ⟨q_j, k_j⟩ cancels in the softmax: A_j·(α) = softmax(α σ_j· + b_j·), b the block's
    score bias (relative positions), if any.
    """
    tau = block.attention_scale
    mask, bias = _mix_inputs(block, z.shape[0], key_mask)
    q, _, v, kt, vt = _affine_projections(block, z)

    def column(j):
        dk, dv = kt - kt[j], vt - vt[j]  # k̇_i, v̇_i along j's path
        sigma = tau * _es("he,ihe->hi", q[j], dk)  # [H, S]
        mask_j, bias_j = _row(mask, bias, j)
        bias_j = 0.0 if bias_j is None else bias_j
        c_base = v[j]  # every value equals v_j at α = 0 (padding included: A = 0 there)
        zj = z[j][None]

        def out(c):
            return block.postmap(zj, c[None])[0]

        y_base = out(c_base)

        def scalar(c):
            return safe_norm(out(c) - y_base)

        def node(alpha):
            a = jax.nn.softmax(_masked(alpha * sigma + bias_j, mask_j), axis=-1)
            m = _es("hi,ihe->he", a, dv)
            p = jax.grad(scalar)(c_base + alpha * m)
            vdot = _es("he,ihe->hi", p, dv)
            beta = a * alpha * (vdot - _es("he,he->h", p, m)[:, None])
            return jnp.sum(a * vdot + beta * sigma, axis=0)

        col = node_sum(node, alphas, weights, chunk)
        a1 = jax.nn.softmax(_masked(sigma + bias_j, mask_j), axis=-1)
        return col, scalar(c_base + _es("hi,ihe->he", a1, dv))

    cols, totals = jax.vmap(column)(jnp.arange(z.shape[0]))
    return cols.T, totals


def _itb_path(block, z, j, heads, tau, mask, bias):
    """What every node of target j's ITB path shares: (Δ, x′, j's context [2, Hs, e] at
    the baseline and at z, premap restricted to `heads`, j's mask/bias rows).

    Both end contexts come from one batched evaluation, so where they are equal in exact
    arithmetic (a causal first token sees only itself) they are equal in floating point
    too, and the scalar's change is exactly 0 rather than rounding noise.
    """
    delta = z - z[j]
    base = jnp.broadcast_to(z[j], z.shape)

    def premap(x):
        return tuple(t[:, heads] for t in block.premap(x))

    mask_j, bias_j = _row(mask, bias, j)

    def context(x):
        q, k, v = premap(x)
        return _row_mix(q[j], k, v, tau, mask_j, bias_j)[1][0]

    ends = jax.vmap(context)(jnp.stack([base, z]))
    return delta, base, ends, premap, mask_j, bias_j


def _itb_node_terms(premap, base, delta, j, alpha, tau, mask_j, bias_j, cotangent):
    """Per-head source terms [H, S] of target j at node α of its ITB path.

    cotangent(c [H, e]) → p [H, e], the gradient of j's scalar(s) w.r.t. its context.
    Row j is fixed on the path (Δ_j = 0), so q_j is constant and there is no query term.
    """
    x = base + alpha * delta
    (q, k, v), (_, kd, vd) = jax.jvp(premap, (x,), (delta,))
    a, c = _row_mix(q[j], k, v, tau, mask_j, bias_j)
    p = cotangent(c[0])
    terms, _, _ = _attention_terms(a, p[None], q[j][None], k, v, c, kd, vd, tau)
    return terms[:, 0]


def z2z_itb_generic(block, z, alphas, weights, chunk, key_mask=None):
    """Layer-direct z→z, ITB baseline, any token-wise premap (norm-first, RoPE, GQA).

    Per target j and node: one forward-mode pass of the premap over all rows along j's
    path, j's attention row and one reverse pass of the post-attention map of token j.
    """
    tau = block.attention_scale
    s = z.shape[0]
    mask, bias = _mix_inputs(block, s, key_mask)
    all_heads = jnp.arange(block.num_heads)

    def column(j):
        delta, base, ends, premap, mask_j, bias_j = _itb_path(block, z, j, all_heads, tau,
                                                             mask, bias)
        zj = z[j][None]
        y_ends = jax.vmap(lambda c: block.postmap(zj, c[None])[0])(ends)  # [2, d]
        y_base = y_ends[0]

        def scalar(c):
            return safe_norm(block.postmap(zj, c[None])[0] - y_base)

        def node(alpha):
            terms = _itb_node_terms(premap, base, delta, j, alpha, tau, mask_j, bias_j,
                                    jax.grad(scalar))
            return jnp.sum(terms, axis=0)

        col = node_sum(node, alphas, weights, chunk)
        return col, safe_norm(y_ends[1] - y_base)

    cols, totals = jax.lax.map(column, jnp.arange(s),
                               batch_size=min(s, _target_batch(s, z.shape[1], chunk)))
    return cols.T, totals


def _l2_scores(acc_v, acc_k, acc_q, delta, kernels, targets):
    """Per-source L2 scores from head-space accumulators (affine premap).

    ∇_{x_i} f_{jh} summed over nodes = W_{V,h} acc_v[j,i,h] + W_{K,h} acc_k[j,i,h]
    + δ_ij W_{Q,h} acc_q[j,h]; score = ‖Δ_i ⊙ that‖₂. acc_*: [T, S, Hs, e] / [T, Hs, e];
    delta: [T, S, d] (per-target Δ), kernels: W [d, Hs, e]. Returns [T, Hs, S].
    """
    wq, wk, wv = kernels
    s, d = delta.shape[1:]
    # one target's gradient block is S × Hs × d floats; keep a batch of them near 64 MB
    per_target = 4 * 3 * s * wq.shape[1] * d

    def one(args):
        av, ak, aq, dlt, j = args
        grad = _es("dhe,ihe->ihd", wv, av) + _es("dhe,ihe->ihd", wk, ak)
        grad = grad.at[j].add(_es("dhe,he->hd", wq, aq))
        return jnp.linalg.norm(grad * dlt[:, None, :], axis=-1).T  # [Hs, S]

    return jax.lax.map(one, (acc_v, acc_k, acc_q, delta, targets),
                       batch_size=max(1, min(targets.shape[0], 2**26 // per_target)))


def z2u_zero(block, z, targets, heads, alphas, weights, chunk, key_mask=None):
    """z→u, zero baseline: (L2 scores [T, Hs, S], signed Σ IG [T, Hs], f(z) [T, Hs])."""
    tau = block.attention_scale
    mask, bias = _mix_inputs(block, z.shape[0], key_mask, heads)
    x_base = jnp.zeros_like(z)
    delta = z - x_base
    c_base = block.attention_context(x_base, key_mask)[targets][:, heads]  # [T, Hs, e]
    kernels = tuple(w[:, heads] for w in block.premap_kernels())

    def node(alpha):
        x = x_base + alpha * delta
        (q, k, v), (qd, kd, vd) = jax.jvp(block.premap, (x,), (delta,))
        q, k, v, qd, kd, vd = (t[:, heads] for t in (q, k, v, qd, kd, vd))
        a, c = attention_mix(q, k, v, tau, mask, bias)  # per selected head
        a, c, q_t, qd_t = a[:, targets], c[targets], q[targets], qd[targets]
        p = jax.grad(lambda cc: jnp.sum(safe_norm(cc - c_base)))(c)  # [T, Hs, e]
        terms, beta, beta_k = _attention_terms(a, p, q_t, k, v, c, kd, vd, tau)
        signed = jnp.sum(terms, axis=-1) + tau * _es("jhe,jhe->hj", qd_t, beta_k)
        return signed.T, a, p, beta, q_t, tau * beta_k

    signed, a, p, beta, q_t, beta_k = node_stack(node, alphas, chunk)  # leading axis: node
    signed, acc_q = _es("k,kjh->jh", weights, signed), _es("k,kjhe->jhe", weights, beta_k)
    # Σ_k w_k A_k[h,j,i] p_k[j,h,:] and τ Σ_k w_k β_k[h,j,i] q_k[j,h,:]: per (j, h) an
    # [S × n] @ [n × e] product, instead of n outer products of size S × e.
    acc_v = _es("khji,kjhe->jihe", a * weights[:, None, None, None], p)
    acc_k = tau * _es("khji,kjhe->jihe", beta * weights[:, None, None, None], q_t)
    deltas = jnp.broadcast_to(delta, (targets.shape[0], *delta.shape))
    scores = _l2_scores(acc_v, acc_k, acc_q, deltas, kernels, targets)
    f = safe_norm(block.attention_context(z, key_mask)[targets][:, heads] - c_base)
    return scores, signed, f


def z2u_itb(block, z, targets, heads, alphas, weights, chunk, key_mask=None):
    """z→u, ITB baseline, affine premap: (L2 scores [T, Hs, S], signed [T, Hs], f [T, Hs]).

    Along target j's path c_jh(α) − c′_jh = α m_jh(α), m = Σ_i A_ji (ṽ_i − ṽ_j), so
    f = α‖m‖ and its direction p = m/‖m‖ needs no reverse pass.
    """
    tau = block.attention_scale
    mask, bias = _mix_inputs(block, z.shape[0], key_mask, heads)
    q, _, _, kt, vt = _affine_projections(block, z)
    q, kt, vt = q[:, heads], kt[:, heads], vt[:, heads]
    wq, wk, wv = (w[:, heads] for w in block.premap_kernels())

    def column(j):
        dk, dv = kt - kt[j], vt - vt[j]
        sigma = tau * _es("he,ihe->hi", q[j], dk)  # [Hs, S]
        mask_j, bias_j = _row(mask, bias, j)
        bias_j = 0.0 if bias_j is None else bias_j

        def node(alpha):
            a = jax.nn.softmax(_masked(alpha * sigma + bias_j, mask_j), axis=-1)
            m = _es("hi,ihe->he", a, dv)
            p = jax.grad(lambda mm: jnp.sum(safe_norm(mm)))(m)  # m/‖m‖, 0 at m = 0
            vdot = _es("he,ihe->hi", p, dv)
            beta = a * alpha * (vdot - _es("he,he->h", p, m)[:, None])
            signed = jnp.sum(a * vdot + beta * sigma, axis=-1)
            return signed, a, p, beta

        signed, a, p, beta = node_stack(node, alphas, chunk)  # leading axis: node
        signed = _es("k,kh->h", weights, signed)
        acc_v = _es("khi,khe->ihe", a * weights[:, None, None], p)  # [S, Hs, e]
        acc_beta = _es("k,khi->ih", weights, beta)
        a1 = jax.nn.softmax(_masked(sigma + bias_j, mask_j), axis=-1)
        f = safe_norm(_es("hi,ihe->he", a1, dv))
        # W_{K,h} q_jh is constant along the path: fold τ q_jh into the key accumulator.
        acc_k = tau * acc_beta[..., None] * q[j][None]
        return signed, acc_v, acc_k, f

    signed, acc_v, acc_k, f = jax.vmap(column)(targets)
    deltas = z[None] - z[targets][:, None]  # Δ for each target's path [T, S, d]
    acc_q = jnp.zeros((targets.shape[0], heads.shape[0], q.shape[-1]), z.dtype)  # q_j fixed
    scores = _l2_scores(acc_v, acc_k, acc_q, deltas, (wq, wk, wv), targets)
    return scores, signed, f


def z2u_zero_signed(block, z, targets, heads, alphas, weights, chunk, key_mask=None):
    """z→u, zero baseline, signed per-source scores Σ_c IG_{i,c} (decoders; any premap).

    Returns (scores [T, Hs, S], Σ_i scores [T, Hs], f [T, Hs]). FAST_PATH.md §3: per node
    one forward-mode pass of the premap and the attention algebra; the query term sits on
    the diagonal i = j. Causal masks give exactly 0 for i > j.
    """
    tau = block.attention_scale
    mask, bias = _mix_inputs(block, z.shape[0], key_mask, heads)
    t_idx = jnp.arange(targets.shape[0])

    def premap(x):
        return tuple(t[:, heads] for t in block.premap(x))

    x_base = jnp.zeros_like(z)
    delta = z - x_base
    c_base = attention_mix(*premap(x_base), tau, mask, bias)[1][targets]  # [T, Hs, e]

    def node(alpha):
        (q, k, v), (qd, kd, vd) = jax.jvp(premap, (x_base + alpha * delta,), (delta,))
        a, c = attention_mix(q, k, v, tau, mask, bias)
        a, c, q_t, qd_t = a[:, targets], c[targets], q[targets], qd[targets]
        p = jax.grad(lambda cc: jnp.sum(safe_norm(cc - c_base)))(c)  # [T, Hs, e]
        terms, _, beta_k = _attention_terms(a, p, q_t, k, v, c, kd, vd, tau)  # [Hs, T, S]
        query = tau * _es("jhe,jhe->hj", qd_t, beta_k)  # [Hs, T]
        terms = terms.at[:, t_idx, targets].add(query)
        return jnp.transpose(terms, (1, 0, 2))

    scores = node_sum(node, alphas, weights, chunk)
    f = safe_norm(attention_mix(*premap(z), tau, mask, bias)[1][targets] - c_base)
    return scores, jnp.sum(scores, axis=-1), f


def z2u_itb_signed(block, z, targets, heads, alphas, weights, chunk, key_mask=None):
    """z→u, ITB baseline, signed per-source scores, any token-wise premap.

    Returns (scores [T, Hs, S], Σ_i scores [T, Hs], f [T, Hs]); scores[t, :, targets[t]]
    is exactly 0 (row j is fixed on its own path).
    """
    tau = block.attention_scale
    s = z.shape[0]
    mask, bias = _mix_inputs(block, s, key_mask, heads)

    def column(j):
        delta, base, ends, premap, mask_j, bias_j = _itb_path(block, z, j, heads, tau,
                                                             mask, bias)
        c_base = ends[0]

        def cotangent(c):
            return jax.grad(lambda cc: jnp.sum(safe_norm(cc - c_base)))(c)

        def node(alpha):
            return _itb_node_terms(premap, base, delta, j, alpha, tau, mask_j, bias_j,
                                   cotangent)

        col = node_sum(node, alphas, weights, chunk)  # [Hs, S]
        return col, safe_norm(ends[1] - c_base)

    scores, f = jax.lax.map(column, targets,
                            batch_size=min(targets.shape[0], _target_batch(s, z.shape[1], chunk)))
    return scores, jnp.sum(scores, axis=-1), f
