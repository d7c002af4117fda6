"""Parity of our NNX decoders (GPT-2, Llama, Mistral, Qwen2) with HF PyTorch, float32.

Tiny random checkpoints from `decoder_fixtures.save_tiny_decoder` (eager attention,
randomised norms and biases, the real GPT-2 tokenizer) are loaded through
`lig_jax.loading.load_model` and compared with HF's own modules:

- every z^(l), l < L, against HF `hidden_states`, and z^(L) against the last layer's own
  output (HF applies its final norm to the last `hidden_states` entry), at a short length
  and at `max_tokens`; variants (sliding windows, RoPE scaling) must matter: switching
  them off moves the result by far more than the tolerance;
- block 1 sub-module by sub-module: the per-head context before o_proj / c_proj, the
  attention probabilities, att(z) = z + Attn(LN1(z)), mlp_out with and without the
  residual, and the identities of the block protocol;
- causality (exact), padding with a key mask, the sliding-window mask against HF's own
  mask function, RoPE frequencies and cos/sin against HF's rotary embedding;
- the converters' key maps (every base tensor exactly once, task-head prefixes), one-line
  errors for a missing tensor and an unsupported rope type, the GPT-2 prefix-space
  tokenizer.

Tolerance: max abs error ≤ 1e-5 everywhere (measured ≈ 1e-6; RoPE adds nothing
measurable: our float32 inverse frequencies equal HF's to ≤ 1 ulp).
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from decoder_fixtures import EOS, save_tiny_decoder, tiny_decoder_config
from flax import nnx
from lig_jax.converters import common
from lig_jax.converters import gpt2 as gpt2_conv
from lig_jax.converters import llama as llama_conv
from safetensors.numpy import load_file, save_file

from lig_jax.errors import LIGError
from lig_jax.loading import LoadedModel, load_model
from lig_jax.models.common import attention_mix
from lig_jax.models.rope import ROPE_TYPES, inverse_frequencies

TOL = 1e-5
SHORT = 9
LAYER = 1  # the block compared sub-module by sub-module (the last one with 1 layer)

LLAMA3 = dict(rope_type="llama3", rope_theta=10000.0, factor=4.0, low_freq_factor=0.5,
              high_freq_factor=2.0, original_max_position_embeddings=24)

# (id, model_type, config overrides). Tiny defaults (decoder_fixtures): hidden 48, 2 layers,
# 4 heads (d_h 12), intermediate 96, 32 positions, vocab 50257.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("gpt2", "gpt2", {}),
    ("gpt2-inv-layer-scale-gelu", "gpt2", dict(scale_attn_by_inverse_layer_idx=True,
                                               activation_function="gelu", n_inner=64)),
    ("gpt2-unscaled-relu-1layer", "gpt2", dict(scale_attn_weights=False,
                                               activation_function="relu", n_layer=1)),
    ("llama-mha", "llama", {}),
    ("llama-gqa-hd16-bias", "llama", dict(num_key_value_heads=2, head_dim=16,
                                          attention_bias=True, mlp_bias=True)),
    ("llama-mqa-3layers-gelu_tanh", "llama", dict(num_key_value_heads=1, num_hidden_layers=3,
                                                  hidden_act="gelu_pytorch_tanh")),
    ("llama-rope-llama3", "llama", dict(num_key_value_heads=2, rope_parameters=LLAMA3)),
    ("llama-rope-linear", "llama", dict(rope_parameters=dict(rope_type="linear", factor=2.5,
                                                             rope_theta=10000.0))),
    ("llama-rope-dynamic", "llama", dict(rope_parameters=dict(rope_type="dynamic", factor=2.0,
                                                              rope_theta=10000.0))),
    ("mistral-window3-gqa", "mistral", dict(sliding_window=3, num_key_value_heads=2)),
    ("qwen2-bias-eps1e-5", "qwen2", dict(num_key_value_heads=2, rms_norm_eps=1e-5)),
    ("qwen2-sliding-layer1", "qwen2", dict(use_sliding_window=True, sliding_window=4,
                                           max_window_layers=1)),
]



class Case(NamedTuple):
    id: str
    model_type: str
    overrides: dict[str, Any]
    lm: LoadedModel  # ours, through load_model
    hf: Any  # HF PyTorch base model, eager attention
    folder: Path  # the checkpoint


_BUILT: dict[str, Case] = {}


def _build(entry: tuple[str, str, dict[str, Any]], factory: pytest.TempPathFactory) -> Case:
    """One case's checkpoint, our model and HF's, built once per module run."""
    case_id, model_type, overrides = entry
    if case_id not in _BUILT:
        folder = save_tiny_decoder(factory.mktemp(case_id), model_type,
                                   seed=CASES.index(entry), **overrides)
        hf = transformers.AutoModel.from_pretrained(str(folder),
                                                    attn_implementation="eager").eval()
        _BUILT[case_id] = Case(case_id, model_type, overrides, load_model(str(folder)), hf,
                               folder)
    return _BUILT[case_id]


def _cases(keep: Any) -> dict[str, Any]:
    chosen = [c for c in CASES if keep(c)]
    return dict(scope="module", params=chosen, ids=[c[0] for c in chosen])


@pytest.fixture(**_cases(lambda c: True))
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Case:
    return _build(request.param, tmp_path_factory)


@pytest.fixture(**_cases(lambda c: c[1] != "gpt2"))
def rope_case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Case:
    """The cases with rotary positions (GPT-2 has learned ones)."""
    return _build(request.param, tmp_path_factory)


@pytest.fixture(**_cases(lambda c: not c[2]))
def plain_case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Case:
    """The default configuration of each model type."""
    return _build(request.param, tmp_path_factory)


# ---------------------------------------------------------------------------- helpers


def max_abs(a: Any, b: Any) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def random_ids(length: int, seed: int = 0) -> np.ndarray:
    """Token ids below <|endoftext|> (so never the pad id)."""
    return np.random.default_rng(seed).integers(0, EOS, size=length).astype(np.int64)


def layer_under_test(lm: LoadedModel) -> int:
    return min(LAYER, lm.config.num_layers - 1)


def hf_layers(hf: Any, model_type: str) -> Any:
    return hf.h if model_type == "gpt2" else hf.layers


def hf_hidden_states(hf: Any, model_type: str, ids: np.ndarray) -> np.ndarray:
    """[L+1, S, d]: HF `hidden_states[:L]` and the last layer's own output (no final norm)."""
    captured = {}
    last = hf_layers(hf, model_type)[-1]
    hook = last.register_forward_hook(
        lambda m, a, o: captured.__setitem__("z", o[0] if isinstance(o, tuple) else o))
    try:
        with torch.no_grad():
            out = hf(input_ids=torch.tensor(ids[None]), output_hidden_states=True)
    finally:
        hook.remove()
    states = [h[0].numpy() for h in out.hidden_states]
    assert len(states) == len(hf_layers(hf, model_type)) + 1
    return np.stack(states[:-1] + [captured["z"][0].numpy()])


