"""The simulated student's parameters as it reads them: a number or a per-skill mapping, skill names checked
against the env's, and each skill's prerequisite depth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class SimulatedOptions:
    """The ``simulated`` student's options (its config section, besides ``name``); checked when built."""

    skills: Sequence[str] | None = field(default=None, metadata=_help(
        "Skill names, when there is no env (only the fast ``practice``/``measure`` API then works)"))
    prerequisites: Mapping[str, Sequence[str]] | None = field(default=None, metadata=_help(
        "``{skill: [prerequisite, ...]}``, overriding the env's"))
    examples_to_learn: float = field(default=3000.0, metadata=_help(
        "Examples that close 63% of the gap for a skill with no prerequisites"))
    depth_scale: float = field(default=1.0, metadata=_help(
        "How much harder each level of prerequisite depth makes a skill"))
    difficulty: Mapping[str, float] | None = field(default=None, metadata=_help(
        "``{skill: examples}``, overriding the derived difficulty of those skills"))
    transfer: float | Mapping[str, Mapping[str, float]] = field(default=0.2, metadata=_help(
        "Share of an example that counts as practice for a directly related skill, or a full "
        "``{skill: {other: share}}`` matrix (missing entries 0, diagonal 1)"))
    half_life: float = field(default=60_000.0, metadata=_help(
        "Examples of other training that halve an unpractised skill's competence (0: no forgetting)"))
    onset: float = field(default=0.0, metadata=_help(
        "Examples of any skill that close 63% of the gap of a shared *format* competence, which gates every skill "
        "like a prerequisite (what a language model learns first: the answer format); it gives learning curves a "
        "slow start. 0: no such stage"))
    plateau: float | Mapping[str, float] = field(default=0.0, metadata=_help(
        "Examples of a skill's own practice that close 63% of that skill's private stage, which gates it the same "
        "way: a plateau, then a rise (a number for every skill, or ``{skill: examples}``; 0: none)"))
    gate: tuple[float, float] = field(default=(0.3, 0.7), metadata=_help(
        "Prerequisite competence at which a skill starts to be learnable, and at which fully"))
    ceiling: float = field(default=0.97, metadata=_help("Competence a skill saturates at"))
    initial: float | Mapping[str, float] = field(default=0.0, metadata=_help(
        "Starting competence, for every skill or ``{skill: value}``"))
    eval_per_skill: int = field(default=100, metadata=_help(
        "Eval items per skill when there is no env (with an env: the env's eval set)"))
    substeps: int = field(default=4, metadata=_help("Slices each round is trained in"))
    checkpoint: str | None = field(default=None, metadata=_help("A directory written by ``save`` to resume from"))

    def __post_init__(self) -> None:
        gate = self.gate
        if not 0 <= gate[0] < gate[1] <= 1:
            raise ValueError(f"gate must satisfy 0 <= low < high <= 1, got {gate}")
        if not 0 < self.ceiling <= 1:
            raise ValueError(f"ceiling must be in (0, 1], got {self.ceiling}")
        if self.examples_to_learn <= 0 or self.substeps < 1 or self.half_life < 0:
            raise ValueError("examples_to_learn must be > 0, substeps >= 1 and half_life >= 0")
        if self.onset < 0:
            raise ValueError(f"onset must be >= 0, got {self.onset}")
