"""The package's imports point one way: no cycles, and no module imports from a higher layer.

Layers, low to high (a module belongs to the longest prefix listed; imports within one
layer are allowed, cycles are not):

    base        errors, version, files, memory, quadrature, mesh, platforms, baselines,
                words, measures.names
    models      models, converters, data, config, steps
    loading     loading, boundaries, lm_head
    attribution attribution, measures
    engine      engine, results, schema, compare, correlate, …
    api         api
    experiment  experiment, plan, e2e (input attributions of an output)
    view        view
    cli         cli, cli_common, experiment.cli
    face        lig_jax/__init__.py

Imports are read from the source (every `import`/`from … import`, also those inside
functions), not by importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lig_jax

ROOT = Path(lig_jax.__file__).resolve().parent
CONVERTERS = ROOT.parent / "converters"  # installs as lig_jax.converters (pyproject.toml)
LAYERS = (
    ("base", ("lig_jax.errors", "lig_jax.version", "lig_jax.files", "lig_jax.memory",
              "lig_jax.quadrature", "lig_jax.mesh", "lig_jax.platforms",
              "lig_jax.baselines", "lig_jax.words", "lig_jax.measures.names")),
    ("models", ("lig_jax.models", "lig_jax.converters", "lig_jax.data", "lig_jax.config",
                "lig_jax.steps")),
    ("loading", ("lig_jax.loading", "lig_jax.boundaries", "lig_jax.lm_head")),
    ("attribution", ("lig_jax.attribution", "lig_jax.measures")),
    ("engine", ("lig_jax.engine", "lig_jax.results", "lig_jax.schema",
                "lig_jax.batchfile", "lig_jax.validation", "lig_jax.wordlevel",
                "lig_jax.tidy",
                "lig_jax.compare", "lig_jax.correlate")),
    ("api", ("lig_jax.api",)),
    ("experiment", ("lig_jax.experiment", "lig_jax.plan", "lig_jax.e2e")),
    ("view", ("lig_jax.view",)),
    ("cli", ("lig_jax.cli", "lig_jax.cli_common", "lig_jax.experiment.cli")),
    ("face", ("lig_jax",)),
)


def modules() -> dict[str, Path]:
    """Module name → file, for lig_jax and the converters folder."""
    out = {}
    for base, prefix in ((ROOT, "lig_jax"), (CONVERTERS, "lig_jax.converters")):
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The lig_jax modules `name` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in known]
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(mod)
    return {m for m in found if m in known and m != name}


def layer_of(name: str) -> int:
    best, level = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > best:
                best, level = len(p), i
    assert level >= 0, f"{name} is in no layer of tests/test_layering.py"
    return level


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_every_module_has_a_layer_and_imports_only_downward() -> None:
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a, deps in graph().items() for b in sorted(deps)
              if layer_of(b) > layer_of(a)]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    g = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(g[m]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(path[path.index(d):] + [m, d]) if d in path
                              else f"{m} -> {d}")
            elif d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The reader resolves relative imports: a model importing the api is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from ..api import explain\nfrom . import common\n", encoding="utf-8")
    known = set(modules())
    deps = imports("lig_jax.models.bad", bad, known)
    assert deps == {"lig_jax.api", "lig_jax.models.common"}
    assert layer_of("lig_jax.api") > layer_of("lig_jax.models.bad")


def test_every_package_is_in_the_wheel() -> None:
    """pyproject.toml lists the packages by hand: a new one missing there would be absent
    from a non-editable install (tests and CI install editable and would not notice)."""
    import tomllib

    listed = set(tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]
                 ["setuptools"]["packages"])
    found = {".".join(("lig_jax", *p.parent.relative_to(ROOT).parts)).rstrip(".")
             for p in ROOT.rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)
