"""The package's layout keeps its promises: every method a package of its own on one road, and the road's modules
import one another without a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pivotune
from pivotune.methods import METHODS, PACKAGES

SRC = Path(pivotune.__file__).parent
#: the layers of the training road: config, data, models, objectives, the method packages and the trainer
ROAD = ("pivotune.config", "pivotune.settings", "pivotune.data", "pivotune.models", "pivotune.objectives",
        "pivotune.methods", "pivotune.train")


def _imports(path: Path, is_package: bool, module: str) -> set[str]:
    """Every module ``module`` imports, at the top or inside a function (type-checking imports aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
            found |= {base, *(f"{base}.{a.name}" for a in node.names)}
    return found


def _graph() -> dict[str, set[str]]:
    modules = {}
    for path in SRC.rglob("*.py"):
        parts = ["pivotune", *path.relative_to(SRC).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    road = {m for m in modules if m.startswith(ROAD)}
    # an import of a module's own ancestor package is no cycle: the package is imported before the module
    return {m: {i for i in _imports(*modules[m], m) if i in road and i != m and not m.startswith(i + ".")}
            for m in road}


def test_the_training_road_imports_without_a_cycle():
    """No module of the road reaches itself through imports, lazy ones included (run.py ↔ clo.py was one)."""
    graph = _graph()
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]))
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, cycles


def test_every_method_is_one_package_with_a_road():
    """Each registered method comes from a package under pivotune.methods and builds a road of its own."""
    from pivotune.config import load_config
    from pivotune.methods.base import Road

    packages = {p.__name__ for p in PACKAGES}
    for name, method in METHODS.items():
        assert method.road.__module__ in packages, name
        cfg = load_config(base={"model": "m", "method": name, "lingualift": {"encoder": "e"}})
        assert Road in type(method.road(cfg)).__mro__, name   # it takes the contract's defaults
