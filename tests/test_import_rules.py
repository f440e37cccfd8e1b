"""The package layout rules, checked on the source with ``ast`` (nothing is imported).

1. ``edge/`` (and the ``csrc/`` kernels) never import the workstation packages
   ``training`` or ``synth``, at module level or inside a function; the one way in is
   ``edge/_workstation.py``.
2. No import cycles among the modules of ``edge`` nor among those of ``training``.
   Imports inside functions count (a lazy import still ties the modules together);
   imports under ``if TYPE_CHECKING:`` do not (they never run). An import of an ancestor
   package (``from edge import __version__``) is not an edge: Python initializes a
   package before any of its submodules.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKSTATION = ("training", "synth")
GATEWAY = "edge/_workstation.py"


def module_name(path: Path) -> str:
    """``edge/bench/cli.py`` → ``edge.bench.cli``; ``edge/__init__.py`` → ``edge``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(package: str) -> dict[str, Path]:
    """Every module of ``package`` (its source files), by dotted name."""
    return {module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node under ``node``, skipping the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _nodes(other)
            continue
        yield child
        yield from _nodes(child)


def _base(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from … import`` names, relative levels resolved."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    is_package = (ROOT / Path(*parts) / "__init__.py").is_file()
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[:len(anchor) - node.level + 1]
    return ".".join(anchor + ([node.module] if node.module else []))


def imports(path: Path, known: set[str] = frozenset()) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in ``path`` that runs (not under TYPE_CHECKING).

    ``from pkg import name`` names ``pkg.name`` where that is a module in ``known``,
    else ``pkg``. ``importlib.import_module("x")`` with a literal counts as importing x.
    """
    module = module_name(path)
    found = []
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, node)
            found += [(node.lineno, f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
                      for a in node.names]
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ast.unparse(node.func) in ("importlib.import_module", "import_module",
                                             "__import__")):
            found.append((node.lineno, node.args[0].value))
    return found


def workstation_imports(paths: list[Path]) -> list[str]:
    """``file:line: imports X`` for each import of a workstation package in ``paths``."""
    return [f"{path.relative_to(ROOT)}:{line}: imports {name}"
            for path in paths for line, name in imports(path)
            if name.split(".")[0] in WORKSTATION]


CYTHON_IMPORT = re.compile(r"^\s*(?:from\s+(\w+)[\w.]*\s+c?import|c?import\s+(\w+))", re.M)


def cython_workstation_imports(paths: list[Path]) -> list[str]:
    """The same rule for Cython sources, which ``ast`` cannot parse (a line scan)."""
    bad = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        for match in CYTHON_IMPORT.finditer(text):
            if (match.group(1) or match.group(2)) in WORKSTATION:
                line = text.count("\n", 0, match.start()) + 1
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports "
                           f"{match.group(1) or match.group(2)}")
    return bad


def import_graph(package: str) -> dict[str, dict[str, str]]:
    """``{module: {imported module: "file:line"}}`` among the modules of ``package``."""
    modules = package_modules(package)
    known = set(modules)
    graph: dict[str, dict[str, str]] = {name: {} for name in modules}
    for name, path in modules.items():
        for line, target in imports(path, known):
            if target in known and target != name and not name.startswith(target + "."):
                graph[name].setdefault(target, f"{path.relative_to(ROOT)}:{line}")
    return graph


def find_cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """One cycle (``[a, b, …, a]``) through each strongly connected group of modules."""
    cycles, done = [], set()
    for start in sorted(graph):
        if start in done:
            continue
        cycle = _cycle_from(start, graph)
        if cycle:
            cycles.append(cycle)
            done.update(cycle)
    return cycles


def _cycle_from(start: str, graph: dict[str, dict[str, str]]) -> list[str] | None:
    """The shortest path ``start → … → start`` (breadth first), or None."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if nxt not in parent:
                    parent[nxt] = node
                    following.append(nxt)
        frontier = following
    return None


def describe(cycle: list[str], graph: dict[str, dict[str, str]]) -> str:
    """``a → b (a.py:3) → a (b.py:9)``."""
    steps = [cycle[0]] + [f"{b} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return " → ".join(steps)


def test_edge_never_imports_training_or_synth_outside_the_gateway() -> None:
    paths = [p for p in package_modules("edge").values()
             if p.relative_to(ROOT).as_posix() != GATEWAY]
    bad = workstation_imports(paths) + cython_workstation_imports(
        sorted((ROOT / "csrc").glob("*.p*")))
    assert not bad, ("edge/ reaches a workstation package outside edge/_workstation.py:\n"
                     + "\n".join(bad))


@pytest.mark.parametrize("package", ["edge", "training"])
def test_no_import_cycles(package: str) -> None:
    graph = import_graph(package)
    cycles = find_cycles(graph)
    assert not cycles, f"import cycles in {package}/:\n" + "\n".join(
        describe(c, graph) for c in cycles)


# The checker itself, on small made-up modules.

def test_checker_sees_lazy_imports_and_skips_type_checking(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "edge"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    import synth\n    from edge import b\n"
                              "def f():\n    from training import cli\n")
    (pkg / "b.py").write_text("from edge import a\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert workstation_imports([pkg / "a.py"]) == ["edge/a.py:6: imports training"]
    assert find_cycles(import_graph("edge")) == []
    (pkg / "a.py").write_text("def f():\n    from . import b\n")
    graph = import_graph("edge")
    assert [describe(c, graph) for c in find_cycles(graph)] == [
        "edge.a → edge.b (edge/a.py:2) → edge.a (edge/b.py:1)"]
