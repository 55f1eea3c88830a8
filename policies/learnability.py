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

**Per step** (``loop.teach_every: step``): the papers score each prompt by the ``p (1 - p)`` measured in the
current training batches. :meth:`LearnabilityPolicy.step` moves each skill's ``L_s`` toward the latest
generation batch's value, by ``min(1, groups / step_window)`` (about a running mean over the last
``step_window`` groups of the skill: a batch holds only a few groups of each), and returns the next batch's
mixture by the formula above. The round's ``act`` then keeps these values instead of the round's mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from teachgym.policies._common import default_floor, fold_once
from teachgym.types import Mixture, Observation, RolloutStats, StepObservation


class LearnabilityPolicy:
    """Mixture weights proportional to each skill's learnability ``p (1 - p)``, with a floor."""

    def __init__(self, floor: float | None = None, step_window: int = 16) -> None:
        """Args:
        floor: Minimum weight per skill; in ``[0, 1/K]`` (checked when the skills are known). Default:
            0.05, or 1/(2K) beyond 10 skills (``policies/_common.py``).
        step_window: Per step only: about how many of a skill's latest groups its ``L_s`` averages over.
        """
        if floor is not None and floor < 0:
            raise ValueError(f"floor must be >= 0, got {floor}")
        if step_window < 1:
            raise ValueError(f"step_window must be >= 1, got {step_window}")
        self.floor = None if floor is None else float(floor)
        self.step_window = int(step_window)
        self.known: dict[str, float] = {}  # the last learnability measured from rollouts, per skill
        self.stepped = -1  # the last round whose batches moved ``known`` step by step
        self.acted: dict[str, float] = {}  # L_s as this round's act() used them (recomputed by every act)

    def learnability(self, observation: Observation) -> dict[str, float]:
        """``L_s`` for every skill (see the module docstring), after folding in the latest rollouts."""
        fold_once(self, observation, self._measured, attr="stepped")  # a round folded step by step keeps its values
        out = {}
        for s in observation.skill_names:
            if s in self.known:
                out[s] = self.known[s]
            else:
                a = observation.profile[s].accuracy if s in observation.profile else 0.0
                out[s] = a * (1 - a)
        return out

    def _measured(self, rollouts: Mapping[str, RolloutStats]) -> None:
        """A round's rollouts: each rolled-out skill's ``L_s`` is the one measured."""
        for s, stats in rollouts.items():
            self.known[s] = float(stats.learnability)

    def _moved_toward(self, rollouts: Mapping[str, RolloutStats]) -> None:
        """A batch's rollouts: each rolled-out skill's ``L_s`` moves toward the batch's, by its share of a window."""
        for s, stats in rollouts.items():
            rate = min(1.0, stats.groups / self.step_window)
            self.known[s] = (1 - rate) * self.known.get(s, float(stats.learnability)) + rate * float(stats.learnability)

    def act(self, observation: Observation) -> Mixture:
        """Weights from the skills' learnability (formula in the module docstring)."""
        self.acted = self.learnability(observation)  # a skill no batch of this round rolled out keeps its value
        return self.mixture(observation.skill_names, self.acted)

    def step(self, observation: StepObservation) -> Mixture:
        """Per generation batch: move each rolled-out skill's ``L_s`` toward the batch's, then the same formula."""
        fold_once(self, observation, self._moved_toward, attr="stepped")
        return self.mixture(list(observation.skills),
                            {s: self.known.get(s, self.acted.get(s, 0.0)) for s in observation.skills})

    def mixture(self, names: list[str], learn: dict[str, float]) -> Mixture:
        """``w_s = f + (1 - K f) L_s / sum_k L_k`` (uniform when every ``L_s`` is 0)."""
        k = len(names)
        floor = default_floor(k) if self.floor is None else self.floor
        if floor * k > 1 + 1e-12:
            raise ValueError(f"floor={floor} is more than 1/K = 1/{k}; the weights could not sum to 1")
        total = sum(learn.values())
        return Mixture({s: floor + (1 - k * floor) * (learn[s] / total if total > 0 else 1 / k)
                        for s in names})

    def state_dict(self) -> dict[str, Any]:
        """The last learnability measured per skill, and the last round stepped."""
        return {"known": dict(self.known), "stepped": self.stepped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot."""
        self.known = {str(k): float(v) for k, v in state["known"].items()}
        self.stepped = int(state.get("stepped", -1))  # absent in states written before per-step teaching
