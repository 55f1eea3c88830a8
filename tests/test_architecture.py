"""The house's rules, checked on the code itself: no import cycles, small modules and functions, a loop
that reads like its design, and an architecture page that names only modules that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "teachgym"
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_LOOP_LINES = 600, 100, 80


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the teachgym modules it imports, anywhere in the file (inside functions and
    ``if TYPE_CHECKING`` included). ``from teachgym.x import y`` points at ``teachgym.x.y`` when that is a
    module, else at ``teachgym.x``; importing a submodule is not counted as importing its package."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base
                                                                                                       else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "teachgym.synthesis" in graph["teachgym.loop"]  # imported inside assemble()
    assert "teachgym.tracking.writer" in graph["teachgym.loop"]  # inside _mlflow_tracker()


def test_no_import_cycles_among_teachgym_modules():
    assert cycles(import_graph()) == []


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_modules_and_functions_stay_small():
    big_modules = {name: n for name, path in _modules().items()
                   if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert big_modules == {}, f"modules over {MAX_MODULE_LINES} lines"
    long = {}
    for name, path in _modules().items():
        for fn in _functions(ast.parse(path.read_text())):
            if fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES:
                long[f"{name}.{fn.name}"] = fn.end_lineno - fn.lineno + 1
    assert long == {}, f"functions over {MAX_FUNCTION_LINES} lines"


def test_run_experiment_is_short_and_has_no_tracker_branches():
    source = (SRC / "loop.py").read_text()
    fn = next(f for f in _functions(ast.parse(source)) if f.name == "run_experiment")
    assert fn.end_lineno - fn.lineno + 1 <= MAX_LOOP_LINES
    body = "\n".join(source.splitlines()[fn.lineno - 1:fn.end_lineno])
    assert not re.search(r"\bif (not )?(exp\.)?tracker( is not None)?\s*(:|and\b|or\b)", body)


ARCHITECTURE = ROOT / "docs" / "architecture.md"


def test_architecture_page_names_only_modules_that_exist():
    text = ARCHITECTURE.read_text()
    named = set(re.findall(r"`(teachgym(?:\.[a-z_]+)+)`", text))
    assert len(named) >= 20, "the page should map the modules"
    modules = _modules()
    missing = sorted(m for m in named if m not in modules and m.rpartition(".")[0] not in modules)
    assert missing == []


def test_architecture_page_maps_every_module():
    text = ARCHITECTURE.read_text()
    unmapped = sorted(m for m in _modules() if m != "teachgym" and f"`{m}`" not in text)
    assert unmapped == [], "docs/architecture.md should say what each module owns"


@pytest.mark.parametrize("module", ["teachgym.tracking", "teachgym.protocols", "teachgym.rounds"])
def test_layer_modules_do_not_import_the_loop(module):
    graph = import_graph()
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += [n for n in graph[m]]
    assert "teachgym.loop" not in seen
