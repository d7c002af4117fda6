"""Checkpoint conversion: key maps, one-line errors for bad inputs, the content-hash cache.

Every user-facing failure must be a `LIGError` (a `ValueError`) whose message is a single
line naming the offending file / key / model and, where there is a closed set, the allowed
choices.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from conftest import TINY, save_tiny
from flax import nnx
from lig_jax.converters import bert as bert_conv
from lig_jax.converters import common
from safetensors.numpy import load_file, save_file

from lig_jax.errors import LIGError
from lig_jax.loading import LoadedModel, load_model
from lig_jax.models import SUPPORTED_MODEL_TYPES
from lig_jax.models.bert import read_config as encoder_config

SUPPORTED = ("bert", "roberta", "electra", "xlm-roberta", "camembert", "gpt2", "llama",
             "mistral", "qwen2", "gemma3_text", "gemma3", "distilbert", "mpnet", "modernbert")


@pytest.fixture(scope="module")
def base_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT checkpoint (2 layers, hidden 48, tokenizer files) to copy and damage."""
    return save_tiny(tmp_path_factory.mktemp("conv_base"), "bert", seed=101)


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty converted-parameter cache for this test only."""
    root = tmp_path / "cache"
    monkeypatch.setenv("LIG_JAX_CACHE", str(root))
    return root / "converted"


def copy_ckpt(src: Path, dst: Path) -> Path:
    """Copy a checkpoint folder; a new path also means a new `load_model` lru-cache entry."""
    shutil.copytree(src, dst)
    return dst


def edit_weights(folder: Path, edit: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Rewrite `folder/model.safetensors` after applying `edit` to its tensors in place."""
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))


def load_error(name: str | Path) -> str:
    """The message of the `LIGError` raised by `load_model(name)`; asserts it is one line."""
    with pytest.raises(LIGError) as info:
        load_model(str(name))
    msg = str(info.value)
    assert msg and "\n" not in msg and "\r" not in msg, msg
    return msg


def flat_params(lm: LoadedModel) -> dict[str, np.ndarray]:
    """{dotted nnx path: value} of every parameter of a loaded model."""
    state = nnx.state(lm.model, nnx.Param)
    return {".".join(map(str, path)): np.asarray(v[...]) for path, v in nnx.to_flat_state(state)}


