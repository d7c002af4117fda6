"""Experiment A: records vs explain(), kill-and-resume, 1 vs 8 devices, the exact metrics,
the 24-row CSV, the top-3 table, word aggregation and dependency alignment."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lig_jax.attribution import ratio
from lig_jax.errors import LIGError
from lig_jax.experiment import flow
from lig_jax.experiment.align import alignment
from lig_jax.experiment.runner import deal
from lig_jax.experiment.store import Record, Store
from lig_jax.words import to_words

ROOT = Path(__file__).resolve().parent.parent
STEPS = "4"
END = "9"  # demo sentences 0..9


# ------------------------------------------------------------------ metrics (pure numpy)


def _reference_metrics(direct: np.ndarray, composed: np.ndarray) -> tuple[list, list]:
    """The docs/spec.md §10 metric written the plain way: loop over layers and target columns."""
    l2s, corrs = [], []
    for layer in range(direct.shape[0]):
        for j in range(direct.shape[2]):
            a, b = direct[layer, :, j], composed[layer, :, j]
            if np.all(a == 0):
                continue
            l2s.append(np.linalg.norm(a - b))
            with np.errstate(invalid="ignore", divide="ignore"):
                c = np.corrcoef(a, b)[0, 1]
            if np.isnan(c):
                c = 1.0 if np.allclose(a, b) else 0.0
            corrs.append(c)
    return l2s, corrs


def test_column_metrics_match_a_direct_numpy_computation():
    rng = np.random.default_rng(0)
    direct, composed = rng.normal(size=(3, 5, 5)), rng.normal(size=(3, 5, 5))
    direct[1, :, 2] = 0.0  # skipped column
    direct[2, :, 0] = 1.5  # constant: Pearson undefined, not close → 0
    direct[2, :, 1], composed[2, :, 1] = 2.0, 2.0  # constant and equal → 1
    l2, corr = flow.column_metrics(direct, composed)
    ref_l2, ref_corr = _reference_metrics(direct, composed)
    assert len(l2) == 14 == len(ref_l2)
    np.testing.assert_allclose(l2, ref_l2, rtol=1e-12)
    np.testing.assert_allclose(corr, ref_corr, rtol=1e-12, atol=1e-12)
    assert 0.0 in corr and 1.0 in corr


def _fake_record(index: int, s: int, rng: np.random.Generator, n_layers: int = 2,
                 heads: int = 2) -> Record:
    arrays = {f"z2z/{v.name}": rng.normal(size=(n_layers, s, s)) for v in flow.LAYER}
    for a in flow.ATT:
        arrays[f"z2u/{a.name}"] = rng.normal(size=(n_layers, s, heads, s))
        for m in flow.MLP:
            arrays[f"composed/{a.name}/{m.name}"] = rng.normal(size=(n_layers, s, s))
    if index == 1:  # a sentence whose direct zero maps are all zero is skipped for them
        arrays["z2z/zero"][:] = 0.0
    words = [f"w{i}" for i in range(s - 3)]
    word_ids = [-1, 0, 0, *range(1, s - 3), -1]
    heads_ = [2, 0, *([2] * (s - 5))]
    relns = ["det", "root", *(["dobj"] * (s - 5))]
    meta = {"index": index, "words": words, "heads": heads_, "relns": relns,
            "word_ids": word_ids, "tokens": [f"t{i}" for i in range(s)]}
    return Record(meta, arrays)


def test_flow_rows_have_the_spec_columns_and_24_rows(tmp_path):
    rng = np.random.default_rng(1)
    records = [_fake_record(i, s, rng) for i, s in enumerate((6, 7, 8))]
    manifest = {"start": 0, "end": 2, "model": "m", "settings": {"steps": 4, "max_length": 16},
                "data_path": "/x/dev.txt"}
    rows = flow.flow_rows(records, manifest)
    assert len(rows) == 24
    assert len({r["pair_key"] for r in rows}) == 24
    text = flow.rows_to_csv(rows)
    header = next(csv.reader(text.splitlines()))
    assert tuple(header) == flow.COLUMNS
    assert rows[0]["pair_key"] == "lig_zero_att0_mlp0"
    assert rows[0]["pair_name"] == "LIG(Zero) | ATT(Zero)+MLP(Zero)"
    assert rows[0]["split"] == "dev"
    # one row recomputed by hand: LIG(ITB) vs ATT(ITB-mapRatio)+MLP(ATT-ITB-a0)
    row = next(r for r in rows if r["pair_key"] == "lig_itb_att_itbmap_mlp_attitba0")
    l2s, corrs = [], []
    for rec in records:
        a, b = _reference_metrics(rec.arrays["z2z/self_input_token"],
                                  rec.arrays["composed/itb_map_ratio/att_itb_a0"])
        l2s += a
        corrs += b
    assert row["n_pairs"] == len(l2s) == 2 * (6 + 7 + 8) and row["n_samples"] == 3
    np.testing.assert_allclose([row["l2_mean"], row["l2_std"], row["corr_mean"],
                                row["corr_std"]],
                               [np.mean(l2s), np.std(l2s), np.mean(corrs), np.std(corrs)],
                               rtol=1e-12)
    zero_row = rows[0]
    assert zero_row["n_samples"] == 2 and zero_row["n_pairs"] == 2 * (6 + 8)
    best = flow.top_table(rows, 3)
    assert [r["layer_ig_baseline_group"] for r in best] == ["itb"] * 3 + [
        "itb_zero_ratio"] * 3 + ["zero"] * 3
    group = [r for r in rows if r["layer_ig_baseline_group"] == "itb"]
    want = sorted(r["l2_mean"] for r in group)[:3]
    assert [r["l2_mean"] for r in best[:3]] == want
    assert tuple(best[0]) == flow.TABLE_COLUMNS


def test_word_level_sums_sources_and_averages_targets():
    m = np.arange(16, dtype=float).reshape(4, 4)  # tokens: [CLS] a ##b [SEP]
    w = to_words(m, [-1, 0, 0, -1])
    assert w.shape == (3, 3)
    assert w[1, 1] == pytest.approx((m[1, 1] + m[2, 1] + m[1, 2] + m[2, 2]) / 2)
    assert w[0, 1] == pytest.approx((m[0, 1] + m[0, 2]) / 2)
    assert w[1, 0] == pytest.approx(m[1, 0] + m[2, 0])
    assert w.sum(axis=0)[0] == pytest.approx(m[:, 0].sum())  # sources add up


def test_alignment_counts_heads_in_both_directions():
    # [CLS] the cat sat [SEP]: the→cat (det), cat→sat (nsubj), sat root
    s, n_layers = 5, 1
    z = np.zeros((n_layers, s, s))
    z[0, 2, 1] = 5.0  # top source of "the" is "cat": dep→head right for det
    z[0, 1, 2] = 5.0  # top source of "cat" is "the": head→dep right for det, nsubj wrong
    z[0, 2, 3] = 5.0  # top source of "sat" is "cat": head→dep right for nsubj
    z[0, 0, :] = 100.0  # [CLS] is never a candidate
    arrays = {f"z2z/{v.name}": z for v in flow.LAYER}
    for a in flow.ATT:
        arrays[f"z2u/{a.name}"] = np.zeros((n_layers, s, 1, s))
        for m in flow.MLP:
            arrays[f"composed/{a.name}/{m.name}"] = z
    meta = {"index": 0, "words": ["the", "cat", "sat"], "heads": [2, 3, 0],
            "relns": ["det", "nsubj", "root"], "word_ids": [-1, 0, 1, 2, -1]}
    res = alignment([Record(meta, arrays)])
    rows = {(r["map"], r["direction"], r["relation"]): r for r in res["rows"]}
    assert rows[("z2z/zero", "dep2head", "det")]["accuracy"] == 1.0
    assert rows[("z2z/zero", "dep2head", "nsubj")]["accuracy"] == 0.0
    assert rows[("z2z/zero", "head2dep", "det")]["accuracy"] == 1.0
    assert rows[("z2z/zero", "head2dep", "nsubj")]["accuracy"] == 1.0
    assert rows[("z2z/zero", "dep2head", "ALL")]["accuracy"] == 0.5
    assert rows[("z2z/zero", "dep2head", "ALL")]["offset_baseline"] == 1.0  # head = dep + 1
    assert rows[("z2z/zero", "dep2head", "ALL")]["best_offset"] == 1


def test_deal_splits_every_item_once_and_balances():
    costs = {i: float((i % 7 + 1) ** 2) for i in range(50)}
    shares = [deal(costs, 3, r) for r in range(3)]
    assert sorted(sum(shares, [])) == list(range(50))
    loads = [sum(costs[i] for i in s) for s in shares]
    assert max(loads) - min(loads) <= max(costs.values())


def test_store_refuses_other_settings_and_reports_corruption(tmp_path):
    store = Store(tmp_path / "run")
    store.open({"model": "a", "settings": {"steps": 4}}, resume=True)
    with pytest.raises(LIGError, match="other settings"):
        Store(tmp_path / "run").open({"model": "a", "settings": {"steps": 8}}, resume=True)
    with pytest.raises(LIGError, match="already holds a run"):
        Store(tmp_path / "run").open({"model": "a", "settings": {"steps": 4}}, resume=False)
    rec = Record({"index": 3, "words": ["x"], "tokens": ["[CLS]", "x"], "word_ids": [-1, 0]},
                 {"z2z/zero": np.ones((1, 2, 2))})
    store.write(rec)
    assert store.done() == {3}
    back = store.read(3)
    assert back.meta == rec.meta and np.array_equal(back.arrays["z2z/zero"], np.ones((1, 2, 2)))
    path = store.records / "sample_00003.npz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(LIGError, match="corrupted"):
        store.read(3)
    assert not list(store.records.glob(".*.tmp"))


# ------------------------------------------------------------ runs on a tiny random BERT


def _cli(out: Path, model: Path, *extra: str, env: dict | None = None,
         wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lig_jax.cli", "experiment", "run", "--data", "demo",
           "--model", str(model), "--out", str(out), "--end", END, "--steps", STEPS, "-q",
           *extra]
    full_env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", **(env or {})}
    if wait:
        return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=600,
                              cwd=ROOT)
    return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT)


@pytest.fixture(scope="module")
def uninterrupted(tiny_bert, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exp") / "full"
    proc = _cli(out, tiny_bert)
    assert proc.returncode == 0, proc.stderr
    assert f"{int(END) + 1} sentences computed" in proc.stderr
    assert "sentences/s" in proc.stderr
    return out


def _same_records(a: Path, b: Path, atol: float, skip: tuple[str, ...] = ()) -> None:
    """Equal metadata; arrays bit-equal (atol 0) or within atol × max(1, max |entry|)."""
    sa, sb = Store(a), Store(b)
    assert sa.done() == sb.done() == set(range(int(END) + 1))
    for i in sorted(sa.done()):
        ra, rb = sa.read(i), sb.read(i)
        assert ra.meta == rb.meta
        assert set(ra.arrays) == set(rb.arrays)
        for k in ra.arrays:
            if k in skip:
                continue
            if atol == 0.0:
                assert np.array_equal(ra.arrays[k], rb.arrays[k]), (i, k)
            else:
                scale = max(1.0, float(np.abs(ra.arrays[k]).max()))
                np.testing.assert_allclose(ra.arrays[k], rb.arrays[k], rtol=0,
                                           atol=atol * scale, err_msg=f"sentence {i} {k}")


@pytest.mark.slow
def test_experiment_a_on_a_decoder(tiny_llama, tmp_path):
    """Experiment A runs on decoders too, through the same core as explain: every baseline's
    maps, causal (no source after its target), and the 24-pair comparison."""
    out = tmp_path / "llama"
    proc = _cli(out, tiny_llama, "--end", "1")
    assert proc.returncode == 0, proc.stderr
    store = Store(out)
    assert store.done() == {0, 1}
    rec = store.read(1)
    s = len(rec.meta["tokens"])
    for key in ("z2z/zero", "z2z/self_input_token", "composed/itb_map_ratio/att_itb_a0"):
        m = rec.arrays[key]
        assert m.shape[1:] == (s, s) and np.isfinite(m).all()
        assert np.abs(np.tril(m, -1)).max() == 0.0, key  # [src, tgt]: src > tgt is 0
        assert np.abs(m).max() > 0
    assert rec.arrays["z2u/zero"].shape[1:] == (s, 4, s)  # 4 query heads
    rows = flow.flow_rows(store, store.manifest())
    assert len(rows) == 24 and all(r["n_pairs"] > 0 for r in rows)


def test_kill_and_resume_gives_the_uninterrupted_records(uninterrupted, tiny_bert, tmp_path):
    out = tmp_path / "killed"
    proc = _cli(out, tiny_bert, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and len(Store(out).done()) < 2 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = Store(out).done()
    assert 2 <= len(done_at_kill) < int(END) + 1
    again = _cli(out, tiny_bert)
    assert again.returncode == 0, again.stderr
    assert f"{len(done_at_kill)} already done" in again.stderr
    _same_records(uninterrupted, out, atol=0.0)
    assert not list((out / "records").glob(".*.tmp"))


def test_a_run_extends_to_more_sentences(uninterrupted, tiny_bert, tmp_path):
    """A run over sentences 0..3, rerun with --end 9 and the same settings, computes only
    4..9 and then holds what one run over 0..9 holds; the manifest covers 0..9 (format 2).
    Other settings are still refused, naming the setting."""
    out = tmp_path / "grown"
    first = _cli(out, tiny_bert, "--end", "3")
    assert first.returncode == 0, first.stderr
    assert Store(out).done() == {0, 1, 2, 3}
    again = _cli(out, tiny_bert)
    assert again.returncode == 0, again.stderr
    assert "6 sentences computed (4 already done, 10 selected)" in again.stderr
    _same_records(uninterrupted, out, atol=0.0)
    manifest = Store(out).manifest()
    assert (manifest["start"], manifest["end"], manifest["format_version"]) == (0, 9, 2)
    gap = _cli(out, tiny_bert, "--start", "12", "--end", "13")
    assert gap.returncode == 2 and "holds sentences 0..9" in gap.stderr, gap.stderr
    other = _cli(out, tiny_bert, "--steps", "6")
    assert other.returncode == 2
    assert other.stderr.strip().startswith("error:") and "settings:" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1, other.stderr


@pytest.mark.parametrize("mesh", ["2x1", pytest.param(None, marks=pytest.mark.slow),
                                  pytest.param("2x4", marks=pytest.mark.slow),
                                  pytest.param("1x4", marks=pytest.mark.slow)])
def test_eight_simulated_devices_equal_one(uninterrupted, tiny_bert, tmp_path, mesh):
    """8 CPU devices: sentences dealt over the data rows — two of them, all eight (the
    default) — or a (data, model) mesh with each block split over 4 devices (tiny BERT: 4
    heads, MLP 96)."""
    out = tmp_path / "eight"
    flags = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8")
    proc = _cli(out, tiny_bert, *(["--mesh", mesh] if mesh else []),
                env={"XLA_FLAGS": flags.strip()})
    assert proc.returncode == 0, proc.stderr
    assert Store(out).manifest()["settings"] == {"steps": int(STEPS), "max_length": 128,
                                                 "chunk_mb": 128}
    # Every computed map agrees to 1e-6 of its scale (XLA's per-device thread pools sum in
    # another order). ITB-zeroRatio z→z divides by the off-diagonal sum of the zero
    # column, which amplifies that rounding; it is checked to be exactly the ratio fix
    # of each run's own (agreeing) raw maps instead.
    # With the model axis, the head and MLP sums are split over devices as well (summed
    # in another order again): 1e-5 of the scale, as for explain on a mesh.
    _same_records(uninterrupted, out, atol=1e-6 if mesh in (None, "2x1") else 1e-5,
                  skip=("z2z/itb_zero_ratio",))
    for folder in (uninterrupted, out):
        store = Store(folder)
        for i in sorted(store.done()):
            r = store.read(i)
            cols = [np.swapaxes(r.arrays[k].astype(np.float64), 1, 2)
                    for k in ("z2z/self_input_token", "z2z/zero")]
            fixed = np.swapaxes(ratio.z2z_zero_ratio(*cols), 1, 2)
            assert np.array_equal(fixed.astype(np.float32), r.arrays["z2z/itb_zero_ratio"])


def test_run_errors_are_one_line(tiny_bert, tmp_path):
    bad = _cli(tmp_path / "r", tiny_bert, "--start", "9", "--end", "3")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
    assert len(bad.stderr.strip().splitlines()) == 1
    missing = subprocess.run([sys.executable, "-m", "lig_jax.cli", "experiment", "compare",
                              str(tmp_path / "nothing")], capture_output=True, text=True,
                             cwd=ROOT)
    assert missing.returncode == 2 and "not an experiment run folder" in missing.stderr


def _two_processes(out: Path, model: Path, *extra: str,
                   env: dict | None = None) -> tuple[list[int], list[str]]:
    """Multi-host through jax.distributed on this machine: two CPU processes, one store."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [_cli(out, model, "--multi-host", "--coordinator", f"127.0.0.1:{port}",
                  "--num-processes", "2", "--process-id", str(i), *extra, env=env,
                  wait=False)
             for i in range(2)]
    logs = [p.communicate(timeout=600)[1].decode() for p in procs]
    return [p.returncode for p in procs], logs


