"""`lig-jax` command line: explain, describe, compare, bench, experiment.

JSON goes to stdout (or `-o FILE`); progress and errors go to stderr. User errors
print one line, `error: …`, and exit with status 2.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from .errors import LIGError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Layer-wise Integrated Gradients (LIG) for Transformers, in JAX.",
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _int_list(what: str, value: str | None) -> list[int] | None:
    if value is None or value.strip().lower() in ("", "all"):
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        _fail(f"--{what} takes comma-separated integers like 0,3,5. Got: {value!r}")
        return None


def _steps(value: str) -> int | str:
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        _fail(f"--steps takes an integer or 'auto'. Got: {value!r}")
        return 0


def _enable_compilation_cache() -> None:
    """Persist compiled XLA programs so a second CLI run does not compile again."""
    import jax

    from converters.common import cache_dir

    try:
        jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "xla"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    except Exception:  # an older jax without these options: just compile
        pass


def _write_json(obj: object, output: Path | None) -> None:
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    if output is None:
        sys.stdout.write(text + "\n")
    else:
        output.write_text(text + "\n", encoding="utf-8")


@app.command()
def explain(
    text: Annotated[str, typer.Argument(help="The sentence to explain.")],
    model: Annotated[str, typer.Option(help="HF folder, hub id, or 'default' "
                                       "(all-MiniLM-L6-v2, offline).")] = "all-MiniLM-L6-v2",
    steps: Annotated[str, typer.Option(help="Integration steps per IG, or 'auto' (double "
                                       "per column until --auto-tol completeness).")] = "32",
    granularity: Annotated[str, typer.Option(help="all, or a comma list of att, mlp, layer.")
                           ] = "all",
    baseline_att: Annotated[str, typer.Option(help="zero | self_input_token | itb_zero_ratio "
                                              "| itb_map_ratio")] = "self_input_token",
    baseline_mlp: Annotated[str, typer.Option(help="zero | att_itb_a0")] = "zero",
    baseline_layer: Annotated[str, typer.Option(help="zero | self_input_token | "
                                                "itb_zero_ratio")] = "self_input_token",
    layers: Annotated[str | None, typer.Option(help="Comma list, e.g. 0,5 (default all).")
                      ] = None,
    target_tokens: Annotated[str | None, typer.Option(help="Comma list of token indices "
                                                         "(default all).")] = None,
    target_head: Annotated[int | None, typer.Option(help="One head (default all).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, gpu, gpu:1, tpu (default: "
                                                  "JAX's default device).")] = None,
    no_residual: Annotated[bool, typer.Option("--no-residual", help="u->z without the MLP's "
                                              "residual connection.")] = False,
    rule: Annotated[str, typer.Option(help="reference | captum_trapezoid | trapezoid | "
                                      "gauss_legendre | midpoint")] = "reference",
    method: Annotated[str, typer.Option(help="fast (structured integrands) | direct (one "
                                        "reverse pass per target); same numbers.")] = "fast",
    dtype: Annotated[str, typer.Option(help="float32 | bfloat16 (attribution compute).")
                     ] = "float32",
    auto_tol: Annotated[float, typer.Option(help="Completeness tolerance of --steps auto.")
                        ] = 0.01,
    max_steps: Annotated[int, typer.Option(help="Largest step count --steps auto tries.")
                         ] = 512,
    reference_quirks: Annotated[bool, typer.Option(
        "--reference-quirks", help="Decoders: the reference's inconsistent definitions "
        "(spec 13-B3) instead of the consistent ones.")] = False,
    memory_budget: Annotated[str | None, typer.Option(
        help="Device memory one chunk of the computation may use, e.g. 4GB or 512MB "
        "(default: 40% of the free memory).")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the result "
                                                "here instead of stdout: .json, or .npz "
                                                "for arrays (long inputs).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Compute LIG for TEXT and print the reference's JSON schema (or write it, -o)."""
    from .api import explain as run_explain
    from .api import explain_arrays
    from .results import save_npz

    _enable_compilation_cache()
    start = time.perf_counter()

    def progress(msg: str) -> None:
        if not quiet:
            typer.echo(f"[{time.perf_counter() - start:6.1f}s] {msg}", err=True)

    npz = output is not None and output.suffix.lower() == ".npz"
    try:
        options = dict(
            model=model, num_steps=_steps(steps), granularity=granularity,
            baseline_att=baseline_att, baseline_mlp=baseline_mlp,
            baseline_layer=baseline_layer, layers=_int_list("layers", layers),
            target_tokens=_int_list("target-tokens", target_tokens), target_head=target_head,
            device=device, include_residual_connection=not no_residual, rule=rule,
            method=method, dtype=dtype, auto_tol=auto_tol, max_steps=max_steps,
            reference_quirks=reference_quirks, memory_budget=memory_budget, progress=progress,
        )
        if npz:
            save_npz(explain_arrays(text, **options), output)
        else:
            _write_json(run_explain(text, **options), output)
    except LIGError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot write {output}: {e.strerror}")
    wrote = f", wrote {output}" if output else ""
    progress(f"done in {time.perf_counter() - start:.1f}s{wrote}")


