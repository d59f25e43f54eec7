"""The import graph of ``src/videorep`` follows the architecture, and has no cycle.

Data flows one way: data -> frozen encoder -> method -> trainer; evaluation consumes only
encoders and heads. Every ``import`` counts, function-local ones included (they are read from
the source with :mod:`ast`, not from ``sys.modules``).

Layers, bottom to top (a module may import its own layer or lower ones):

0. ``videorep`` (package root), ``videorep.errors``, ``videorep.utils``
1. ``videorep.data``, ``videorep.backbones``
2. ``videorep.train`` (the trainer and the ``Method`` contract)
3. ``videorep.methods``; ``videorep.eval`` (beside methods, never importing ``train``, and of
   ``methods`` only the projection heads)
4. the command line: ``videorep.cli``, ``videorep.demo``, ``videorep.experiments`` and every
   ``*.commands`` module; the Python API ``videorep.api`` (re-exported lazily by the root)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "videorep"

# what evaluation may take from the methods: the exported projection heads
EVAL_MAY_IMPORT_FROM_METHODS = ("videorep.methods.cosettle.heads",)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every ``videorep`` module ``path`` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from videorep.x import y`` may import the submodule ``videorep.x.y``
            found.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in found if m == "videorep" or m.startswith("videorep.")}


def all_modules() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    names = {module_name(p) for p in paths}
    graph = {}
    for p in paths:
        # keep only names that are modules of the package (drop imported functions/classes)
        graph[module_name(p)] = {m for m in imports_of(p) if m in names} - {module_name(p)}
    return graph


def layer(module: str) -> int:
    parts = module.split(".")
    if module in ("videorep.cli", "videorep.demo") or parts[-1].endswith("commands"):
        return 4
    if len(parts) == 1 or parts[1] in ("errors", "utils"):
        return 0
    top = parts[1]
    layers = {"data": 1, "backbones": 1, "train": 2, "methods": 3, "eval": 3, "experiments": 4}
    return (layers | {"api": 4})[top]


def test_every_module_has_a_layer() -> None:
    for module in all_modules():
        try:
            layer(module)
        except KeyError:
            pytest.fail(f"{module}: a new top-level subpackage needs a layer in this test")


def test_imports_point_down() -> None:
    wrong = []
    for module, deps in all_modules().items():
        for dep in deps:
            if dep == "videorep" and module.startswith("videorep."):
                continue  # the package root is imported for __version__ only
            if module == "videorep" and dep == "videorep.api":
                continue  # the root's lazy facade: TYPE_CHECKING names + PEP 562 __getattr__
            if layer(dep) > layer(module):
                wrong.append(f"{module} (layer {layer(module)}) imports {dep} ({layer(dep)})")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_train_knows_no_method() -> None:
    graph = all_modules()
    wrong = [
        f"{m} imports {d}"
        for m, deps in graph.items()
        if m.startswith("videorep.train")
        for d in deps
        if d.startswith(("videorep.methods", "videorep.eval"))
    ]
    assert not wrong, "\n".join(wrong)


def test_eval_consumes_only_encoders_and_heads() -> None:
    graph = all_modules()
    wrong = []
    for m, deps in graph.items():
        if not m.startswith("videorep.eval") or layer(m) == 4:  # commands: any
            continue
        for d in deps:
            if d.startswith("videorep.train"):
                wrong.append(f"{m} imports {d}")
            elif d.startswith("videorep.methods") and d not in EVAL_MAY_IMPORT_FROM_METHODS:
                if d != "videorep.methods" and not d.startswith(EVAL_MAY_IMPORT_FROM_METHODS):
                    wrong.append(f"{m} imports {d}")
    # and what eval may import from the methods must not pull the trainer in
    for allowed in EVAL_MAY_IMPORT_FROM_METHODS:
        for d in graph.get(allowed, ()):
            if layer(d) > 1 and d != allowed:
                wrong.append(f"{allowed} (imported by eval) imports {d}")
    assert not wrong, "\n".join(sorted(wrong))


def test_methods_do_not_import_eval() -> None:
    graph = all_modules()
    wrong = [
        f"{m} imports {d}"
        for m, deps in graph.items()
        if m.startswith("videorep.methods") and layer(m) < 4
        for d in deps
        if d.startswith("videorep.eval")
    ]
    assert not wrong, "\n".join(wrong)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in ``graph`` (as a list of modules, first == last), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            # a package importing its own submodules (``__init__`` re-exports) is no cycle
            # through the package: only edges between distinct modules count
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle() -> None:
    graph = all_modules()
    # importing ``videorep.x.y`` runs ``videorep.x`` first; that edge is Python's, not a cycle
    for m in graph:
        graph[m] = {d for d in graph[m] if not m.startswith(d + ".")}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_layering_catches_an_upward_import(tmp_path: Path) -> None:
    """The reader sees a function-local import (the kind that hid today's cycle)."""
    pkg = tmp_path / "videorep" / "data"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("def f():\n    from videorep.train.trainer import Trainer\n    return Trainer\n")
    global SRC
    old = SRC
    SRC = tmp_path
    try:
        assert "videorep.train.trainer" in imports_of(f)
        assert layer("videorep.train.trainer") > layer(module_name(f))
    finally:
        SRC = old