def test_two_processes_share_the_run(uninterrupted, tiny_bert, tmp_path):
    out = tmp_path / "two"
    codes, logs = _two_processes(out, tiny_bert)
    assert codes == [0, 0], logs
    shares = [int(log.split(" sentences computed")[0].split()[-1]) for log in logs]
    assert sum(shares) == int(END) + 1 and min(shares) > 0
    _same_records(uninterrupted, out, atol=1e-6, skip=("z2z/itb_zero_ratio",))


def _two_devices_each() -> dict:
    return {"XLA_FLAGS": (os.environ.get("XLA_FLAGS", "")
                          + " --xla_force_host_platform_device_count=2").strip()}


@pytest.mark.slow
def test_a_mesh_spans_every_hosts_devices(uninterrupted, tiny_bert, tmp_path):
    """Two processes × 2 CPU devices: `--mesh 2x2` is one mesh over all four, a row of 2
    (one model group) in each process; the union of the records equals the 1-device run."""
    out = tmp_path / "spans"
    codes, logs = _two_processes(out, tiny_bert, "--mesh", "2x2", env=_two_devices_each())
    assert codes == [0, 0], logs
    shares = [int(log.split(" sentences computed")[0].split()[-1]) for log in logs]
    assert sum(shares) == int(END) + 1 and min(shares) > 0
    _same_records(uninterrupted, out, atol=1e-5, skip=("z2z/itb_zero_ratio",))


