"""The package's shape (issues 14, 28): no import cycles, modules readable in one sitting, functions on a
screen, a training wing that nothing but the CLI reaches, and an import graph that does not grow.

The graph's size is counted by `python -m tests.test_architecture` (levels: the longest chain of
imports plus one; arrows: module -> module imports, lazy ones included)."""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rag"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60
# Issue 28, measured at its start (commit 2c91034): 15 levels, 234 arrows among rag's modules. Lower these as the graph shrinks; never raise them.
MAX_LEVELS, MAX_ARROWS = 11, 229


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def imports(tree: ast.Module) -> set[str]:
    """Every rag module imported anywhere in the file, lazy (in-function) imports included."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rag."):
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rag"):
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("rag.")}
    return found


@cache
def graph() -> dict[str, frozenset[str]]:
    trees = modules()
    return {name: frozenset((imports(tree) & set(trees)) - {name}) for name, tree in trees.items()}


def levels_and_arrows() -> tuple[int, int]:
    """(levels, arrows): a module's level is one above the highest it imports (importing none: level 1)."""
    deps, level = graph(), {}

    def of(name: str) -> int:
        if name not in level:
            level[name] = 1 + max((of(d) for d in deps[name]), default=0)
        return level[name]

    return max(of(name) for name in deps), sum(len(d) for d in deps.values())


def test_no_import_cycles_even_through_lazy_imports():
    deps = graph()
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for dep in sorted(deps.get(name, ())):
            assert state.get(dep) != "open", f"import cycle: {' -> '.join(path + [dep])}"
            if dep in deps and dep not in state:
                visit(dep, path + [dep])
        state[name] = "done"

    for name in deps:
        if name not in state:
            visit(name, [name])


def test_the_import_graph_does_not_grow():
    levels, arrows = levels_and_arrows()
    assert levels <= MAX_LEVELS and arrows <= MAX_ARROWS, f"{levels} levels (at most {MAX_LEVELS}), {arrows} arrows (at most {MAX_ARROWS})"


def test_modules_and_functions_fit_in_one_sitting():
    too_long = []
    for name, tree in modules().items():
        path = PACKAGE.parent.joinpath(*name.split("."))
        lines = (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text().count("\n")
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


def test_the_training_wing_is_reached_from_the_cli_alone_and_trainers_never_import_each_other():
    trainers = {name for name in graph() if name.startswith("rag.train.") and name != "rag.train.loop"}
    for name, deps in graph().items():
        wing = {d for d in deps if d == "rag.train" or d.startswith("rag.train.")}
        if name in trainers:
            assert wing <= {"rag.train.loop"}, f"{name} imports {sorted(wing - {'rag.train.loop'})}"
        elif not name.startswith("rag.train"):
            assert not wing or name in {"rag.cli", "rag.commands"}, f"{name} imports the training wing: {sorted(wing)}"


if __name__ == "__main__":
    print("levels %d, arrows %d" % levels_and_arrows())


def test_commands_demo_and_eval_build_pipelines_only_through_load_pipeline():
    """Issue 28, item 4: one assembly. No `Pipeline(` constructed by hand outside rag/pipeline.py."""
    root = PACKAGE.parent
    files = [PACKAGE / "commands.py", PACKAGE / "app.py", *sorted((root / "eval").glob("*.py"))]
    by_hand = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Pipeline":
                by_hand.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not by_hand, by_hand
    assert "load_pipeline" in (PACKAGE / "commands.py").read_text() and "load_pipeline" in (PACKAGE / "app.py").read_text()
