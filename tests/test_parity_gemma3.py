"""Parity of our NNX Gemma 3 text stack with HF PyTorch (eager attention), float32.

Tiny random checkpoints come from `gemma3_fixtures.save_tiny_gemma3`: 4 layers alternating
sliding (window 3 < S) and full attention, GQA (4 query heads over 2 kv groups), heads of
width 24 (H·d_h = 96 ≠ d = 64), linear RoPE scaling on the full layers and randomised norm
weights. z^(0..L−1) are compared with HF `hidden_states`, z^(L) with a hook on HF's last
decoder layer (HF's last `hidden_states` entry has the final norm applied).

Tolerances. Every single block and sub-module, fed HF's own z^(l): max abs error ≤ 1e-5
(measured ≤ 4e-6). Whole stacks (z^(0..L) from the token ids): ≤ 2e-5, because the error is
float32 rounding that accumulates with depth: every op agrees with HF to ≤ 1 ulp (the
matmuls bit for bit; RMSNorm mean/reciprocal square root, RoPE cos/sin, tanh-GELU and the
softmax exp differ by 1 ulp between XLA and PyTorch CPU kernels), the RMSNorms after o_proj
and the MLP rescale the small branch outputs (and their relative error) to O(1), and Gemma's
residual stream grows to |z| ≈ 10–13 after 4 layers, where one ulp is ~1e-6. Over 20 random
inputs the 4-layer stack's worst error was 1.1e-5 (1.5e-5 with HF's 0.02 weight init).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from gemma3_fixtures import (
    FULL,
    SLIDING,
    save_tiny_gemma3,
    tiny_multimodal_config,
    tiny_text_config,
)
from lig_jax.converters import common
from lig_jax.converters import gemma3 as conv
from safetensors.numpy import load_file, save_file

from lig_jax.errors import LIGError
from lig_jax.loading import expected_shapes, load_model
from lig_jax.models import family_for
from lig_jax.models.common import attention_mix
from lig_jax.models.gemma3 import read_config

TOL = 1e-5  # one block / sub-module from HF's own input
STACK_TOL = 2e-5  # z^(0..L) through the whole stack (see the module docstring)
S = 12  # > 3 × sliding_window


def max_abs(a: Any, b: Any) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def random_ids(seed: int, length: int = S, vocab: int = 50257) -> np.ndarray:
    """BOS (2) then random ids above the specials (0 pad, 1 eos, 2 bos)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([[2], rng.integers(3, vocab, size=length - 1)]).astype(np.int64)


def hf_trace(text_model: torch.nn.Module, ids: np.ndarray,
             attention_mask: np.ndarray | None = None) -> dict[str, Any]:
    """One HF forward of a `Gemma3TextModel`: z^(0..L) [L+1, S, d] (z^(L) from a hook on the
    last layer), per layer the pre-o_proj input u [S, H·d_h] and the probabilities [H, S, S]."""
    layers = text_model.layers
    outs: dict[int, torch.Tensor] = {}
    us: dict[int, torch.Tensor] = {}
    hooks = []
    for i, layer in enumerate(layers):
        hooks.append(layer.register_forward_hook(
            lambda m, a, o, i=i: outs.__setitem__(i, o[0] if isinstance(o, tuple) else o)))
        hooks.append(layer.self_attn.o_proj.register_forward_pre_hook(
            lambda m, a, i=i: us.__setitem__(i, a[0])))
    kw = {} if attention_mask is None else {
        "attention_mask": torch.tensor(attention_mask[None], dtype=torch.long)}
    try:
        with torch.no_grad():
            out = text_model(input_ids=torch.tensor(ids[None]), output_hidden_states=True,
                             output_attentions=True, **kw)
    finally:
        for h in hooks:
            h.remove()
    n = len(layers)
    hs = [out.hidden_states[i][0].numpy() for i in range(n)] + [outs[n - 1][0].numpy()]
    for i in range(n - 1):  # HF's hidden_states[i + 1] is layer i's own output
        assert max_abs(out.hidden_states[i + 1][0], outs[i][0]) == 0.0
    return {"hs": np.stack(hs), "u": [us[i][0].numpy() for i in range(n)],
            "probs": [out.attentions[i][0].numpy() for i in range(n)]}