@app.command("explain-batch")
def explain_batch_cmd(
    texts: Annotated[Path, typer.Argument(help="Text file, one sentence per line.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="JSON Lines file: one result "
                                         "per line, {\"index\": i, \"result\": …}.")],
    model: Annotated[str, typer.Option(help="As for explain.")] = "all-MiniLM-L6-v2",
    steps: Annotated[str, typer.Option(help="As for explain.")] = "32",
    granularity: Annotated[str, typer.Option(help="As for explain.")] = "all",
    layers: Annotated[str | None, typer.Option(help="As for explain.")] = None,
    rule: Annotated[str, typer.Option(help="As for explain.")] = "reference",
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Explain every line of a file; finished sentences are on disk before the next starts.

    Re-running with the same output file skips the sentences it already holds (a torn last
    line from a crash is dropped and redone).
    """
    from .api import explain_batch

    _enable_compilation_cache()
    try:
        lines = [ln.strip() for ln in texts.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        _fail(f"cannot read {texts}: {e}")
    sentences = [(i, ln) for i, ln in enumerate(lines) if ln]
    if not sentences:
        _fail(f"{texts} has no non-empty lines")
    done = _finished_indices(output)
    todo = [(i, ln) for i, ln in sentences if i not in done]
    start = time.perf_counter()

    def progress(msg: str) -> None:
        if not quiet:
            typer.echo(f"[{time.perf_counter() - start:6.1f}s] {msg}", err=True)

    progress(f"{len(done)} already in {output}, {len(todo)} to do")
    with output.open("a", encoding="utf-8") as fh:
        def write(k: int, result: dict) -> None:
            fh.write(json.dumps({"index": todo[k][0], "result": result}, ensure_ascii=False)
                     + "\n")
            fh.flush()
            os.fsync(fh.fileno())

        try:
            if todo:
                explain_batch([ln for _, ln in todo], model=model, num_steps=_steps(steps),
                              granularity=granularity, layers=_int_list("layers", layers),
                              rule=rule, progress=progress, on_result=write)
        except LIGError as e:
            _fail(str(e))
    progress(f"done: {len(sentences)} sentences in {output}")


def _finished_indices(path: Path) -> set[int]:
    """Indices already written to a JSON Lines output; a torn last line is cut off."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    keep = data[: data.rfind(b"\n") + 1]  # everything up to the last complete line
    if len(keep) != len(data):
        path.write_bytes(keep)
    done = set()
    for n, line in enumerate(keep.decode("utf-8").splitlines(), 1):
        try:
            done.add(int(json.loads(line)["index"]))
        except (ValueError, KeyError, TypeError):
            _fail(f"{path} line {n} is not a lig-jax batch record; use a new output file")
    return done


@app.command()
def describe(
    model: Annotated[str, typer.Argument(help="HF folder, hub id, config.json, or 'default'.")
                     ] = "default",
    load_weights: Annotated[bool, typer.Option(help="Also load and convert the weights.")
                            ] = False,
    output: Annotated[Path | None, typer.Option("-o", "--output")] = None,
) -> None:
    """Print a model's layout, LIG nodes, hook points and granularities (config only)."""
    from .boundaries import describe_boundaries

    try:
        _write_json(describe_boundaries(model, load_weights=load_weights), output)
    except LIGError as e:
        _fail(str(e))


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="First result JSON.")],
    b: Annotated[Path, typer.Argument(help="Second result JSON.")],
    tol: Annotated[float, typer.Option(help="Fail (exit 1) when a max relative difference "
                                       "exceeds this.")] = 1e-4,
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                   help="Also write the table as JSON.")] = None,
) -> None:
    """Compare two result files of this schema, per layer and quantity."""
    from .compare import compare_files, format_table

    try:
        rows = compare_files(a, b)
    except LIGError as e:
        _fail(str(e))
    typer.echo(format_table(rows))
    if output is not None:
        _write_json(rows, output)
    worst = max((r["max_rel"] for r in rows), default=0.0)
    if worst > tol:
        typer.echo(f"FAIL: max relative difference {worst:.3g} > tol {tol:g}", err=True)
        raise typer.Exit(1)
    typer.echo(f"OK: max relative difference {worst:.3g} <= tol {tol:g}", err=True)


