"""Context-mixing measures against independent PyTorch replays of the papers' definitions
(tests/torch_measures.py) on tiny random models of each block structure: a post-LN encoder
(BERT), a pre-norm decoder with grouped keys/values and biases (Llama), Gemma 3 (norms
before and after the attention, sliding windows)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torch_measures import replay, rollout  # noqa: E402

TEXT = "The old lighthouse keeper watched the sea."
PER_LAYER = ("attention", "attention_heads", "attention_norm", "attention_norm_heads", "alti",
             "value_zeroing", "value_zeroing_raw")


@pytest.fixture(scope="module")
def tiny_llama_biased(tmp_path_factory):
    from decoder_fixtures import save_tiny_decoder

    return save_tiny_decoder(tmp_path_factory.mktemp("tiny_llama_bias"), "llama", seed=4,
                             num_key_value_heads=2, attention_bias=True)


@pytest.fixture(scope="module")
def tiny_gemma3(tmp_path_factory):
    from gemma3_fixtures import save_tiny_gemma3

    return save_tiny_gemma3(tmp_path_factory.mktemp("tiny_gemma3_measures"), seed=6)


def _torch_model(folder, family):
    if family == "bert":
        model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager")
    elif family == "gemma3_text":
        model = transformers.AutoModelForCausalLM.from_pretrained(
            folder, attn_implementation="eager")
    else:
        model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager")
    return model.float().eval()


def _close(ours: np.ndarray, ref: np.ndarray, what: str, tol: float = 1e-5) -> None:
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    err = float(np.max(np.abs(ours - ref))) / scale
    assert err <= tol, f"{what}: max|ours − ref| / max|ref| = {err:.2e}"


@pytest.mark.parametrize("name,family", [("tiny_bert", "bert"),
                                         ("tiny_llama_biased", "llama"),
                                         ("tiny_gemma3", "gemma3_text")])
def test_measures_match_torch_replays(name, family, request):
    from lig_jax.api import explain_arrays, tokenize
    from lig_jax.loading import load_model

    folder = request.getfixturevalue(name)
    ids, _ = tokenize(load_model(str(folder)), TEXT)
    result = explain_arrays(TEXT, model=str(folder), granularity="none", measures="all")
    ref = replay(_torch_model(folder, family), ids, family)
    n = len(ref["attention"])
    assert sorted(result.layers) == list(range(n))
    for l in range(n):
        ours = result.layers[l]
        for key in PER_LAYER:
            theirs = ref[key][l]
            mine = ours[key]
            # ours [.., src, tgt]; theirs [.., tgt, src]
            mine = np.swapaxes(mine, -1, -2)
            if key.startswith("value_zeroing"):
                assert np.all(ref["value_zeroing_raw"][l].sum(-1) > 1e-3)
            _close(mine, theirs, f"layer {l} {key}")
    for key, base, residual in (("rollout/attention", "attention", True),
                                ("rollout/alti", "alti", False),
                                ("rollout/value_zeroing", "value_zeroing", False)):
        rolled = rollout(ref[base], residual)
        for l in range(n):
            _close(result.layers[l][key].T, rolled[l], f"layer {l} {key}")


def test_lig_rollout_is_the_product_of_normalised_z2z(tiny_bert):
    from lig_jax.api import explain_arrays

    r = explain_arrays(TEXT, model=str(tiny_bert), granularity="layer",
                       measures="rollout/lig", num_steps=4)
    chain = None
    for l in sorted(r.layers):
        m = np.abs(np.asarray(r.layers[l]["z2z"], np.float64))
        m = m / m.sum(axis=0, keepdims=True)
        chain = m if chain is None else chain @ m
        np.testing.assert_allclose(r.layers[l]["rollout/lig"], chain, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(r.layers[l]["rollout/lig"].sum(axis=0), 1.0, rtol=1e-9)
