"""The package's import graph, from the source with ``ast``: no module imports itself
back through others (at run time or for type checking), and only the converter imports
the converter."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

PACKAGE = "sensorium_zarr"
# pyproject's package-dir: the folder each part of the package lives in.
FOLDERS = {PACKAGE: REPO / "reader", f"{PACKAGE}.converter": REPO / "converter"}


def _modules() -> dict[str, Path]:
    modules = {}
    for prefix, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([prefix, *parts])] = path
    return modules


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports, anywhere in its source."""
    is_package = path.name == "__init__.py"
    base = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from package import submodule`` depends on the submodule; ``from module
            # import name`` on the module.
            targets = [
                f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module for alias in node.names
            ]
        for target in targets:
            # The module itself, or the nearest package of the package that holds it.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if state.get(other) == 1:
                return stack[stack.index(other):] + [other]
            if other not in state and (found := visit(other)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read_from_the_source():
    graph = _graph()
    assert f"{PACKAGE}._store" in graph[f"{PACKAGE}._mouse"]
    assert f"{PACKAGE}.format._names" in graph[f"{PACKAGE}.format._attrs"]
    assert f"{PACKAGE}._store" in graph[f"{PACKAGE}.converter._verify"]
    # A cycle is found when there is one.
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_only_the_converter_imports_the_converter():
    converter = f"{PACKAGE}.converter"
    offenders = {
        name: sorted(t for t in targets if t == converter or t.startswith(converter + "."))
        for name, targets in _graph().items()
        if not (name == converter or name.startswith(converter + "."))
    }
    assert not {k: v for k, v in offenders.items() if v}
