"""AttnLRP reference relevances from lxt 2.1 itself, for tests/test_attribute.py.

lxt 2.1 imports transformers internals that transformers 5 removed, so this runs in a side
environment (not lig-jax's), e.g.:

    python -m venv /tmp/lxtenv
    /tmp/lxtenv/bin/pip install torch==2.13.0 transformers==4.51.3 gguf accelerate \
        sentencepiece tabulate
    /tmp/lxtenv/bin/pip install --no-deps lxt==2.1 zennit
    # lxt imports torchvision for its ViT patches only; without torchvision, a stub:
    mkdir -p /tmp/tvstub/torchvision/models && touch /tmp/tvstub/torchvision/__init__.py \
        /tmp/tvstub/torchvision/models/__init__.py
    echo "from torch import nn" > /tmp/tvstub/torchvision/models/vision_transformer.py
    PYTHONPATH=/tmp/tvstub /tmp/lxtenv/bin/python scripts/lxt_reference.py \
        --minilm MINILM_FOLDER --smollm2 SMOLLM2_GGUF -o tests/data/lxt_reference.npz

It writes, per case, the input ids, the target value and lxt's input relevance
Σ_d inputs_embeds ⊙ ∂target/∂inputs_embeds (float32 eager attention, one backward pass
seeded with 1), as lxt's README computes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

MINILM_TEXTS = ("The quick brown fox jumps over the lazy dog.",
                "Attribution methods explain which tokens matter.")
SMOLLM2_TEXTS = ("The capital of France is", "Alice gave the book to")


def relevance(model, ids, target) -> tuple[float, np.ndarray]:
    import torch

    emb = model.get_input_embeddings()(torch.tensor([ids])).detach().requires_grad_()
    value = target(model(inputs_embeds=emb))
    value.backward()
    return float(value), (emb * emb.grad).sum(-1)[0].detach().double().numpy()


def main() -> None:
    import torch
    from lxt.efficient import monkey_patch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.bert import modeling_bert
    from transformers.models.llama import modeling_llama

    ap = argparse.ArgumentParser()
    ap.add_argument("--minilm", required=True)
    ap.add_argument("--smollm2", required=True, help="the SmolLM2-135M-Instruct .gguf file")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    monkey_patch(modeling_bert)
    monkey_patch(modeling_llama)
    torch.set_grad_enabled(True)
    out: dict[str, np.ndarray] = {}

    tok = AutoTokenizer.from_pretrained(args.minilm)
    bert = AutoModel.from_pretrained(args.minilm, attn_implementation="eager",
                                     torch_dtype=torch.float32).eval()
    for k, text in enumerate(MINILM_TEXTS):
        ids = tok(text)["input_ids"]
        for name, target in (("hidden:0:99", lambda o: o.last_hidden_state[0, 0, 99]),
                             ("hidden_sum:0", lambda o: o.last_hidden_state[0, 0].sum())):
            value, rel = relevance(bert, ids, target)
            key = f"minilm/{k}/{name}"
            out[f"{key}/ids"], out[f"{key}/value"] = np.asarray(ids), np.asarray(value)
            out[f"{key}/relevance"] = rel
            out[f"{key}/text"] = np.asarray(text)

    gguf = Path(args.smollm2)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    llm = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                               attn_implementation="eager",
                                               torch_dtype=torch.float32).eval()
    for k, text in enumerate(SMOLLM2_TEXTS):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            top = int(llm(torch.tensor([ids])).logits[0, -1].argmax())
        value, rel = relevance(llm, ids, lambda o, top=top: o.logits[0, -1, top])
        key = f"smollm2/{k}/next"
        out[f"{key}/ids"], out[f"{key}/value"] = np.asarray(ids), np.asarray(value)
        out[f"{key}/relevance"], out[f"{key}/token"] = rel, np.asarray(top)
        out[f"{key}/text"] = np.asarray(text)
    np.savez_compressed(args.out, **out)
    print(f"wrote {len(out)} arrays to {args.out}")


if __name__ == "__main__":
    main()