def test_a_model_group_across_processes_is_refused(tiny_bert, tmp_path):
    codes, logs = _two_processes(tmp_path / "across", tiny_bert, "--mesh", "1x4",
                                 env=_two_devices_each())
    assert codes == [2, 2], logs
    for log in logs:
        assert log.startswith("error: mesh 1x4: a model group of 4 devices would span "
                              "processes [0, 1]; choose M dividing each host's 2 devices"), log
        assert len(log.strip().splitlines()) == 1, log


def test_a_record_opens_as_an_explain_result(uninterrupted, tiny_bert):
    """`lig-jax view/plot RUN --sentence N`: a record in the explain schema, same numbers."""
    from lig_jax.view import result as R
    from lig_jax.view.records import record_result

    rec = Store(uninterrupted).read(4)
    res = R.load_result(record_result(uninterrupted, 4, baseline_layer="zero",
                                      baseline_att="itb_map_ratio", baseline_mlp="att_itb_a0"))
    assert res["tokens"] == rec.meta["tokens"]
    assert res["model"] == Store(uninterrupted).manifest()["model"] == str(tiny_bert)
    assert R.routes(res, 1) == ["direct", "composed"]
    np.testing.assert_array_equal(R.z2z_matrix(res, 1, "direct"), rec.arrays["z2z/zero"][1])
    np.testing.assert_array_equal(R.z2z_matrix(res, 1, "composed"),
                                  rec.arrays["composed/itb_map_ratio/att_itb_a0"][1])
    heads, scores = R.z2u_heads(res, 0, 2)
    np.testing.assert_array_equal(scores, rec.arrays["z2u/itb_map_ratio"][0, 2])
    with pytest.raises(LIGError, match="no record for sentence 999"):
        record_result(uninterrupted, 999)
    with pytest.raises(LIGError, match="Unknown att baseline .nope.. Allowed: "):
        record_result(uninterrupted, 1, baseline_att="nope")