def ours(lm: LoadedModel | Any, ids: np.ndarray, key_mask: np.ndarray | None = None
         ) -> np.ndarray:
    model = lm.model if isinstance(lm, LoadedModel) else lm
    km = None if key_mask is None else jnp.asarray(key_mask)
    return np.asarray(model.hidden_states(jnp.asarray(ids, dtype=jnp.int32), km))


def hf_block_parts(hf: Any, model_type: str, ids: np.ndarray, layer: int) -> dict[str, np.ndarray]:
    """HF's own intermediate tensors of `layer` from one forward (hooks), batch row 0."""
    block = hf_layers(hf, model_type)[layer]
    if model_type == "gpt2":
        attn, o_proj, ln_2 = block.attn, block.attn.c_proj, block.ln_2
    else:
        attn, o_proj, ln_2 = block.self_attn, block.self_attn.o_proj, block.post_attention_layernorm
    cap: dict[str, torch.Tensor] = {}

    def keep(name: str, value: Any) -> None:
        cap[name] = (value[0] if isinstance(value, tuple) else value).detach()

    def keep_attn(module: Any, args: Any, out: Any) -> None:  # (output, probs); None: no edit
        keep("attn_out", out[0])
        keep("probs", out[1])

    hooks = [
        block.register_forward_pre_hook(lambda m, a: keep("z", a[0])),
        o_proj.register_forward_pre_hook(lambda m, a: keep("ctx", a[0])),
        attn.register_forward_hook(keep_attn),
        ln_2.register_forward_pre_hook(lambda m, a: keep("u", a[0])),
        block.mlp.register_forward_hook(lambda m, a, o: keep("mlp", o)),
        block.register_forward_hook(lambda m, a, o: keep("out", o)),
    ]
    try:
        with torch.no_grad():
            hf(input_ids=torch.tensor(ids[None]))
    finally:
        for h in hooks:
            h.remove()
    return {k: v[0].numpy() for k, v in cap.items()}


