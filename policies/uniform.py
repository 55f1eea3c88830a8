"""Uniform: the same weight on every skill, every round (the stratified baseline)."""

from __future__ import annotations

from typing import Any

from teachgym.types import Mixture, Observation


class UniformPolicy:
    """Equal weight on every skill: the engine then draws ``examples_per_round / K`` rows per skill."""

    #: It reads no profile, so it acts the same in every state.
    state_levels = ("open-ended", "skill-list", "skill-tree")

    def act(self, observation: Observation) -> Mixture:
        """Return ``w_s = 1/K`` for each of the ``K`` skills."""
        names = observation.skill_names
        return Mixture({s: 1.0 / len(names) for s in names})

    def state_dict(self) -> dict[str, Any]:
        """Uniform keeps no state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""