def assert_same_params(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """Same parameter paths, bit-identical values."""
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# --------------------------------------------------------------------------- key map


@pytest.mark.parametrize("model_type", ["bert", "roberta", "electra"])
def test_key_map_covers_hf_state_dict(model_type: str) -> None:
    """The key map names every base-model tensor of a HF model exactly once, nothing else."""
    extra = {"embedding_size": 24} if model_type == "electra" else {}
    cfg = transformers.AutoConfig.for_model(model_type, **TINY, vocab_size=99, **extra)
    hf_keys = set(transformers.AutoModel.from_config(cfg).state_dict())
    base = {k for k in hf_keys if bert_conv.base_key_filter(k)}
    specs = bert_conv.key_map(encoder_config(cfg))
    names = [s.hf_names[0] for s in specs]
    assert len(names) == len(set(names))
    assert set(names) == base
    assert len({s.nnx_path for s in specs}) == len(specs)
    # Only pooler / buffers are left out.
    assert all(k.startswith(bert_conv.IGNORED_PREFIXES) for k in hf_keys - base)


def test_base_key_filter() -> None:
    f = bert_conv.base_key_filter
    assert f("embeddings.word_embeddings.weight") and f("encoder.layer.0.output.dense.bias")
    assert f("embeddings_project.weight")
    assert not f("pooler.dense.weight") and not f("embeddings.position_ids")
    assert not f("cls.predictions.bias") and not f("discriminator_predictions.dense.weight")


def test_strip_base_prefix_picks_task_head_prefix() -> None:
    state = {"roberta.embeddings.a": np.zeros(1), "roberta.encoder.b": np.zeros(1),
             "lm_head.dense.weight": np.zeros(1)}
    out = common.strip_base_prefix(state, bert_conv.BASE_PREFIXES, bert_conv.base_key_filter)
    assert set(out) == {"embeddings.a", "encoder.b"}
    bare = {"embeddings.a": np.zeros(1), "pooler.dense.weight": np.zeros(1)}
    out = common.strip_base_prefix(bare, bert_conv.BASE_PREFIXES, bert_conv.base_key_filter)
    assert set(out) == set(bare)


def test_convert_checkpoint_transposes_and_casts() -> None:
    """Linear weights are transposed to [in, out], everything becomes float32."""
    w = np.arange(6, dtype=np.float16).reshape(2, 3)  # HF [out=2, in=3]
    state = {"encoder.lin.weight": w, "encoder.lin.bias": np.ones(2, np.float16),
             "encoder.norm.gamma": np.ones(3, np.float64)}
    specs = [common.KeySpec(("encoder.lin.weight",), "lin.kernel", transpose=True),
             common.KeySpec(("encoder.lin.bias",), "lin.bias"),
             common.KeySpec(("encoder.norm.weight", "encoder.norm.gamma"), "norm.scale")]
    shapes = {"lin.kernel": (3, 2), "lin.bias": (2,), "norm.scale": (3,)}
    out = common.convert_checkpoint(state, specs, shapes, prefixes=("",),
                                    is_base_key=lambda k: k.startswith("encoder."), source="x")
    np.testing.assert_array_equal(out["lin.kernel"], w.T.astype(np.float32))
    assert all(v.dtype == np.float32 for v in out.values())
    assert out["lin.kernel"].flags["C_CONTIGUOUS"]


def test_convert_checkpoint_error_lists_are_short() -> None:
    """Many missing keys: first few named, the rest counted, still one line."""
    specs = [common.KeySpec((f"encoder.k{i:02d}",), f"p{i}") for i in range(20)]
    with pytest.raises(common.ConversionError) as info:
        common.convert_checkpoint({}, specs, {}, prefixes=("",),
                                  is_base_key=lambda k: True, source="SRC")
    msg = str(info.value)
    assert "\n" not in msg and "SRC" in msg and "missing keys" in msg
    assert "encoder.k00" in msg and "(+14 more)" in msg and "encoder.k19" not in msg


# --------------------------------------------------------------------------- bad tensors


def test_missing_tensor(base_ckpt: Path, tmp_path: Path) -> None:
    folder = copy_ckpt(base_ckpt, tmp_path / "missing")
    key = "encoder.layer.1.output.dense.bias"
    edit_weights(folder, lambda t: t.pop(key))
    msg = load_error(folder)
    assert "missing" in msg and key in msg and str(folder) in msg


def test_many_missing_tensors(base_ckpt: Path, tmp_path: Path) -> None:
    """A whole layer missing (16 tensors): one line, the list is cut with a count."""
    folder = copy_ckpt(base_ckpt, tmp_path / "missing_layer")

    def drop_layer(t: dict[str, np.ndarray]) -> None:
        for k in [k for k in t if k.startswith("encoder.layer.1.")]:
            del t[k]

    edit_weights(folder, drop_layer)
    msg = load_error(folder)
    assert "missing" in msg and "encoder.layer.1." in msg and "(+10 more)" in msg


def test_unexpected_encoder_tensor(base_ckpt: Path, tmp_path: Path) -> None:
    folder = copy_ckpt(base_ckpt, tmp_path / "unexpected")
    key = "encoder.layer.0.attention.self.extra.weight"
    edit_weights(folder, lambda t: t.__setitem__(key, np.zeros((4, 4), np.float32)))
    msg = load_error(folder)
    assert "unexpected" in msg and key in msg and "missing" not in msg


def test_extra_layer_is_unexpected(base_ckpt: Path, tmp_path: Path) -> None:
    """Weights with more layers than the config: the extra layer is named."""
    folder = copy_ckpt(base_ckpt, tmp_path / "extra_layer")

    def add_layer(t: dict[str, np.ndarray]) -> None:
        for k in [k for k in t if k.startswith("encoder.layer.1.")]:
            t[k.replace("layer.1.", "layer.2.")] = t[k]

    edit_weights(folder, add_layer)
    msg = load_error(folder)
    assert "unexpected" in msg and "encoder.layer.2." in msg


def test_task_head_and_pooler_tensors_are_ignored(base_ckpt: Path, tmp_path: Path) -> None:
    folder = copy_ckpt(base_ckpt, tmp_path / "with_head")

    def add(t: dict[str, np.ndarray]) -> None:
        t["cls.predictions.bias"] = np.zeros(30522, np.float32)
        t["pooler.dense.weight"] = np.zeros((48, 48), np.float32)

    edit_weights(folder, add)
    assert_same_params(flat_params(load_model(str(folder))),
                       flat_params(load_model(str(base_ckpt))))


@pytest.mark.parametrize(
    "key,bad_shape,hf_shape",
    [
        ("encoder.layer.0.intermediate.dense.weight", (95, 48), (96, 48)),
        ("embeddings.word_embeddings.weight", (30000, 48), (30522, 48)),
        ("encoder.layer.1.output.LayerNorm.bias", (47,), (48,)),
    ],
)
def test_wrong_shape(base_ckpt: Path, tmp_path: Path, key: str, bad_shape: tuple[int, ...],
                     hf_shape: tuple[int, ...]) -> None:
    """The message names the tensor, its shape and the shape the config implies (HF order)."""
    folder = copy_ckpt(base_ckpt, tmp_path / "shape")

    def reshape(t: dict[str, np.ndarray]) -> None:
        assert t[key].shape == hf_shape
        t[key] = np.zeros(bad_shape, np.float32)

    edit_weights(folder, reshape)
    msg = load_error(folder)
    assert key in msg and str(bad_shape) in msg and str(hf_shape) in msg


# --------------------------------------------------------------------------- unreadable files


def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _garble_header(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[8:40] = b"\xff" * 32  # inside the JSON header
    p.write_bytes(bytes(data))


def _garbage(p: Path) -> None:
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _empty(p: Path) -> None:
    p.write_bytes(b"")


@pytest.mark.parametrize("damage", [_truncate, _garble_header, _garbage, _empty],
                         ids=["truncated", "garbled-header", "garbage", "empty"])
def test_corrupt_safetensors(base_ckpt: Path, tmp_path: Path,
                             damage: Callable[[Path], None]) -> None:
    folder = copy_ckpt(base_ckpt, tmp_path / "corrupt")
    damage(folder / "model.safetensors")
    msg = load_error(folder)
    assert "corrupt" in msg or "unreadable" in msg
    assert "model.safetensors" in msg


@pytest.mark.parametrize("damage", [_truncate, _garbage], ids=["truncated", "garbage"])
def test_corrupt_pytorch_bin(base_ckpt: Path, tmp_path: Path,
                             damage: Callable[[Path], None]) -> None:
    folder = copy_ckpt(base_ckpt, tmp_path / "corrupt_bin")
    (folder / "model.safetensors").unlink()
    torch.save({k: torch.zeros(3) for k in ("a", "b")}, folder / "pytorch_model.bin")
    damage(folder / "pytorch_model.bin")
    msg = load_error(folder)
    assert ("corrupt" in msg or "unreadable" in msg) and "pytorch_model.bin" in msg


def test_no_weight_files(base_ckpt: Path, tmp_path: Path) -> None:
    folder = copy_ckpt(base_ckpt, tmp_path / "no_weights")
    (folder / "model.safetensors").unlink()
    msg = load_error(folder)
    assert str(folder) in msg
    assert "model.safetensors" in msg and "pytorch_model.bin" in msg


# --------------------------------------------------------------------------- bad names / configs


def test_folder_without_config(base_ckpt: Path, tmp_path: Path) -> None:
    folder = copy_ckpt(base_ckpt, tmp_path / "no_config")
    (folder / "config.json").unlink()
    msg = load_error(folder)
    assert str(folder) in msg and "config.json" in msg


def test_nonexistent_folder(tmp_path: Path) -> None:
    path = tmp_path / "does" / "not" / "exist"
    msg = load_error(path)
    assert str(path) in msg and "does not exist" in msg


def test_unknown_hub_id() -> None:
    """Offline (or online and absent): names the id and every accepted form of `model`."""
    name = "no-such-org/no-such-model"
    msg = load_error(name)
    assert name in msg
    assert "local" in msg and "hub id" in msg and "default" in msg


def test_invalid_config_json(base_ckpt: Path, tmp_path: Path) -> None:
    folder = copy_ckpt(base_ckpt, tmp_path / "bad_json")
    (folder / "config.json").write_text('{"model_type": "bert",\n  oops')
    msg = load_error(folder)
    assert "config.json" in msg and str(folder) in msg


def test_unsupported_model_type(tmp_path: Path) -> None:
    folder = tmp_path / "t5"
    folder.mkdir()
    transformers.T5Config(d_model=32, num_layers=1, num_heads=2).save_pretrained(folder)
    msg = load_error(folder)
    assert "t5" in msg
    assert all(t in msg for t in SUPPORTED)
    assert set(SUPPORTED) == set(SUPPORTED_MODEL_TYPES)


@pytest.mark.parametrize(
    "field,value,named",
    [
        ("hidden_act", "quick_gelu", ("quick_gelu", "gelu", "relu")),
        ("position_embedding_type", "relative_key", ("relative_key", "absolute")),
    ],
)
def test_unsupported_config_option(base_ckpt: Path, tmp_path: Path, field: str, value: str,
                                   named: tuple[str, ...]) -> None:
    folder = copy_ckpt(base_ckpt, tmp_path / "option")
    cfg = json.loads((folder / "config.json").read_text())
    cfg[field] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    msg = load_error(folder)
    assert all(n in msg for n in named), msg


# --------------------------------------------------------------------------- other layouts


def test_sharded_safetensors_equal_single_file(base_ckpt: Path, tmp_path: Path) -> None:
    hf = transformers.AutoModel.from_pretrained(str(base_ckpt))
    folder = tmp_path / "sharded"
    hf.save_pretrained(folder, max_shard_size="100KB")
    assert (folder / "model.safetensors.index.json").is_file()
    assert len(list(folder.glob("model-*.safetensors"))) > 1
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(base_ckpt / f, folder / f)
    assert_same_params(flat_params(load_model(str(folder))),
                       flat_params(load_model(str(base_ckpt))))


def test_bfloat16_safetensors(base_ckpt: Path, tmp_path: Path) -> None:
    """bf16 tensors (which numpy cannot read) are read through torch and upcast to fp32."""
    import safetensors.torch as st

    folder = copy_ckpt(base_ckpt, tmp_path / "bf16")
    tensors = st.load_file(str(folder / "model.safetensors"))
    bf16 = {k: v.to(torch.bfloat16) for k, v in tensors.items()}
    st.save_file(bf16, str(folder / "model.safetensors"))
    ours = flat_params(load_model(str(folder)))
    ref = flat_params(load_model(str(base_ckpt)))
    word = bf16["embeddings.word_embeddings.weight"].to(torch.float32).numpy()
    np.testing.assert_array_equal(ours["embeddings.word"], word)
    assert all(v.dtype == np.float32 for v in ours.values())
    for k in ref:  # bf16 rounding only: 8 mantissa bits
        np.testing.assert_allclose(ours[k], ref[k], rtol=2**-8, atol=1e-30, err_msg=k)


# --------------------------------------------------------------------------- content-hash cache


def test_cache_hit_for_same_bytes_elsewhere(base_ckpt: Path, tmp_path: Path,
                                            fresh_cache: Path) -> None:
    """Same weights at another path: converted once, then read back from the cache."""
    a_dir = copy_ckpt(base_ckpt, tmp_path / "a")
    b_dir = copy_ckpt(base_ckpt, tmp_path / "b")
    a = load_model(str(a_dir))
    assert not a.from_cache
    digest = hashlib.sha256((a_dir / "model.safetensors").read_bytes()).hexdigest()
    assert a.checkpoint_hash == digest
    entries = list(fresh_cache.glob("*.safetensors"))
    assert len(entries) == 1 and digest in entries[0].name

    b = load_model(str(b_dir))
    assert b.from_cache and b.checkpoint_hash == a.checkpoint_hash
    assert b.model is not a.model
    assert_same_params(flat_params(a), flat_params(b))
    ids = np.array([101, 7592, 2088, 102])
    np.testing.assert_array_equal(np.asarray(a.model.hidden_states(ids)),
                                  np.asarray(b.model.hidden_states(ids)))
    assert len(list(fresh_cache.glob("*.safetensors"))) == 1


def test_changed_weight_changes_hash(base_ckpt: Path, tmp_path: Path,
                                     fresh_cache: Path) -> None:
    a = load_model(str(copy_ckpt(base_ckpt, tmp_path / "a")))
    c_dir = copy_ckpt(base_ckpt, tmp_path / "c")
    key = "encoder.layer.0.attention.self.query.bias"

    def bump(t: dict[str, np.ndarray]) -> None:
        t[key] = t[key].copy()
        t[key][0] += 1.0

    edit_weights(c_dir, bump)
    c = load_model(str(c_dir))
    assert not c.from_cache and c.checkpoint_hash != a.checkpoint_hash
    assert len(list(fresh_cache.glob("*.safetensors"))) == 2
    pa, pc = flat_params(a), flat_params(c)
    changed = {k for k in pa if not np.array_equal(pa[k], pc[k])}
    assert changed == {"layers.0.attention.self_attn.query.bias"}
    np.testing.assert_allclose(pc["layers.0.attention.self_attn.query.bias"][0] -
                               pa["layers.0.attention.self_attn.query.bias"][0], 1.0, rtol=1e-6)


def test_unreadable_cache_entry_is_reconverted(base_ckpt: Path, tmp_path: Path,
                                               fresh_cache: Path) -> None:
    a = load_model(str(copy_ckpt(base_ckpt, tmp_path / "a")))
    (entry,) = fresh_cache.glob("*.safetensors")
    entry.write_bytes(b"not a safetensors file")
    b = load_model(str(copy_ckpt(base_ckpt, tmp_path / "b")))
    assert not b.from_cache
    assert_same_params(flat_params(a), flat_params(b))
    assert load_file(str(entry)).keys() == flat_params(a).keys()  # rewritten
    assert load_model(str(copy_ckpt(base_ckpt, tmp_path / "c"))).from_cache


def test_cache_entry_not_reused_for_other_config(base_ckpt: Path, tmp_path: Path,
                                                 fresh_cache: Path) -> None:
    """Same weights, config with fewer layers: the same one-line error as without a cache."""
    load_model(str(copy_ckpt(base_ckpt, tmp_path / "a")))
    folder = copy_ckpt(base_ckpt, tmp_path / "one_layer")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["num_hidden_layers"] = 1
    (folder / "config.json").write_text(json.dumps(cfg))
    msg = load_error(folder)
    assert "unexpected" in msg and "encoder.layer.1." in msg
