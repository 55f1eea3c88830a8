"""The simulated student's parameters as it reads them: a number or a per-skill mapping, skill names checked
against the env's, and each skill's prerequisite depth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def per_skill(value: float | Mapping[str, float], names: Sequence[str], what: str) -> np.ndarray:
    """A value per skill (skill order) from one number for all, or ``{skill: value}`` (the rest 0)."""
    if not isinstance(value, Mapping):
        return np.full(len(names), float(value))
    known(value, names, what)
    out = np.zeros(len(names))
    for s, v in value.items():
        out[names.index(s)] = float(v)
    return out


def known(mapping: Mapping[str, Any], names: Sequence[str], what: str) -> None:
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise ValueError(f"{what}: unknown skill(s) {unknown}; the skills are {list(names)}")


def depths(prereq: Mapping[str, Sequence[str]], names: Sequence[str]) -> dict[str, int]:
    """Longest prerequisite chain below each skill (0 for a root); raises on a cycle."""
    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def visit(s: str) -> int:
        if s in depth:
            return depth[s]
        if s in visiting:
            raise ValueError(f"prerequisites form a cycle through {s!r}")
        visiting.add(s)
        depth[s] = max((visit(d) + 1 for d in prereq.get(s, ())), default=0)
        visiting.discard(s)
        return depth[s]

    for s in names:
        visit(s)
    return depth


def check_ranges(gate: Sequence[float], ceiling: float, examples_to_learn: float, substeps: int, half_life: float
                 ) -> None:
    """The numbers that must lie in a range.

    Raises:
        ValueError: The first one outside it, named.
    """
    if not 0 <= gate[0] < gate[1] <= 1:
        raise ValueError(f"gate must satisfy 0 <= low < high <= 1, got {gate}")
    if not 0 < ceiling <= 1:
        raise ValueError(f"ceiling must be in (0, 1], got {ceiling}")
    if examples_to_learn <= 0 or substeps < 1 or half_life < 0:
        raise ValueError("examples_to_learn must be > 0, substeps >= 1 and half_life >= 0")