def test_format_1_records_read_under_todays_baseline_names(tmp_path):
    """Format 1 called the ITB baseline "itb"; its records read with the names of
    `baselines.TABLE` (what view, compare and align look up)."""
    import json as _json

    from lig_jax.experiment.store import Record

    old = Store(tmp_path / "v1")
    old.open({"format_version": 1}, resume=True)
    keys = ("z2z/itb", "z2z/itb_zero_ratio", "z2u/itb", "composed/itb/att_itb_a0",
            "composed/itb_map_ratio/zero", "total/z2z_itb", "total/z2u_sum_itb", "u2z/zero")
    shapes = {"z2z": (1, 2, 2), "composed": (1, 2, 2), "z2u": (1, 2, 1, 2), "u2z": (1, 2, 3),
              "total": (1, 2)}  # [L, S, …] for the S = 2 tokens of the record
    old.write(Record({"index": 0, "tokens": ["a", "b"], "words": ["ab"], "word_ids": [0, 0]},
                     {k: np.full(shapes[k.split("/")[0]], i) for i, k in enumerate(keys)}))
    assert _json.loads((tmp_path / "v1" / "run.json").read_text())["format_version"] == 1
    got = Store(tmp_path / "v1").read(0).arrays
    assert sorted(got) == sorted((
        "z2z/self_input_token", "z2z/itb_zero_ratio", "z2u/self_input_token",
        "composed/self_input_token/att_itb_a0", "composed/itb_map_ratio/zero",
        "total/z2z_self_input_token", "total/z2u_sum_self_input_token", "u2z/zero"))
    assert np.all(got["composed/self_input_token/att_itb_a0"] == 3)
    new = Store(tmp_path / "v2")
    new.open({"format_version": 2}, resume=True)
    new.write(Record({"index": 0, "tokens": ["a", "b"], "words": ["ab"], "word_ids": [0, 0]},
                     {"z2z/itb": np.zeros((1, 2, 2))}))  # kept as written
    assert list(Store(tmp_path / "v2").read(0).arrays) == ["z2z/itb"]


