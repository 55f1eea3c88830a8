"""What decides a benchmark's numbers besides its config: the code that computes them, the packages and the
hardware, and the commit a row was measured at. ``teachgym bench`` and the scripts in ``benchmarks/`` key their
cached rows with these, so a row is reused only where they match.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import platform
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from teachgym.registry import resolve

#: The repository (an editable install's checkout): the root the deciding sources are named from.
ROOT = Path(__file__).resolve().parents[2]

def _is_package(name: str) -> bool:
    origin = _origin(name)
    return origin is not None and origin.name == "__init__.py"


@functools.cache
def _origin(name: str) -> Path | None:
    """The source file of module ``name`` (its package's ``__init__`` for a package), without importing it; None for
    a module that is not there or has no Python source."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


@functools.cache
def _library_roots() -> tuple[str, ...]:
    return tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")} - {""})


def _installed(path: Path) -> bool:
    """Whether a file belongs to the interpreter or an installed package (not to teachgym or the user's code)."""
    return any(path.is_relative_to(r) for r in _library_roots())


def _stamp(path: Path) -> tuple[str, int, int]:
    """A file's identity for the caches below: an edited file (new mtime or size) is read again."""
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


def _own(top: str, cache: dict[str, bool]) -> bool:
    """Whether the top-level module ``top`` is teachgym or the user's own code: not the interpreter's, not an
    installed package's (decided on the top-level name, whose spec imports nothing; a submodule's would import
    its package)."""
    if top not in cache:
        origin = _origin(top)
        cache[top] = top == "teachgym" or (origin is not None and not _installed(origin))
    return cache[top]


def _imports(path: Path, name: str) -> frozenset[str]:
    return _parsed_imports(_stamp(path), name)


def _file_hash(path: Path) -> str:
    return _hashed(_stamp(path))


@functools.cache
def _hashed(stamp: tuple[str, int, int]) -> str:
    return hashlib.sha256(Path(stamp[0]).read_bytes()).hexdigest()[:16]


@functools.cache
def _parsed_imports(stamp: tuple[str, int, int], name: str) -> frozenset[str]:
    """Every module the file (module ``name``) may import: top-level, inside functions and under TYPE_CHECKING;
    ``from a import b`` counts ``a`` and, where it is a module, ``a.b``."""
    path = Path(stamp[0])
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in [*parts, node.module or ""] if p)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return frozenset(m for m in out if m)


def closure(roots: Iterable[str]) -> dict[str, Path]:
    """The modules ``roots`` import, directly or through each other, that are teachgym's or the user's own (not
    the interpreter's, not an installed package's): module name -> source file. Their sources decide a result."""
    found: dict[str, Path] = {}
    own: dict[str, bool] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        parent = name.rpartition(".")[0]
        if not _own(name.partition(".")[0], own) or (parent and not _is_package(parent)):
            continue  # not ours; or `from module import attribute`, not a submodule (its spec would import it)
        origin = _origin(name)
        if origin is None:
            continue
        found[name] = origin
        todo += [parent] if parent else []  # a package's __init__ runs first
        todo += sorted(_imports(origin, name))
    return found


def sources(roots: Iterable[str]) -> dict[str, str]:
    """``{module: sha256 of its source}`` over :func:`closure` of ``roots``."""
    return {m: _file_hash(p) for m, p in sorted(closure(roots).items())}


def sources_hash(found: dict[str, str]) -> str:
    """One hash over :func:`sources`' map (module names and their source hashes)."""
    return hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()[:16]


#: What runs a case whatever its components: the one case runner (and, through it, the loop and everything the
#: loop imports).
RUNNER = ("teachgym.runner",)


def component_module(kind: str, name: str) -> str:
    """The module that defines a component (a built-in, ``module:attr`` or an entry point), without running it."""
    from teachgym.registry import BUILTINS

    if ":" in name:
        return name.partition(":")[0]
    if name in BUILTINS.get(kind, {}):
        return BUILTINS[kind][name].target.partition(":")[0]
    return resolve(kind, name).__module__


def case_roots(config: Mapping[str, Any]) -> list[str]:
    """The modules a case's computation starts from: the runner and the modules of the config's env, student and
    policy (and the warm start's); :func:`closure` follows their imports."""
    roots = list(RUNNER)
    for kind, key in (("envs", "env"), ("students", "student"), ("policies", "policy")):
        if isinstance(config.get(key), Mapping) and config[key].get("name"):
            roots.append(component_module(kind, config[key]["name"]))
    warm = config.get("warm_start")
    if isinstance(warm, Mapping):
        roots += [component_module(k, warm[s]["name"]) for k, s in (("students", "student"), ("policies", "policy"))
                  if isinstance(warm.get(s), Mapping) and warm[s].get("name")]
    return roots


def changed_modules(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The modules whose source differs between two :func:`sources` maps (added and removed ones included)."""
    return sorted(m for m in set(old) | set(new) if old.get(m) != new.get(m))


def component_source(kind: str, name: str) -> str:
    """A hash of the source file of a registered component (``policies`` or ``envs``; a built-in or ``module:attr``)."""
    target = resolve(kind, name)
    try:
        text = inspect.getsource(sys.modules[target.__module__])
    except (OSError, TypeError, KeyError):
        text = repr(target)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def machine(gpu: bool = True) -> dict[str, Any]:
    """What decides floating-point results besides the code: packages, CPU, cores, GPU (read, not typed).

    ``gpu=False`` does not import torch to look (the simulated twins run numpy only): the GPU is then "-".
    """
    packages = {}
    for name in ("torch", "transformers", "trl", "datasets", "accelerate", "numpy"):
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = "-"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    name = "-"
    if gpu:
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"packages": packages, "cpu": cpu, "cores": os.cpu_count(), "gpu": name}


def git_commit(root: Path) -> str:
    """The short commit at ``root`` (``unknown`` outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def git_state(root: Path) -> tuple[str, bool]:
    """The short commit at ``root`` and whether tracked files differ from it (results files aside)."""
    commit = git_commit(root)
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)benchmarks/results"], cwd=root, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True
    return (commit, bool(dirty)) if commit != "unknown" else ("unknown", True)