# ---------------------------------------------------------------------------- config, RoPE


def test_config_read_as_saved(case: Case) -> None:
    _, model_type, overrides, lm, hf, _ = case
    cfg, hc = lm.config, hf.config
    assert cfg.model_type == model_type
    assert cfg.num_layers == hc.num_hidden_layers == len(lm.model.layers)
    assert cfg.num_heads == hc.num_attention_heads and cfg.hidden_size == hc.hidden_size
    assert cfg.pad_token_id == EOS  # no pad token: falls back to eos
    assert cfg.max_tokens == 32
    block = lm.model.layers[layer_under_test(lm)]
    assert block.causal and block.z2u_score == "signed" and not block.premap_parts().affine
    assert block.attention_bias(5) is None
    if model_type == "gpt2":
        assert cfg.num_kv_heads == cfg.num_heads and cfg.head_dim == 12
        scale = 12 ** -0.5 if overrides.get("scale_attn_weights", True) else 1.0
        if overrides.get("scale_attn_by_inverse_layer_idx"):
            scale /= layer_under_test(lm) + 1
        assert block.attention_scale == pytest.approx(scale, rel=1e-12)
        return
    assert cfg.num_kv_heads == overrides.get("num_key_value_heads", 4)
    assert cfg.head_dim == overrides.get("head_dim", 12)
    assert block.attention_scale == pytest.approx(cfg.head_dim ** -0.5, rel=1e-12)
    windows = {"mistral-window3-gqa": (3, 3), "qwen2-sliding-layer1": (None, 4)}
    assert cfg.sliding_windows == windows.get(case.id, (None,) * cfg.num_layers)
    assert cfg.qkv_bias == (model_type == "qwen2" or bool(overrides.get("attention_bias")))


def test_rope_matches_hf(rope_case: Case) -> None:
    """Inverse frequencies equal HF's rotary_emb buffer (≤ 1 ulp), cos/sin within 1e-7."""
    _, model_type, overrides, lm, hf, _ = rope_case
    ref = hf.rotary_emb.inv_freq.numpy()
    inv = np.asarray(lm.config.inv_freq, np.float32)
    np.testing.assert_allclose(inv, ref, rtol=2.5e-7, atol=0)
    s = lm.config.max_tokens
    with torch.no_grad():
        cos_hf, sin_hf = hf.rotary_emb(torch.zeros(1, dtype=torch.float32),
                                       torch.arange(s)[None])
    cos, sin = lm.model.layers[0].premap_parts().rope(s)
    assert max_abs(cos, cos_hf[0]) <= 1e-7 and max_abs(sin, sin_hf[0]) <= 1e-7
    default = inverse_frequencies(lm.config.head_dim, 10000.0)
    rope_type = (overrides.get("rope_parameters") or {}).get("rope_type", "default")
    ratio = inv / default
    if rope_type in ("default", "dynamic"):  # dynamic = default within max_position_embeddings
        assert np.array_equal(inv, default)
    elif rope_type == "linear":
        np.testing.assert_allclose(ratio, 1 / 2.5, rtol=1e-6)
    else:  # llama3: every branch used (kept, smoothed, ÷ factor)
        assert np.isclose(ratio, 1.0).any() and np.isclose(ratio, 1 / 4.0).any()
        assert ((ratio < 0.999) & (ratio > 0.251)).any()


