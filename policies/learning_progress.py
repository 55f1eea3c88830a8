"""Learning progress with fast/slow EMAs and sigmoid-of-z-score sampling (Kanitscheider et al., 2021,
"Multi-task curriculum learning in a complex, visual, hard-exploration domain: Minecraft"; the form
Syllabus and OMNI use).

After each evaluation, with skill accuracy ``x_i`` and EMA rate ``alpha``::

    fast_i <- alpha * x_i    + (1 - alpha) * fast_i
    slow_i <- alpha * fast_i + (1 - alpha) * slow_i                  (both start at 0)
    f(p)    = p (1 - theta) / (p + theta (1 - 2p))                     (reweighting, theta = 0.1)
    LP_i    = |f(fast_i) - f(slow_i)|

Among the skills with ``LP_i > 0`` (all of them if none is): ``z = (LP - mean) / std`` (std 1 if it
is 0), ``w = sigmoid(z) / sum sigmoid(z)``; the other skills get 0. Skills whose accuracy is
changing fastest, up or down, get the most data. Defaults ``alpha = 0.1``, ``theta = 0.1`` as in
Syllabus.
"""

from __future__ import annotations

import math
from typing import Any

from teachgym.types import Mixture, Observation


def reweight(p: float, theta: float) -> float:
    """The paper's reweighting of a success rate ``p`` (stretches differences near 0 and 1)."""
    return p * (1 - theta) / (p + theta * (1 - 2 * p))


class LearningProgressPolicy:
    """Fast/slow EMA learning progress, sigmoid of its z-score as the mixture."""

    def __init__(self, ema_alpha: float = 0.1, theta: float = 0.1, reweighting: bool = True) -> None:
        """Args:
        ema_alpha: EMA rate of both averages, in ``(0, 1]``.
        theta: Reweighting parameter, in ``(0, 0.5)``.
        reweighting: Apply ``f`` before taking the difference.
        """
        if not 0 < ema_alpha <= 1 or not 0 < theta < 0.5:
            raise ValueError("need 0 < ema_alpha <= 1 and 0 < theta < 0.5")
        self.alpha, self.theta, self.reweighting = float(ema_alpha), float(theta), bool(reweighting)
        self.fast: dict[str, float] = {}
        self.slow: dict[str, float] = {}

    def progress(self) -> dict[str, float]:
        """``LP_i`` for every skill seen so far."""
        f = (lambda p: reweight(p, self.theta)) if self.reweighting else (lambda p: p)
        return {s: abs(f(self.fast[s]) - f(self.slow[s])) for s in self.fast}

    def act(self, observation: Observation) -> Mixture:
        """Fold the latest accuracies into the EMAs, then weight skills by their learning progress."""
        names = observation.skill_names
        for s in names:
            x = observation.profile[s].accuracy
            self.fast[s] = self.alpha * x + (1 - self.alpha) * self.fast.get(s, 0.0)
            self.slow[s] = self.alpha * self.fast[s] + (1 - self.alpha) * self.slow.get(s, 0.0)
        lp = self.progress()
        chosen = [s for s in names if lp[s] > 0] or list(names)
        vals = [lp[s] for s in chosen]
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
        sig = {s: 1 / (1 + math.exp(-(lp[s] - mean) / (std or 1.0))) for s in chosen}
        z = sum(sig.values())
        return Mixture({s: sig.get(s, 0.0) / z for s in names})

    def state_dict(self) -> dict[str, Any]:
        """Both EMAs."""
        return {"fast": dict(self.fast), "slow": dict(self.slow)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot."""
        self.fast, self.slow = dict(state["fast"]), dict(state["slow"])
