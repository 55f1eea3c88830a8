"""The house's rules, checked on the code itself: the layer map of ``docs/architecture.md`` (no module imports
from a higher layer, imports inside functions included), no import cycles, small modules and functions over the
whole project, MLflow only in ``teachgym.tracking``, TRL's internals only in their fenced module, one error base
class, benchmark scripts that import the library and not each other, and a loop that reads like its design."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "teachgym"
#: The catalogue's folders, installed as ``teachgym.<folder>`` (pyproject's package-dir).
CATALOGUE = ("policies", "students", "envs")
#: Every folder of the project's code the size rules cover (tests aside).
CODE = (SRC, *(ROOT / c for c in CATALOGUE), ROOT / "benchmarks", ROOT / "examples")
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_LOOP_LINES = 450, 80, 80


def _modules() -> dict[str, Path]:
    """Every module of the installed package ``teachgym`` (the catalogue under its installed name)."""
    out = {}
    for base, prefix in [(SRC, "teachgym"), *((ROOT / c, f"teachgym.{c}") for c in CATALOGUE)]:
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = path
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
    assert "teachgym.students.simulated" in graph["teachgym.calibrate"]  # the catalogue is in the graph


def test_no_import_cycles_among_teachgym_modules():
    assert cycles(import_graph()) == []


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _code_files() -> list[Path]:
    return sorted(path for folder in CODE for path in folder.rglob("*.py"))


def test_modules_and_functions_stay_small_over_the_whole_project():
    big_modules = {str(path.relative_to(ROOT)): n for path in _code_files()
                   if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert big_modules == {}, f"modules over {MAX_MODULE_LINES} lines"
    long = {}
    for path in _code_files():
        for fn in _functions(ast.parse(path.read_text())):
            if fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES:
                long[f"{path.relative_to(ROOT)}:{fn.name}"] = fn.end_lineno - fn.lineno + 1
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
    # A catalogue's plugin is named by its layer's pattern (and its own docs page); its shared helpers by name.
    plugins = tuple(f"teachgym.{c}." for c in CATALOGUE)
    unmapped = sorted(m for m in _modules() if m != "teachgym" and f"`{m}`" not in text
                      and not (m.startswith(plugins) and not m.rpartition(".")[2].startswith("_")))
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


# -- the layer map ----------------------------------------------------------------------------------


def layer_map() -> list[tuple[int, str, list[str]]]:
    """The table under ``## Layers`` in the architecture page: (number, name, module patterns), lowest first.

    A pattern is a module name, or ``teachgym.x.*`` for every module under ``teachgym.x``."""
    text = ARCHITECTURE.read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = re.match(r"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|(.+)\|\s*$", line)
        if m:
            rows.append((int(m.group(1)), m.group(2), re.findall(r"`(teachgym[a-z_.*]*)`", m.group(3))))
    return sorted(rows)


def layer_of(module: str, layers: list[tuple[int, str, list[str]]]) -> list[int]:
    out = []
    for number, _, patterns in layers:
        for pattern in patterns:
            if module == pattern or (pattern.endswith(".*") and module.startswith(pattern[:-1])):
                out.append(number)
    return out


def test_every_module_is_in_exactly_one_layer():
    layers = layer_map()
    assert [n for n, _, _ in layers] == list(range(1, len(layers) + 1)) and len(layers) >= 8
    placed = {m: layer_of(m, layers) for m in _modules()}
    assert {m: n for m, n in placed.items() if len(n) != 1} == {}, "each module needs one row of the layer map"


def test_no_module_imports_from_a_higher_layer():
    layers = layer_map()
    graph = import_graph()
    level = {m: layer_of(m, layers)[0] for m in graph}
    upward = sorted(f"{a} (layer {level[a]}) -> {b} (layer {level[b]})"
                    for a, targets in graph.items() for b in targets if level[b] > level[a])
    assert upward == []


def test_the_layer_rule_sees_an_upward_import():
    layers = [(1, "low", ["teachgym.a"]), (2, "high", ["teachgym.b.*"])]
    assert layer_of("teachgym.b.c", layers) == [2] and layer_of("teachgym.a", layers) == [1]
    assert layer_of("teachgym.ab", layers) == []


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_only_tracking_talks_to_mlflow():
    """``teachgym.tracking`` (and ``teachgym.mlflow_model``, the pyfunc class MLflow loads by that name) alone
    import MLflow; everything else goes through it."""
    talking = sorted(m for m, path in _modules().items()
                     if any(n == "mlflow" or n.startswith("mlflow.") for n in _imports(path))
                     and not (m.startswith("teachgym.tracking.") or m == "teachgym.mlflow_model"))
    assert talking == []


#: TRL's (and transformers') private names; only the fences (:data:`TRL_FENCES`) may use them.
TRL_PRIVATE = re.compile(r"_generate_and_score_completions|\._tokenizer\b|vllm_generation|add_fused_lm_head|"
                         r"__dict__\.pop\(\s*[\"']forward|_get_train_sampler")
TRL_FENCES = {"teachgym.students._trl_private", "teachgym.integrations._trl_private"}


def test_trl_internals_stay_in_their_fence():
    outside = sorted(m for m, path in _modules().items()
                     if m not in TRL_FENCES and TRL_PRIVATE.search(path.read_text()))
    assert outside == []


def test_every_teachgym_error_derives_from_the_base():
    from teachgym.errors import TeachgymError
    from teachgym.interrupts import Interrupted

    loose = []
    for name in _modules():
        try:
            module = importlib.import_module(name)
        except ImportError:  # an optional dependency this environment lacks
            continue
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == name
                    and obj is not Interrupted and not issubclass(obj, (TeachgymError, Warning))):
                loose.append(f"{name}.{obj.__name__}")
    assert loose == [], "teachgym's errors derive from teachgym.errors.TeachgymError"


def test_benchmark_scripts_import_the_library_not_each_other():
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    crossing = {}
    for path in (ROOT / "benchmarks").glob("*.py"):
        text = path.read_text()
        names = {n.split(".")[0] for n in _imports(path)} & scripts
        if names or re.search(r"sys\.path\.insert\([^)]*benchmarks", text):
            crossing[path.name] = sorted(names) or ["sys.path"]
    assert crossing == {}


def test_every_package_is_installed():
    """``pyproject.toml`` lists the packages setuptools installs: a package missing there works in an editable
    checkout and is absent after ``pip install teachgym``."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {m for m, path in _modules().items() if path.name == "__init__.py"}
    assert packages == listed