def test_unsupported_rope_type_one_line_error(tmp_path: Path) -> None:
    """yarn / longrope are refused with the allowed types named, via read_config and load."""
    from lig_jax.models import llama

    for rope in (dict(rope_type="yarn", factor=2.0, rope_theta=10000.0,
                      original_max_position_embeddings=16),
                 dict(rope_type="longrope", rope_theta=10000.0, short_factor=[1.0] * 6,
                      long_factor=[2.0] * 6, original_max_position_embeddings=16)):
        cfg = tiny_decoder_config("llama", rope_parameters=rope)
        with pytest.raises(LIGError) as info:
            llama.read_config(cfg)
        msg = str(info.value)
        assert "\n" not in msg and rope["rope_type"] in msg
        assert all(t in msg for t in ROPE_TYPES), msg
    cfg.save_pretrained(tmp_path)
    with pytest.raises(LIGError) as info:
        load_model(str(tmp_path))
    msg = str(info.value)
    assert "\n" not in msg and "longrope" in msg and "llama3" in msg
    with pytest.raises(LIGError, match="partial_rotary_factor"):
        inverse_frequencies(12, 10000.0, dict(rope_type="default", partial_rotary_factor=0.5))


# ---------------------------------------------------------------------------- hidden states


def test_hidden_states_match_hf(case: Case) -> None:
    """Every z^(l), l = 0..L, within 1e-5 of HF, short and at max_tokens."""
    _, model_type, overrides, lm, hf, _ = case
    for length in (SHORT, lm.config.max_tokens):
        ids = random_ids(length, seed=length)
        ref = hf_hidden_states(hf, model_type, ids)
        got = ours(lm, ids)
        assert got.shape == (lm.config.num_layers + 1, length, lm.config.hidden_size)
        err = max_abs(got, ref)
        assert err <= TOL, f"S={length}: max abs error {err:.3g}"
    # The variant under test must matter at this length (else a bug in it could pass).
    wrong = nnx.clone(lm.model)
    changed = False
    for block in wrong.layers:
        if getattr(block, "window", None) is not None:
            block.window, changed = None, True
        rope = (overrides.get("rope_parameters") or {}).get("rope_type")
        if rope in ("linear", "llama3"):
            block.inv_freq = tuple(float(x) for x in inverse_frequencies(block.head_dim, 1e4))
            changed = True
    if changed:
        err = max_abs(ours(wrong, ids), ref)
        assert err > 100 * TOL, f"variant does not matter: {err:.3g}"


def test_padding_with_key_mask(case: Case) -> None:
    """Pad rows at the end hidden by key_mask leave the real rows as without padding."""
    lm = case.lm
    n, s = SHORT, 12
    ids = random_ids(n, seed=3)
    padded = np.concatenate([ids, np.full(s - n, lm.config.pad_token_id)])
    key_mask = np.arange(s) < n
    err = max_abs(ours(lm, padded, key_mask)[:, :n], ours(lm, ids))
    assert err <= 1e-6, err


# ---------------------------------------------------------------------------- one block


