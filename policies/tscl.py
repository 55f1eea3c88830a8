"""Teacher-Student Curriculum Learning (Matiisen et al., 2017, "Teacher-Student Curriculum
Learning"), on the absolute learning progress per skill.

The reward of skill ``i`` after a round is its change in eval accuracy, ``r_i = a_t,i - a_t-1,i``.
Three teachers estimate the expected progress ``Q_i``:

* ``online``:   ``Q_i <- alpha * r_i + (1 - alpha) * Q_i``  (every skill is evaluated every round, so
  every ``Q_i`` is updated: the full-information form of the paper's Online algorithm);
* ``window``:   ``Q_i`` = slope of the least-squares line through the skill's last ``window``
  accuracies against the round number;
* ``sampling``: keep the last ``window`` rewards of each skill; ``Q_i`` is one of them drawn at
  random (the paper's Thompson-like Sampling teacher).

Skills are then chosen on ``|Q_i|`` (progress and forgetting both deserve practice):

* ``epsilon``:   ``w_i = eps/K + (1 - eps) * [i in argmax |Q|] / |argmax|`` (ties share);
* ``boltzmann``: ``w_i ∝ exp(|Q_i| / tau)``.

Defaults: ``alpha = 0.1``, ``window = 10``, ``eps = 0.1`` as in the paper's experiments; the
Boltzmann temperature ``tau = 0.1`` is teachgym's (accuracy changes here are fractions of 1).
"""

from __future__ import annotations

import math
from typing import Any

from teachgym.policies._common import evaluations, new_rng, rng_state
from teachgym.types import Mixture, Observation


def slope(ys: list[float]) -> float:
    """Least-squares slope of ``ys`` against ``0, 1, ...`` (0 for fewer than two points)."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in enumerate(ys)) / sum((x - mx) ** 2 for x in range(n))


class TSCLPolicy:
    """TSCL: online / window / sampling teacher on |Δ accuracy|, ε-greedy or Boltzmann."""

    def __init__(
        self,
        teacher: str = "online",
        alpha: float = 0.1,
        window: int = 10,
        exploration: str = "epsilon",
        epsilon: float = 0.1,
        temperature: float = 0.1,
        seed: int = 0,
    ) -> None:
        """Args:
        teacher: ``online``, ``window`` or ``sampling``.
        alpha: Online teacher's step size.
        window: Window/buffer length of the window and sampling teachers (>= 1).
        exploration: ``epsilon`` (ε-greedy) or ``boltzmann``.
        epsilon: ε of ε-greedy, in ``[0, 1]``.
        temperature: τ of Boltzmann (> 0).
        seed: Seeds the sampling teacher's draws.
        """
        if teacher not in ("online", "window", "sampling"):
            raise ValueError(f"teacher must be online, window or sampling, not {teacher!r}")
        if exploration not in ("epsilon", "boltzmann"):
            raise ValueError(f"exploration must be epsilon or boltzmann, not {exploration!r}")
        if not 0 <= epsilon <= 1 or not temperature > 0 or window < 1:
            raise ValueError("need 0 <= epsilon <= 1, temperature > 0 and window >= 1")
        self.teacher, self.alpha, self.window = teacher, float(alpha), int(window)
        self.exploration, self.epsilon, self.temperature = exploration, float(epsilon), float(temperature)
        self.rng = new_rng(seed)
        self.q: dict[str, float] = {}
        self.buffers: dict[str, list[float]] = {}

    def _estimate(self, obs: Observation) -> dict[str, float]:
        names = obs.skill_names
        evals = evaluations(obs)
        acc = [{s: e[s].accuracy for s in names} for e in evals]
        rewards = {s: acc[-1][s] - acc[-2][s] for s in names} if len(acc) >= 2 else {s: 0.0 for s in names}
        if self.teacher == "online":
            self.q = {s: self.alpha * rewards[s] + (1 - self.alpha) * self.q.get(s, 0.0) for s in names}
            return dict(self.q)
        if self.teacher == "window":
            return {s: slope([a[s] for a in acc[-self.window :]]) for s in names}
        if len(acc) >= 2:
            for s in names:
                self.buffers[s] = ([*self.buffers.get(s, []), rewards[s]])[-self.window :]
        return {s: float(self.rng.choice(self.buffers[s])) if self.buffers.get(s) else 0.0 for s in names}

    def act(self, observation: Observation) -> Mixture:
        """Estimate each skill's learning progress, then choose on its absolute value."""
        names = observation.skill_names
        k = len(names)
        q = {s: abs(v) for s, v in self._estimate(observation).items()}
        if self.exploration == "boltzmann":
            top = max(q.values())
            raw = {s: math.exp((q[s] - top) / self.temperature) for s in names}
            z = sum(raw.values())
            return Mixture({s: raw[s] / z for s in names})
        best = max(q.values())
        winners = [s for s in names if q[s] == best]
        return Mixture(
            {s: self.epsilon / k + (1 - self.epsilon) * (1 / len(winners) if s in winners else 0.0) for s in names}
        )

    def state_dict(self) -> dict[str, Any]:
        """Q estimates, reward buffers and the generator's state."""
        return {"q": dict(self.q), "buffers": {k: list(v) for k, v in self.buffers.items()}, "rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot."""
        self.q = dict(state["q"])
        self.buffers = {k: list(v) for k, v in state["buffers"].items()}
        self.rng.bit_generator.state = state["rng"]
