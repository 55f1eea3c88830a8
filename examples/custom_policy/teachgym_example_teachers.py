"""Two teacher policies written the way a user writes one: plain classes, no teachgym base class.

Run one by import path (from this folder, or with it on PYTHONPATH)::

    teachgym run ../../configs/arithmetic.yaml policy.name=teachgym_example_teachers:WeakestTwo

or install this folder as a package (``pip install ./examples/custom_policy``), which declares both
under the ``teachgym.policies`` entry-point group, and use the short names::

    teachgym run configs/arithmetic.yaml policy.name=weakest-two
    teachgym run configs/arithmetic.yaml policy.name=greedy-gain policy.epsilon=0.2
"""

from __future__ import annotations

import random

from teachgym import Mixture, Observation


class WeakestTwo:
    """Spend the whole round on the two skills the student is worst at."""

    def act(self, obs: Observation) -> Mixture:
        acc = obs.accuracies()
        weakest = sorted(acc, key=acc.get)[:2]
        return Mixture({skill: 1.0 for skill in weakest})

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class GreedyGain:
    """ε-greedy on last round's accuracy gain: exploit the skill that just improved most, explore at random.

    A stateful, seeded policy: its random generator is part of its state, so a resumed run makes the
    same decisions as an uninterrupted one.
    """

    def __init__(self, epsilon: float = 0.1, seed: int = 0) -> None:
        self.epsilon = epsilon
        self.rng = random.Random(seed)

    def act(self, obs: Observation) -> Mixture:
        names = obs.skill_names
        if self.rng.random() < self.epsilon:
            return Mixture({self.rng.choice(names): 1.0})
        gains = {s: obs.profile[s].change or 0.0 for s in names}
        best = max(gains.values())
        return Mixture({s: 1.0 for s in names if gains[s] == best})

    def state_dict(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        return {"rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
