"""Layers point one way (issue 18): cli → engine → data, models → store → io → errors; `plot`
reads artifacts through the store only; the import graph of the whole package has no cycle.

Every `import` of every hsicli module is read with `ast` (those inside functions too, where the
heavy imports live), so a new import against the direction fails here, in the fast tier.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hsicli

PACKAGE = Path(hsicli.__file__).parent

# Modules at the bottom that every layer may import: `hsicli.about` (the version) and
# `hsicli.metrics` (numpy math on arrays). Not the package root: its lazy re-export of the Python
# API reaches the engine.
SHARED = {"about", "metrics"}

# What each layer may import besides itself and SHARED.
ALLOWED = {
    "about": set(),
    "metrics": {"errors"},
    "errors": set(),
    "io": {"errors"},
    "store": {"io", "errors"},
    "models": {"store", "io", "errors"},
    "data": {"store", "io", "errors"},
    "engine": {"data", "models", "store", "io", "errors"},
    "plot": {"store", "io", "errors"},
}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports() -> dict[str, set[str]]:
    """Module → the hsicli modules it imports (`from package import module` names the module)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parents + ([base] if base else []))
                targets |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                            for alias in node.names}
        graph[name] = {t for t in targets if t in known and t != name}
    return graph


def layer(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_layer_imports_only_the_layers_below_it():
    wrong = [f"{source} imports {target}" for source, targets in imports().items()
             if layer(source) in ALLOWED for target in targets
             if layer(target) not in (ALLOWED[layer(source)] | {layer(source)} | SHARED)]
    assert not wrong, "\n".join(wrong)


def test_models_never_import_the_engine_and_info_reads_through_the_store():
    graph = imports()
    assert not [t for m, ts in graph.items() if layer(m) == "models" for t in ts if layer(t) == "engine"]
    assert {layer(t) for t in graph["hsicli.cli.info"]} <= {"cli", "store", "errors"}
    assert {layer(t) for t in graph["hsicli.store.inspect"]} <= {"store", "io", "errors"}


def test_the_import_graph_has_no_cycle():
    graph = imports()
    assert not _cycle(graph), f"import cycle: {' → '.join(_cycle(graph))}"


def test_the_version_is_a_leaf():
    assert imports()["hsicli.about"] == set()


def test_a_cycle_is_found():
    """The cycle finder itself, on a hand-made graph (the engine's circle before issue 18)."""
    circle = {"train": {"predict"}, "predict": {"segmentation"}, "segmentation": {"train"}, "cli": {"train"}}
    assert set(_cycle(circle)) == {"train", "predict", "segmentation"}
    assert _cycle({"cli": {"train"}, "train": {"data"}, "data": set()}) == []


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of `graph` (its modules in order), or [] when there is none."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):]
            if target not in state and (found := visit(target)):
                return found
        state[node] = "done"
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []
