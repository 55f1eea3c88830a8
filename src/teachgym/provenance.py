"""What decides a benchmark's numbers besides its config: the code that computes them, the packages and the
hardware, and the commit a row was measured at. ``teachgym bench`` and the scripts in ``benchmarks/`` key their
cached rows with these, so a row is reused only where they match.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from teachgym.registry import resolve

#: The repository (an editable install's checkout): the root the deciding sources are named from.
ROOT = Path(__file__).resolve().parents[2]

#: The sources whose code decides a case's numbers (not the CLI, the docs or the report): in every key.
DECIDING = ("envs/bench.py", "envs/_generated.py", "students/hf.py", "students/grpo.py", "students/simulated.py",
            "src/teachgym/loop.py", "src/teachgym/engine.py", "src/teachgym/rows.py", "src/teachgym/evaluation.py",
            "src/teachgym/state.py", "src/teachgym/types.py", "src/teachgym/config.py", "src/teachgym/runner.py",
            "src/teachgym/steps.py", "src/teachgym/seeds.py",
            "src/teachgym/probing.py", "students/_rollouts.py", "students/_trl_private.py")

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


def code_hash(root: Path, sources: Sequence[str] = DECIDING) -> str:
    """sha256 over ``sources`` (default :data:`DECIDING`): their paths relative to ``root`` and their bytes."""
    digest = hashlib.sha256()
    for rel in sources:
        path = root / rel
        digest.update(rel.encode() + b"\0" + (path.read_bytes() if path.exists() else b"-"))
    return digest.hexdigest()[:16]


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
