"""`lig-jax plan`: jobs compiled for abstract TPU chips (libtpu, no TPU attached) from a
folder holding only config.json. One file: libtpu allows one process at a time."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lig_jax.cli import app

if importlib.util.find_spec("libtpu") is None:
    if os.environ.get("CI"):
        raise RuntimeError("libtpu is not installed (the test extra installs it)")
    pytest.skip("libtpu not installed (pip install 'lig-jax[tpu]')", allow_module_level=True)


@pytest.fixture(scope="module")
def config_only(tmp_path_factory) -> Path:
    import transformers

    folder = tmp_path_factory.mktemp("bert_config_only")
    transformers.BertConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=96, vocab_size=120,
                            max_position_embeddings=64).save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]
    return folder


def _plan(*args: str) -> tuple[int, str, dict | None, str]:
    res = CliRunner().invoke(app, ["plan", *args])
    return res.exit_code, res.stdout, None, res.stderr


def test_explain_plan_for_v5e_from_a_config_only_folder(config_only, tmp_path) -> None:
    out = tmp_path / "plan.json"
    code, stdout, _, err = _plan("--model", str(config_only), "--topology", "v5e:2x2",
                                 "--seq-len", "32", "--granularity", "layer,att,mlp",
                                 "--json", str(out))
    assert code == 0, err
    p = json.loads(out.read_text())
    assert p["topology"] == "v5e:2x2" and p["num_devices"] == 4
    assert p["device_kind"] == "TPU v5 lite" and p["device_hbm_bytes"]["TPU v5 lite"] == 16 * 2**30
    assert p["per_device_hbm_bytes"] == 16 * 2**30 and p["devices_per_chip"] == 1
    assert p["mesh"] == [4, 1] and p["fits"] is True  # fewest model devices first
    assert 0 < p["per_device_bytes"] < 2**30
    assert p["per_device_bytes"] >= p["resident_parameter_bytes"] > 0
    assert set(p["chunks"]) == {"layer", "att", "mlp"}
    # the whole job's FLOPs against the block-forward arithmetic: docs/performance.md
    # finds z→z ITB + z→u ITB + u→z ≈ 3 block forwards per integration node
    assert 1.5 <= p["block_forwards_per_node"] <= 6.0, p["block_forwards_per_node"]
    assert p["projected_seconds"] > 0 and 0 < p["assumed_utilization"] <= 1
    assert p["compile_seconds"] > 0
    assert "mesh 4x1" in stdout and "fits: yes" in stdout


def test_a_model_axis_splits_the_parameters(config_only) -> None:
    from lig_jax.plan import plan

    data = plan(str(config_only), "v5e:2x2", 32, mesh="4x1")
    model = plan(str(config_only), "v5e:2x2", 32, mesh="1x4")
    assert model["mesh"] == [1, 4]
    # the kernels (most of the block) are split 4 ways; embeddings along the vocabulary
    assert model["resident_parameter_bytes"] < 0.5 * data["resident_parameter_bytes"]
    assert model["flops"] == pytest.approx(data["flops"], rel=1e-6)  # same job


@pytest.mark.slow
def test_experiment_plan(config_only) -> None:
    from lig_jax.plan import plan

    p = plan(str(config_only), "v5e:2x2", 32, task="experiment", sentences=10)
    assert p["fits"] and p["per_device_bytes"] > 0
    assert set(p["chunks"]) == {"z2z/zero", "z2z/self_input_token", "z2u/zero",
                                "z2u/self_input_token", "u2z/zero", "u2z/att_itb_a0"}
    one = plan(str(config_only), "v5e:2x2", 32, task="experiment", sentences=1)
    assert p["flops"] == pytest.approx(10 * one["flops"], rel=1e-9)


def test_plan_errors_are_one_line(config_only) -> None:
    for args, needle in (
            (["--topology", "v9z:1x1"], "cannot resolve topology 'v9z:1x1'"),
            (["--topology", "v5e:2x2", "--mesh", "4x4"], "mesh 4x4 needs 16 devices"),
            (["--topology", "v5e:2x2", "--seq-len", "100000"], "--seq-len 100000 is out of"),
            (["--topology", "v5e:2x2", "--task", "train"], "task"),
            (["--topology", "v5e:2x2", "--granularity", "x"], "granularity")):
        code, _, _, err = _plan("--model", str(config_only), "--seq-len", "32", *args)
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
