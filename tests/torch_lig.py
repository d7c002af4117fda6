"""An independent PyTorch version of the LIG quantities (docs/spec.md §2–§7), for parity tests.

Written from the spec on top of Hugging Face's own PyTorch submodules of a BERT-family
encoder (`encoder.layer[l]`, `.attention`, `.attention.self`, `.intermediate`, `.output`),
with torch autograd for the gradients. It does not import lig_jax: the quadrature nodes,
the ratio fixes and the composition are re-derived here as well.

Conventions: one sentence, no padding, float32 forwards, float64 results.
The α = 0 node of a trapezoid rule is skipped: there the interpolated input is the
baseline, the L2 scalar sits at its kink and its (sub)gradient is 0 by definition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

EPS = 1e-8


# --------------------------------------------------------------------------- quadrature


@dataclass(frozen=True)
class Quadrature:
    """Nodes α_k ∈ [0, 1] and weights w_k (both float32) of one rule."""

    name: str
    alphas: np.ndarray
    weights: np.ndarray


def quadrature(name: str, n: int) -> Quadrature:
    """The rule `name` with n nodes, built from the docs/spec.md §2 definitions."""
    if name in ("captum_trapezoid", "trapezoid"):
        alphas = torch.linspace(0.0, 1.0, n, dtype=torch.float32).numpy()
        step = 1.0 / n if name == "captum_trapezoid" else 1.0 / (n - 1)
        weights = np.full(n, step)
        weights[0] = weights[-1] = step / 2.0
    elif name == "gauss_legendre":
        xi, omega = np.polynomial.legendre.leggauss(n)
        alphas, weights = (1.0 + xi) / 2.0, omega / 2.0
    elif name == "midpoint":
        alphas, weights = (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)
    else:
        raise ValueError(f"unknown rule {name!r}")
    return Quadrature(name, np.asarray(alphas, np.float32), np.asarray(weights, np.float32))


def _safe_l2(v: torch.Tensor) -> torch.Tensor:
    """‖v‖₂ over the last dim, with gradient 0 where v = 0 (the kink)."""
    sq = (v * v).sum(-1)
    pos = sq > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))),
                       torch.zeros_like(sq))


def integrated_gradients(
    scalars: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    x_base: torch.Tensor,
    quad: Quadrature,
    keep_zero: bool = False,
) -> torch.Tensor:
    """IG of B independent problems at once.

    x, x_base: [B, *X] (one input and one baseline per problem); scalars maps the points
    [B, n, *X] to [B, n] (problem b's scalar at node k). Returns [B, *X] =
    (x − x′) ⊙ Σ_k w_k ∇f_b(x′ + α_k (x − x′)), skipping α = 0 (gradient 0 there) unless
    `keep_zero` (a scalar that is not zero at the baseline, the reference's Gemma3 ‖u‖).
    """
    keep = quad.alphas > 0 if not keep_zero else np.ones(quad.alphas.shape, bool)
    alphas = torch.from_numpy(quad.alphas[keep])
    weights = torch.from_numpy(quad.weights[keep])
    delta = x - x_base
    view = (1, -1) + (1,) * (x.dim() - 1)
    points = (x_base.unsqueeze(1) + alphas.view(view) * delta.unsqueeze(1)).detach()
    points.requires_grad_(True)
    values = scalars(points)
    (grads,) = torch.autograd.grad(values.sum(), points)  # grads[b, k] = ∇f_b(point k)
    total = (weights.view(view) * grads).sum(1)
    return (delta * total).detach()


# --------------------------------------------------------------------------- ratio fixes


def _rescaled(c: np.ndarray, j: int, est: float) -> np.ndarray:
    anchor = float(np.sum(c))
    p = c.copy()
    p[j] = est
    total = float(np.sum(p))
    gamma = anchor / total if abs(total) > EPS else 1.0
    return gamma * p


def zero_ratio_column(itb: np.ndarray, zero: np.ndarray, j: int) -> np.ndarray:
    """docs/spec.md §6 zeroRatio for one column (float64)."""
    c = np.asarray(itb, np.float64)
    z = np.asarray(zero, np.float64)
    o_c = float(np.sum(c)) - c[j]
    o_z = float(np.sum(z)) - z[j]
    est = z[j] * o_c / o_z if abs(o_z) > EPS else 0.0
    return _rescaled(c, j, est)


def map_ratio_column(itb: np.ndarray, alpha: float, j: int) -> np.ndarray:
    """docs/spec.md §6 mapRatio for one column with α = A^h_{j,j} (float64)."""
    c = np.asarray(itb, np.float64)
    o_c = float(np.sum(c)) - c[j]
    est = o_c * alpha / (1.0 - alpha) if abs(1.0 - alpha) > EPS else 0.0
    return _rescaled(c, j, est)


# --------------------------------------------------------------------------- composition


def compose(att: np.ndarray, mlp: np.ndarray, num_heads: int) -> np.ndarray:
    """docs/spec.md §7. att [T, H, S] z→u scores, mlp [T, d] u→z contributions → [S, T].

    The u→z contributions are summed over contiguous d/H slices; float32, heads ascending.
    """
    t, width = mlp.shape
    per_slice = np.asarray(mlp, np.float32).reshape(t, num_heads, width // num_heads).sum(-1)
    att32 = np.asarray(att, np.float32)
    out = np.zeros((att.shape[2], t), np.float32)
    for h in range(num_heads):
        out += att32[:, h, :].T * per_slice[None, :, h]
    return out.astype(np.float64)


# --------------------------------------------------------------------------- the model


def _first(out: object) -> torch.Tensor:
    """HF modules return a tensor or a tuple whose first item is the output."""
    return out[0] if isinstance(out, tuple) else out  # type: ignore[return-value]


class TorchLIG:
    """One sentence under one HF BERT-family checkpoint, with the LIG quantities per layer."""

    def __init__(self, folder: str | Path, text: str):
        from transformers import AutoModel, AutoTokenizer

        self.model = AutoModel.from_pretrained(
            str(folder), attn_implementation="eager", dtype=torch.float32
        ).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        enc = self.tokenizer(text, return_tensors="pt")
        self.ids = enc["input_ids"][0].tolist()
        self.tokens = self.tokenizer.convert_ids_to_tokens(self.ids)
        with torch.no_grad():
            out = self.model(input_ids=enc["input_ids"],
                             token_type_ids=torch.zeros_like(enc["input_ids"]),
                             output_hidden_states=True, output_attentions=True)
        self.hidden = [h[0].float() for h in out.hidden_states]  # z^(l), [S, d]
        self.attentions = [a[0].double().numpy() for a in out.attentions]  # [H, S, S]
        cfg = self.model.config
        self.num_layers = cfg.num_hidden_layers
        self.num_heads = cfg.num_attention_heads
        self.seq_len, self.hidden_size = self.hidden[0].shape
        self._memo: dict[tuple, tuple[np.ndarray, ...]] = {}

    def _cached(self, key: tuple,
                compute: Callable[[], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
        """Memoise a raw run (copies out, so callers may modify the result)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return tuple(a.copy() for a in self._memo[key])

    def block(self, layer: int) -> torch.nn.Module:
        """HF's own `BertLayer` l (or the family's equivalent)."""
        return self.model.encoder.layer[layer]

    def _itb(self, z: torch.Tensor) -> torch.Tensor:
        """[S, d] → [S, S, d]: entry j is the ITB baseline of target j (every row z_j)."""
        return z[:, None, :].expand(z.shape[0], *z.shape).clone()

    def _input_baselines(self, z: torch.Tensor, baseline: str) -> torch.Tensor:
        """[S, d] → [S, S, d]: entry j is target j's baseline ("zero" or ITB)."""
        if baseline == "zero":
            return torch.zeros(z.shape[0], *z.shape)
        if baseline == "self_input_token":
            return self._itb(z)
        raise ValueError(baseline)

    # ------------------------------------------------------------------ z → z

    def z2z_raw(self, layer: int, baseline: str, quad: Quadrature) -> tuple[np.ndarray, np.ndarray]:
        """docs/spec.md §3 → (M [S_src, S_tgt], L [S_tgt]); baseline "zero"/"self_input_token"."""
        key = ("z2z", layer, baseline, quad.name, len(quad.alphas))
        return self._cached(key, lambda: self._z2z_raw(layer, baseline, quad))

    def _z2z_raw(self, layer: int, baseline: str, quad: Quadrature) -> tuple[np.ndarray, ...]:
        block = self.block(layer)
        z = self.hidden[layer]
        s, d = z.shape
        tgt = torch.arange(s)
        x_base = self._input_baselines(z, baseline)
        x = z.expand(s, s, d).clone()
        with torch.no_grad():
            y_base = _first(block(x_base))[tgt, tgt]  # [T, d]: B(x′_j)_j
            change = _safe_l2(_first(block(x))[tgt, tgt] - y_base)

        def scalars(points: torch.Tensor) -> torch.Tensor:
            t, n = points.shape[:2]
            y = _first(block(points.reshape(t * n, s, d))).reshape(t, n, s, d)
            return _safe_l2(y[tgt, :, tgt] - y_base[:, None])  # [T, n]

        ig = integrated_gradients(scalars, x, x_base, quad)  # [T, S, d]
        return ig.sum(-1).T.double().numpy(), change.double().numpy()

    def z2z(self, layer: int, baseline: str, quad: Quadrature) -> np.ndarray:
        """docs/spec.md §3 with the §6 zeroRatio fix for "itb_zero_ratio": [S_src, S_tgt]."""
        if baseline != "itb_zero_ratio":
            return self.z2z_raw(layer, baseline, quad)[0]
        itb, _ = self.z2z_raw(layer, "self_input_token", quad)
        zero, _ = self.z2z_raw(layer, "zero", quad)
        out = np.empty_like(itb)
        for j in range(itb.shape[1]):
            out[:, j] = zero_ratio_column(itb[:, j], zero[:, j], j)
        return out

    def z2z_column_captum(self, layer: int, target: int, baseline: str, n: int,
                          method: str = "gausslegendre") -> np.ndarray:
        """One z→z column [S_src] through Captum's IntegratedGradients."""
        from captum.attr import IntegratedGradients

        block = self.block(layer)
        z = self.hidden[layer]
        if baseline == "zero":
            x_base = torch.zeros_like(z)
        else:
            x_base = z[target].expand_as(z).clone()
        with torch.no_grad():
            y_base = _first(block(x_base[None]))[0, target]

        def forward(x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.vector_norm(_first(block(x))[:, target] - y_base, dim=-1)

        attr = IntegratedGradients(forward).attribute(
            z[None], baselines=x_base[None], n_steps=n, method=method
        )
        return attr[0].sum(-1).double().numpy()

    # ------------------------------------------------------------------ z → u

    def z2u_raw(self, layer: int, baseline: str,
                quad: Quadrature) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """docs/spec.md §4 (intended) → (scores [T, H, S], ig_sum [T, H], f [T, H]); all targets."""
        key = ("z2u", layer, baseline, quad.name, len(quad.alphas))
        return self._cached(key, lambda: self._z2u_raw(layer, baseline, quad))

    def _z2u_raw(self, layer: int, baseline: str, quad: Quadrature) -> tuple[np.ndarray, ...]:
        sa = self.block(layer).attention.self
        z = self.hidden[layer]
        s, d = z.shape
        heads = self.num_heads
        dh = d // heads

        def context(x: torch.Tensor) -> torch.Tensor:
            """[B, S, d] → [B, S, H, d_h]: per-head context before the output dense."""
            return _first(sa(x, attention_mask=None)).reshape(x.shape[0], s, heads, dh)

        base_t = self._input_baselines(z, baseline)
        tj = torch.arange(s)[:, None]
        th = torch.arange(heads)[None, :]
        with torch.no_grad():
            u_base = context(base_t)[tj, tj, th]  # [T, H, d_h]: u_{j,h}(x′_j)
            f = _safe_l2(context(z[None])[0][tj, th] - u_base)
        x_base = base_t[:, None].expand(s, heads, s, d).reshape(s * heads, s, d)
        x = z.expand(s * heads, s, d).clone()

        def scalars(points: torch.Tensor) -> torch.Tensor:
            n = points.shape[1]
            c = context(points.reshape(s * heads * n, s, d)).reshape(s, heads, n, s, heads, dh)
            u = c[tj, th, :, tj, th]  # [T, H, n, d_h]
            return _safe_l2(u - u_base[:, :, None]).reshape(s * heads, n)

        ig = integrated_gradients(scalars, x, x_base, quad).reshape(s, heads, s, d).double()
        scores = torch.linalg.vector_norm(ig, dim=-1)
        return scores.numpy(), ig.sum((-1, -2)).numpy(), f.double().numpy()

    def z2u(self, layer: int, baseline: str, quad: Quadrature) -> np.ndarray:
        """Per-source scores [T, H, S] for any of the four ATT baselines (docs/spec.md §4, §6)."""
        if baseline == "zero":
            return self.z2u_raw(layer, "zero", quad)[0]
        scores = self.z2u_raw(layer, "self_input_token", quad)[0]
        t, heads, _ = scores.shape
        for j in range(t):
            scores[j, :, j] = 0.0  # s_j := 0 under ITB
        if baseline == "self_input_token":
            return scores
        if baseline == "itb_zero_ratio":
            zero = self.z2u_raw(layer, "zero", quad)[0]
            fix = [[zero_ratio_column(scores[j, h], zero[j, h], j) for h in range(heads)]
                   for j in range(t)]
        elif baseline == "itb_map_ratio":
            probs = self.attentions[layer]
            fix = [[map_ratio_column(scores[j, h], float(probs[h, j, j]), j)
                    for h in range(heads)] for j in range(t)]
        else:
            raise ValueError(baseline)
        return np.asarray(fix, np.float64)

    # ------------------------------------------------------------------ u → z

    def u2z(self, layer: int, baseline: str, quad: Quadrature,
            residual: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """docs/spec.md §5 (encoder). → (contributions [T, d], l2_total [T]); all targets."""
        block = self.block(layer)
        z = self.hidden[layer]
        s, d = z.shape
        tgt = torch.arange(s)

        def mlp(u: torch.Tensor) -> torch.Tensor:
            inter = block.intermediate(u)
            if residual:
                return block.output(inter, u)
            out = block.output
            return out.LayerNorm(out.dropout(out.dense(inter)))

        with torch.no_grad():
            u = _first(block.attention(z[None]))[0]  # [S, d]
            if baseline == "zero":
                u_base = torch.zeros_like(u)
            elif baseline == "att_itb_a0":
                u_base = _first(block.attention(self._itb(z)))[tgt, tgt]
            else:
                raise ValueError(baseline)
            h_base = mlp(u_base)
            total = _safe_l2(mlp(u) - h_base)

        def scalars(points: torch.Tensor) -> torch.Tensor:
            return _safe_l2(mlp(points) - h_base[:, None])

        ig = integrated_gradients(scalars, u, u_base, quad)
        return ig.double().numpy(), total.double().numpy()
