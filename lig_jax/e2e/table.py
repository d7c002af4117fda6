"""An attribution as a plain-text table: one row per source token, one column per method
(for one target column), the target's value and IG's completeness underneath."""

from __future__ import annotations

from .attribute import Attribution


def format_table(att: Attribution, column: int = 0) -> str:
    """The table of target column `column`."""
    meta, methods = att.meta, att.methods
    col = meta["target"]["columns"][column]
    value = float(att.arrays["target/values"][column])
    head = (f"target {meta['target']['spec']} ({meta['target']['output']}) column "
            f"{column}: {col['label']!r} = {value:.6g}")
    width = max(8, *(len(m) for m in methods))
    lines = [head, f"{'#':>4}  {'token':<16}" + "".join(f"{m:>{width + 2}}" for m in methods)]
    for s, tok in enumerate(meta["tokens"]):
        row = "".join(f"{att.scores(m)[s, column]:>{width + 2}.4g}" for m in methods)
        lines.append(f"{s:>4}  {tok[:16]:<16}{row}")
    lines.append(f"{'':>4}  {'Σ':<16}" + "".join(
        f"{att.scores(m)[:, column].sum():>{width + 2}.4g}" for m in methods))
    ig = meta["methods"].get("ig", {}).get("completeness")
    if ig:
        lines.append(f"ig completeness: Σ = {ig['sum'][column]:.6g}, f(x) − f(x′) = "
                     f"{ig['change'][column]:.6g}, relative error "
                     f"{ig['relative_error'][column]:.3g} at {ig['steps'][column]} steps")
    lrp = meta["methods"].get("attnlrp", {}).get("conservation")
    if lrp:
        errs = [e[column] for e in lrp["relative_error"]]
        lines.append(f"attnlrp conservation: relevance of z^(0) … z^(L) sums to the value "
                     f"within a relative {min(errs):.3g} … {max(errs):.3g}")
    return "\n".join(lines)
