"""AttnLRP in PyTorch on HF's own modules, for parity tests: the backward rules lxt 2.1
applies (its `efficient` patches), written here as gradient modifiers patched into
transformers' BERT and Llama modules for the duration of a `with` block.

    LayerNorm      (x − mean) / sg(std) · w + b          the mean keeps its gradient
    RMSNorm        x · sg(rsqrt(mean x² + ε)) · w
    activations    ∂act(x)/∂x := act(x) / (x + 1e-10)    (the identity rule)
    gated MLP      act(gate) ⊙ up with the gradient halved at the product
    attention      the gradient of q and k quartered, of v halved (the uniform rule at
                   q·kᵀ and at A·v); softmax keeps its gradient
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers.models.bert import modeling_bert
from transformers.models.llama import modeling_llama


class _Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.factor, None


class _IdentityRule(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fn, x):
        y = fn(x)
        ctx.save_for_backward(y / (x + 1e-10))
        return y

    @staticmethod
    def backward(ctx, g):
        return None, g * ctx.saved_tensors[0]


def _layer_norm(self, x):
    mean = x.mean(-1, keepdim=True)
    std = ((x - mean) ** 2).mean(-1, keepdim=True).add(self.eps).sqrt()
    y = (x - mean) / std.detach()
    return y * self.weight + self.bias if self.weight is not None else y


def _rms_norm(self, x):
    scale = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
    return self.weight * (x * scale.detach())


def _bert_intermediate(self, h):
    return _IdentityRule.apply(self.intermediate_act_fn, self.dense(h))


def _llama_mlp(self, x):
    gate = _IdentityRule.apply(self.act_fn, self.gate_proj(x))
    return self.down_proj(_Scale.apply(gate * self.up_proj(x), 0.5))


def _attention(original):
    def forward(module, q, k, v, *args, **kwargs):
        return original(module, _Scale.apply(q, 0.25), _Scale.apply(k, 0.25),
                        _Scale.apply(v, 0.5), *args, **kwargs)
    return forward


@contextmanager
def lrp_rules():
    """Patch BERT and Llama modules with the rules above; undone on exit."""
    patches = [(torch.nn.LayerNorm, "forward", _layer_norm),
               (modeling_llama.LlamaRMSNorm, "forward", _rms_norm),
               (modeling_bert.BertIntermediate, "forward", _bert_intermediate),
               (modeling_llama.LlamaMLP, "forward", _llama_mlp),
               (modeling_bert, "eager_attention_forward",
                _attention(modeling_bert.eager_attention_forward)),
               (modeling_llama, "eager_attention_forward",
                _attention(modeling_llama.eager_attention_forward))]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, new in patches:
            setattr(owner, name, new)
        yield
    finally:
        for owner, name, old in saved:
            setattr(owner, name, old)
