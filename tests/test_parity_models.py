"""Parity of our NNX encoders with HF PyTorch (eager attention), float32, tiny random configs.

Every layer's hidden state is compared with HF `output_hidden_states=True`, then one block is
compared sub-module by sub-module (attention core, ATT sub-block, MLP sub-block). Checkpoints
are written by `conftest.save_tiny` (no downloads); the real all-MiniLM-L6-v2 package is used
where installed. Tolerance: max abs error ≤ 1e-5.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from conftest import save_tiny
from flax import nnx
from safetensors import safe_open

from lig_jax.loading import LoadedModel, load_model

TOL = 1e-5
ROBERTA_FAMILY = ("roberta", "xlm-roberta", "camembert")

# Weight scale of the random models. HF's default 0.02 keeps pre-activations so small that
# erf-GELU and tanh-GELU differ by < 1e-5; at 0.2 they differ by ~1e-3 (see
# `test_hidden_states_match_hf`) while parity errors stay ~3e-6.
INIT_RANGE = 0.2

# (id, model_type, short length, config overrides). Each case also runs at the longest
# length its position table allows. TINY defaults: hidden 48, 4 heads, 2 layers, erf-GELU;
# ELECTRA gets embedding_size 24 ≠ hidden_size from `save_tiny`.
CASES: list[tuple[str, str, int, dict[str, Any]]] = [
    ("bert-h1-gelu", "bert", 2, dict(num_attention_heads=1)),
    ("bert-h4-gelu_new", "bert", 9, dict(hidden_act="gelu_new")),
    ("bert-h8-d64-relu", "bert", 9, dict(hidden_size=64, num_attention_heads=8,
                                         intermediate_size=128, hidden_act="relu")),
    ("bert-h8-d64-3layers", "bert", 2, dict(hidden_size=64, num_attention_heads=8,
                                            num_hidden_layers=3)),
    ("roberta-h4", "roberta", 9, {}),
    ("roberta-h8-d64", "roberta", 2, dict(hidden_size=64, num_attention_heads=8,
                                          intermediate_size=128)),
    ("electra-h4-e24", "electra", 9, {}),
    ("electra-h8-d64-e32-gelu_new", "electra", 2, dict(hidden_size=64, num_attention_heads=8,
                                                       embedding_size=32, hidden_act="gelu_new")),
    ("xlm-roberta-h4", "xlm-roberta", 9, {}),
    ("camembert-h1", "camembert", 2, dict(num_attention_heads=1)),
]

# What the `tiny_case` fixture yields: (model_type, short length, overrides, ours, HF model).
TinyCase = tuple[str, int, dict[str, Any], LoadedModel, Any]

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")


def hf_model(folder: Path) -> torch.nn.Module:
    """The HF PyTorch base model of `folder`, eager attention, eval mode."""
    return transformers.AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()


def hf_hidden_states(model: torch.nn.Module, ids: np.ndarray) -> np.ndarray:
    """HF `hidden_states` of one sentence, stacked to [L+1, S, d]."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids[None], dtype=torch.long),
                    output_hidden_states=True)
    return np.stack([h[0].numpy() for h in out.hidden_states])


def our_hidden_states(lm: LoadedModel, ids: np.ndarray) -> np.ndarray:
    """Our `EncoderModel.hidden_states`, [L+1, S, d], as numpy."""
    return np.asarray(lm.model.hidden_states(jnp.asarray(ids, dtype=jnp.int32)))


def random_ids(rng: np.random.Generator, model_type: str, vocab: int, length: int) -> np.ndarray:
    """`length` token ids framed by the family's specials; never the pad id inside."""
    if model_type in ROBERTA_FAMILY:
        bos, eos, low = 0, 2, 3  # <s>, </s>; 1 = <pad> is excluded
    else:
        bos, eos, low = 101, 102, 999  # [CLS], [SEP]; skip [PAD]/[unused*]
    inner = rng.integers(low, vocab, size=length - 2)
    return np.concatenate([[bos], inner, [eos]]).astype(np.int64)


