"""DUMP (Wang et al., 2025, "DUMP: Automated Distribution-Level Curriculum Learning for RL-based LLM
Post-training"): UCB over data distributions (here: skills) on the mean absolute advantage.

Each skill keeps a window of its last ``window`` absolute advantages (one per completion) and the
number of completions ``n_s`` ever drawn from it; ``N = sum_k n_k``. The next round's mixture is a
softmax over UCB scores::

    score_s = mean(|A| in the window of s) + c * sqrt(2 ln(N + 1) / (n_s + 1))
    w_s     = exp(score_s / T) / sum_k exp(score_k / T)

As the reference code (``verl/utils/curriculum_learning.py``): window 300, ``c = 1``, ``T = 0.1``; a
skill never drawn has mean 0 and the largest bonus. The loop reports a round's rollouts per skill as
a mean over its completions, so the window holds (mean, count) chunks, newest first; the oldest chunk
that straddles the window's edge counts with its mean for the part inside (a round's completions come
in no particular order, so that is their expected mean).

**Per step** (``loop.teach_every: step``): as the reference code, which updates the windows from every
batch's advantages and samples the next batch from the softmax, :meth:`DUMPPolicy.step` folds each
generation batch's per-skill mean |advantage| and completions into the windows and counts and returns the
next batch's mixture. The round's ``act`` then does not fold that round again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from teachgym.policies._common import fold_once
from teachgym.types import Mixture, Observation, RolloutStats, StepObservation


class DUMPPolicy:
    """UCB on a window of mean |advantage| per skill, softmax with temperature."""

    def __init__(self, window: int = 300, exploration: float = 1.0, temperature: float = 0.1) -> None:
        """Args:
        window: Completions per skill in the |advantage| window.
        exploration: ``c``, the weight of the exploration bonus.
        temperature: Softmax temperature ``T`` over the scores, > 0.
        """
        if window < 1 or exploration < 0 or not temperature > 0:
            raise ValueError("need window >= 1, exploration >= 0 and temperature > 0")
        self.window, self.exploration, self.temperature = int(window), float(exploration), float(temperature)
        self.chunks: dict[str, list[list[float]]] = {}  # skill -> [[mean |A|, completions], ...], oldest first
        self.n: dict[str, int] = {}
        self.folded = -1

    def update(self, observation: Observation) -> None:
        """Fold the last round's rollouts into the windows and counts (once per round)."""
        fold_once(self, observation, self.fold)

    def fold(self, rollouts: Mapping[str, RolloutStats]) -> None:
        """Add one batch's (or round's) per-skill mean |A| and completions to the windows and counts."""
        for s, stats in rollouts.items():
            if stats.completions <= 0:
                continue
            chunks = self.chunks.setdefault(s, [])
            chunks.append([float(stats.mean_abs_advantage), int(stats.completions)])
            while sum(c for _, c in chunks[1:]) >= self.window:  # the oldest chunk lies wholly outside
                chunks.pop(0)
            self.n[s] = self.n.get(s, 0) + int(stats.completions)

    def window_mean(self, skill: str) -> float:
        """Mean |A| over the last ``window`` completions of ``skill`` (0 if never drawn)."""
        left, total = self.window, 0.0
        for mean, count in reversed(self.chunks.get(skill, [])):
            take = min(count, left)
            total += mean * take
            left -= take
            if left == 0:
                break
        used = self.window - left
        return total / used if used else 0.0

    def scores(self, names: list[str]) -> dict[str, float]:
        """The UCB score of every skill."""
        big_n = sum(self.n.values())
        return {s: self.window_mean(s) + self.exploration * math.sqrt(2 * math.log(big_n + 1) / (self.n.get(s, 0) + 1))
                for s in names}

    def act(self, observation: Observation) -> Mixture:
        """Softmax over the UCB scores."""
        self.update(observation)
        return self.mixture(observation.skill_names)

    def step(self, observation: StepObservation) -> Mixture:
        """Per generation batch: fold the latest batch into the windows, then the softmax over the UCB scores."""
        fold_once(self, observation, self.fold)  # batch by batch: the next act() does not add this round again
        return self.mixture(list(observation.skills))

    def mixture(self, names: list[str]) -> Mixture:
        """Softmax over the UCB scores of ``names``."""
        sc = self.scores(names)
        top = max(sc.values())
        e = {s: math.exp((v - top) / self.temperature) for s, v in sc.items()}
        z = sum(e.values())
        return Mixture({s: e[s] / z for s in names})

    def state_dict(self) -> dict[str, Any]:
        """Windows, counts and the last round folded in."""
        return {"chunks": {s: [list(c) for c in v] for s, v in self.chunks.items()}, "n": dict(self.n),
                "folded": self.folded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot."""
        self.chunks = {str(s): [[float(m), int(c)] for m, c in v] for s, v in state["chunks"].items()}
        self.n = {str(s): int(v) for s, v in state["n"].items()}
        self.folded = int(state["folded"])