def test_block_submodules_match_hf(case: Case) -> None:
    """Block 1 against HF's own tensors, and the identities of the block protocol."""
    _, model_type, _, lm, hf, _ = case
    s = 12
    ids = random_ids(s, seed=5)
    layer = layer_under_test(lm)
    parts = hf_block_parts(hf, model_type, ids, layer)
    cfg, block = lm.config, lm.model.layers[layer]
    heads, hd = cfg.num_heads, cfg.head_dim
    z = jnp.asarray(parts["z"])
    u_ref = jnp.asarray(parts["u"])

    ctx = block.attention_context(z)
    assert ctx.shape == (s, heads, hd)
    assert max_abs(ctx, parts["ctx"].reshape(s, heads, hd)) <= TOL
    probs = block.attention_probs(z)
    assert probs.shape == (heads, s, s)
    assert max_abs(probs, parts["probs"]) <= TOL
    u = block.att(z)
    assert u.shape == (s, cfg.hidden_size)
    assert max_abs(u, parts["z"] + parts["attn_out"]) <= TOL
    assert max_abs(parts["u"], parts["z"] + parts["attn_out"]) <= 1e-6  # HF's own u
    assert max_abs(block.mlp_out(u_ref), parts["out"]) <= TOL
    assert max_abs(block.mlp_out(u_ref, residual=False), parts["mlp"]) <= TOL
    assert max_abs(block.mlp_out(u_ref, True, z), parts["out"]) <= TOL

    # Protocol identities: the halves compose to the block.
    out = block(z)
    assert max_abs(out, parts["out"]) <= TOL
    assert max_abs(block.postmap(z, ctx), out) <= 1e-6
    assert max_abs(block.mlp_out(block.att(z), True, z), out) <= 1e-6
    assert max_abs(block.postmap(z, ctx, residual=False),
                   block.mlp_out(u, residual=False)) <= 1e-6
    mix = attention_mix(*block.premap(z), block.attention_scale, block.attention_mask(s, None),
                        block.attention_bias(s))
    assert max_abs(mix[1], ctx) <= 1e-6 and max_abs(mix[0], probs) <= 1e-6
    q, k, v = block.premap(z)
    assert q.shape == k.shape == v.shape == (s, heads, hd)
    key_mask = jnp.arange(s) < 10
    mix = attention_mix(*block.premap(z), block.attention_scale,
                        block.attention_mask(s, key_mask), block.attention_bias(s))
    assert max_abs(mix[1], block.attention_context(z, key_mask)) <= 1e-6
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, atol=1e-6)
    if cfg.num_kv_heads < heads:  # GQA: query head h reads kv group h // (H / G)
        rep = heads // cfg.num_kv_heads
        for h in range(heads):
            assert np.array_equal(np.asarray(k[:, h]), np.asarray(k[:, (h // rep) * rep]))


def test_block_is_causal(case: Case) -> None:
    """Changing rows > j of z leaves rows ≤ j of the block and its contexts unchanged exactly;
    future (and out-of-window) probabilities are exactly 0; a past change does move them."""
    lm = case.lm
    s, j = 12, 6
    block = lm.model.layers[layer_under_test(lm)]
    rng = np.random.default_rng(7)
    z = rng.standard_normal((s, lm.config.hidden_size)).astype(np.float32)
    z_future = z.copy()
    z_future[j + 1:] += 100.0 * rng.standard_normal(z_future[j + 1:].shape).astype(np.float32)
    for fn in (block.__call__, block.attention_context, block.att):
        a, b = np.asarray(fn(jnp.asarray(z))), np.asarray(fn(jnp.asarray(z_future)))
        assert np.array_equal(a[:j + 1], b[:j + 1])
        assert not np.allclose(a[j + 1:], b[j + 1:], atol=1e-3)
    probs = np.asarray(block.attention_probs(jnp.asarray(z)))
    allowed = np.asarray(block.attention_mask(s, None))
    assert np.all(probs[:, ~allowed] == 0.0)
    z_past = z.copy()
    z_past[0] += 3.0 * rng.standard_normal(z.shape[1]).astype(np.float32)
    a, b = (np.asarray(block.attention_context(jnp.asarray(x))) for x in (z, z_past))
    assert not np.allclose(a[1], b[1], atol=1e-3)


def test_attention_mask_matches_hf_mask_functions(case: Case) -> None:
    """Our [S, S] mask equals HF's causal / sliding-window mask function, with a key mask."""
    from transformers.masking_utils import causal_mask_function, sliding_window_causal_mask_function

    lm = case.lm
    s = 12
    key_mask = np.arange(s) < 10
    q, k = torch.arange(s)[:, None], torch.arange(s)[None, :]
    for block in lm.model.layers:
        window = getattr(block, "window", None)
        fn = (causal_mask_function if window is None
              else sliding_window_causal_mask_function(window))
        ref = fn(0, 0, q, k).numpy()
        if window is not None:
            assert window < s and not ref[window, 0] and ref[window - 1, 0]  # q − k < w
        assert np.array_equal(np.asarray(block.attention_mask(s, None)), ref)
        assert np.array_equal(np.asarray(block.attention_mask(s, jnp.asarray(key_mask))),
                              ref & key_mask[None, :])


# ---------------------------------------------------------------------------- converters


def _converter(model_type: str) -> Any:
    return gpt2_conv if model_type == "gpt2" else llama_conv


def test_key_map_names_every_base_tensor_once(case: Case) -> None:
    """The key map names each base-model tensor of the HF state dict exactly once, the
    final norm included (`final_norm`, for the targets of an output); task-head prefixes
    and old buffers are handled."""
    _, model_type, _, lm, _, folder = case
    conv = _converter(model_type)
    state = load_file(str(folder / "model.safetensors"))
    specs = conv.key_map(lm.config)
    names = [n for spec in specs for n in spec.hf_names]
    assert all(c == 1 for c in Counter(names).values())
    base = {k for k in state if conv.base_key_filter(k)}
    assert set(names) == base
    final_norm = {"ln_f.weight", "ln_f.bias"} if model_type == "gpt2" else {"norm.weight"}
    assert set(state) == base and final_norm <= set(names)
    assert len({s.nnx_path for s in specs}) == len(specs)

    from lig_jax.loading import expected_shapes

    shapes = expected_shapes(lm.family, lm.config)
    assert set(shapes) == {s.nnx_path for s in specs}  # every parameter is filled
    # A task-head checkpoint (prefix, head weights, old buffers) converts to the same arrays.
    prefix = conv.BASE_PREFIXES[0]
    extra = ({"h.0.attn.bias": np.zeros((1, 1, 4, 4), np.float32),
              "h.0.attn.masked_bias": np.zeros((), np.float32)} if model_type == "gpt2" else
             {"layers.0.self_attn.rotary_emb.inv_freq": np.zeros(6, np.float32)})
    headed = {prefix + k: v for k, v in {**state, **extra}.items()}
    headed["lm_head.weight"] = state[specs[0].hf_names[0]]
    kw = dict(prefixes=conv.BASE_PREFIXES, is_base_key=conv.base_key_filter, source="t")
    a = common.convert_checkpoint(state, specs, shapes, **kw)
    b = common.convert_checkpoint(headed, specs, shapes, **kw)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_missing_tensor_is_a_one_line_error(plain_case: Case, tmp_path: Path) -> None:
    _, model_type, _, lm, _, folder = plain_case
    target = shutil.copytree(folder, tmp_path / "broken")
    missing = "h.1.mlp.c_fc.weight" if model_type == "gpt2" else "layers.1.self_attn.k_proj.weight"
    tensors = load_file(str(target / "model.safetensors"))
    del tensors[missing]
    save_file(tensors, str(target / "model.safetensors"))
    with pytest.raises(LIGError) as info:
        load_model(str(target))
    msg = str(info.value)
    assert "\n" not in msg and missing in msg and "missing" in msg, msg


# ---------------------------------------------------------------------------- tokenizer


def test_gpt2_tokenizer_prefix_space(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The saved folder's tokenizer is GPT-2's BPE; add_prefix_space=True gives ' Hello'."""
    case_id, model_type, _, lm, hf, folder = _build(CASES[0], tmp_path_factory)
    tok = transformers.AutoTokenizer.from_pretrained(str(folder), add_prefix_space=True)
    ids = tok("Hello world", add_special_tokens=False)["input_ids"]
    assert ids == [18435, 995]  # " Hello", " world"
    assert lm.tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [15496, 995]
    assert lm.tokenizer.eos_token_id == EOS and len(lm.tokenizer) == 50257
    arr = np.asarray(ids, np.int64)
    assert max_abs(ours(lm, arr), hf_hidden_states(hf, model_type, arr)) <= TOL
