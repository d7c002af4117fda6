"""`lig-jax experiment run | compare | table | align` (Experiment A, docs/experiment-a.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..cli_common import (
    ctrl_c_between_records,
    destination,
    finish,
    interrupted,
    progress,
)
from ..config import DEFAULT_MODEL, help_of
from ..files import enable_compilation_cache, write_text
from ..measures.names import measure_list
from ..memory import parse_bytes
from .compute import Settings
from .store import Store

MEASURES_HELP = help_of("measures")

app = typer.Typer(no_args_is_help=True, help="Experiment A: flow consistency over a corpus.",
                  pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command()
def run(
    data: Annotated[str, typer.Option(help="Corpus file (PTB SD dev.txt, .conllu, CoNLL-X, or "
                                      "plain text), or 'demo' for the shipped demo corpus.")],
    out: Annotated[Path, typer.Option(help="Run folder (records + manifest).")],
    model: Annotated[str, typer.Option(help="HF folder, hub id, .gguf file, or 'default' "
                                       f"({DEFAULT_MODEL}, offline).")] = DEFAULT_MODEL,
    start: Annotated[int, typer.Option(help="First sentence index (0-based, in file order).")
                     ] = 0,
    end: Annotated[int | None, typer.Option(help="Last sentence index, inclusive (default: "
                                            "the last).")] = None,
    steps: Annotated[int, typer.Option(help="Integration steps (the reference's rule on "
                                       "each path).")] = Settings.steps,
    max_length: Annotated[int, typer.Option(help="Truncate sentences to this many tokens.")
                          ] = Settings.max_length,
    fmt: Annotated[str, typer.Option("--format", help="auto | ptb | conllu | conllx | text")
                   ] = "auto",
    skip_bad_lines: Annotated[bool, typer.Option("--skip-bad-lines", help="Leave out "
                                                 "sentences with malformed lines (counted) "
                                                 "instead of stopping.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue a run in an existing --out folder "
                                         "(skip finished sentences).")] = True,
    mesh: Annotated[str | None, typer.Option(help="DxM: a (data, model) mesh of the first "
                                             "D·M devices of all processes — sentences "
                                             "dealt over D rows, each block split over "
                                             "the M devices of a row, which must lie in "
                                             "one process (default: every device its own "
                                             "row).")] = None,
    memory_budget: Annotated[str, typer.Option(
        help="Memory one chunk of integration nodes may use, e.g. 256MB: fixed per run "
        "(not a share of the free memory, as in explain), so the sums are the same on "
        "every machine.")] = f"{Settings.chunk_mb}MB",
    multi_host: Annotated[bool, typer.Option("--multi-host", help="Start JAX's multi-process "
                                             "runtime first (jax.distributed; TPU pods, "
                                             "multi-node GPU): every host runs this same "
                                             "command.")] = False,
    coordinator: Annotated[str | None, typer.Option(help="With --multi-host where no cluster "
                                                    "is detected: process 0's HOST:PORT.")
                           ] = None,
    num_processes: Annotated[int | None, typer.Option(help="With --multi-host: processes.")
                             ] = None,
    process_id: Annotated[int | None, typer.Option(help="With --multi-host: this process.")
                          ] = None,
    measures: Annotated[str | None, typer.Option(help=MEASURES_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Compute every selected sentence's maps (all layers) into --out, one record each.

    Each record is on disk before the next sentence starts; rerunning the same command
    resumes (finished sentences are skipped)."""
    from .runner import run_experiment

    destination(out, folder=True)
    enable_compilation_cache()
    say, _ = progress(quiet)

    try:
        settings = Settings(steps=steps, max_length=max_length,
                            chunk_mb=parse_bytes(memory_budget) // 2**20,
                            measures=",".join(measure_list(measures)))
        with ctrl_c_between_records() as check:
            summary = run_experiment(
                data, model, out, start=start, end=end, fmt=fmt, skip_bad_lines=skip_bad_lines,
                settings=settings,
                resume=resume, multi_host=multi_host, coordinator=coordinator, mesh=mesh,
                num_processes=num_processes, process_id=process_id, progress=not quiet, say=say,
                after_record=check)
    except KeyboardInterrupt:
        interrupted(f"the finished records are in {out}; run the same command again to "
                    "resume")
    typer.echo(f"{summary.computed} sentences computed ({summary.already_done} already done, "
               f"{summary.selected} selected) in {summary.seconds:.1f} s: "
               f"{summary.sentences_per_s:.2f} sentences/s, "
               f"{summary.tokens / max(summary.seconds, 1e-9):.0f} tokens/s "
               f"(incl. compilation); records in {out}", err=True)


