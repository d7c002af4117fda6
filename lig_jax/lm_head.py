"""A decoder's language-model head: z^(L) → next-token logits, for the targets of an output.

    logits = final_norm(z^(L)) · Wᵀ          W [V, d]: `lm_head.weight`, or the token
                                             table where the checkpoint ties them
    logits = c · tanh(logits / c)            where the config sets final_logit_softcapping c

The final norm is part of the model (`final_norm`); W is read on first use (one tensor, not
the whole checkpoint) and kept per loaded model, so LIG runs never hold it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .errors import LIGError
from .models.common import PRECISION

LM_HEAD_KEY = "lm_head.weight"


@dataclass(frozen=True)
class LMHead:
    """unembed: W [V, d]; softcap: c or None."""

    unembed: jax.Array
    softcap: float | None = None

    @property
    def vocab_size(self) -> int:
        return int(self.unembed.shape[0])

    def logits(self, h: jax.Array) -> jax.Array:
        """Final-normed rows h [T, d] → logits [T, V]."""
        out = jnp.einsum("td,vd->tv", h, self.unembed.astype(h.dtype), precision=PRECISION)
        if self.softcap:
            out = self.softcap * jnp.tanh(out / self.softcap)
        return out


_HEADS: dict[tuple[str, str], LMHead] = {}


def lm_head(lm: Any) -> LMHead:
    """The LM head of a loaded decoder (`loading.LoadedModel`); one line if it has none."""
    key = (lm.checkpoint_hash, str(lm.gguf_file or lm.folder))
    if key not in _HEADS:
        _HEADS[key] = _read(lm)
    return _HEADS[key]


def _read(lm: Any) -> LMHead:
    model, hf = lm.model, lm.hf_config
    if lm.family.architecture != "decoder" or not hasattr(model, "token_table"):
        raise LIGError(f"model {lm.name} ({lm.model_type}) is not a causal language model: "
                       "it has no next-token logits")
    softcap = getattr(hf, "final_logit_softcapping", None)
    softcap = float(softcap) if softcap else None
    weight = None
    if lm.gguf_file is not None:
        from .converters.gguf import GGUFError, open_gguf

        try:
            weight = open_gguf(lm.gguf_file).hf_tensor(LM_HEAD_KEY, hf)
        except GGUFError as e:
            raise LIGError(str(e)) from None
    elif not getattr(hf, "tie_word_embeddings", True):
        from .converters.common import ConversionError, read_tensor

        try:
            weight = read_tensor(lm.folder, LM_HEAD_KEY)
        except ConversionError as e:
            raise LIGError(str(e)) from None
        if weight is None:
            raise LIGError(f"model {lm.name} has untied word embeddings but its checkpoint has "
                           f"no {LM_HEAD_KEY} (a base model, not a …ForCausalLM one): it "
                           "cannot give next-token logits")
    if weight is None:  # tied: the token table
        return LMHead(model.token_table(), softcap)
    table = model.token_table()
    weight = np.asarray(weight, np.float32)
    if weight.shape != tuple(table.shape):
        raise LIGError(f"model {lm.name}: {LM_HEAD_KEY} has shape {weight.shape}, expected "
                       f"{tuple(table.shape)} from the config")
    return LMHead(jnp.asarray(weight), softcap)
