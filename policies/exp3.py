"""Online Data Mixing, Exp3 over skills (Albalak et al., 2023, "Efficient Online Data Mixing for
Language Model Pre-Training", Algorithm 1).

Each skill is an arm; the mixture is Exp3's sampling distribution. With ``K`` skills, after the round
that trained on ``pi_{t-1}`` the student's eval loss on skill ``i`` is the reward, importance-weighted
by the probability the arm had, and smoothed::

    R_i     <- alpha * R_i + (1 - alpha) * L_i / pi_{t-1, i}
    eps_t    = min(1/K, sqrt(ln K / (K t)))                     (eps_0 = 1/K)
    pi_t,i   = (1 - K eps_t) * exp(eps_{t-1} R_i) / sum_j exp(eps_{t-1} R_j) + eps_t

A high loss means there is still something to learn, so the arm is pulled more; the exploration
floor ``eps_t`` shrinks over rounds. Every skill is trained and evaluated each round, so every arm's
reward is updated each round. The exploration schedule is the paper's; the smoothing default
``alpha = 0.9`` is teachgym's.
"""

from __future__ import annotations

import math
from typing import Any

from teachgym.types import Mixture, Observation


class Exp3Policy:
    """ODM: Exp3 over skills, importance-weighted eval-loss rewards, eps_t = min(1/K, sqrt(ln K/(K t)))."""

    def __init__(self, alpha: float = 0.9) -> None:
        """Args:
        alpha: Reward smoothing in ``[0, 1)`` (0: only the latest loss counts).
        """
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        self.alpha = float(alpha)
        self.rewards: dict[str, float] = {}
        self.t = 0
        self.prev_eps: float | None = None
        self.last_pi: dict[str, float] | None = None

    def act(self, observation: Observation) -> Mixture:
        """Update the rewards with the last round's losses, then return the new distribution."""
        names = observation.skill_names
        k = len(names)
        if not self.rewards:
            self.rewards = {s: 0.0 for s in names}
        if self.last_pi is not None:
            for s in names:
                loss = observation.profile[s].loss
                self.rewards[s] = self.alpha * self.rewards[s] + (1 - self.alpha) * loss / self.last_pi[s]
        self.t += 1
        eps = min(1.0 / k, math.sqrt(math.log(k) / (k * self.t))) if k > 1 else 0.0
        prev = self.prev_eps if self.prev_eps is not None else 1.0 / k
        logits = {s: prev * self.rewards[s] for s in names}
        top = max(logits.values())
        exp = {s: math.exp(v - top) for s, v in logits.items()}
        z = sum(exp.values())
        pi = {s: (1 - k * eps) * exp[s] / z + eps for s in names}
        self.prev_eps, self.last_pi = eps, pi
        return Mixture(dict(pi))

    def state_dict(self) -> dict[str, Any]:
        """Rewards, step count, last epsilon and last distribution."""
        return {"rewards": dict(self.rewards), "t": self.t, "prev_eps": self.prev_eps, "last_pi": self.last_pi}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot."""
        self.rewards = dict(state["rewards"])
        self.t = int(state["t"])
        self.prev_eps = state["prev_eps"]
        self.last_pi = dict(state["last_pi"]) if state["last_pi"] is not None else None
