"""The package's shape, read from its source: which folder imports which (CONTRIBUTING's picture), nothing outside
``benchmarks/`` branching on a benchmark's name, and the size limits of modules and functions."""

from __future__ import annotations

import ast
from pathlib import Path

from r1_aqa.benchmarks import NAMES

SRC = Path(__file__).resolve().parents[1] / "src" / "r1_aqa"
LEAVES = {"audio", "files", "formatting", "prompts", "items", "checks"}
# Which part (a folder of r1_aqa, or a top-level module) may import which, as CONTRIBUTING's picture draws it; the
# leaves import no other part. Imports inside functions count.
ALLOWED = {
    "demo": {"cli", "training", "evaluate", "families", "plot", "files"},
    "training": {"families", "judge", "plot"} | LEAVES,
    "evaluate": {"benchmarks", "families", "judge"} | LEAVES,
    "data": {"benchmarks"} | LEAVES,
    "benchmarks": {"judge"} | LEAVES,
    "judge": {"families"} | LEAVES,
    "families": LEAVES,
    "plot": LEAVES,
    "cli": set(),  # the commands are imported by name (``COMMANDS``)
    **{leaf: set() for leaf in LEAVES},
}
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_PARAMETERS = 600, 60, 8


def _part(module: str) -> str:
    """The part of the package a dotted module name belongs to: ``r1_aqa.evaluate.eval`` -> ``evaluate``."""
    return module.split(".")[1]


def _modules() -> list[tuple[str, Path, ast.Module]]:
    """Every module of the package but its top ``__init__`` (the version string)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "__init__.py":
            continue
        parts = ("r1_aqa",) + path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name, path, ast.parse(path.read_text(encoding="utf-8"))))
    return found


def _imports(name: str, path: Path, tree: ast.Module) -> set[str]:
    """The ``r1_aqa`` modules (or names in them) that a module imports anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found |= {f"{target}.{a.name}" for a in node.names} if not node.module else {target}
    return {t for t in found if t.startswith("r1_aqa.")}


def import_edges() -> dict[tuple[str, str], str]:
    """``{(part, imported part): the first module that imports across}`` over the whole package."""
    edges = {}
    for name, path, tree in _modules():
        for target in _imports(name, path, tree):
            if _part(target) != _part(name):
                edges.setdefault((_part(name), _part(target)), name)
    return edges


def test_every_part_imports_only_what_the_picture_allows():
    parts = {_part(name) for name, _, _ in _modules()}
    assert parts == set(ALLOWED), f"parts not in the picture (or gone from it): {parts ^ set(ALLOWED)}"
    wrong = [f"{module} imports {target}/" for (part, target), module in sorted(import_edges().items())
             if target not in ALLOWED[part]]
    assert not wrong, "imports the picture does not allow:\n" + "\n".join(wrong)


def test_training_and_evaluation_never_reach_each_other():
    """Not even through another part (``training/`` -> ``plot`` -> ``evaluate/`` once did)."""
    edges = import_edges()

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            part = todo.pop()
            for a, b in edges:
                if a == part and b not in seen:
                    seen.add(b)
                    todo.append(b)
        return seen

    assert "evaluate" not in reach("training")
    assert "training" not in reach("evaluate")


def test_nothing_outside_benchmarks_branches_on_a_benchmark_name():
    """A comparison with a benchmark's name outside ``benchmarks/`` is a branch that belongs in its module. ``synth``'s
    tasks share the word "open" with the open-ended benchmark; a comparison with a task is not about a benchmark."""
    branches = []
    for name, path, tree in _modules():
        if _part(name) == "benchmarks":
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Compare, ast.Match)):
                continue
            names = [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and n.value in NAMES]
            if names and not (isinstance(node, ast.Compare) and ast.unparse(node.left).endswith("task")):
                branches.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
    assert not branches, "\n".join(branches)


def test_modules_and_functions_stay_small():
    too_big = []
    for name, path, tree in _modules():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            too_big.append(f"{name}: {lines} lines")
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = node.args
            params = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            params = [p for p in params if p is not None and p.arg not in ("self", "cls")]
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES or len(params) > MAX_PARAMETERS:
                too_big.append(f"{name}.{node.name}: {length} lines, {len(params)} parameters")
    assert not too_big, "\n".join(too_big)