def max_abs(a: Any, b: Any) -> float:
    """Max abs difference of two array-likes (torch, jax or numpy), shapes must agree."""
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def flat_params(lm: LoadedModel) -> dict[str, np.ndarray]:
    """{dotted nnx path: value} of every parameter of a loaded model."""
    state = nnx.state(lm.model, nnx.Param)
    return {".".join(map(str, path)): np.asarray(v[...]) for path, v in nnx.to_flat_state(state)}


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def tiny_case(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> TinyCase:
    """One tiny random checkpoint, loaded by us and by HF."""
    case_id, model_type, short, overrides = request.param
    seed = CASES.index(request.param)
    folder = save_tiny(tmp_path_factory.mktemp(case_id), model_type, seed=seed,
                       initializer_range=INIT_RANGE, **overrides)
    return model_type, short, overrides, load_model(str(folder)), hf_model(folder)


def test_config_read_as_saved(tiny_case: TinyCase) -> None:
    """Guard for the parametrisation: the loaded config has the heads/sizes we asked for."""
    model_type, _, overrides, lm, hf = tiny_case
    cfg = lm.config
    assert cfg.model_type == model_type
    assert cfg.num_heads == hf.config.num_attention_heads
    assert cfg.hidden_size == hf.config.hidden_size
    assert cfg.num_layers == hf.config.num_hidden_layers == len(lm.model.layers)
    assert cfg.hidden_act == overrides.get("hidden_act", "gelu")
    if model_type == "electra":
        assert cfg.embedding_size != cfg.hidden_size
        assert lm.model.embeddings.project is not None
    else:
        assert cfg.embedding_size == cfg.hidden_size
    assert cfg.roberta_positions == (model_type in ROBERTA_FAMILY)


def test_hidden_states_match_hf(tiny_case: TinyCase) -> None:
    """Every z^(l), l = 0..L, within 1e-5 of HF, for a short and the maximal length."""
    model_type, short, _, lm, hf = tiny_case
    rng = np.random.default_rng(0)
    for length in (short, lm.config.max_tokens):
        ids = random_ids(rng, model_type, lm.config.vocab_size, length)
        ref = hf_hidden_states(hf, ids)
        ours = our_hidden_states(lm, ids)
        assert ours.shape == (lm.config.num_layers + 1, length, lm.config.hidden_size)
        err = max_abs(ours, ref)
        assert err <= TOL, f"{model_type} S={length}: max abs error {err:.3g}"
    act = lm.config.hidden_act
    if model_type == "bert" and act in ("gelu", "gelu_new"):
        # Sensitivity: swapping erf-GELU and tanh-GELU must break parity by far more than TOL,
        # so the activation cases really test the activation (needs INIT_RANGE, see above).
        wrong = nnx.clone(lm.model)
        for block in wrong.layers:
            block.mlp.activation = "gelu_new" if act == "gelu" else "gelu"
        err = max_abs(np.asarray(wrong.hidden_states(jnp.asarray(ids))), ref)
        assert err > 20 * TOL, f"GELU variants indistinguishable: {err:.3g}"


def test_minilm_hidden_states_match_hf(minilm: Path) -> None:
    """The real all-MiniLM-L6-v2 on a real sentence, through its own tokenizer."""
    lm = load_model(str(minilm))
    enc = lm.tokenizer("The cat sat on the mat.")
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    assert ids[0] == lm.tokenizer.cls_token_id and ids[-1] == lm.tokenizer.sep_token_id
    ref = hf_hidden_states(hf_model(minilm), ids)
    ours = our_hidden_states(lm, ids)
    assert ours.shape == (7, len(ids), 384)
    err = max_abs(ours, ref)
    assert err <= TOL, f"MiniLM: max abs error {err:.3g}"


def check_block_submodules(lm: LoadedModel, hf: Any, ids: np.ndarray, layer: int) -> None:
    """Compare one block's halves with HF's, starting from HF's own z^(layer)."""
    hs = hf_hidden_states(hf, ids)
    s, heads, head_dim = len(ids), lm.config.num_heads, lm.config.head_dim
    hf_block = hf.encoder.layer[layer]
    z_t = torch.tensor(hs[layer][None])
    with torch.no_grad():
        ctx_hf, probs_hf = hf_block.attention.self(z_t)
        u_hf = hf_block.attention(z_t)[0]
        out_hf = hf_block.output(hf_block.intermediate(u_hf), u_hf)
        no_res_hf = hf_block.output.LayerNorm(
            hf_block.output.dense(hf_block.intermediate(u_hf)))
    block = lm.model.layers[layer]
    z = jnp.asarray(hs[layer])
    u_ref = jnp.asarray(u_hf[0].numpy())

    ctx = block.attention_context(z)
    assert ctx.shape == (s, heads, head_dim)
    assert max_abs(ctx, ctx_hf[0].reshape(s, heads, head_dim)) <= TOL
    probs = block.attention_probs(z)
    assert probs.shape == (heads, s, s)
    assert max_abs(probs, probs_hf[0]) <= TOL
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, atol=1e-6)
    u = block.att(z)
    assert max_abs(u, u_hf[0]) <= TOL
    assert max_abs(block.mlp_out(u_ref), out_hf[0]) <= TOL
    assert max_abs(block.mlp_out(u_ref, residual=False), no_res_hf[0]) <= TOL
    # The halves compose to the block, and the block reproduces HF's next hidden state.
    assert max_abs(block.mlp_out(u), block(z)) <= 1e-6
    assert max_abs(block(z), hs[layer + 1]) <= TOL


