"""Independent PyTorch replays of the context-mixing measures, written from the papers'
definitions on Hugging Face's own modules (hooks, `output_attentions`), in the papers'
orientation [target, source] — the tests transpose. Not lig-jax code: nothing here
imports `lig_jax`.

- attention: HF's attention probabilities (eager attention).
- attention_norm (Kobayashi et al. 2020): ‖Σ_h α^h_ij f_h(x_j)‖₂, f_h(x) = v_h(x) W_O^h,
  v_h read from the value projection's output (its bias included, kv groups repeated to
  their query heads), W_O without its bias.
- alti (Ferrando et al. 2022): z_ij = Σ_h α^h_ij f_h(x_j) + [i = j] x_i, the LayerNorm after
  the residual sum as the linear map (I − 11ᵀ/d)·diag(γ)/σ_i (σ_i from the real LayerNorm
  input), the resultant y_i = Σ_j T_ij + L(b_O)/σ_i + β; pre-norm blocks: T = z, y = Σ_j z_ij
  + b_O; Gemma 3's post-attention RMSNorm: Σ_h α f_h scaled by γ/rms(o_i) before the
  residual. Distance torch.pairwise_distance(T, y, p=1), score max(0, ‖y‖₁ − d), rows
  normalised.
- value_zeroing (Mohebbi et al. 2023): one forward pass per (layer, source) with the
  source's row of the value projection's output set to 0 (a forward hook), the layer's
  output compared with the clean one by 1 − cosine; decoders keep sources ≤ target.
- rollout: J_0 = C_0, J_l = C_l J_{l−1} (the ALTI authors' joint attention); attention
  enters as (A + I) with rows renormalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class Layout:
    """Where a family keeps the modules the replays read."""

    blocks: str  # attribute path of the block list
    value: str  # value projection inside a block
    out: str  # output projection inside a block
    sum_norm: str | None  # LayerNorm after the residual sum (post-LN) or None
    out_norm: str | None  # norm of the attention output before the residual (Gemma 3)
    causal: bool


LAYOUTS = {
    "bert": Layout("encoder.layer", "attention.self.value", "attention.output.dense",
                   "attention.output.LayerNorm", None, False),
    "llama": Layout("layers", "self_attn.v_proj", "self_attn.o_proj", None, None, True),
    "gemma3_text": Layout("model.layers", "self_attn.v_proj", "self_attn.o_proj", None,
                          "post_attention_layernorm", True),
}


def _get(module: Any, path: str) -> Any:
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module


def _output(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def replay(model: Any, ids: list[int], family: str) -> dict[str, list[np.ndarray]]:
    """Every measure at every layer, [target, source] float64 (heads: [H, tgt, src])."""
    lay = LAYOUTS[family]
    blocks = _get(model, lay.blocks)
    cfg = model.config
    h = cfg.num_attention_heads
    s = len(ids)
    seen: dict[str, Any] = {}
    hooks = []
    for l, block in enumerate(blocks):
        hooks.append(_get(block, lay.value).register_forward_hook(
            lambda m, i, o, l=l: seen.__setitem__(("v", l), o[0].detach().double())))
        hooks.append(_get(block, lay.out).register_forward_hook(
            lambda m, i, o, l=l: seen.__setitem__(("o", l), o[0].detach().double())))
        hooks.append(block.register_forward_hook(
            lambda m, i, o, l=l: seen.__setitem__(("y", l), _output(o)[0].detach().double())))
        if lay.sum_norm is not None:
            hooks.append(_get(block, lay.sum_norm).register_forward_hook(
                lambda m, i, o, l=l: seen.__setitem__(("pre", l), i[0][0].detach().double())))
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_attentions=True, output_hidden_states=True)
    for hk in hooks:
        hk.remove()
    res: dict[str, list[np.ndarray]] = {k: [] for k in (
        "attention", "attention_heads", "attention_norm", "attention_norm_heads", "alti",
        "value_zeroing", "value_zeroing_raw")}
    for l, block in enumerate(blocks):
        a = out.attentions[l][0].double()  # [H, tgt, src]
        x = out.hidden_states[l][0].double()  # the block input (the residual)
        v = seen[("v", l)]  # [S, G·e] with its bias
        dense = _get(block, lay.out)
        w = dense.weight.detach().double()  # [d, H·e]
        e = w.shape[1] // h
        g = v.shape[-1] // e
        v = v.reshape(s, g, e).repeat_interleave(h // g, dim=1)  # [S, H, e]
        wo = w.T.reshape(h, e, -1)  # [H, e, d]
        f = torch.einsum("she,hed->shd", v, wo)  # f_h(x_j)
        weighted = torch.einsum("hij,jhd->ijd", a, f)  # Σ_h α f_h: [tgt, src, d]
        res["attention"].append(a.mean(0).numpy())
        res["attention_heads"].append(a.numpy())
        res["attention_norm"].append(weighted.norm(dim=-1).numpy())
        res["attention_norm_heads"].append(
            (a * f.norm(dim=-1).T[:, None, :]).numpy())
        bo = dense.bias.detach().double() if dense.bias is not None else torch.zeros(w.shape[0])
        d = w.shape[0]
        if lay.out_norm is not None:  # Gemma 3: γ·o/rms(o) before the residual
            norm = _get(block, lay.out_norm)
            o = seen[("o", l)]
            rms = torch.sqrt(o.pow(2).mean(-1) + norm.eps)  # [tgt]
            gain = 1.0 + norm.weight.detach().double()
            weighted = weighted / rms[:, None, None] * gain
        z = weighted + torch.diag_embed(torch.ones(s, dtype=torch.float64))[..., None] * x[None]
        if lay.sum_norm is not None:  # post-LN: the LayerNorm as a linear map
            norm = _get(block, lay.sum_norm)
            gamma, beta = norm.weight.detach().double(), norm.bias.detach().double()
            centre = torch.eye(d, dtype=torch.float64) - 1.0 / d
            sigma = torch.sqrt(seen[("pre", l)].var(-1, unbiased=False) + norm.eps)  # [tgt]
            t = (z @ centre * gamma) / sigma[:, None, None]
            y = t.sum(1) + (bo @ centre * gamma) / sigma[:, None] + beta
        elif lay.out_norm is not None:
            t = z
            y = t.sum(1)
        else:
            t = z
            y = t.sum(1) + bo
        dist = torch.nn.functional.pairwise_distance(t, y[:, None, :].expand_as(t), p=1)
        score = torch.clamp(y.abs().sum(-1)[:, None] - dist, min=0.0)
        if lay.causal:
            score = torch.tril(score)
        res["alti"].append((score / score.sum(-1, keepdim=True)).numpy())
        raw = value_zeroing_layer(model, ids, blocks, lay, l, seen[("y", l)])
        res["value_zeroing_raw"].append(raw)
        res["value_zeroing"].append(raw / raw.sum(-1, keepdims=True))
    return res


def value_zeroing_layer(model: Any, ids: list[int], blocks: Any, lay: Layout, l: int,
                        clean: torch.Tensor) -> np.ndarray:
    """raw[i, j]: 1 − cos(layer l's output at target i with source j's value zeroed, clean)
    — one forward pass per source, the hook zeroing row j of the value projection."""
    s = len(ids)
    raw = np.zeros((s, s))
    for j in range(s):
        got: dict[str, torch.Tensor] = {}

        def zero(m, i, o, j=j):
            o = o.clone()
            o[:, j] = 0.0
            return o

        h1 = _get(blocks[l], lay.value).register_forward_hook(zero)
        h2 = blocks[l].register_forward_hook(
            lambda m, i, o, got=got: got.__setitem__("y", _output(o)[0].detach().double()))
        with torch.no_grad():
            model(torch.tensor([ids]))
        h1.remove()
        h2.remove()
        cos = torch.nn.functional.cosine_similarity(got["y"], clean, dim=-1)
        raw[:, j] = (1.0 - cos).numpy()
        if lay.causal:
            raw[:j, j] = 0.0
    return raw


def rollout(maps: list[np.ndarray], residual: bool = False) -> list[np.ndarray]:
    """J_0 = C_0, J_l = C_l J_{l−1} ([target, input]); residual: C = (A + I) rows renormalised."""
    out = []
    for c in maps:
        if residual:
            c = c + np.eye(c.shape[0])
            c = c / c.sum(-1, keepdims=True)
        out.append(c if not out else c @ out[-1])
    return out
