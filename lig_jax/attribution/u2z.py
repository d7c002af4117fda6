"""u→z through the MLP sub-block (docs/spec.md §5), per target token.

Only u_j is interpolated; h(u) = mlp_out(u) (with or without the residual u +);
f(u) = ‖h(u) − h(u′)‖₂; contributions c = IG over the w input dims of u (signed).
Per node one one-token pass (forward + input gradient) of the MLP side per target.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from . import itb
from .integrand import Integrand
from .norm import safe_norm

BASELINES = ("zero", "att_itb_a0")


def _mlp_row(block, residual: bool):
    """h(u_j [w], z_j [d]) → [d] (Gemma3's MLP side also reads the block input row z_j)."""
    def h(u: jax.Array, x: jax.Array) -> jax.Array:
        return block.mlp_out(u[None], residual, x[None])[0]

    return h


@dataclass(frozen=True)
class U2z(Integrand):
    """u→z for a chunk of targets.

    baseline "zero": u′ = 0; "att_itb_a0": u′ = the ATT output at j when every input row
    is z_j (the α = 0 end of the ATT ITB path), with u from the same batched evaluation
    (so a causal first token, whose u and u′ agree in exact arithmetic, gets exactly 0).
    `given_base`: u′ comes as `extra` [T, w] (the reference's replayed Gemma3 u′).
    """

    baseline: str = "zero"
    residual: bool = True
    given_base: bool = False
    quantity = "u2z"
    # 16 nodes a step: (nodes × targets)-row MLP matmuls; measured 4–20 % faster than 8 on
    # MiniLM at 16–128 tokens (2-core CPU), the working set still that of one chunk
    nodes_per_step = 16

    def layer_context(self, block, z, heads, key_mask) -> dict:
        if self.baseline == "att_itb_a0" and not self.given_base:
            return itb.layer_context(block, z, heads, key_mask)
        return {"z": z, "key_mask": key_mask, "u": block.att(z, key_mask)}

    def prepare(self, block, lay, targets, heads, extra=None) -> dict:
        zt = lay["z"][targets]
        if self.baseline == "att_itb_a0" and not self.given_base:
            path = itb._context(block, lay, targets, jnp.arange(block.num_heads))
            u_base, u = (block.att_from(zt, c) for c in path["ends"])
        else:
            u = lay["u"][targets]
            u_base = extra if self.given_base else jnp.zeros_like(u)
        h = jax.vmap(_mlp_row(block, self.residual))
        h_base = h(u_base, zt)
        return {"u": u, "u_base": u_base, "zt": zt, "h_base": h_base,
                "total": safe_norm(h(u, zt) - h_base)}

    def node(self, block, ctx: dict, alpha):
        h = _mlp_row(block, self.residual)

        def scalar(u, x, hb):
            return safe_norm(h(u, x) - hb)

        x = ctx["u_base"] + alpha * (ctx["u"] - ctx["u_base"])
        return jax.vmap(jax.grad(scalar))(x, ctx["zt"], ctx["h_base"])  # [T, w]

    def finish(self, block, ctx: dict, acc) -> tuple:
        return acc * (ctx["u"] - ctx["u_base"]), ctx["total"]

    def preferred_targets(self, dims, nodes: int) -> int:
        return max(1, 4096 // nodes)  # one-token MLP passes: batched rows, near peak matmuls

    def memory(self, dims, targets, heads, nodes) -> int:
        per_node = targets * (12 * dims.ffn + 12 * dims.hidden + 4 * dims.width)
        fixed = 8 * targets * dims.width + 4 * dims.seq * dims.hidden
        if self.baseline == "att_itb_a0":
            fixed += itb.itb_bytes(dims, targets, dims.heads, 1) // dims.itemsize
        return dims.itemsize * (fixed + nodes * per_node)
