"""LIG computed with PyTorch + Captum the way the reference computes it (for the benchmark).

Cost structure of the reference (spec §12), kept on purpose:
- z→z: per layer, one Captum `IntegratedGradients` call per target j, each a batched
  n-step forward + backward of the whole `BertLayer` (riemann_trapezoid);
- z→u: one Captum call per (target, head) through layer l's `attention.self` (the
  intended input z^(l); the reference additionally replays blocks 0..l−1 per call, which
  would only make it slower, so this is a lower bound on its cost);
- u→z: per target, the n interpolation points go through the MLP one at a time in a Python
  loop, then one backward.
Gradients at α = 0 are whatever torch's norm backward gives (the reference's behaviour).
Numbers match lig-jax up to that α = 0 term; the point here is the timing.
"""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients


def _trapezoid(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    alphas = torch.linspace(0.0, 1.0, n)
    weights = torch.full((n,), 1.0 / n)
    weights[0] = weights[-1] = 0.5 / n
    return alphas, weights


class ReferenceStyleLIG:
    """Per-target Captum IG over HF BERT submodules. `model` is a HF `BertModel` (eager)."""

    def __init__(self, model: torch.nn.Module, num_steps: int = 32):
        self.model = model.eval()
        self.n = num_steps

    def hidden_states(self, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            return self.model(ids[None], output_hidden_states=True).hidden_states

    def z2z(self, layer: int, z: torch.Tensor, baseline: str = "self_input_token") -> torch.Tensor:
        block = self.model.encoder.layer[layer]
        s = z.shape[0]
        out = torch.zeros(s, s)
        x = z[None]
        for j in range(s):
            x_base = torch.zeros_like(x) if baseline == "zero" else z[j].expand_as(x).clone()
            with torch.no_grad():
                y_base = block(x_base)
                y_base = (y_base[0] if isinstance(y_base, tuple) else y_base)[:, j]

            def f(xx: torch.Tensor, j: int = j, y_base: torch.Tensor = y_base) -> torch.Tensor:
                y = block(xx)
                y = y[0] if isinstance(y, tuple) else y
                return torch.linalg.norm(y[:, j] - y_base, dim=-1)

            ig = IntegratedGradients(f).attribute(x, baselines=x_base, n_steps=self.n,
                                                  method="riemann_trapezoid")
            out[:, j] = ig[0].sum(-1).detach()
        return out

    def z2u(self, layer: int, z: torch.Tensor, baseline: str = "self_input_token"
            ) -> torch.Tensor:
        att = self.model.encoder.layer[layer].attention.self
        heads = self.model.config.num_attention_heads
        dh = z.shape[-1] // heads
        s = z.shape[0]
        out = torch.zeros(s, heads, s)
        x = z[None]

        def ctx(xx: torch.Tensor) -> torch.Tensor:
            c = att(xx)
            c = c[0] if isinstance(c, tuple) else c
            return c.reshape(c.shape[0], s, heads, dh)

        for j in range(s):
            x_base = torch.zeros_like(x) if baseline == "zero" else z[j].expand_as(x).clone()
            with torch.no_grad():
                u_base = ctx(x_base)[:, j]
            for h in range(heads):
                def f(xx: torch.Tensor, j: int = j, h: int = h) -> torch.Tensor:
                    return torch.linalg.norm(ctx(xx)[:, j, h] - u_base[:, h], dim=-1)

                ig = IntegratedGradients(f).attribute(x, baselines=x_base, n_steps=self.n,
                                                      method="riemann_trapezoid")
                out[j, h] = torch.linalg.norm(ig[0], dim=-1).detach()
        return out

    def u2z(self, layer: int, z: torch.Tensor, baseline: str = "zero") -> torch.Tensor:
        blk = self.model.encoder.layer[layer]
        with torch.no_grad():
            u_all = blk.attention(z[None])
            u_all = (u_all[0] if isinstance(u_all, tuple) else u_all)[0]
        alphas, weights = _trapezoid(self.n)

        def mlp(u: torch.Tensor) -> torch.Tensor:
            return blk.output(blk.intermediate(u), u)

        out = torch.zeros_like(u_all)
        for j in range(z.shape[0]):
            u = u_all[j]
            u_base = torch.zeros_like(u)
            with torch.no_grad():
                h_base = mlp(u_base[None, None])[0, 0]
            points = (u_base + alphas[:, None] * (u - u_base)[None]).requires_grad_(True)
            values = [torch.linalg.norm(mlp(points[k][None, None])[0, 0] - h_base)
                      for k in range(self.n)]  # one token at a time, as the reference does
            grads = torch.autograd.grad(torch.stack(values).sum(), points)[0]
            out[j] = (weights[:, None] * grads).sum(0) * (u - u_base)
        return out

    def explain(self, ids: torch.Tensor) -> None:
        """All layers, all granularities, default baselines."""
        hs = self.hidden_states(ids)
        for layer in range(len(self.model.encoder.layer)):
            z = hs[layer][0]
            self.z2z(layer, z)
            self.z2u(layer, z)
            self.u2z(layer, z)
