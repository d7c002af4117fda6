"""explain() / explain_to_json() / describe_boundaries(): schema, orientation, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import transformers

from lig_jax import LIGConfig, LIGError, describe_boundaries, explain, explain_to_json

TEXT = "The cat sat on the mat."
TOP_KEYS = {"text", "tokens", "model", "model_type", "config", "boundaries", "layers"}
CONFIG_KEYS = {"num_steps", "granularity", "baseline_att", "baseline_mlp", "baseline_layer",
               "layers", "target_tokens", "target_head", "include_residual_connection"}
BOUNDARY_KEYS = {"z", "u", "z_next", "layout", "architecture", "model_type", "num_layers",
                 "supported_granularity", "nodes", "hook_points", "detection", "notes", "model"}


@pytest.fixture(scope="module")
def result(tiny_bert) -> dict:
    return explain(TEXT, model=str(tiny_bert), num_steps=8)


def test_reference_schema_keys_and_types(result: dict) -> None:
    assert TOP_KEYS <= result.keys()
    assert CONFIG_KEYS <= result["config"].keys()
    assert BOUNDARY_KEYS <= result["boundaries"].keys()
    assert set(result["boundaries"]["nodes"]) == {"z", "u", "z_next"}
    assert result["tokens"][0] == "[CLS]" and result["tokens"][-1] == "[SEP]"
    s = len(result["tokens"])
    assert result["config"]["granularity"] == ["att", "mlp", "layer"]
    assert result["config"]["layers"] == [0, 1]
    assert result["config"]["target_tokens"] == list(range(s))
    for l, entry in result["layers"].items():
        assert entry["layer_idx"] == int(l)
        z = entry["z2z"]
        assert {"baseline", "description", "shape", "matrix", "token_to_token"} <= z.keys()
        assert z["shape"] == [s, s] and len(z["matrix"]) == s
        assert all(len(row) == s and all(isinstance(v, float) for v in row)
                   for row in z["matrix"])
        assert len(z["token_to_token"]) == s
        assert set(entry["targets"]) == {str(j) for j in range(s)}
        for j, t in entry["targets"].items():
            assert t["target_token_idx"] == int(j) and t["target_token"] == result["tokens"][int(j)]
            zu = t["z2u"]
            assert {"baseline", "description", "heads"} <= zu.keys()
            assert set(zu["heads"]) == {"0", "1", "2", "3"}
            for head in zu["heads"].values():
                assert len(head["contributions"]) == s
                assert head["token_l2_norm"] == pytest.approx(np.linalg.norm(head["contributions"]))
            uz = t["u2z"]
            assert {"baseline", "description", "contributions", "l2_total",
                    "completeness"} <= uz.keys()
            assert {"error", "mean_abs_error"} <= uz["completeness"].keys()
            assert len(uz["contributions"]) == 48
    json.dumps(result)  # serialisable as is


def test_descriptions_match_reference(tiny_bert) -> None:
    r = explain(TEXT, model=str(tiny_bert), num_steps=4, layers=[0], baseline_att="itb_map_ratio",
                target_tokens=[1])
    e = r["layers"]["0"]
    assert e["z2z"]["description"] == "Layer-whole IG (z -> z), L2-scalarized"
    assert (e["targets"]["1"]["z2u"]["description"]
            == "ATT IG (z -> u), L2-scalarized (ITB-mapRatio)")
    assert e["targets"]["1"]["u2z"]["description"] == "MLP IG (u -> z), L2-scalarized"


def test_orientation_columns_are_targets(tiny_bert) -> None:
    """Completeness runs along columns: Σ_i matrix[i][j] ≈ Σw · L_j, not along rows."""
    r = explain(TEXT, model=str(tiny_bert), num_steps=48, granularity="layer",
                baseline_layer="self_input_token", rule="gauss_legendre", layers=[1])
    z = r["layers"]["1"]["z2z"]
    m = np.array(z["matrix"])
    want = np.array(z["completeness"]["scalar_change"])
    np.testing.assert_allclose(m.sum(axis=0), want, rtol=0.05)
    assert not np.allclose(m.sum(axis=1), want, rtol=0.05)
    for col in z["token_to_token"]:
        j = col["target_token_idx"]
        for c in col["contributions"]:
            assert c["value"] == m[c["source_token_idx"]][j]


def test_subsets_of_layers_targets_heads(tiny_bert) -> None:
    r = explain(TEXT, model=str(tiny_bert), num_steps=4, layers=[1], target_tokens=[2, 4],
                target_head=3, granularity=["att", "layer"])
    assert list(r["layers"]) == ["1"]
    e = r["layers"]["1"]
    assert set(e["targets"]) == {"2", "4"}
    assert set(e["targets"]["2"]["z2u"]["heads"]) == {"3"}
    assert "u2z" not in e["targets"]["2"]
    assert [c["target_token_idx"] for c in e["z2z"]["token_to_token"]] == [2, 4]
    assert len(e["z2z"]["matrix"]) == len(r["tokens"])  # the full matrix regardless of targets


def test_subset_equals_full_run(tiny_bert, result: dict) -> None:
    r = explain(TEXT, model=str(tiny_bert), num_steps=8, layers=[1], target_tokens=[3],
                granularity="att,mlp")
    full = result["layers"]["1"]["targets"]["3"]
    part = r["layers"]["1"]["targets"]["3"]
    for h in full["z2u"]["heads"]:
        np.testing.assert_allclose(part["z2u"]["heads"][h]["contributions"],
                                   full["z2u"]["heads"][h]["contributions"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(part["u2z"]["contributions"], full["u2z"]["contributions"],
                               rtol=1e-5, atol=1e-7)


def test_config_object_overrides_keywords(tiny_bert) -> None:
    cfg = LIGConfig(model=str(tiny_bert), num_steps=4, granularity="layer", layers=[0])
    r = explain("ignored keywords", config=cfg, num_steps=99, granularity="att")
    assert r["config"]["num_steps"] == 4 and r["config"]["granularity"] == ["layer"]
    s = explain_to_json("A b.", config=cfg)
    assert json.loads(s)["text"] == "A b."


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"baseline_att": "self_output_token"}, "Allowed: itb_map_ratio, itb_zero_ratio, "
                                                "self_input_token, zero"),
        ({"baseline_mlp": "one"}, "Allowed: att_itb_a0, zero"),
        ({"baseline_layer": "itb_map_ratio"}, "Allowed: itb_zero_ratio, self_input_token, zero"),
        ({"granularity": "heads"}, "Allowed: all, att, layer, mlp"),
        ({"rule": "simpson"}, "Allowed: captum_trapezoid, gauss_legendre, midpoint, reference"),
        ({"num_steps": 1}, "num_steps must be >= 2"),
        ({"num_steps": 1, "rule": "trapezoid"}, "num_steps must be >= 2"),
        ({"layers": [2]}, "layers index 2 is out of range. Allowed: 0..1"),
        ({"layers": [-1]}, "out of range"),
        ({"target_tokens": [99]}, "target_tokens index 99 is out of range. Allowed: 0..8"),
        ({"target_head": 4}, "target_head index 4 is out of range. Allowed: 0..3"),
        ({"device": "tpu"}, "device 'tpu' is not available"),
    ],
)
def test_bad_options_get_one_line_errors(tiny_bert, kwargs: dict, needle: str) -> None:
    with pytest.raises(LIGError) as e:
        explain(TEXT, model=str(tiny_bert), **kwargs)
    msg = str(e.value)
    assert "\n" not in msg and needle in msg, msg


def test_gauss_legendre_accepts_one_step(tiny_bert) -> None:
    r = explain(TEXT, model=str(tiny_bert), num_steps=1, rule="gauss_legendre", layers=[0],
                granularity="mlp")
    assert r["quadrature"]["u2z"]["rule"] == "gauss_legendre"


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_text(tiny_bert, text: str) -> None:
    with pytest.raises(LIGError, match="text is empty"):
        explain(text, model=str(tiny_bert))


def test_text_over_max_length_is_refused(tiny_bert) -> None:
    with pytest.raises(LIGError) as e:
        explain("word " * 100, model=str(tiny_bert))
    assert "more than the model's maximum of 64" in str(e.value)


def test_unknown_model(tmp_path) -> None:
    with pytest.raises(LIGError, match="unknown model 'no-such-org/no-such-model'"):
        explain(TEXT, model="no-such-org/no-such-model")
    with pytest.raises(LIGError, match="does not exist"):
        explain(TEXT, model=str(tmp_path / "missing" / "x"))


def test_describe_boundaries_from_config(tiny_bert, tmp_path) -> None:
    d = describe_boundaries(str(tiny_bert))
    assert d["layout"] == "post_ln_encoder" and d["architecture"] == "encoder"
    assert d["num_layers"] == 2 and d["supported_granularity"] == ["att", "layer", "mlp"]
    assert d["detection"] == "config model_type (bert)"
    assert d["hook_points"]["att_core"] == "encoder.layer.{l}.attention.self"
    every = ["att", "layer", "mlp"]
    for model_type, layout, gran, ref_gran, att_core in [
            ("distilbert", "block_only", every, ["layer"], "transformer.layer.{l}.attention"),
            ("mpnet", "block_only", every, ["layer"], "encoder.layer.{l}.attention.attn"),
            ("modernbert", "block_only", every, ["layer"], "layers.{l}.attn"),
            ("gpt2", "pre_ln_decoder", every, every, "h.{l}.attn"),
            ("llama", "pre_ln_decoder", every, every, "layers.{l}.self_attn"),
            ("qwen2", "pre_ln_decoder", every, every, "layers.{l}.self_attn"),
            ("gemma3_text", "pre_post_ln_decoder", every, every, "layers.{l}.self_attn"),
            ("switch_transformers", "block_only", [], ["layer"], None)]:
        cfg = tmp_path / f"{model_type}.json"
        cfg.write_text(json.dumps({"model_type": model_type, "num_hidden_layers": 3}))
        d = describe_boundaries(str(cfg))
        assert d["layout"] == layout and d["supported_granularity"] == gran, model_type
        assert d["reference_granularity"] == ref_gran and d["num_layers"] == 3
        assert d["hook_points"]["att_core"] == att_core
        assert d["architecture"] == ("decoder" if "decoder" in layout else "encoder")
        assert (d["nodes"]["u"] is None) == (model_type == "switch_transformers")
    d = describe_boundaries(str(tiny_bert), load_weights=True)
    assert len(d["weights"]["checkpoint_sha256"]) == 64
    hf = transformers.AutoModel.from_pretrained(str(tiny_bert))  # ours has no pooler
    assert d["weights"]["parameters"] == sum(
        v.numel() for n, v in hf.named_parameters() if not n.startswith("pooler."))


def test_hub_id_resolves_through_the_hf_cache_offline(tiny_bert, tmp_path, monkeypatch) -> None:
    """A hub id is looked up in the normal HF cache layout; HF_HUB_OFFLINE=1 is honoured."""
    import shutil

    import huggingface_hub.constants as hf_constants

    from lig_jax.loading import resolve_folder

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--some-org--tiny-bert"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_bert, repo / "snapshots" / commit)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = resolve_folder("some-org/tiny-bert")
    assert folder == repo / "snapshots" / commit
    r = explain(TEXT, model="some-org/tiny-bert", num_steps=2, layers=[0], granularity="layer")
    assert r["model"] == "some-org/tiny-bert" and r["model_type"] == "bert"
