"""Random: a fresh Dirichlet mixture every round — the honest lower baseline.

    w_t ~ Dirichlet(alpha * 1_K)

``alpha = 1`` draws uniformly from the simplex; small ``alpha`` gives spiky mixtures, large
``alpha`` mixtures close to uniform.
"""

from __future__ import annotations

from typing import Any

from teachgym.policies._common import new_rng, rng_state
from teachgym.types import Mixture, Observation


class RandomPolicy:
    """A fresh Dirichlet(alpha) mixture each round (the lower baseline)."""

    #: It reads no profile, so it acts the same in every state.
    state_levels = ("open-ended", "skill-list", "skill-tree")

    def __init__(self, alpha: float = 1.0, seed: int = 0) -> None:
        """Args:
        alpha: Dirichlet concentration (> 0).
        seed: Seeds the draws.
        """
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)
        self.rng = new_rng(seed)

    def act(self, observation: Observation) -> Mixture:
        """One Dirichlet draw over the skills, in the env's order."""
        names = observation.skill_names
        w = self.rng.dirichlet([self.alpha] * len(names))
        return Mixture({s: float(x) for s, x in zip(names, w)})

    def state_dict(self) -> dict[str, Any]:
        """The generator's state."""
        return {"rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator."""
        self.rng.bit_generator.state = state["rng"]
