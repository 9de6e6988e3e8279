"""The import structure: the library (`varireal`) knows nothing of the pipeline (`varireal_pipeline`), and
no module reaches itself through its imports.

Read from the source with ast, every import statement counted, also those inside functions: an import
deferred to keep start-up fast is still a dependency, and a cycle through it is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGES = ("varireal", "varireal_pipeline")
# `python -m varireal <stage>` is the launcher contract (edit.launcher, train.launcher, dvc.lock's commands):
# the entry point hands the command line to the pipeline's CLI. It runs the program; nothing imports it.
ENTRY_POINTS = {"varireal.__main__"}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project's modules that module `name` imports (a `from package import submodule` names the
    submodule). Its own parent packages are left out: Python runs them first anyway, and naming them
    is no dependency of theirs on it."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(anchor[:len(anchor) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` where c is a function: a.b
                target = target.rpartition(".")[0]
            if target and not name.startswith(target + ".") and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_from_the_source():
    edges = graph()
    # Known edges, one of each kind: a top-level import, a function-level one, a `from package import module`.
    assert "varireal.params" in edges["varireal_pipeline.stages.fetch"]
    assert "varireal_pipeline.stages.fetch" in edges["varireal_pipeline.cli"]  # inside the fetch command
    assert "varireal.datasets.world" in edges["varireal.datasets.embedded"]


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_the_library_never_imports_the_pipeline():
    offending = {name: sorted(t for t in targets if t.split(".")[0] == "varireal_pipeline")
                 for name, targets in graph().items() if name.split(".")[0] == "varireal" and name not in ENTRY_POINTS}
    assert {name: targets for name, targets in offending.items() if targets} == {}
