"""The house rules that hold the code base together: imports go one way (no module of `memsoak/`
or `analysis/` reaches, through any chain of imports, back to itself) and no product module is
over 450 lines. Imports are read with `ast`, all of them: at module level, inside functions
(deferred imports still tie the modules together) and under `TYPE_CHECKING`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("memsoak", "analysis")
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(tree: ast.AST, name: str, is_package: bool) -> Iterator[str]:
    """Every module name `tree` (module `name`) imports, absolute, before resolving to a module."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports. `from a import b` counts as importing `a.b`
    when that is a module, else `a`."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        targets = set()
        for imported in _imported(tree, name, path.name == "__init__.py"):
            if imported in modules:
                targets.add(imported)
        # `from a import b` yields both `a` and `a.b`: when `a.b` is a module, `a` is not imported
        # for its own sake (only as the package on the way), so it is no edge.
        targets -= {t.rpartition(".")[0] for t in targets if t.rpartition(".")[0] in targets}
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_circle_and_follows_from_imports() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("from . import x\nfrom .y import z\nimport p.q\nif T:\n    from r import s\n")
    assert set(_imported(tree, "pkg.mod", False)) == {"pkg", "pkg.x", "pkg.y", "pkg.y.z", "p.q", "r", "r.s"}


def test_no_import_circle() -> None:
    graph = import_graph(_modules())
    assert graph["analysis.report"] >= {"analysis.model", "analysis.verdict"}  # the graph is read
    assert cycles(graph) == []


def test_analysis_imports_only_downward() -> None:
    """model -> suspects/trend/driven -> verdict -> report -> writers: a lower layer never
    imports a higher one."""
    graph = import_graph(_modules())
    layers = [
        {"analysis.model"},
        {"analysis.suspects", "analysis.trend", "analysis.driven", "analysis.call_paths"},
        {"analysis.verdict"},
        {"analysis.report"},
        {name for name in graph if name.startswith("analysis.writers")},
    ]
    for level, layer in enumerate(layers):
        higher = set().union(*layers[level + 1 :])
        for module in layer:
            assert not graph[module] & higher, f"{module} imports {sorted(graph[module] & higher)}"
    assert not {m for m in graph["analysis.model"] if m.startswith("analysis.")}


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_product_module_over_the_limit(name: str) -> None:
    path = _modules()[name]
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES})"
