"""A teacher without the loop: any teachgym policy, driven by per-skill statistics alone.

Researchers who train in their own script (TRL, verl, a hand-written loop) measure per-skill pass rates,
rewards and group statistics anyway; :func:`teacher` turns those into the mixture a teachgym policy would
choose, with the policy object the loop uses, unchanged::

    from teachgym.teacher import teacher

    t = teacher("learnability", skills=["add", "mul"], seed=0)
    t.weights                                    # before any statistics: uniform
    t.update({"add": {"pass_rate": 0.9, "n": 64, "learnability": 0.05},
              "mul": {"pass_rate": 0.3, "n": 64, "learnability": 0.20}})  # -> {"add": ..., "mul": ...}
    saved = t.state_dict()                       # JSON-ready; t.load_state_dict(saved) goes on from it

**One update is one round of the loop.** The statistics of an update are the profile measured after the
training since the previous update (the first update: after training on the initial, uniform mixture), and,
where they carry group statistics, that training's rollouts; the policy sees an
:class:`~teachgym.types.Observation` built from them and its earlier updates, exactly as in ``teachgym run``
(round ``k + 1`` after ``k + 1`` updates). Per skill, the statistics are a
:class:`~teachgym.types.SkillStats`, a :class:`~teachgym.types.RolloutStats`, or a mapping with
:data:`KEYS`: ``accuracy`` (or ``pass_rate``: the share of correct answers), ``n`` (how many were scored),
``loss`` (mean eval loss, for the policies that read it: ``skill-it``), and the rollout statistics
(``learnability``, ``mean_abs_advantage``, ``zero_variance_share``, ``completion_length``, ``groups``,
``completions``: :func:`group_stats` makes them from groups of rewards) for the policies that read GRPO
rollouts (``learnability``, ``dump``, ``sec``). A skill left out of an update keeps its last statistics; one
never measured shows ``n = 0``, accuracy 0 (no evidence yet). A ``Synthesize`` action is read as the mixture
of its requests' shares (there is no generator here); a policy that writes its own rows (``Examples``) or
asks for training probes (``aioli``) needs the loop, and is refused when built.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from teachgym.checks.common import check_plugin
from teachgym.config import ComponentConfig, ConfigError, build_component
from teachgym.errors import TeachgymError
from teachgym.protocols import Probes, Stateful
from teachgym.state import policy_levels
from teachgym.statefile import decode, encode
from teachgym.students._rollouts import Group, Rollouts
from teachgym.types import (
    Examples,
    HistoryEntry,
    InvalidActionError,
    Mixture,
    Observation,
    RolloutStats,
    Skill,
    SkillStats,
    Synthesize,
    merge_rollouts,
    validate_action,
)

__all__ = ["KEYS", "Teacher", "TeacherError", "group_stats", "teacher"]

#: The per-skill statistics an update may carry (see the module docstring).
ROLLOUT_KEYS = ("learnability", "mean_abs_advantage", "zero_variance_share", "completion_length", "groups",
                "completions")
KEYS = ("accuracy", "pass_rate", "n", "loss", *ROLLOUT_KEYS)


class TeacherError(TeachgymError, ValueError):
    """Statistics a teacher cannot read, or a policy that cannot teach outside the loop."""


def teacher(policy: str | Any, skills: Sequence[str | Skill], *, seed: int = 0, rounds: int | None = None,
            examples_per_round: int = 1000, **options: Any) -> Teacher:
    """A :class:`Teacher` for ``policy``: a registered name (``"learnability"``, ``"pkg.module:Class"``) built with
    ``options`` and ``seed`` as a config's ``policy:`` section would build it, or a policy object.

    Args:
        policy: The policy's name, or the policy itself.
        skills: The skills it chooses between (names, or :class:`~teachgym.types.Skill` s with prerequisites).
        seed: The policy's seed (where its constructor takes one).
        rounds: How many updates the run will make, where known (the observation's ``rounds_total``).
        examples_per_round: The rows trained between two updates (the observation's budget fields).
        **options: The policy's constructor arguments (a misspelt one is named, with the accepted ones).

    Raises:
        ConfigError: Unknown options; RegistryError: an unknown name (with near names); TeacherError: a policy
            that needs the loop.
    """
    name = policy if isinstance(policy, str) else type(policy).__name__
    if isinstance(policy, str):
        policy = build_component("policies", "policy", ComponentConfig(name=name, **options), seed=seed)
    elif options:
        raise ConfigError(f"options {sorted(options)} are for a policy built by name; {name} is built already")
    return Teacher(policy, skills, name=name, rounds=rounds, examples_per_round=examples_per_round)


class Teacher:
    """A policy and the history it has seen: :meth:`update` with per-skill statistics gives the next mixture."""

    def __init__(self, policy: Any, skills: Sequence[str | Skill], *, name: str = "", rounds: int | None = None,
                 examples_per_round: int = 1000) -> None:
        self.name = name or type(policy).__name__
        check_plugin("policy", policy, self.name)
        if "skill-list" not in policy_levels(policy):
            raise TeacherError(f"policy {self.name!r} reads {list(policy_levels(policy))} state; a teacher outside "
                               "the loop shows the per-skill profile ('skill-list')")
        if isinstance(policy, Probes):
            raise TeacherError(f"policy {self.name!r} asks for training probes before it acts; only the loop "
                               "(teachgym run) can train them")
        self.skills = tuple(s if isinstance(s, Skill) else Skill(str(s)) for s in skills)
        names = [s.name for s in self.skills]
        if not names or len(set(names)) != len(names):
            raise TeacherError(f"skills must be distinct names, at least one; got {names}")
        self.policy = policy
        self.rounds = rounds
        self.examples_per_round = examples_per_round
        self.history: list[HistoryEntry] = []
        self.weights: dict[str, float] = {s: 1.0 / len(names) for s in names}
        self._action: Mixture | Synthesize | None = None

    @property
    def skill_names(self) -> list[str]:
        return [s.name for s in self.skills]

    def update(self, stats: Mapping[str, Any]) -> dict[str, float]:
        """Fold one round's per-skill statistics in and return the policy's next mixture (normalised weights over
        every skill, in skill order); also kept as :attr:`weights`."""
        done = len(self.history)  # the round these statistics close (0: before any teaching decision)
        last = self.history[-1].profile if self.history else {}
        profile, rollouts = read_stats(stats, self.skill_names, last)
        self.history.append(HistoryEntry(done, profile, self._action, rollouts or None))
        r = done + 1
        total = max(self.rounds or r, r)
        obs = Observation(round=r, rounds_total=total, examples_per_round=self.examples_per_round,
                          budget_used=done * self.examples_per_round,
                          budget_left=(total - r + 1) * self.examples_per_round, skills=self.skills, profile=profile,
                          history=tuple(self.history), skill_graph={s.name: s.prerequisites for s in self.skills},
                          rollouts=rollouts)
        try:
            action = self.policy.act(obs)
        except TeachgymError:
            raise
        except Exception as e:
            raise TeacherError(f"policy {self.name!r} raised {type(e).__name__} in act() at update {r}: {e}") from e
        self.weights = self._weights(action, r)
        self._action = action
        return dict(self.weights)

    def _weights(self, action: Any, r: int) -> dict[str, float]:
        """The action as normalised weights over every skill; garbage is refused, naming the policy."""
        if isinstance(action, Examples):
            raise TeacherError(f"policy {self.name!r} wrote its own rows (Examples) at update {r}; outside the loop "
                               "there is no engine to check and train on them")
        try:
            validate_action(action, self.skills)
        except InvalidActionError as e:
            lossless = [s for s, st in self.history[-1].profile.items() if math.isnan(st.loss)]
            hint = f" (it may read 'loss', which the statistics of {lossless} lack)" if lossless else ""
            raise TeacherError(f"policy {self.name!r} returned an invalid action at update {r}: {e}{hint}") from e
        if isinstance(action, Synthesize):
            raw = {s: 0.0 for s in self.skill_names}
            for req in action.requests:
                raw[req.skill] += req.n
        else:
            raw = {s: float(action.weights.get(s, 0.0)) for s in self.skill_names}
        total = sum(raw.values())
        if not total > 0:
            raise TeacherError(f"policy {self.name!r} gave every skill weight 0 at update {r}")
        return {s: w / total for s, w in raw.items()}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to go on after a restart, as JSON-ready data (the policy's own state included)."""
        return encode({"history": self.history, "weights": self.weights, "action": self._action,
                       "policy": copy.deepcopy(self.policy.state_dict()) if isinstance(self.policy, Stateful)
                       else None}, {})

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Go on from a :meth:`state_dict`."""
        found = decode(dict(state), _NO_FOLDER)
        self.history = list(found["history"])
        self.weights = dict(found["weights"])
        self._action = found["action"]
        if found.get("policy") is not None and isinstance(self.policy, Stateful):
            self.policy.load_state_dict(found["policy"])


_NO_FOLDER: Any = None  # a teacher's state holds no datasets, so decode never reads a folder


def read_stats(stats: Mapping[str, Any], skills: Sequence[str],
               last: Mapping[str, SkillStats]) -> tuple[dict[str, SkillStats], dict[str, RolloutStats]]:
    """An update's statistics as the loop's profile and rollouts (see the module docstring).

    Raises:
        TeacherError: An unknown skill or key, a missing accuracy, a value that is not a finite number.
    """
    if not isinstance(stats, Mapping):
        raise TeacherError(f"an update is a mapping of skill -> statistics, not {type(stats).__name__}")
    unknown = sorted(set(stats) - set(skills))
    if unknown:
        raise TeacherError(f"statistics for unknown skills {unknown}; the teacher's skills: {list(skills)}")
    profile, rollouts = dict(last), {}
    for skill, found in stats.items():
        if isinstance(found, SkillStats | RolloutStats):
            found = {"accuracy": found.accuracy, "n": found.n, "loss": found.loss} if isinstance(
                found, SkillStats) else {k: getattr(found, k) for k in ("pass_rate", *ROLLOUT_KEYS)}
        if not isinstance(found, Mapping):
            raise TeacherError(f"{skill}: statistics are a mapping with keys {list(KEYS)}, not {found!r}")
        extra = sorted(set(found) - set(KEYS))
        if extra:
            raise TeacherError(f"{skill}: unknown statistics {extra}; known: {list(KEYS)}")
        for key, value in found.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise TeacherError(f"{skill}.{key} is {value!r}, not a finite number")
        acc = found.get("accuracy", found.get("pass_rate"))
        if acc is None or not 0 <= acc <= 1:
            raise TeacherError(f"{skill}: needs 'accuracy' or 'pass_rate' in [0, 1], got {acc!r}")
        before = last.get(skill)
        loss = float(found.get("loss", before.loss if before else math.nan))
        n = int(found.get("n", found.get("completions", 0)))  # rollouts: every completion was scored
        profile[skill] = SkillStats(accuracy=float(acc), loss=loss, n=n, missing_rate=1 - acc,
                                    change=None if before is None else acc - before.accuracy)
        if any(k in found for k in ROLLOUT_KEYS):
            p = float(found.get("pass_rate", acc))
            groups = int(found.get("groups", found.get("n", 0)))
            rollouts[skill] = RolloutStats(
                pass_rate=p, learnability=float(found.get("learnability", 0.0)),
                mean_abs_advantage=float(found.get("mean_abs_advantage", 0.0)),
                zero_variance_share=float(found.get("zero_variance_share", 0.0)),
                completion_length=float(found.get("completion_length", 0.0)), groups=groups,
                completions=int(found.get("completions", groups)))
    for s in skills:  # never measured yet (a trainer's first batches need not reach every skill): no evidence
        profile.setdefault(s, SkillStats(accuracy=0.0, loss=math.nan, n=0, missing_rate=1.0))
    return {s: profile[s] for s in skills}, rollouts


def group_stats(groups: Iterable[tuple[str, Sequence[float], Sequence[float]]]) -> dict[str, dict[str, float]]:
    """Per-skill statistics of RL rollouts, for :meth:`Teacher.update`, from groups: ``(skill, passed, rewards)``
    for each prompt's completions (``passed``: 1 or 0 per completion; ``rewards``: what the trainer optimised).

    Per skill: ``pass_rate`` (over completions), ``learnability`` (mean over groups of ``p (1 - p)``, ``p`` the
    group's pass rate), ``mean_abs_advantage`` (rewards normalised within each group, as GRPO does),
    ``zero_variance_share`` (groups whose rewards are all equal), ``groups`` and ``completions``: the GRPO
    student's own sums (:class:`teachgym.students._rollouts.Rollouts`), one per group size, merged.
    """
    by_size: dict[int, Rollouts] = {}
    for skill, passed, rewards in groups:
        p, r = np.asarray(passed, dtype=float), np.asarray(rewards, dtype=float)
        if not len(p) or len(p) != len(r):
            raise TeacherError(f"{skill}: a group needs as many pass verdicts as rewards, at least one "
                               f"(got {len(p)} and {len(r)})")
        advantages = (r - r.mean()) / (r.std() + 1e-4)
        flat = bool(np.ptp(r) <= 1e-6 * max(1.0, float(np.abs(r).max())))
        group = Group({"skills": [skill]}, p.tolist(), advantages.tolist(), [0] * len(p), flat)
        by_size.setdefault(len(p), Rollouts(len(p))).add([group])
    merged = merge_rollouts([found.stats() for found in by_size.values()])
    return {skill: dataclasses.asdict(stats) for skill, stats in merged.items()}
