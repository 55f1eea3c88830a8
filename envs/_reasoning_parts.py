"""reasoning-gym's datasets at one curriculum level, and what a level sets (for :mod:`teachgym.envs.reasoning`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from teachgym.errors import TeachgymError


class ReasoningGymError(TeachgymError, ValueError):
    """The env's options name something reasoning-gym does not have (the message says what is valid)."""


@dataclasses.dataclass(frozen=True)
class _Source:
    """One task at one level: the package's dataset object, which makes items and scores answers."""

    task: str
    level: int
    eval: Any  # the package's dataset of eval items
    train: Any  # ... and of training items, from the seeds after the eval ones
    summary: str  # the attribute values at this level, for skill descriptions

    def item(self, split: str, index: int) -> dict[str, Any]:
        try:
            return (self.eval if split == "eval" else self.train)[index]
        except Exception as e:  # noqa: BLE001 - the package's error, named with the task and level
            raise ReasoningGymError(
                f"reasoning-gym task {self.task!r} level {self.level} could not make item {index}: "
                f"{type(e).__name__}: {e}"
            ) from e


def _level_count(factory: Any, task: str) -> int:
    """How many curriculum levels a task has (the longest attribute's); 1 without a curriculum."""
    if task not in factory.CURRICULA:
        return 1
    attrs = factory.create_curriculum(task).attributes.values()
    return max((len(a.levels) for a in attrs), default=1)


def _curriculum_fields(curriculum: Any) -> set[str]:
    """The config fields a curriculum level sets."""
    from reasoning_gym.coaching.attributes import RangeAttributeDefinition

    out: set[str] = set()
    for a in curriculum.attributes.values():
        if isinstance(a, RangeAttributeDefinition):
            out |= {a.lower_field_name, a.upper_field_name}
        else:
            out.add(a.field_name)
    return out
