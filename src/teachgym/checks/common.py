"""What every checker shares: :class:`CheckError`, the structural check the loop runs on each plugin, and
the row checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from teachgym.config import ConfigError
from teachgym.errors import TeachgymError
from teachgym.types import (
    EXAMPLE_COLUMNS,
)


class CheckError(TeachgymError, AssertionError):
    """A component does not behave as its protocol requires."""


#: What the loop calls on each kind of component; checked when the loop builds it, before round 0.
REQUIRED = {
    "policy": ("act(observation) -> Action", ["act"]),
    "student": ("train(dataset), generate(prompts), loss(prompts, completions), save(path)",
                ["train", "generate", "loss", "save"]),
    "env": ("eval_set(), pool(), generate(skill, n, level, seed), verify(prompt, output), name, skills",
            ["eval_set", "pool", "generate", "verify"]),
}


def check_plugin(kind: str, obj: Any, name: str) -> None:
    """The quick structural check the loop runs on every component it builds (before any training).

    Raises:
        ConfigError: A required method (or attribute) is missing; the message names it and the protocol.
    """
    signature, methods = REQUIRED[kind]
    missing = [m for m in methods if not callable(getattr(obj, m, None))]
    if kind == "env":
        missing += [a for a in ("name", "skills") if not hasattr(obj, a)]
    if kind == "policy" and callable(getattr(obj, "state_dict", None)) != callable(
        getattr(obj, "load_state_dict", None)
    ):
        missing.append("load_state_dict" if callable(getattr(obj, "state_dict", None)) else "state_dict")
        signature += "; state_dict() and load_state_dict(state) go together (both, or neither for a stateless policy)"
    if missing:
        raise ConfigError(
            f"{kind} {name!r} ({type(obj).__name__}) lacks {', '.join(missing)}; a {kind} needs {signature}"
        )


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckError(msg)


def _methods(obj: Any, names: Sequence[str], what: str) -> None:
    missing = [n for n in names if not callable(getattr(obj, n, None))]
    _require(not missing, f"{what} {type(obj).__name__} lacks the method(s) {missing}")


# -- env ----------------------------------------------------------------------------------------


def _check_rows(rows: Any, skills: set[str], what: str) -> None:
    cols = rows.column_names if hasattr(rows, "column_names") else list(rows[0]) if len(rows) else []
    missing = [c for c in EXAMPLE_COLUMNS if c not in cols]
    _require(not missing, f"{what} lacks the columns {missing}")
    for i, row in enumerate(rows):
        _require(isinstance(row["prompt"], str) and row["prompt"] != "", f"{what} row {i} has an empty prompt")
        _require(isinstance(row["completion"], str), f"{what} row {i}: completion is not a string")
        rs = row["skills"]
        _require(
            isinstance(rs, (list, tuple)) and len(rs) > 0 and set(rs) <= skills,
            f"{what} row {i} has skills {rs!r}; each row needs a non-empty list of known skills",
        )

