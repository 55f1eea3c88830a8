"""Targeted synthesis (STAT-Syn).

STAT's synthesis variant asks a generator for *new* examples of the skills the student misses most,
instead of reweighting what exists. Each round, with budget ``B`` and missing rates ``m_s``:

1. take the ``top_k`` skills with the highest ``m_s > 0`` (ties broken by the env's skill order);
2. split ``B`` across them in proportion to ``m_s`` (largest-remainder rounding, so the ``n`` sum to
   ``B`` exactly; a skill whose share rounds to 0 is dropped);
3. pick each request's level: with ``adaptive_level`` the student's accuracy ``a_s`` on the skill
   selects level ``levels[floor(a_s * L)]`` (clamped), so a skill the student cannot do yet gets its
   easiest level; otherwise ``None`` (the generator spreads over all levels).

If the student misses nothing, the budget is split evenly over all skills.

In the ``skill-tree`` state the same rule ranks **sub-skills** ``(skill, level)`` by their own missing
rate (ties: easier level first, then env order) and requests exactly those levels; in the
``open-ended`` state the missing rates are the skills' shares of the failure sample and the level is
left to the generator.
"""

from __future__ import annotations

from typing import Any

from teachgym.engine import largest_remainder
from teachgym.types import Observation, Request, Synthesize


class TargetedSynthesisPolicy:
    """STAT-Syn: ``Synthesize`` requests for the most-missed skills, sized by their missing rate."""

    #: It needs no profile (open-ended: missing rates come from the failure sample).
    state_levels = ("open-ended", "skill-list", "skill-tree")

    def __init__(self, top_k: int = 3, adaptive_level: bool = True) -> None:
        """Configure the rule.

        Args:
            top_k: How many of the most-missed skills to synthesise for (>= 1).
            adaptive_level: Choose each request's level from the skill's accuracy.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.top_k = int(top_k)
        self.adaptive_level = bool(adaptive_level)

    def act(self, observation: Observation) -> Synthesize:
        """Requests from the observation (rule in the module docstring)."""
        if observation.subskills:
            return self._act_tree(observation)
        names = observation.skill_names
        missing = observation.missing_rates()
        ranked = sorted((s for s in names if missing[s] > 0), key=lambda s: (-missing[s], names.index(s)))
        chosen = ranked[: self.top_k]
        shares = {s: missing[s] for s in chosen} if chosen else {s: 1.0 for s in names}
        counts = largest_remainder(shares, observation.examples_per_round)
        levels = {s.name: s.levels for s in observation.skills}
        requests = []
        for skill, n in counts.items():
            if n == 0:
                continue
            level = None
            if self.adaptive_level and observation.profile:
                lv = levels[skill]
                idx = min(int(observation.profile[skill].accuracy * len(lv)), len(lv) - 1)
                level = lv[idx]
            requests.append(Request(skill=skill, n=n, level=level))
        return Synthesize(requests)

    def _act_tree(self, observation: Observation) -> Synthesize:
        """Skill-tree: the most-missed sub-skills ``(skill, level)``, each requested at its own level."""
        names = observation.skill_names
        assert observation.subskills is not None
        leaves = {
            (s, level): stats.missing_rate
            for s in names
            for level, stats in sorted(observation.subskills.get(s, {}).items())
            if stats.missing_rate > 0
        }
        # Ties (at first every sub-skill is missed alike) go to the easiest level, then to env order, so
        # the first requests spread over the skills' easiest levels instead of one skill's every level.
        ranked = sorted(leaves, key=lambda k: (-leaves[k], k[1], names.index(k[0])))[: self.top_k]
        if not ranked:
            counts = largest_remainder({s: 1.0 for s in names}, observation.examples_per_round)
            return Synthesize([Request(skill=s, n=n) for s, n in counts.items() if n])
        counts = largest_remainder({f"{s}@{lv}": leaves[(s, lv)] for s, lv in ranked},
                                   observation.examples_per_round)
        return Synthesize([Request(skill=s, n=counts[f"{s}@{lv}"], level=lv) for s, lv in ranked
                           if counts[f"{s}@{lv}"]])

    def state_dict(self) -> dict[str, Any]:
        """The rule is a pure function of the observation: no state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""
