"""Learnability sampling for RL students (Foster & Foerster, 2025, "Learning to Reason at the Frontier
of Learnability"; Tzannetos et al., 2023, ProCuRL).

A prompt the student always solves, or never solves, gives GRPO no signal: every completion in its
group gets the same reward, so every advantage is 0. The reward variance ``p (1 - p)`` of a prompt
with pass rate ``p`` is largest at ``p = 1/2``. Per skill, with ``L_s`` the skill's learnability (the
mean of ``p_i (1 - p_i)`` over its prompts in the last round's rollouts), ``K`` skills and floor ``f``::

    w_s = f + (1 - K f) * L_s / sum_k L_k             (uniform if every L_s is 0)

A skill that the last round did not sample keeps the last value measured for it; one never rolled
out (round 1, or an SFT student) uses its greedy eval accuracy ``a_s`` as ``p``: ``L_s = a_s (1 - a_s)``.
The floor keeps every skill in the mix, so a skill whose ``L`` has fallen to 0 can come back; it is
teachgym's (default 0.05, as ``missing-skill``'s): the papers sample by ``p (1 - p)`` alone
(``floor=0``).
"""

from __future__ import annotations

from typing import Any

from teachgym.policies._common import default_floor
from teachgym.types import Mixture, Observation


class LearnabilityPolicy:
    """Mixture weights proportional to each skill's learnability ``p (1 - p)``, with a floor."""

    def __init__(self, floor: float | None = None) -> None:
        """Args:
        floor: Minimum weight per skill; in ``[0, 1/K]`` (checked when the skills are known). Default:
            0.05, or 1/(2K) beyond 10 skills (``policies/_common.py``).
        """
        if floor is not None and floor < 0:
            raise ValueError(f"floor must be >= 0, got {floor}")
        self.floor = None if floor is None else float(floor)
        self.known: dict[str, float] = {}  # the last learnability measured from rollouts, per skill

    def learnability(self, observation: Observation) -> dict[str, float]:
        """``L_s`` for every skill (see the module docstring), after folding in the latest rollouts."""
        for s, stats in observation.rollouts.items():
            self.known[s] = float(stats.learnability)
        out = {}
        for s in observation.skill_names:
            if s in self.known:
                out[s] = self.known[s]
            else:
                a = observation.profile[s].accuracy if s in observation.profile else 0.0
                out[s] = a * (1 - a)
        return out

    def act(self, observation: Observation) -> Mixture:
        """Weights from the skills' learnability (formula in the module docstring)."""
        names = observation.skill_names
        k = len(names)
        floor = default_floor(k) if self.floor is None else self.floor
        if floor * k > 1 + 1e-12:
            raise ValueError(f"floor={floor} is more than 1/K = 1/{k}; the weights could not sum to 1")
        learn = self.learnability(observation)
        total = sum(learn.values())
        return Mixture({s: floor + (1 - k * floor) * (learn[s] / total if total > 0 else 1 / k)
                        for s in names})

    def state_dict(self) -> dict[str, Any]:
        """The last learnability measured per skill."""
        return {"known": dict(self.known)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot."""
        self.known = {str(k): float(v) for k, v in state["known"].items()}
