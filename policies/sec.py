"""Self-Evolving Curriculum (SEC; Chen et al., 2025, "Self-Evolving Curriculum for LLM Reasoning").

A non-stationary bandit over skills (SEC's "categories"). The reward of a skill for a round is the
mean absolute advantage of its rollouts in that round — how much the policy gradient moved on it, a
proxy of the immediate learning gain. Each skill's value is updated by TD(0) with learning rate
``alpha``, and the next round samples skills from the Boltzmann distribution of the values::

    Q_s <- alpha * r_s + (1 - alpha) * Q_s      for every skill s rolled out last round (Q starts at 0)
    w_s  = exp(Q_s / tau) / sum_k exp(Q_k / tau)

``alpha = 0.5`` is the paper's learning rate. ``tau = 1`` is teachgym's default: the paper's
temperatures could not be checked from here (its appendix lists them per task), so set
``policy.temperature`` to the value of the task you reproduce. SEC samples each batch's problems from
``w``; here ``w`` is the round's mixture. Without rollouts (round 1, or an SFT student) every ``Q`` is
0 and the mixture is uniform.

**Per step** (``loop.teach_every: step``), as in the paper, where the bandit is updated after every
training batch and the next batch's problems are sampled from ``w``: :meth:`SECPolicy.step` applies the
TD(0) update with each generation batch's per-skill mean |advantage| and returns the next batch's mixture.
The round's ``act`` then does not fold that round again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from teachgym.policies._common import fold_once
from teachgym.types import Mixture, Observation, RolloutStats, StepObservation


class SECPolicy:
    """TD(0) values of mean |advantage| per skill, Boltzmann sampling."""

    def __init__(self, alpha: float = 0.5, temperature: float = 1.0) -> None:
        """Args:
        alpha: TD(0) learning rate, in ``(0, 1]``.
        temperature: Boltzmann temperature ``tau``, > 0 (lower: greedier).
        """
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.q: dict[str, float] = {}
        self.folded = -1  # the last round whose rollouts are in q (an observation is folded in once)

    def update(self, observation: Observation) -> None:
        """Fold the last round's rollouts into the values (once per round)."""
        fold_once(self, observation, self.fold)

    def fold(self, rollouts: Mapping[str, RolloutStats]) -> None:
        """TD(0) with one batch's (or round's) mean |advantage| of every skill in it."""
        for s, stats in rollouts.items():
            self.q[s] = self.alpha * float(stats.mean_abs_advantage) + (1 - self.alpha) * self.q.get(s, 0.0)

    def act(self, observation: Observation) -> Mixture:
        """The Boltzmann distribution of the updated values."""
        self.update(observation)
        return self.mixture(observation.skill_names)

    def step(self, observation: StepObservation) -> Mixture:
        """Per generation batch: TD(0) with the latest batch, then the Boltzmann distribution."""
        fold_once(self, observation, self.fold)  # batch by batch: the next act() does not add this round again
        return self.mixture(list(observation.skills))

    def mixture(self, names: list[str]) -> Mixture:
        """The Boltzmann distribution of the values of ``names``."""
        values = [self.q.get(s, 0.0) / self.temperature for s in names]
        top = max(values)
        e = [math.exp(v - top) for v in values]
        z = sum(e)
        return Mixture({s: x / z for s, x in zip(names, e)})

    def state_dict(self) -> dict[str, Any]:
        """The values and the last round folded in."""
        return {"q": dict(self.q), "folded": self.folded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot."""
        self.q = {str(k): float(v) for k, v in state["q"].items()}
        self.folded = int(state["folded"])
