"""Oracle: the schedule that knows a bench challenge's hidden structure (``teachgym bench``'s upper anchor).

A challenge (``configs/bench/*.yaml``) declares what a teacher cannot see: which skills are noise
(nothing to learn), and whether skills interfere (a skill left untrained decays). ``teachgym bench``
hands that declaration to this policy, and to nothing else. Each round, with ``a_s`` the measured
accuracy and ``m`` the mastery threshold::

    learnable = skills - noise
    frontier  = {s in learnable : a_s < m  and  a_p >= m for every prerequisite p of s}
                (if empty: the learnable skills below m; if none: every learnable skill)
    w_s = (1 - r) / |frontier|             for s in frontier
    w_s = r / |mastered|                   for mastered learnable skills (r = replay, 0 if none)

So it never spends a row on noise or on what is mastered (bar ``replay``), and always trains a skill
whose prerequisites are in place: the curriculum a human who knew the task space would write. It is
an anchor, not the best possible schedule: the headroom it shows over ``uniform`` is a lower bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from teachgym.types import Mixture, Observation


class OraclePolicy:
    """Trains the frontier of learnable, unmastered skills whose prerequisites are mastered (module docstring)."""

    #: It is given the hidden structure by skill name, so it sees the real names (teachgym.neutral).
    sees_hidden_structure = True

    #: It reads the per-skill profile.
    state_levels = ("skill-list", "skill-tree")

    def __init__(self, noise: Sequence[str] = (), mastery: float = 0.9, replay: float = 0.0) -> None:
        """Configure the oracle with the challenge's hidden structure.

        Args:
            noise: Skills with nothing to learn (the challenge declares them).
            mastery: Accuracy at which a skill counts as learned.
            replay: Share of each round kept on mastered learnable skills (for students that forget).
        """
        if not 0 < mastery <= 1:
            raise ValueError(f"mastery must be in (0, 1], got {mastery}")
        if not 0 <= replay < 1:
            raise ValueError(f"replay must be in [0, 1), got {replay}")
        self.noise = frozenset(noise)
        self.mastery = float(mastery)
        self.replay = float(replay)

    def act(self, observation: Observation) -> Mixture:
        """The frontier's mixture (see the module docstring)."""
        acc = observation.accuracies()
        unknown = sorted(self.noise - set(acc))
        if unknown:
            raise ValueError(f"oracle: noise skills {unknown} are not skills of this env")
        learnable = [s for s in observation.skill_names if s not in self.noise] or list(observation.skill_names)
        mastered = [s for s in learnable if acc[s] >= self.mastery]
        graph = observation.skill_graph
        frontier = [s for s in learnable if acc[s] < self.mastery
                    and all(acc.get(p, 1.0) >= self.mastery for p in graph.get(s, ()))]
        frontier = frontier or [s for s in learnable if acc[s] < self.mastery] or learnable
        replay = self.replay if mastered and set(frontier) != set(learnable) else 0.0
        weights = {s: (1.0 - replay) / len(frontier) for s in frontier}
        for s in mastered:
            if s not in weights:
                weights[s] = replay / len(mastered)
        return Mixture({s: w for s, w in weights.items() if w > 0})

    def state_dict(self) -> dict[str, Any]:
        """The oracle keeps no state between rounds."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""
