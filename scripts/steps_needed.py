"""How many integration steps each quadrature rule needs for 1 % completeness (MiniLM).

Runs `explain(num_steps="auto")` per rule on a few sentences and prints, per path and
baseline, the median and 90th-percentile steps used per column and the share of columns
that reached the tolerance within `--max-steps`. Prints a markdown table.

    python scripts/steps_needed.py [--max-steps 512] [--tol 0.01] [--layers 0,3,5]
"""

from __future__ import annotations

import argparse

import numpy as np

from lig_jax import explain

SENTENCES = [
    "The cat sat on the mat.",
    "Researchers measured how tokens influence each other inside one layer.",
    "She gave him the book that her sister had recommended last year.",
]
RULES = ("captum_trapezoid", "trapezoid", "gauss_legendre", "midpoint")
CASES = (  # (path, option, baseline)
    ("z2z", "baseline_layer", "zero"),
    ("z2z", "baseline_layer", "self_input_token"),
    ("z2u", "baseline_att", "zero"),
    ("z2u", "baseline_att", "self_input_token"),
    ("u2z", "baseline_mlp", "zero"),
    ("u2z", "baseline_mlp", "att_itb_a0"),
)


def columns(result: dict, path: str) -> tuple[list[int], list[bool]]:
    steps, ok = [], []
    for entry in result["layers"].values():
        if path == "z2z":
            c = entry["z2z"]["completeness"]
            steps += c["steps_used"]
            ok += c["converged"]
        for t in entry.get("targets", {}).values():
            if path == "z2u":
                for h in t["z2u"]["heads"].values():
                    steps.append(h["completeness"]["steps_used"])
                    ok.append(h["completeness"]["converged"])
            if path == "u2z":
                steps.append(t["u2z"]["completeness"]["steps_used"])
                ok.append(t["u2z"]["completeness"]["converged"])
    return steps, ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=512)
    ap.add_argument("--tol", type=float, default=0.01)
    ap.add_argument("--layers", default="0,3,5")
    args = ap.parse_args()
    layers = [int(x) for x in args.layers.split(",")]
    gran = {"z2z": "layer", "z2u": "att", "u2z": "mlp"}
    print(f"| path | baseline | {' | '.join(RULES)} |")
    print("|---|---|" + "---|" * len(RULES))
    for path, option, baseline in CASES:
        cells = []
        for rule in RULES:
            steps, ok = [], []
            for text in SENTENCES:
                r = explain(text, num_steps="auto", rule=rule, granularity=gran[path],
                            layers=layers, max_steps=args.max_steps, auto_tol=args.tol,
                            **{option: baseline})
                s, o = columns(r, path)
                steps += s
                ok += o
            steps_arr = np.array(steps)
            cells.append(f"{int(np.median(steps_arr))} / {int(np.percentile(steps_arr, 90))}"
                         f" ({100 * np.mean(ok):.0f}%)")
        print(f"| {path} | {baseline} | {' | '.join(cells)} |", flush=True)
    print(f"\ncells: median / 90th percentile steps per column, (share of columns within "
          f"{args.tol:.0%} by {args.max_steps} steps); layers {layers}, "
          f"{len(SENTENCES)} sentences, MiniLM")


if __name__ == "__main__":
    main()
