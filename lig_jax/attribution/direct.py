"""The straightforward integrands: the definitions written out (`method="direct"`).

Per node the Jacobian of all targets' scalars (`jax.jacrev`, a shared zero baseline) or
one gradient per target (`jax.grad` under `vmap`, per-target ITB baselines): about one
reverse pass of the block (or of its attention) per target. They are the test oracle of
the structured integrands (`zero.py`, `itb.py`), which compute the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .integrand import Integrand
from .norm import safe_norm

BASELINES = ("zero", "self_input_token")


def _bases(z: jax.Array, targets: jax.Array, baseline: str) -> jax.Array:
    """x′ per target [T, S, d]: zeros, or every row equal to z_j (ITB)."""
    if baseline == "zero":
        return jnp.zeros((targets.shape[0], *z.shape), z.dtype)
    return jnp.broadcast_to(z[targets][:, None, :], (targets.shape[0], *z.shape))


def _direct_bytes(dims, targets: int, heads: int, nodes: int, outputs: int) -> int:
    s, d = dims.seq, dims.hidden
    per_target = 12 * s * (d + dims.ffn) + outputs * s * d
    return dims.itemsize * (targets * s * d * (1 + outputs) + nodes * targets * per_target)


@dataclass(frozen=True)
class Z2zDirect(Integrand):
    """z→z: M[i, j] = Σ_c Δ_ic Σ_k w_k ∂L_j/∂x_ic, one gradient per target and node."""

    baseline: str = "zero"
    quantity = "z2z"

    def prepare(self, block, lay, targets, heads, extra=None) -> dict:
        z, key_mask = lay["z"], lay["key_mask"]
        bases = _bases(z, targets, self.baseline)
        y_base = jax.vmap(lambda x, j: block(x, key_mask)[j])(bases, targets)
        total = safe_norm(block(z, key_mask)[targets] - y_base)
        return {"z": z, "bases": bases, "y_base": y_base, "total": total,
                "targets": targets, "key_mask": key_mask}

    def node(self, block, ctx: dict, alpha):
        z, km = ctx["z"], ctx["key_mask"]

        def column(x_base, j, yb):
            def scalar(x):
                return safe_norm(block(x, km)[j] - yb)

            delta = z - x_base
            return jnp.sum(jax.grad(scalar)(x_base + alpha * delta) * delta, axis=-1)

        return jax.vmap(column)(ctx["bases"], ctx["targets"], ctx["y_base"])  # [T, S]

    def finish(self, block, ctx: dict, acc) -> tuple:
        return acc, ctx["total"]

    def memory(self, dims, targets, heads, nodes) -> int:
        return _direct_bytes(dims, targets, heads, nodes, 0)


@dataclass(frozen=True)
class Z2uDirect(Integrand):
    """z→u per (target, head): the Jacobian of f_jh = ‖u_jh(x) − u_jh(x′)‖ w.r.t. x, summed
    over nodes, then per source Σ_c IG (signed) or ‖IG_i,:‖₂ (`block.z2u_score`)."""

    baseline: str = "zero"
    quantity = "z2u"

    def prepare(self, block, lay, targets, heads, extra=None) -> dict:
        z, key_mask = lay["z"], lay["key_mask"]
        bases = _bases(z, targets, self.baseline)

        def heads_at(x, j):
            return block.attention_context(x, key_mask)[j][heads]  # [Hs, e]

        u_base = jax.vmap(heads_at)(bases, targets)
        f = safe_norm(jax.vmap(lambda j: heads_at(z, j))(targets) - u_base)
        return {"z": z, "bases": bases, "u_base": u_base, "f": f, "targets": targets,
                "heads": heads, "key_mask": key_mask}

    def node(self, block, ctx: dict, alpha):
        z, km, heads = ctx["z"], ctx["key_mask"], ctx["heads"]

        def one(x_base, j, ub):
            def scalars(x):
                return safe_norm(block.attention_context(x, km)[j][heads] - ub)  # [Hs]

            return jax.jacrev(scalars)(x_base + alpha * (z - x_base))  # [Hs, S, d]

        return jax.vmap(one)(ctx["bases"], ctx["targets"], ctx["u_base"])

    def finish(self, block, ctx: dict, acc) -> tuple:
        ig = acc * (ctx["z"] - ctx["bases"])[:, None]  # [T, Hs, S, d]
        scores = jnp.sum(ig, -1) if block.z2u_score == "signed" else jnp.linalg.norm(ig, axis=-1)
        return scores, jnp.sum(ig, axis=(-1, -2)), ctx["f"]

    def memory(self, dims, targets, heads, nodes) -> int:
        return _direct_bytes(dims, targets, heads, nodes, 2 * heads)
