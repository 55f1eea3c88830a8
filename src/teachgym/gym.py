"""The teaching loop as a ``gymnasium.Env``: the agent is the teacher, one episode is one experiment.

    import gymnasium, teachgym.gym
    env = gymnasium.make("teachgym/Arithmetic-v0", student="simulated")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

(or ``gymnasium.make("teachgym.gym:teachgym/Arithmetic-v0")``, which imports this module first).

- **Observation** (``float32``, ``3 * K + 1``): per skill the accuracy, the eval loss (capped at
  :data:`LOSS_CAP`) and the change in accuracy since the previous round, in skill order, then the
  fraction of the budget already used. :func:`observation_vector` builds it from a teachgym
  :class:`~teachgym.types.Observation` too, so a policy trained here acts in the real loop.
- **Action**: a mixture over skills. ``action="logits"`` (default): a Box in [-1, 1]^K, mixture =
  softmax(``logit_scale`` * action). ``action="weights"``: a Box in [0, 1]^K, normalised (all zero
  means uniform).
- **Reward**: ``"gain"`` — the change in mean accuracy each round (the return is final minus
  initial accuracy); ``"final"`` — 0 until the last round, then the final mean accuracy;
  ``"weakest"`` — the change in the weakest skill's accuracy each round.
- One episode = ``rounds`` rounds of ``examples_per_round`` examples; ``terminated`` after the last.
- **Domain randomisation** (``randomize={parameter: spread}``): every episode draws a new student
  around ``student_kwargs`` (:func:`randomize_params`), so a teacher trained on a fitted simulator
  (``teachgym calibrate``) learns for a range of students rather than one point estimate.

**One step is one round.** The agent acts once a round; teaching inside a round (``loop.teach_every: step``,
:mod:`teachgym.steps`) is not available here, and a student built with online filtering
(``filter_groups``) is refused: each round trains on its rows as a whole.

Any student works, through the same engine and evaluation as ``teachgym run``. A student with the
analytic fast path (``practice``/``measure``/``expected_loss``/``reset``, as ``simulated`` has) skips
building datasets and answering prompts, which makes an episode take well under a millisecond.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import gymnasium
import numpy as np
from gymnasium import spaces

from teachgym.config import ComponentConfig, ConfigError, build_component
from teachgym.engine import materialize
from teachgym.evaluation import evaluate
from teachgym.protocols import filters_groups
from teachgym.rows import column
from teachgym.types import Mixture, Observation, SkillStats

LOSS_CAP = 10.0  # losses above this are clipped, so the observation space is bounded

#: Student parameters that live in [0, 1]: a randomised draw is clipped back into it.
UNIT_PARAMS = ("transfer", "gate", "ceiling", "initial")


def randomize_params(params: Mapping[str, Any], spread: Mapping[str, float], rng: np.random.Generator) -> dict:
    """One draw of student parameters around ``params``: each named one times ``exp(spread * N(0, 1))``.

    A number gets one factor; a per-skill mapping or a list (``gate``) gets one factor per entry, so
    skills vary independently. Parameters in :data:`UNIT_PARAMS` are clipped into [0, 1] (``ceiling``
    above 0); a ``gate`` pair is kept in order. Zero stays zero, so an off switch (``onset: 0``) stays off.

    Raises:
        ValueError: A spread is negative, or names a parameter that ``params`` does not set to a
            number, a list of numbers or a mapping of numbers.
    """

    def jitter(value: Any, s: float, name: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | Mapping | list | tuple):
            raise ValueError(f"randomize.{name}: {value!r} is not a number, a list or a mapping of numbers")
        if isinstance(value, Mapping):
            return {k: jitter(v, s, f"{name}.{k}") for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [jitter(v, s, f"{name}[{i}]") for i, v in enumerate(value)]
        return float(value) * float(np.exp(s * rng.standard_normal()))

    def clip(value: Any, high: float) -> Any:
        if isinstance(value, Mapping):
            return {k: clip(v, high) for k, v in value.items()}
        if isinstance(value, list):
            return [clip(v, high) for v in value]
        return min(max(value, 0.0), high)

    out = dict(params)
    for name, s in spread.items():
        if s < 0:
            raise ValueError(f"randomize.{name}: the spread must be >= 0, not {s}")
        if name not in params:
            raise ValueError(f"randomize.{name}: student_kwargs does not set {name!r} (it has {sorted(params)})")
        value = jitter(params[name], s, name)
        if name in UNIT_PARAMS:
            value = clip(value, 1.0)
        if name == "ceiling":
            value = max(value, 1e-3)
        if name == "gate":
            low, high = sorted(value)
            if high - low < 1e-3:  # both clipped to the same bound: keep the pair a (narrow) ramp
                low = min(low, 1.0 - 1e-3)
                high = low + 1e-3
            value = [low, high]
        out[name] = value
    return out


def observation_vector(skills: Sequence[str], profile: Mapping[str, SkillStats], budget_fraction: float) -> np.ndarray:
    """``[acc_1..acc_K, loss_1..loss_K, change_1..change_K, budget_fraction]`` as float32.

    ``change`` is :attr:`SkillStats.change` (accuracy minus the previous round's; 0 at round 0).
    """
    acc = np.array([profile[s].accuracy for s in skills], dtype=np.float64)
    loss = np.array([profile[s].loss for s in skills], dtype=np.float64)
    change = np.array([profile[s].change or 0.0 for s in skills], dtype=np.float64)
    return _vector(acc, loss, change, budget_fraction)


def _vector(acc: np.ndarray, loss: np.ndarray, change: np.ndarray, budget_fraction: float) -> np.ndarray:
    loss = np.clip(np.nan_to_num(loss, nan=LOSS_CAP, posinf=LOSS_CAP), 0.0, LOSS_CAP)
    acc = np.nan_to_num(acc)  # a skill with no eval items reads as 0
    out = np.concatenate([acc, loss, np.clip(np.nan_to_num(change), -1.0, 1.0), [budget_fraction]])
    return out.astype(np.float32)


def vector_from_observation(obs: Observation) -> np.ndarray:
    """The gym observation for a teachgym :class:`Observation` (what a learned policy sees in the loop)."""
    total = obs.budget_used + obs.budget_left
    return observation_vector([s.name for s in obs.skills], obs.profile, obs.budget_used / total if total else 0.0)


def action_to_weights(action: np.ndarray, kind: Literal["logits", "weights"], logit_scale: float) -> np.ndarray:
    """Mixture weights (summing to 1) for a gym action."""
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if not np.isfinite(a).all():
        raise ValueError(f"action has non-finite entries: {a}")
    if kind == "logits":
        z = logit_scale * np.clip(a, -1.0, 1.0)
        w = np.exp(z - z.max())
    else:
        w = np.clip(a, 0.0, 1.0)
        if w.sum() <= 0:
            w = np.ones_like(w)
    return w / w.sum()


class TeachEnv(gymnasium.Env):
    """A teachgym experiment as a Gymnasium environment (see the module docstring).

    Args:
        env: Teachgym env name (or ``module:attr``).
        student: Student name (``simulated``, ``hf``, or ``module:attr``).
        env_kwargs: Keyword arguments for the env, validated like a config section.
        student_kwargs: Keyword arguments for the student.
        rounds: Rounds per episode.
        examples_per_round: Training examples per round.
        reward: ``"gain"``, ``"final"`` or ``"weakest"``.
        action: ``"logits"`` or ``"weights"``.
        logit_scale: Softmax temperature inverse for ``action="logits"`` (3: weights span a factor e^6).
        max_new_tokens: Generation length for evaluation (students without the fast path).
        eval_batch_size: Batch size for evaluation (students without the fast path).
        render_mode: ``None`` or ``"ansi"``.
        randomize: Domain randomisation: ``{student parameter: spread}``; every episode's student is
            built from :func:`randomize_params` of ``student_kwargs`` (a new student per episode).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        env: str = "arithmetic",
        student: str = "simulated",
        env_kwargs: Mapping[str, Any] | None = None,
        student_kwargs: Mapping[str, Any] | None = None,
        rounds: int = 8,
        examples_per_round: int = 8000,
        reward: Literal["gain", "final", "weakest"] = "gain",
        action: Literal["logits", "weights"] = "logits",
        logit_scale: float = 3.0,
        max_new_tokens: int = 16,
        eval_batch_size: int = 256,
        render_mode: str | None = None,
        randomize: Mapping[str, float] | None = None,
    ) -> None:
        if reward not in ("gain", "final", "weakest"):
            raise ValueError(f"reward must be 'gain', 'final' or 'weakest', got {reward!r}")
        if action not in ("logits", "weights"):
            raise ValueError(f"action must be 'logits' or 'weights', got {action!r}")
        if rounds < 1 or examples_per_round < 1:
            raise ValueError("rounds and examples_per_round must be positive")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self._student_config = ComponentConfig(name=student, **dict(student_kwargs or {}))
        self.randomize = dict(randomize or {})
        # A bad spread or an unknown parameter fails here, not at the first reset.
        randomize_params(self._student_config.kwargs, self.randomize, np.random.default_rng(0))
        self._build = build_component
        self.teach_env = build_component("envs", "env", ComponentConfig(name=env, **dict(env_kwargs or {})))
        self.skills = [s.name for s in self.teach_env.skills]
        self.rounds, self.examples_per_round = rounds, examples_per_round
        self.reward_kind, self.action_kind, self.logit_scale = reward, action, logit_scale
        self.max_new_tokens, self.eval_batch_size = max_new_tokens, eval_batch_size
        self.render_mode = render_mode
        k = len(self.skills)
        low = np.concatenate([np.zeros(k), np.zeros(k), -np.ones(k), [0.0]]).astype(np.float32)
        high = np.concatenate([np.ones(k), np.full(k, LOSS_CAP), np.ones(k), [1.0]]).astype(np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = (spaces.Box(-1.0, 1.0, (k,), np.float32) if action == "logits"
                             else spaces.Box(0.0, 1.0, (k,), np.float32))
        self.student: Any = None
        self.fast = False  # whether the student has the analytic fast path (set when it is built)
        self._eval_prompts: set[str] | None = None
        self._round = 0

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _has_fast_path(student: Any) -> bool:
        return all(callable(getattr(student, m, None)) for m in ("practice", "measure", "expected_loss", "reset"))

    def _measure(self) -> tuple[np.ndarray, np.ndarray]:
        if self.fast:
            return self.student.measure(), self.student.expected_loss()

        result = evaluate(self.student, self.teach_env, None, self.max_new_tokens, self.eval_batch_size, 0)
        acc = np.array([result.profile[s].accuracy for s in self.skills])
        return acc, np.array([result.profile[s].loss for s in self.skills])

    def _obs(self) -> np.ndarray:
        return _vector(self._acc, self._loss, self._acc - self._prev, self._round / self.rounds)

    def _info(self) -> dict[str, Any]:
        return {
            "round": self._round,
            "accuracy": dict(zip(self.skills, self._acc.tolist())),
            "mean_accuracy": float(np.nanmean(self._acc)),
            "examples": self._round * self.examples_per_round,
        }

    # -- gymnasium API --------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        # A fresh student per episode; its seed comes from the env's RNG so reset(seed) is reproducible.
        student_seed = int(self.np_random.integers(2**31 - 1))
        if self.student is not None and self.fast and not self.randomize:
            self.student.reset(student_seed)
        else:
            config = self._student_config
            if self.randomize:  # domain randomisation: another student around the given parameters
                drawn = randomize_params(config.kwargs, self.randomize, self.np_random)
                config = ComponentConfig(name=config.name, **drawn)
            self.student = self._build("students", "student", config, seed=student_seed, env=self.teach_env)
            if filters_groups(self.student):  # it would need a BatchSource to refill from: refuse, do not ignore
                raise ConfigError("student_kwargs: filter_groups needs teachgym run (the gym trains each round as a "
                                  "whole and cannot refill dropped groups); drop it here")
            self.fast = self._has_fast_path(self.student)
        self._round = 0
        self._acc, self._loss = self._measure()
        self._prev = self._acc.copy()
        return self._obs(), self._info()

    def step(self, action: np.ndarray):
        if self.student is None:
            raise RuntimeError("call reset() before step()")
        if self._round >= self.rounds:
            raise RuntimeError("the episode is over: call reset()")
        weights = action_to_weights(action, self.action_kind, self.logit_scale)
        self._round += 1
        if self.fast:
            self.student.practice(weights * self.examples_per_round)
        else:
            if self._eval_prompts is None:
                self._eval_prompts = set(column(self.teach_env.eval_set(), "prompt"))
            mixture = Mixture(dict(zip(self.skills, weights.tolist())))
            seed = int(self.np_random.integers(2**31 - 1))
            data, _ = materialize(mixture, self.teach_env, self.examples_per_round, seed, self._eval_prompts)
            self.student.train(data)
        self._prev = self._acc
        self._acc, self._loss = self._measure()
        terminated = self._round >= self.rounds
        if self.reward_kind == "gain":
            reward = float(np.nanmean(self._acc) - np.nanmean(self._prev))
        elif self.reward_kind == "weakest":
            reward = float(np.nanmin(self._acc) - np.nanmin(self._prev))
        else:
            reward = float(np.nanmean(self._acc)) if terminated else 0.0
        info = self._info()
        info["mixture"] = dict(zip(self.skills, weights.tolist()))
        return self._obs(), reward, terminated, False, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        cells = " ".join(f"{s}={a:.2f}" for s, a in zip(self.skills, self._acc))
        return f"round {self._round}/{self.rounds}: {cells}"


# One id per built-in env; any other env: gymnasium.make("teachgym/Teach-v0", env="module:Env").
gymnasium.register(id="teachgym/Teach-v0", entry_point="teachgym.gym:TeachEnv")
gymnasium.register(id="teachgym/Arithmetic-v0", entry_point="teachgym.gym:TeachEnv", kwargs={"env": "arithmetic"})