def test_every_record_key_is_a_baseline_of_the_table(uninterrupted):
    from lig_jax import baselines

    arrays = Store(uninterrupted).read(0).arrays
    want = ({f"{q}/{n}" for q in ("z2z", "z2u", "u2z") for n in baselines.names(q)}
            | {f"composed/{a}/{m}" for a in baselines.names("z2u")
               for m in baselines.names("u2z")})
    assert want <= set(arrays)
    assert not [k for k in arrays if "itb" in k.split("/") or k.endswith("_itb")]


def test_measures_in_a_run_resume_shard_and_align(tiny_bert, tmp_path):
    """`experiment run --measures all`: every record carries every measure and rollout
    (equal to explain's on the same sentence), a killed run resumes to the same records,
    8 simulated devices give the same numbers, other measures are refused on resume, and
    `experiment table`/`align` score each measure per layer."""
    from typer.testing import CliRunner

    from lig_jax.api import explain_arrays
    from lig_jax.cli import app
    from lig_jax.measures.names import CHOICES

    out = tmp_path / "m"
    proc = _cli(out, tiny_bert, "--end", "3", "--measures", "all")
    assert proc.returncode == 0, proc.stderr
    store = Store(out)
    assert store.manifest()["settings"]["measures"] == ",".join(CHOICES)
    rec = store.read(2)
    s = len(rec.meta["tokens"])
    for name in ("attention", "attention_norm", "alti", "value_zeroing", "value_zeroing_raw",
                 "rollout/attention", "rollout/alti", "rollout/value_zeroing", "rollout/lig"):
        assert rec.arrays[f"measure/{name}"].shape == (2, s, s), name
    text = " ".join(rec.meta["words"])
    ref = explain_arrays(text, model=str(tiny_bert), granularity="none", measures="alti")
    assert ref.tokens == rec.meta["tokens"]
    for l in (0, 1):
        np.testing.assert_allclose(rec.arrays["measure/alti"][l], ref.layers[l]["alti"],
                                   rtol=1e-5, atol=1e-7)
    flags = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8")
    sharded = tmp_path / "m8"
    proc = _cli(sharded, tiny_bert, "--end", "3", "--measures", "all", "--mesh", "2x1",
                env={"XLA_FLAGS": flags.strip()})
    assert proc.returncode == 0, proc.stderr
    for i in range(4):
        a, b = store.read(i).arrays, Store(sharded).read(i).arrays
        for k in a:
            if k.startswith("measure/"):
                np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    (out / "records" / "sample_00003.npz").unlink()
    again = _cli(out, tiny_bert, "--end", "3", "--measures", "all")
    assert again.returncode == 0 and "3 already done" in again.stderr, again.stderr
    other = _cli(out, tiny_bert, "--end", "3", "--measures", "alti")
    assert other.returncode == 2 and "settings:" in other.stderr, other.stderr
    res = CliRunner().invoke(app, ["experiment", "table", str(out)])
    assert res.exit_code == 0, res.output
    assert "dep→head accuracy" in res.output and "measure/rollout/alti" in res.output
    rows = alignment(store)["rows"]
    assert {r["map"] for r in rows if r["kind"] == "measure"} >= {
        "measure/alti", "measure/value_zeroing", "measure/rollout/lig"}