@pytest.fixture(scope="module")
def text_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    """(folder, our loaded model, HF Gemma3ForCausalLM) of the tiny gemma3_text model."""
    folder = save_tiny_gemma3(tmp_path_factory.mktemp("gemma3_text"), seed=0)
    hf = transformers.Gemma3ForCausalLM.from_pretrained(str(folder),
                                                        attn_implementation="eager").eval()
    return folder, load_model(str(folder)), hf


def test_config_read_as_saved(text_ckpt: tuple[Path, Any, Any]) -> None:
    folder, lm, hf = text_ckpt
    cfg, t = lm.config, hf.config
    assert cfg.model_type == "gemma3_text" == lm.model_type
    assert (cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (4, 4, 2, 24)
    assert cfg.layer_types == tuple(t.layer_types) == (SLIDING, FULL, SLIDING, FULL)
    assert cfg.sliding_window == 3 and cfg.max_tokens == 64 and cfg.pad_token_id == 0
    assert (cfg.rope_theta_local, cfg.rope_factor_local) == (10.0, 1.0)
    assert (cfg.rope_theta_global, cfg.rope_factor_global) == (100.0, 2.0)
    assert [b.is_sliding for b in lm.model.layers] == [True, False, True, False]
    assert lm.model.layers[0].attention_scale == 20 ** -0.5
    # The real GPT-2 tokenizer came along.
    assert lm.tokenizer("Hello world")["input_ids"] == [15496, 995]


def test_rope_tables_match_hf(text_ckpt: tuple[Path, Any, Any]) -> None:
    """Our inverse frequencies equal HF's rotary buffers (sliding: local, full: global/2)."""
    _, lm, hf = text_ckpt
    rot = hf.model.rotary_emb
    for block in lm.model.layers[:2]:
        want = getattr(rot, f"{SLIDING if block.is_sliding else FULL}_inv_freq").numpy()
        got = np.asarray(block.self_attn.inv_freq, dtype=np.float32)
        np.testing.assert_allclose(got, want, rtol=2e-7, atol=0)


def test_hidden_states_match_hf(text_ckpt: tuple[Path, Any, Any]) -> None:
    """z^(0) … z^(L) within 1e-5 of HF, at a short length and one with S ≫ window."""
    _, lm, hf = text_ckpt
    for length in (5, S):
        ids = random_ids(length, length)
        ref = hf_trace(hf.model, ids)["hs"]
        ours = np.asarray(lm.model.hidden_states(jnp.asarray(ids)))
        assert ours.shape == (5, length, 64)
        err = max_abs(ours, ref)
        assert err <= STACK_TOL, f"S={length}: max abs error {err:.3g}"
    # Sensitivity: a window one wider, swapped local/global RoPE tables or erf-GELU instead
    # of tanh-GELU must each break parity by far more than the tolerance.
    for what in ("window", "rope", "gelu"):
        wrong = nnx.clone(lm.model)
        local, glob = wrong.layers[0].self_attn.inv_freq, wrong.layers[1].self_attn.inv_freq
        for block in wrong.layers:
            if what == "window" and block.is_sliding:
                block.self_attn.sliding_window += 1
            elif what == "rope":
                block.self_attn.inv_freq = glob if block.is_sliding else local
            elif what == "gelu":
                block.mlp.activation = "gelu"
        err = max_abs(np.asarray(wrong.hidden_states(jnp.asarray(ids))), ref)
        assert err > 20 * STACK_TOL, f"{what}: {err:.3g}"
    # z^(0) is the embedding row times float32 √d, bit for bit.
    np.testing.assert_array_equal(ours[0], ref[0])
    # The final norm is loaded and matches HF's last hidden_states entry.
    with torch.no_grad():
        last = hf.model(input_ids=torch.tensor(ids[None])).last_hidden_state[0]
    assert max_abs(lm.model.final_norm(jnp.asarray(ours[-1])), last) <= STACK_TOL


def test_padding_key_mask(text_ckpt: tuple[Path, Any, Any]) -> None:
    """Trailing padding hidden by key_mask: the real rows match HF with an attention mask."""
    _, lm, hf = text_ckpt
    ids = random_ids(7, S)
    n = S - 3
    ids[n:] = 0
    key_mask = np.arange(S) < n
    ref = hf_trace(hf.model, ids, key_mask.astype(np.int64))["hs"]
    ours = np.asarray(lm.model.hidden_states(jnp.asarray(ids), jnp.asarray(key_mask)))
    assert max_abs(ours[:, :n], ref[:, :n]) <= STACK_TOL
    assert np.isfinite(ours).all()


def test_multimodal_checkpoint_loads_language_model(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """A tiny Gemma3ForConditionalGeneration (model_type gemma3): the text_config is read,
    vision tower / projector / lm_head keys are skipped, the language model matches HF."""
    folder = save_tiny_gemma3(tmp_path_factory.mktemp("gemma3_mm"), seed=3, multimodal=True,
                              layer_types=[FULL, SLIDING, SLIDING], num_hidden_layers=3)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "gemma3"
    lm = load_model(str(folder))
    assert lm.config.model_type == "gemma3" and lm.config.layer_types == (FULL, SLIDING, SLIDING)
    hf = transformers.Gemma3ForConditionalGeneration.from_pretrained(
        str(folder), attn_implementation="eager").eval()
    ids = random_ids(11, S)
    ref = hf_trace(hf.model.language_model, ids)["hs"]
    ours = np.asarray(lm.model.hidden_states(jnp.asarray(ids)))
    assert ours.shape == (4, S, 64)
    err = max_abs(ours, ref)
    assert err <= STACK_TOL, f"multimodal: max abs error {err:.3g}"


@pytest.mark.parametrize("layer", [0, 1], ids=["sliding", "full"])
def test_block_submodules(text_ckpt: tuple[Path, Any, Any], layer: int) -> None:
    """One sliding and one full layer, from HF's own z^(l): attention_context vs the input of
    o_proj, probabilities, att, mlp_out (with and without `p +`) vs HF, the protocol
    identities, and the sliding window actually cutting keys off."""
    _, lm, hf = text_ckpt
    ids = random_ids(21, S)
    trace = hf_trace(hf.model, ids)
    block = lm.model.layers[layer]
    heads, head_dim = 4, 24
    z = jnp.asarray(trace["hs"][layer])
    u_hf = trace["u"][layer]  # [S, H·d_h]

    ctx = block.attention_context(z)
    assert ctx.shape == (S, heads, head_dim)
    assert max_abs(ctx, u_hf.reshape(S, heads, head_dim)) <= TOL
    probs = block.attention_probs(z)
    assert max_abs(probs, trace["probs"][layer]) <= TOL
    u = block.att(z)
    assert u.shape == (S, heads * head_dim)
    assert max_abs(u, u_hf) <= TOL

    hf_layer = hf.model.layers[layer]
    z_t, u_t = torch.tensor(trace["hs"][layer]), torch.tensor(u_hf)
    with torch.no_grad():
        p = z_t + hf_layer.post_attention_layernorm(hf_layer.self_attn.o_proj(u_t))
        m = hf_layer.post_feedforward_layernorm(hf_layer.mlp(hf_layer.pre_feedforward_layernorm(p)))
    assert max_abs(block.mlp_out(jnp.asarray(u_hf), True, z), trace["hs"][layer + 1]) <= TOL
    assert max_abs(block.mlp_out(jnp.asarray(u_hf), True, z), p + m) <= TOL
    assert max_abs(block.mlp_out(jnp.asarray(u_hf), False, z), m) <= TOL
    with pytest.raises(LIGError):
        block.mlp_out(u)

    # Protocol identities.
    out = block(z)
    assert max_abs(out, trace["hs"][layer + 1]) <= TOL
    assert max_abs(out, block.postmap(z, ctx)) <= 1e-6
    assert max_abs(out, block.mlp_out(u, True, z)) <= 1e-6
    assert max_abs(block.postmap(z, ctx, residual=False), block.mlp_out(u, False, z)) <= 1e-6
    mask = block.attention_mask(S, None)
    assert block.attention_bias(S) is None
    assert block.causal and block.z2u_score == "signed" and not block.premap_parts().affine
    a2, ctx2 = attention_mix(*block.premap(z), block.attention_scale, mask, None)
    assert max_abs(ctx2, ctx) <= 1e-6 and max_abs(a2, probs) <= 1e-6
    q, k, v = block.premap(z)
    assert q.shape == k.shape == v.shape == (S, heads, head_dim)
    # GQA: query heads 0, 1 share kv group 0; heads 2, 3 group 1.
    np.testing.assert_array_equal(np.asarray(k[:, 0]), np.asarray(k[:, 1]))
    np.testing.assert_array_equal(np.asarray(v[:, 2]), np.asarray(v[:, 3]))
    assert not np.array_equal(np.asarray(v[:, 1]), np.asarray(v[:, 2]))

    # Masks: causal everywhere; sliding layers see exactly keys with 0 ≤ i − k < 3.
    i, kk = np.arange(S)[:, None], np.arange(S)[None, :]
    want = (kk <= i) & ((i - kk < 3) if layer == 0 else True)
    np.testing.assert_array_equal(np.asarray(mask), want)
    pr = np.asarray(probs)
    assert (pr[:, ~want] == 0.0).all() and (pr[:, want] > 0.0).all()
    key_mask = np.arange(S) < S - 2
    np.testing.assert_array_equal(np.asarray(block.attention_mask(S, jnp.asarray(key_mask))),
                                  want & key_mask[None, :])


def test_attention_context_scale_invariant(text_ckpt: tuple[Path, Any, Any]) -> None:
    """docs/spec.md §13 (9): u(4z) = u(z) (RMSNorm before the projections), sliding and full."""
    _, lm, _ = text_ckpt
    z = jnp.asarray(np.random.default_rng(5).normal(size=(S, 64)).astype(np.float32))
    for block in lm.model.layers[:2]:
        assert max_abs(block.attention_context(4.0 * z), block.attention_context(z)) <= 1e-5


def test_causality(text_ckpt: tuple[Path, Any, Any]) -> None:
    """Changing rows after j leaves rows ≤ j of every output exactly unchanged; a past row
    does move them."""
    _, lm, _ = text_ckpt
    rng = np.random.default_rng(6)
    z = jnp.asarray(rng.normal(size=(S, 64)).astype(np.float32))
    j = 6
    future = z.at[j + 1:].add(100.0)
    past = z.at[1].add(1.0)
    for block in lm.model.layers[:2]:
        for fn in (block.attention_context, block.att, block.__call__):
            a, b = np.asarray(fn(z)), np.asarray(fn(future))
            np.testing.assert_array_equal(a[: j + 1], b[: j + 1])
            assert not np.allclose(a[j + 1:], b[j + 1:], atol=1e-3)
        # Full layers see row 1 from row j; the sliding window (3) hides it.
        moved = not np.allclose(np.asarray(block(z))[j], np.asarray(block(past))[j], atol=1e-3)
        assert moved == (not block.is_sliding)
    ids = random_ids(8, S)
    ids2 = ids.copy()
    ids2[j + 1:] = random_ids(9, S)[j + 1:]
    a = np.asarray(lm.model.hidden_states(jnp.asarray(ids)))
    b = np.asarray(lm.model.hidden_states(jnp.asarray(ids2)))
    np.testing.assert_array_equal(a[:, : j + 1], b[:, : j + 1])


def _legacy_multimodal(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename a Gemma3ForConditionalGeneration state dict to the Hub's pre-5.x layout."""
    out = {}
    for k, v in state.items():
        if k.startswith("model.language_model."):
            k = "language_model.model." + k[len("model.language_model."):]
        elif k.startswith("model."):
            k = k[len("model."):]
        elif k.startswith("lm_head."):
            k = "language_model." + k
        out[k] = v
    return out


HF_CLASSES = [
    ("Gemma3TextModel", False, "", None),
    ("Gemma3ForCausalLM", False, "model.", None),
    ("Gemma3Model", True, "language_model.", None),
    ("Gemma3ForConditionalGeneration", True, "model.language_model.", None),
    ("Gemma3ForConditionalGeneration", True, "language_model.model.", _legacy_multimodal),
]


@pytest.mark.parametrize("cls_name,multimodal,prefix,rename", HF_CLASSES,
                         ids=[c[0] + ("-legacy" if c[3] else "") for c in HF_CLASSES])
def test_key_map_coverage(cls_name: str, multimodal: bool, prefix: str, rename: Any) -> None:
    """Every base tensor is consumed exactly once, every parameter filled exactly once, and
    the base prefix found, for each HF class's state dict (tiny, vocab 100, not saved)."""
    torch.manual_seed(0)
    kw = dict(vocab_size=100, attention_bias=cls_name == "Gemma3TextModel",
              tie_word_embeddings=False)
    cfg = tiny_multimodal_config(**kw) if multimodal else tiny_text_config(**kw)
    model = getattr(transformers, cls_name)(cfg)
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    if rename is not None:
        state = rename(state)
    ours = read_config(cfg)
    specs = conv.key_map(ours)
    shapes = expected_shapes(family_for(cfg.model_type), ours)

    base = common.strip_base_prefix(state, conv.BASE_PREFIXES, conv.base_key_filter)
    base_keys = {k for k in base if conv.base_key_filter(k)}
    assert {prefix + k for k in base_keys} <= state.keys()
    uses = Counter(n for s in specs for n in s.hf_names)
    assert set(uses) == base_keys and set(uses.values()) == {1}
    paths = Counter(s.nnx_path for s in specs)
    assert set(paths) == set(shapes) and set(paths.values()) == {1}
    # Vision tower, projector and lm_head keys are not base keys.
    others = [k for k in state if not k.startswith(prefix) or
              not conv.base_key_filter(k[len(prefix):])]
    if cls_name.startswith("Gemma3For"):
        assert any("lm_head" in k for k in others)
    if multimodal:
        assert any("vision_tower" in k for k in others)
        assert any("multi_modal_projector" in k for k in others)
    params = common.convert_checkpoint(state, specs, shapes, prefixes=conv.BASE_PREFIXES,
                                       is_base_key=conv.base_key_filter, source=cls_name)
    q = state[prefix + "layers.1.self_attn.q_proj.weight"]
    np.testing.assert_array_equal(params["layers.1.self_attn.q_proj.kernel"], q.T)
    if ours.attention_bias:
        assert "layers.0.self_attn.o_proj.bias" in params


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _load_error(folder: Path) -> str:
    with pytest.raises(LIGError) as info:
        load_model(str(folder))
    msg = str(info.value)
    assert msg and "\n" not in msg, msg
    return msg


def test_missing_tensor_error(text_ckpt: tuple[Path, Any, Any], tmp_path: Path) -> None:
    """A checkpoint without one tensor: a one-line error naming it."""
    folder = _copy(text_ckpt[0], tmp_path / "missing")
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    del tensors["model.layers.1.self_attn.k_norm.weight"]
    save_file(tensors, str(path), metadata={"format": "pt"})
    msg = _load_error(folder)
    assert "missing" in msg and "layers.1.self_attn.k_norm.weight" in msg


def test_softcapping_error(text_ckpt: tuple[Path, Any, Any], tmp_path: Path) -> None:
    """attn_logit_softcapping set → a one-line LIGError (checkpoint and multimodal config)."""
    folder = _copy(text_ckpt[0], tmp_path / "softcap")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["attn_logit_softcapping"] = 50.0
    (folder / "config.json").write_text(json.dumps(cfg))
    assert "attn_logit_softcapping" in _load_error(folder)
    with pytest.raises(LIGError, match="attn_logit_softcapping.*Allowed: None"):
        read_config(tiny_multimodal_config(attn_logit_softcapping=30.0))


def test_unsupported_rope_error() -> None:
    """A RoPE type other than default/linear → one-line LIGError naming the allowed ones."""
    rope = {SLIDING: {"rope_type": "default", "rope_theta": 10.0},
            FULL: {"rope_type": "dynamic", "rope_theta": 100.0, "factor": 2.0}}
    with pytest.raises(LIGError, match="'dynamic'.*Allowed: default, linear") as info:
        read_config(tiny_text_config(rope_parameters=rope))
    assert "\n" not in str(info.value)
