"""The package's shape (issue 14): no import cycles, modules readable in one sitting, functions on a screen."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rag"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 420, 65


def modules() -> dict[str, ast.Module]:
    return {f"rag.{p.stem}": ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.glob("*.py"))}


def imports(tree: ast.Module) -> set[str]:
    """Every rag module imported anywhere in the file, lazy (in-function) imports included."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rag."):
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module == "rag":
            found |= {f"rag.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("rag.")}
    return found


def test_no_import_cycles_even_through_lazy_imports():
    graph = {name: imports(tree) - {name} for name, tree in modules().items()}
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for dep in sorted(graph.get(name, ())):
            assert state.get(dep) != "open", f"import cycle: {' -> '.join(path + [dep])}"
            if dep in graph and dep not in state:
                visit(dep, path + [dep])
        state[name] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_modules_and_functions_fit_in_one_sitting():
    too_long = []
    for name, tree in modules().items():
        lines = (PACKAGE / f"{name.removeprefix('rag.')}.py").read_text().count("\n")
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                too_long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long


FRONT_ENDS = {"rag.cli", "rag.commands", "rag.app"}  # they choose a backend for the user


def test_the_core_does_not_know_the_ray_backend():
    for name, tree in modules().items():
        if name not in FRONT_ENDS | {"rag.distributed"}:
            assert "rag.distributed" not in imports(tree), name