def _load_view_source(source: Path, sentence: int | None, layer_baseline: str,
                      att_baseline: str, mlp_baseline: str) -> dict:
    """A result JSON, or one sentence of an experiment run folder."""
    from .view.records import record_result
    from .view.result import load_result

    if source.is_dir():
        if sentence is None:
            _fail(f"{source} is an experiment run folder: choose a sentence with --sentence N")
        return load_result(record_result(source, sentence, layer_baseline=layer_baseline,
                                         att_baseline=att_baseline, mlp_baseline=mlp_baseline))
    if sentence is not None:
        _fail("--sentence applies to an experiment run folder, not to a result file")
    return load_result(source)


SourceArg = Annotated[Path, typer.Argument(help="explain result JSON, or an experiment run "
                                           "folder (with --sentence).")]
SentenceOpt = Annotated[int | None, typer.Option(help="Sentence index of a run folder.")]


@app.command()
def view(
    source: SourceArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write.")],
    sentence: SentenceOpt = None,
    layer_baseline: Annotated[str, typer.Option(help="Run folders: z→z baseline (zero | itb "
                                                "| itb_zero_ratio).")] = "itb",
    att_baseline: Annotated[str, typer.Option(help="Run folders: z→u baseline (zero | itb | "
                                              "itb_map_ratio | itb_zero_ratio).")] = "itb",
    mlp_baseline: Annotated[str, typer.Option(help="Run folders: u→z baseline (zero | "
                                              "att_itb_a0).")] = "zero",
) -> None:
    """Write the interactive flow viewer: one self-contained HTML file (no network)."""
    from .view.page import write_page

    try:
        result = _load_view_source(source, sentence, layer_baseline, att_baseline,
                                   mlp_baseline)
        write_page(result, output)
    except LIGError as e:
        _fail(str(e))
    typer.echo(f"wrote {output}", err=True)


@app.command()
def plot(
    source: Annotated[Path, typer.Argument(help="explain result JSON, an experiment run folder "
                                           "(with --sentence), or a comparison CSV of "
                                           "`experiment compare`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Figure: .png, .pdf or .svg.")],
    layers: Annotated[str | None, typer.Option(help="Comma list of layers (default all).")
                      ] = None,
    route: Annotated[str, typer.Option(help="direct (z→z) | composed (z→u × u→z).")
                     ] = "direct",
    absolute: Annotated[bool, typer.Option(help="Plot |values|.")] = False,
    sentence: SentenceOpt = None,
) -> None:
    """Publication figures: per-layer heatmaps of a result, or the Experiment-A summary."""
    try:
        from .view.plot import plot_flow, plot_layers
    except ImportError as e:
        _fail(f"plot needs matplotlib ({e}); pip install matplotlib")
    try:
        if source.suffix.lower() == ".csv":
            from .experiment.flow import read_rows

            plot_flow(read_rows(source), output)
        else:
            result = _load_view_source(source, sentence, "itb", "itb", "zero")
            plot_layers(result, output, layers=_int_list("layers", layers), route=route,
                        absolute=absolute)
    except LIGError as e:
        _fail(str(e))
    typer.echo(f"wrote {output}", err=True)


@app.command(add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run scripts/bench.py (needs PyTorch and Captum); arguments pass through (--help)."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("captum") is None:
        _fail("bench needs PyTorch and Captum: pip install -e '.[test]'")
    script = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"
    if not script.is_file():
        _fail(f"bench needs a source checkout; {script} not found")
    raise typer.Exit(subprocess.call([sys.executable, str(script), *ctx.args]))


def _add_experiment() -> None:
    from .experiment.cli import app as experiment_app

    app.add_typer(experiment_app, name="experiment")


_add_experiment()


def main() -> None:
    # transformers announces on stderr that PyTorch is absent; lig-jax never needs it to run.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    app()


if __name__ == "__main__":
    main()
