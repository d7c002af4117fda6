"""An independent PyTorch implementation of the decoder LIG quantities (docs/spec.md §3–§7).

Built from the spec on Hugging Face's own PyTorch decoder layers (GPT-2 `h[l]`, Llama
family `layers[l]`, Gemma3 `layers[l]`) with torch autograd; it does not import lig_jax.
The hidden states are recomputed layer by layer with explicit additive causal / sliding
masks (finfo.min), as the reference does, and the RoPE tables come from HF's own rotary
modules. Quadrature, ratio fixes and composition come from `torch_lig` (also independent).

Conventions: one sentence, no padding, float32 forwards, float64 results; decoder z→u
scores are signed sums over hidden dimensions (docs/spec.md §4); z→u and u→z use the consistent
definitions (docs/spec.md §13-B3: baseline subtracted, the true gap as l2_total).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch_lig import (
    Quadrature,
    _safe_l2,
    integrated_gradients,
    map_ratio_column,
    zero_ratio_column,
)


class TorchDecoderLIG:
    """One sentence (token ids) under one HF decoder checkpoint."""

    def __init__(self, folder: str | Path, ids: list[int]):
        from transformers import AutoModel

        self.model = AutoModel.from_pretrained(
            str(folder), attn_implementation="eager", dtype=torch.float32
        ).eval()
        cfg = self.model.config
        self.kind = {"gpt2": "gpt2", "gemma3_text": "gemma3"}.get(cfg.model_type, "llama")
        self.cfg = cfg
        self.ids = torch.tensor([ids])
        s = len(ids)
        self.seq_len = s
        self.layers = self.model.h if self.kind == "gpt2" else self.model.layers
        self.num_heads = cfg.num_attention_heads
        with torch.no_grad():
            if self.kind == "gpt2":
                z = self.model.wte(self.ids) + self.model.wpe(torch.arange(s)[None])
            else:
                z = self.model.embed_tokens(self.ids)
            self.hidden = [z[0]]
            for l in range(len(self.layers)):
                z = self.block(l, z)
                self.hidden.append(z[0])

    # ------------------------------------------------------------------ block pieces

    def _mask(self, l: int) -> torch.Tensor:
        """Additive [1, 1, S, S] mask: causal, and the sliding window where the layer has one."""
        s = self.seq_len
        q = torch.arange(s)[:, None]
        k = torch.arange(s)[None, :]
        allowed = k <= q
        types = getattr(self.cfg, "layer_types", None)
        window = getattr(self.cfg, "sliding_window", None)
        if types is not None and types[l] == "sliding_attention" and window is not None:
            allowed = allowed & (q - k < window)
        mask = torch.zeros(s, s)
        mask[~allowed] = torch.finfo(torch.float32).min
        return mask[None, None]

    def _rope(self, l: int, x: torch.Tensor):
        pos = torch.arange(self.seq_len)[None]
        if self.kind == "gemma3":
            return self.model.rotary_emb(x, pos, self.cfg.layer_types[l])
        return self.model.rotary_emb(x, pos)

    def block(self, l: int, x: torch.Tensor) -> torch.Tensor:
        """HF's layer l on x [B, S, d]."""
        layer = self.layers[l]
        if self.kind == "gpt2":
            return layer(x, attention_mask=self._mask(l))
        return layer(x, attention_mask=self._mask(l), position_embeddings=self._rope(l, x))

    def _attention(self, l: int, x: torch.Tensor):
        """(pre-o_proj context [B, S, H·d_h], attention output after o_proj, probs)."""
        layer = self.layers[l]
        captured = {}
        proj = layer.attn.c_proj if self.kind == "gpt2" else layer.self_attn.o_proj

        def grab(_module, args):
            captured["ctx"] = args[0]

        handle = proj.register_forward_pre_hook(grab)
        try:
            if self.kind == "gpt2":
                out, probs = layer.attn(layer.ln_1(x), attention_mask=self._mask(l))
            else:
                out, probs = layer.self_attn(hidden_states=layer.input_layernorm(x),
                                             position_embeddings=self._rope(l, x),
                                             attention_mask=self._mask(l))
        finally:
            handle.remove()
        return captured["ctx"], out, probs

    def context(self, l: int, x: torch.Tensor) -> torch.Tensor:
        """u_ATT: [B, S, d] → [B, S, H, d_h]."""
        ctx = self._attention(l, x)[0]
        return ctx.reshape(*ctx.shape[:2], self.num_heads, -1)

    def u_mlp(self, l: int, x: torch.Tensor) -> torch.Tensor:
        """u_MLP (docs/spec.md §1): z + Attn(LN1 z) (GPT-2/Llama), pre-o_proj heads (Gemma3)."""
        ctx, out, _ = self._attention(l, x)
        return ctx if self.kind == "gemma3" else x + out

    def mlp_side(self, l: int, u: torch.Tensor, z_rows: torch.Tensor,
                 residual: bool = True) -> torch.Tensor:
        """h(u) (docs/spec.md §5); z_rows: the block input at the same token (Gemma3 only)."""
        layer = self.layers[l]
        if self.kind == "gpt2":
            inner = layer.mlp(layer.ln_2(u))
            return u + inner if residual else inner
        if self.kind == "llama":
            inner = layer.mlp(layer.post_attention_layernorm(u))
            return u + inner if residual else inner
        p = z_rows + layer.post_attention_layernorm(layer.self_attn.o_proj(u))
        inner = layer.post_feedforward_layernorm(layer.mlp(layer.pre_feedforward_layernorm(p)))
        return p + inner if residual else inner

    def probs(self, l: int) -> np.ndarray:
        with torch.no_grad():
            return self._attention(l, self.hidden[l][None])[2][0].double().numpy()

    # ------------------------------------------------------------------ baselines

    def _input_baselines(self, z: torch.Tensor, baseline: str) -> torch.Tensor:
        """[S, d] → [S, S, d]: entry j is target j's baseline ("zero" or ITB)."""
        if baseline == "zero":
            return torch.zeros(z.shape[0], *z.shape)
        if baseline == "self_input_token":
            return z[:, None, :].expand(z.shape[0], *z.shape).clone()
        raise ValueError(baseline)

    # ------------------------------------------------------------------ z → z

    def z2z_raw(self, l: int, baseline: str, quad: Quadrature) -> tuple[np.ndarray, np.ndarray]:
        """docs/spec.md §3 → (M [S_src, S_tgt], L [S_tgt])."""
        z = self.hidden[l]
        s, d = z.shape
        tgt = torch.arange(s)
        x_base = self._input_baselines(z, baseline)
        x = z.expand(s, s, d).clone()
        with torch.no_grad():
            y_base = self.block(l, x_base)[tgt, tgt]
            change = _safe_l2(self.block(l, x)[tgt, tgt] - y_base)

        def scalars(points: torch.Tensor) -> torch.Tensor:
            t, n = points.shape[:2]
            y = self.block(l, points.reshape(t * n, s, d)).reshape(t, n, s, d)
            return _safe_l2(y[tgt, :, tgt] - y_base[:, None])

        ig = integrated_gradients(scalars, x, x_base, quad)
        return ig.sum(-1).T.double().numpy(), change.double().numpy()

    def z2z(self, l: int, baseline: str, quad: Quadrature) -> np.ndarray:
        if baseline != "itb_zero_ratio":
            return self.z2z_raw(l, baseline, quad)[0]
        itb, zero = self.z2z_raw(l, "self_input_token", quad)[0], self.z2z_raw(l, "zero", quad)[0]
        return np.stack([zero_ratio_column(itb[:, j], zero[:, j], j)
                         for j in range(itb.shape[1])], axis=1)

    # ------------------------------------------------------------------ z → u

    def z2u_raw(self, l: int, baseline: str, quad: Quadrature
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """docs/spec.md §4 → (signed scores [T, H, S], Σ IG [T, H], f [T, H], Σ_c |IG_{i,c}|
        [T, H, S]) for all targets. The last is the size of the terms each signed score
        sums: float32 rounding of a score scales with it, not with the score (under a
        pre-norm and the zero baseline the terms cancel to a small remainder)."""
        z = self.hidden[l]
        s, d = z.shape
        heads = self.num_heads
        base_t = self._input_baselines(z, baseline)
        tj = torch.arange(s)[:, None]
        th = torch.arange(heads)[None, :]
        with torch.no_grad():
            u_base = self.context(l, base_t)[tj, tj, th]  # [T, H, d_h]
            f = _safe_l2(self.context(l, z[None])[0][tj, th] - u_base)
        x_base = base_t[:, None].expand(s, heads, s, d).reshape(s * heads, s, d)
        x = z.expand(s * heads, s, d).clone()

        def scalars(points: torch.Tensor) -> torch.Tensor:
            n = points.shape[1]
            c = self.context(l, points.reshape(s * heads * n, s, d))
            c = c.reshape(s, heads, n, s, heads, -1)
            return _safe_l2(c[tj, th, :, tj, th] - u_base[:, :, None]).reshape(s * heads, n)

        ig = integrated_gradients(scalars, x, x_base, quad).reshape(s, heads, s, d).double()
        return (ig.sum(-1).numpy(), ig.sum((-1, -2)).numpy(), f.double().numpy(),
                ig.abs().sum(-1).numpy())

    def z2u_term_scale(self, l: int, baseline: str, quad: Quadrature) -> np.ndarray:
        """[T, H, 1]: the largest Σ_c |IG_{i,c}| over sources of the run(s) behind a
        baseline's scores (both runs for itb_zero_ratio)."""
        runs = {"zero": ["zero"], "itb_zero_ratio": ["zero", "self_input_token"]}
        scale = [self.z2u_raw(l, b, quad)[3].max(-1, keepdims=True)
                 for b in runs.get(baseline, ["self_input_token"])]
        return np.max(scale, axis=0)

    def z2u(self, l: int, baseline: str, quad: Quadrature) -> np.ndarray:
        """Per-source signed scores [T, H, S] under any of the four ATT baselines."""
        if baseline == "zero":
            return self.z2u_raw(l, "zero", quad)[0]
        scores = self.z2u_raw(l, "self_input_token", quad)[0]
        t, heads, _ = scores.shape
        if baseline == "self_input_token":
            return scores
        if baseline == "itb_zero_ratio":
            zero = self.z2u_raw(l, "zero", quad)[0]
            fix = [[zero_ratio_column(scores[j, h], zero[j, h], j) for h in range(heads)]
                   for j in range(t)]
        else:
            probs = self.probs(l)
            fix = [[map_ratio_column(scores[j, h], float(probs[h, j, j]), j)
                    for h in range(heads)] for j in range(t)]
        return np.asarray(fix, np.float64)

    # ------------------------------------------------------- the reference's Gemma3 quirks

    def replayed_context(self, l: int, e: torch.Tensor) -> torch.Tensor:
        """Blocks 0..l−1 on embeddings e [B, S, d], then layer l's heads [B, S, H, d_h]."""
        x = e
        for k in range(l):
            x = self.block(k, x)
        return self.context(l, x)

    def z2u_replay(self, l: int, baseline: str, quad: Quadrature, keep_zero: bool = True
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The reference's Gemma3 z→u (docs/spec.md §4): x = E = hidden_states[0], replayed through
        blocks 0..l−1, f = ‖u_{j,h}(x)‖ with no baseline subtraction, every TRAP node kept
        (f is not zero at the baseline). → (signed scores [T, H, S], Σ IG [T, H],
        f(x) − f(x′) [T, H])."""
        e = self.hidden[0]
        s, d = e.shape
        heads = self.num_heads
        base_t = self._input_baselines(e, baseline)
        tj = torch.arange(s)[:, None]
        th = torch.arange(heads)[None, :]
        with torch.no_grad():
            f_base = _safe_l2(self.replayed_context(l, base_t)[tj, tj, th])
            f = _safe_l2(self.replayed_context(l, e[None])[0][tj, th])
        x_base = base_t[:, None].expand(s, heads, s, d).reshape(s * heads, s, d)
        x = e.expand(s * heads, s, d).clone()

        def scalars(points: torch.Tensor) -> torch.Tensor:
            n = points.shape[1]
            c = self.replayed_context(l, points.reshape(s * heads * n, s, d))
            c = c.reshape(s, heads, n, s, heads, -1)
            return _safe_l2(c[tj, th, :, tj, th]).reshape(s * heads, n)

        ig = integrated_gradients(scalars, x, x_base, quad, keep_zero=keep_zero)
        ig = ig.reshape(s, heads, s, d).double()
        return ig.sum(-1).numpy(), ig.sum((-1, -2)).numpy(), (f - f_base).double().numpy()

    def replayed_u_base(self, l: int) -> torch.Tensor:
        """The reference's Gemma3 `att_itb_a0` u′ [T, H·d_h]: layer l's heads at j after
        replaying blocks 0..l−1 on rows that all equal E_j."""
        e = self.hidden[0]
        s = e.shape[0]
        tgt = torch.arange(s)
        with torch.no_grad():
            ctx = self.replayed_context(l, self._input_baselines(e, "self_input_token"))
        return ctx[tgt, tgt].reshape(s, -1)

    # ------------------------------------------------------------------ u → z

    def u2z(self, l: int, baseline: str, quad: Quadrature, residual: bool = True,
            replayed: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """docs/spec.md §5 → (contributions [T, w], true gap ‖h(u) − h(u′)‖ [T]); `replayed`: the
        reference's Gemma3 `att_itb_a0` u′ (`replayed_u_base`)."""
        z = self.hidden[l]
        s = z.shape[0]
        tgt = torch.arange(s)
        with torch.no_grad():
            u = self.u_mlp(l, z[None])[0]
            if baseline == "zero":
                u_base = torch.zeros_like(u)
            elif replayed:
                u_base = self.replayed_u_base(l)
            else:  # att_itb_a0: u_MLP at j when every input row is z_j
                u_base = self.u_mlp(l, self._input_baselines(z, "self_input_token"))[tgt, tgt]
            h_base = self.mlp_side(l, u_base, z, residual)
            total = _safe_l2(self.mlp_side(l, u, z, residual) - h_base)

        def scalars(points: torch.Tensor) -> torch.Tensor:
            rows = z[:, None].expand(*points.shape[:2], z.shape[1])
            return _safe_l2(self.mlp_side(l, points, rows, residual) - h_base[:, None])

        ig = integrated_gradients(scalars, u, u_base, quad)
        return ig.double().numpy(), total.double().numpy()
