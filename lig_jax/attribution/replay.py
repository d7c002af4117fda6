"""The reference's Gemma3 z→u (docs/spec.md §4, §6, §13-B3), kept behind `reference_quirks`.

There x = E, the scaled token embeddings (hidden_states[0]), not z^(l): blocks 0..l−1
are replayed on x(α), then layer l's attention core gives u_{j,h}, and the scalar is
f = ‖u_{j,h}(x)‖₂ with no baseline subtraction. So f(x′) ≠ 0 in general and the α = 0
node is *not* zero by definition: this integrand keeps it. Scores are signed sums over
hidden dimensions. The replay is many blocks, not one, so only the direct (jacrev)
integrand exists; the "block" these functions receive is the whole model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from .direct import _bases
from .integrand import Integrand
from .norm import safe_norm


def heads_after_replay(model, x, layer: int, key_mask):
    """Blocks 0..layer−1 on x [S, d], then layer's per-head context [S, H, d_h]."""
    for block in model.layers[:layer]:
        x = block(x, key_mask)
    return model.layers[layer].attention_context(x, key_mask)


@dataclass(frozen=True)
class ReplayZ2u(Integrand):
    """e [S, d] → (signed scores [T, Hs, S], Σ IG [T, Hs], f(x) − f(x′) [T, Hs])."""

    layer: int = 0
    baseline: str = "zero"
    quantity = "z2u"
    keeps_zero_node = True

    def prepare(self, model, lay, targets, heads, extra=None) -> dict:
        e, key_mask = lay["z"], lay["key_mask"]
        bases = _bases(e, targets, self.baseline)

        def norms(x, j):
            return safe_norm(heads_after_replay(model, x, self.layer, key_mask)[j][heads])

        def gap(x, j):  # both ends from one batched evaluation (a causal first token:
            ends = jax.vmap(lambda y: norms(y, j))(jnp.stack([e, x]))  # exactly 0)
            return ends[0] - ends[1]

        change = jax.vmap(gap)(bases, targets)
        return {"e": e, "bases": bases, "change": change, "targets": targets,
                "heads": heads, "key_mask": key_mask}

    def node(self, model, ctx: dict, alpha):
        e, km, heads = ctx["e"], ctx["key_mask"], ctx["heads"]

        def one(x_base, j):
            def norms(x):
                return safe_norm(heads_after_replay(model, x, self.layer, km)[j][heads])

            return jax.jacrev(norms)(x_base + alpha * (e - x_base))  # [Hs, S, d]

        return jax.vmap(one)(ctx["bases"], ctx["targets"])

    def finish(self, model, ctx: dict, acc) -> tuple:
        ig = acc * (ctx["e"] - ctx["bases"])[:, None]
        return jnp.sum(ig, -1), jnp.sum(ig, axis=(-1, -2)), ctx["change"]

    def memory(self, dims, targets, heads, nodes) -> int:
        s, d = dims.seq, dims.hidden
        per_node = targets * (2 * heads * s * d + 16 * s * (d + dims.ffn) * (self.layer + 1))
        return dims.itemsize * (2 * targets * s * d + targets * heads * s * d + nodes * per_node)


@partial(jax.jit, static_argnames=("graphdef", "layer"))
def itb_u_base(graphdef: nnx.GraphDef, state: nnx.State, e: jax.Array, targets: jax.Array,
               *, layer: int, key_mask: jax.Array | None = None) -> jax.Array:
    """The reference's Gemma3 `att_itb_a0` u′ [T, H·d_h]: layer's heads at j after
    replaying blocks 0..layer−1 on rows that all equal E_j."""
    model = nnx.merge(graphdef, state)

    def one(j: jax.Array) -> jax.Array:
        x = jnp.broadcast_to(e[j], e.shape)
        return heads_after_replay(model, x, layer, key_mask)[j].reshape(-1)

    return jax.lax.map(one, targets)
