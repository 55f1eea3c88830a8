"""Policies used by the tests through the import-path route (``tests.helpers_policies:...``)."""

from teachgym import Mixture, Request, Synthesize


class NaNPolicy:
    """Returns a NaN weight: must be rejected before any training."""

    def act(self, obs):
        return Mixture({s: float("nan") for s in obs.skill_names})

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class UnknownSkillPolicy(NaNPolicy):
    def act(self, obs):
        return Mixture({"calculus": 1.0})


class EmptyRequestPolicy(NaNPolicy):
    def act(self, obs):
        return Synthesize([])


class LateGarbagePolicy(NaNPolicy):
    """Behaves for one round, then asks for a negative amount."""

    def act(self, obs):
        if obs.round == 1:
            return Mixture({s: 1.0 for s in obs.skill_names})
        return Synthesize([Request(obs.skill_names[0], -5)])


class RolloutRecorder:
    """Uniform, and remembers every observation's ``rollouts`` (class-level, so a test can read them)."""

    seen: list = []

    def act(self, observation):
        from teachgym.types import Mixture

        RolloutRecorder.seen.append((observation.round, dict(observation.rollouts),
                                     [h.rollouts for h in observation.history]))
        return Mixture({s: 1.0 for s in observation.skill_names})


def digit_share(prompts, completions, **kwargs):
    """An extra GRPO reward: the share of a completion's characters that are digits."""
    return [sum(ch.isdigit() for ch in c) / max(1, len(c)) for c in completions]


class SkewedPolicy:
    """Weight i on the i-th skill (0 on the first): a mixture whose split is easy to check row by row."""

    def act(self, obs):
        return Mixture({s: float(i) for i, s in enumerate(obs.skill_names)})


class AlternatingHalves:
    """Odd rounds train the first half of the skills, even rounds the second: each half is left out every other
    round, so a student that forgets shows it (what calibrate needs to identify a half-life)."""

    def act(self, obs):
        names = obs.skill_names
        half = names[: len(names) // 2] if obs.round % 2 else names[len(names) // 2:]
        return Mixture({s: 1.0 for s in half})


class OnlyFirst:
    """The whole round on the first skill."""

    def act(self, obs):
        return Mixture({obs.skill_names[0]: 1.0})


class WeakestFirst:
    """A user's teacher by import path for the bench: the whole round on the three weakest skills."""

    def act(self, obs):
        acc = obs.accuracies()
        return Mixture({s: 1.0 for s in sorted(obs.skill_names, key=lambda s: acc[s])[:3]})


class Watched:
    """A built-in policy (``policy``), acting as it would; remembers each observation's profile and rollouts and
    the action (class-level, so a test can read them)."""

    seen: list = []

    def __init__(self, policy: str = "learning-progress", seed: int = 0):
        from teachgym.config import ComponentConfig, build_component

        self.inner = build_component("policies", "policy", ComponentConfig(name=policy), seed=seed)

    def act(self, observation):
        action = self.inner.act(observation)
        Watched.seen.append((dict(observation.profile), dict(observation.rollouts), action))
        return action