def test_submodules_tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tiny BERT with 4 heads of width 12, layer 1, sub-module by sub-module."""
    folder = save_tiny(tmp_path_factory.mktemp("sub_bert"), "bert", seed=21,
                       initializer_range=INIT_RANGE)
    lm = load_model(str(folder))
    ids = random_ids(np.random.default_rng(1), "bert", lm.config.vocab_size, 9)
    check_block_submodules(lm, hf_model(folder), ids, layer=1)


def test_submodules_minilm(minilm: Path) -> None:
    """all-MiniLM-L6-v2, first and a middle layer, sub-module by sub-module."""
    lm = load_model(str(minilm))
    hf = hf_model(minilm)
    ids = np.asarray(lm.tokenizer("The cat sat on the mat.")["input_ids"], dtype=np.int64)
    for layer in (0, 3):
        check_block_submodules(lm, hf, ids, layer)


def copy_side_files(src: Path, dst: Path) -> None:
    """Copy config and tokenizer files (not the weights) from `src` to `dst`."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", *TOKENIZER_FILES):
        if (src / name).is_file():
            shutil.copy(src / name, dst / name)


def test_pytorch_bin_equals_safetensors(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A `pytorch_model.bin` checkpoint loads to the same parameters as its safetensors twin.

    Transformers 5 always writes safetensors (`save_pretrained` no longer takes
    `safe_serialization`), so the pickle is written with `torch.save(state_dict())`.
    """
    src = save_tiny(tmp_path_factory.mktemp("st_twin"), "bert", seed=31)
    dst = tmp_path_factory.mktemp("bin_twin")
    copy_side_files(src, dst)
    hf = hf_model(src)
    torch.save(hf.state_dict(), dst / "pytorch_model.bin")
    assert not (dst / "model.safetensors").exists()

    a, b = load_model(str(src)), load_model(str(dst))
    assert a.checkpoint_hash != b.checkpoint_hash  # different bytes, different cache entries
    pa, pb = flat_params(a), flat_params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    ids = random_ids(np.random.default_rng(2), "bert", a.config.vocab_size, 9)
    np.testing.assert_array_equal(our_hidden_states(a, ids), our_hidden_states(b, ids))
    # The pickle is a valid HF checkpoint too.
    assert max_abs(our_hidden_states(b, ids), hf_hidden_states(hf_model(dst), ids)) <= TOL


@pytest.mark.parametrize(
    "model_type,head_cls,prefix,head_key",
    [
        ("bert", "BertForMaskedLM", "bert.", "cls.predictions.bias"),
        ("electra", "ElectraForPreTraining", "electra.", "discriminator_predictions.dense.weight"),
    ],
)
@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_task_head_checkpoint(tmp_path_factory: pytest.TempPathFactory, model_type: str,
                              head_cls: str, prefix: str, head_key: str, fmt: str) -> None:
    """A checkpoint of a task-head model (`bert.`/`electra.` prefix + head) gives the base's
    hidden states; the head's tensors are ignored."""
    base_dir = save_tiny(tmp_path_factory.mktemp(f"base_{model_type}"), model_type, seed=41)
    base = hf_model(base_dir)
    head = getattr(transformers, head_cls)(base.config).eval()
    missing, unexpected = head.base_model.load_state_dict(base.state_dict(), strict=False)
    assert not missing and all(k.startswith("pooler.") for k in unexpected)

    head_dir = tmp_path_factory.mktemp(f"head_{model_type}_{fmt}")
    if fmt == "safetensors":
        head.save_pretrained(head_dir)
        with safe_open(str(head_dir / "model.safetensors"), framework="np") as f:
            keys = list(f.keys())
    else:
        copy_side_files(base_dir, head_dir)
        head.config.save_pretrained(head_dir)
        state = head.state_dict()
        torch.save(state, head_dir / "pytorch_model.bin")
        keys = list(state)
    assert any(k.startswith(prefix + "encoder.") for k in keys) and head_key in keys
    for name in TOKENIZER_FILES:
        if (base_dir / name).is_file() and not (head_dir / name).is_file():
            shutil.copy(base_dir / name, head_dir / name)

    ours_base, ours_head = load_model(str(base_dir)), load_model(str(head_dir))
    assert ours_head.config == ours_base.config
    ids = random_ids(np.random.default_rng(3), model_type, ours_base.config.vocab_size, 9)
    want = hf_hidden_states(base, ids)
    got = our_hidden_states(ours_head, ids)
    np.testing.assert_array_equal(got, our_hidden_states(ours_base, ids))
    assert max_abs(got, want) <= TOL
