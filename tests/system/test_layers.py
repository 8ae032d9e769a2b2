"""The house's floors: imports go one way. A new upward import or circle fails here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "retrieval", "db", "indexer")


def _floor(module: str) -> int:
    """models 0 · retrieval 1 · db 2 · indexer, training, web 3 · cli 4."""
    if module.startswith(("training", "web", "indexer")):
        return 3
    return {"models": 0, "retrieval": 1, "db": 2, "cli": 4}[module.split(".")[0]]


def _modules() -> dict[str, Path]:
    found = {"cli": ROOT / "cli.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports (anywhere in the file: deferred imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name in modules}


def test_no_module_imports_from_a_higher_floor():
    modules = _modules()
    upward = [(m, i) for m, p in modules.items() for i in _imports(p, modules) if _floor(i) > _floor(m)]
    assert not upward, upward


def test_no_import_circles():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    graph = {m: {i for i in targets if not m.startswith(i + ".")} for m, targets in graph.items()}  # own package
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            assert state.get(target) != 1, " → ".join(path + [target])
            if target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