@app.command()
def compare(
    folder: Annotated[Path, typer.Argument(help="Run folder of `experiment run`.")],
    csv: Annotated[Path | None, typer.Option(help="Write the 24 rows here.")] = None,
    level: Annotated[str, typer.Option(help="subword (both routes on the same tokens) | "
                                       "word (both aggregated to words the same way)")
                     ] = "subword",
    split: Annotated[str | None, typer.Option(help="The CSV's split column (default: data "
                                              "file name).")] = None,
) -> None:
    """Layer-direct vs composed z→z: the 24 pairs of docs/spec.md §10 (L2, Pearson per column)."""
    from .flow import compare_store, rows_to_csv

    csv = destination(csv)
    rows = compare_store(folder, level, split)
    text = rows_to_csv(rows)
    if csv is not None:
        write_text(csv, text)
        typer.echo(f"wrote {csv} ({len(rows)} rows, level {level})", err=True)
    else:
        typer.echo(text, nl=False)


@app.command()
def table(
    source: Annotated[Path, typer.Argument(help="A comparison CSV, or a run folder.")],
    top: Annotated[int, typer.Option(help="Pairs kept per layer-direct baseline group.")] = 3,
    csv: Annotated[Path | None, typer.Option(help="Also write the table as CSV.")] = None,
) -> None:
    """Top pairs (smallest mean L2) per layer-direct baseline group; for a run folder
    with --measures, also the dependency alignment of LIG and each measure, maps × layers."""
    from .align import align_store, measure_table
    from .flow import TABLE_COLUMNS, compare_store, read_rows, rows_to_csv, top_table

    csv = destination(csv)
    rows = compare_store(source) if source.is_dir() else read_rows(source)
    best = top_table(rows, top)
    widths = [max(len(c), *(len(_cell(r[c])) for r in best)) for c in TABLE_COLUMNS]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(TABLE_COLUMNS, widths, strict=True)))
    for r in best:
        typer.echo("  ".join(_cell(r[c]).ljust(w)
                             for c, w in zip(TABLE_COLUMNS, widths, strict=True)))
    if csv is not None:
        write_text(csv, rows_to_csv(best, TABLE_COLUMNS))
        typer.echo(f"wrote {csv}", err=True)
    if source.is_dir() and Store(source).manifest()["settings"].get("measures"):
        aligned = align_store(source)
        for direction in ("dep2head", "head2dep"):
            typer.echo("\n" + measure_table(aligned, direction))


def _cell(v: object) -> str:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(v)
    return str(v) if float(f).is_integer() and "." not in str(v) else f"{f:.6g}"


@app.command()
def align(
    folder: Annotated[Path, typer.Argument(help="Run folder of `experiment run`.")],
    csv: Annotated[Path | None, typer.Option(help="Write every (map, layer, head, direction, "
                                             "relation) row here.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the rows as "
                                                "JSON.")] = None,
    relations: Annotated[int, typer.Option(help="Relations in the printed summary.")] = 8,
) -> None:
    """How often each map's top source word is the gold head (and the reverse)."""
    from .align import align_store, rows_to_csv, summary

    csv, output = destination(csv), destination(output)
    result = align_store(folder)
    typer.echo(summary(result, relations))
    if csv is not None:
        write_text(csv, rows_to_csv(result["rows"]))
        typer.echo(f"wrote {csv}", err=True)
    if output is not None:
        write_text(output, json.dumps(result, indent=1) + "\n")
        typer.echo(f"wrote {output}", err=True)


finish(app)
