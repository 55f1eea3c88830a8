"""Missing-skill reweighting (STAT-Sel).

STAT ("Skill-Targeted Adaptive Training") measures, for
each skill, how often the student fails the eval items that need it (the *missing rate* ``m_s``)
and selects training data in proportion. Here, with ``K`` skills, temperature ``T`` and floor ``f``::

    q_s = m_s ** (1 / T) / sum_k m_k ** (1 / T)         (uniform if every m_s is 0)
    w_s = f + (1 - K f) q_s

``T = 1`` is STAT's proportional rule; ``T -> inf`` tends to uniform and ``T -> 0`` to the single
most-missed skill. The floor ``f`` (at most ``1/K``) keeps every skill in the mix, so a skill that
is mastered is still rehearsed and a skill that looks mastered on a noisy eval is not starved.
"""

from __future__ import annotations

from typing import Any

from teachgym.policies._common import default_floor
from teachgym.types import Mixture, Observation


class MissingSkillPolicy:
    """STAT-Sel: mixture weights proportional to the missing-skill rate, tempered and floored."""

    #: It needs no profile (open-ended: missing rates come from the failure sample).
    state_levels = ("open-ended", "skill-list", "skill-tree")

    def __init__(self, temperature: float = 1.0, floor: float | None = None) -> None:
        """Configure the rule.

        Args:
            temperature: ``T`` above; must be > 0.
            floor: Minimum weight per skill; must be in ``[0, 1/K]`` (checked when the skills are known). Default:
                0.05, or 1/(2K) beyond 10 skills (``policies/_common.py``).
        """
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if floor is not None and floor < 0:
            raise ValueError(f"floor must be >= 0, got {floor}")
        self.temperature = float(temperature)
        self.floor = None if floor is None else float(floor)

    def act(self, observation: Observation) -> Mixture:
        """Weights from the observation's missing rates (formula in the module docstring)."""
        names = observation.skill_names
        k = len(names)
        floor = default_floor(k) if self.floor is None else self.floor
        if floor * k > 1 + 1e-12:
            raise ValueError(f"floor={floor} is more than 1/K = 1/{k}; the weights could not sum to 1")
        missing = observation.missing_rates()
        powered = {s: max(missing[s], 0.0) ** (1.0 / self.temperature) for s in names}
        total = sum(powered.values())
        q = {s: (powered[s] / total if total > 0 else 1.0 / k) for s in names}
        return Mixture({s: floor + (1.0 - k * floor) * q[s] for s in names})

    def state_dict(self) -> dict[str, Any]:
        """The rule is a pure function of the observation: no state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""
