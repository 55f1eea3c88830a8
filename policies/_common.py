"""Small helpers shared by the built-in policies (not a base class: policies stay plain objects)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from teachgym.types import Observation, RolloutStats, SkillStats, StepObservation


def evaluations(obs: Observation) -> list[Mapping[str, SkillStats]]:
    """Every profile measured so far, oldest first, ending with ``obs.profile``.

    The loop's history already ends with the current profile; an observation built by hand may not
    include it, so it is appended when missing.
    """
    profiles = [h.profile for h in obs.history]
    if not obs.history or obs.history[-1].round != obs.round - 1:
        profiles.append(obs.profile)
    return profiles


def rng_state(rng) -> dict:
    """A numpy Generator's state as JSON-ready data (for ``state_dict``)."""
    return rng.bit_generator.state


def new_rng(seed: int):
    """A numpy ``Generator`` on PCG64 (its state round-trips through JSON)."""
    import numpy as np

    return np.random.Generator(np.random.PCG64(seed))


def default_floor(k: int) -> float:
    """A floor policy's default minimum weight per skill with ``k`` skills: 0.05 up to 10 skills, then 1/(2k),
    so that half of every round is still shared by the rule (a fixed 0.05 is more than 1/k beyond 20 skills)."""
    return min(0.05, 0.5 / k)


def fold_once(policy: Any, observation: Observation | StepObservation,
              fold: Callable[[Mapping[str, RolloutStats]], None], attr: str = "folded") -> None:
    """Fold an RL student's rollout statistics into a policy's estimates exactly once.

    Per step (a :class:`~teachgym.types.StepObservation`): the latest generation batch's statistics, and the
    round is marked folded. Per round (an :class:`~teachgym.types.Observation`): the last round's statistics,
    unless that round was folded already (batch by batch, or by an earlier ``act``). ``policy.<attr>`` holds the
    last round folded (part of the policy's state).
    """
    if isinstance(observation, StepObservation):
        fold(observation.last)
        setattr(policy, attr, observation.round)
        return
    done = observation.round - 1
    if done <= getattr(policy, attr):
        return
    fold(observation.rollouts)
    setattr(policy, attr, done)
