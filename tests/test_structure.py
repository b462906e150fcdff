"""The package's structure, read from its imports with ``ast``: no import circle anywhere in ``masf/``, and the
layer rules of the design (docs/implementation-notes.md, "The parts").

Every import counts, also one inside a function (a lazy import still ties two modules together).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "masf"
BASE = ("masf", "masf.errors", "masf.layout", "masf.resources", "masf.metrics", "masf.records", "masf.fingerprint",
        "masf.config")
PARTS = ("masf.config", "masf.data", "masf.method", "masf.trial", "masf.report", "masf.runner", "masf.cli")
# part -> the parts (and base modules) it must never import
FORBIDDEN = {
    "masf.method": ("masf.data", "masf.trial", "masf.report", "masf.runner", "masf.cli"),
    "masf.trial": ("masf.report", "masf.runner", "masf.cli"),
    "masf.data": ("masf.method", "masf.trial", "masf.report", "masf.runner", "masf.cli"),
    "masf.report": ("masf.trial", "masf.method", "masf.data", "masf.cli"),
    "masf.runner": ("masf.cli",),
}
EXTERNAL_HOMES = {"ray": "masf.runner", "mlflow": "masf.runner"}  # each external system behind one part


def _under(module: str, part: str) -> bool:
    return module == part or module.startswith(part + ".")


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    names = {}
    for f in package.rglob("*.py"):
        parts = f.relative_to(package.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """The masf modules and the top-level external packages that module ``name`` imports."""
    inner, outer = set(), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != "masf":
                outer.add(target.split(".")[0])
                continue
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]
            # a module inside a package imports that package's __init__ implicitly; such an edge is no tie
            if target in modules and target != name and not _under(name, target):
                inner.add(target)
    return inner, outer


def graph(package: Path = PACKAGE) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = module_names(package)
    edges, external = {}, {}
    for name, path in modules.items():
        edges[name], external[name] = imports_of(name, path, modules)
    return edges, external


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def rule_breaks(edges: dict[str, set[str]], external: dict[str, set[str]]) -> list[str]:
    broken = []
    for module, targets in sorted(edges.items()):
        part = next((p for p in PARTS if _under(module, p)), None)
        for target in sorted(targets):
            if part is None or part == "masf.config":  # the base imports only the base
                if not any(_under(target, b) if b != "masf" else target == b for b in BASE):
                    broken.append(f"{module} (base) imports {target}")
            for banned in FORBIDDEN.get(part, ()):
                if _under(target, banned):
                    broken.append(f"{module} ({part}) imports {target}")
            if part == "masf.report" and _under(target, "masf.runner") and (
                    module != "masf.report.store" or target != "masf.runner.tracking"):
                broken.append(f"{module} imports {target}: only masf.report.store reads MLflow, through masf.runner.tracking")
        for lib in sorted(external[module] & set(EXTERNAL_HOMES)):
            if not _under(module, EXTERNAL_HOMES[lib]):
                broken.append(f"{module} imports {lib} outside {EXTERNAL_HOMES[lib]}")
    return broken


def test_no_import_circle_in_masf():
    edges, _ = graph()
    assert len(edges) > 50  # the whole package was read
    assert circles(edges) == []


def test_layer_rules_hold():
    edges, external = graph()
    assert rule_breaks(edges, external) == []


def test_the_top_level_is_the_small_base():
    top = sorted(f"masf.{f.stem}" for f in PACKAGE.glob("*.py") if f.stem != "__init__")
    assert set(top) <= set(BASE), f"modules at masf/'s top that are not the base: {sorted(set(top) - set(BASE))}"
    subpackages = sorted(f"masf.{d.name}" for d in PACKAGE.iterdir() if (d / "__init__.py").is_file())
    assert subpackages == sorted(PARTS)
    for sub in subpackages:  # each part says what it owns and what it may import
        doc = ast.get_docstring(ast.parse((PACKAGE / sub.split(".")[1] / "__init__.py").read_text()))
        assert doc and "May import" in doc, f"{sub}/__init__.py needs a docstring saying what it owns and may import"


@pytest.mark.parametrize("case, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set(), "c": {"b"}}, []),
])
def test_the_circle_finder_finds_circles(case, expected):
    assert circles(case) == expected


def test_the_rules_catch_a_method_that_imports_the_runner(tmp_path):
    pkg = tmp_path / "masf"
    for folder in ("method", "runner", "report", "trial"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text('"""May import: nothing."""\n')
    (pkg / "__init__.py").write_text("")
    (pkg / "method" / "model.py").write_text("def f():\n    from masf.runner import sweep\n")
    (pkg / "runner" / "sweep.py").write_text("import ray\nfrom masf.method.model import f\n")
    (pkg / "report" / "board.py").write_text("from ..trial import run\nimport mlflow\n")
    (pkg / "trial" / "run.py").write_text("")
    edges, external = graph(pkg)
    assert circles(edges) == [["masf.method.model", "masf.runner.sweep"]]
    assert rule_breaks(edges, external) == [
        "masf.method.model (masf.method) imports masf.runner.sweep",
        "masf.report.board (masf.report) imports masf.trial.run",
        "masf.report.board imports mlflow outside masf.runner",
    ]
