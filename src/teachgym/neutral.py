"""Neutral skill names: the teacher sees skills under names drawn per seed, in a shuffled order, without their
descriptions (``loop.skill_names: neutral``).

A skill's name is a surface form, not part of the task: the bench's noise skills were ``n1``…``n6``, and a
ten-line teacher that skipped ``n<digit>`` matched the oracle. Under neutral names a teacher learns what it can
only from what it observes. The env, the student, the logs and the scorer keep the real names: only the
teacher's side is renamed — its observations (profile, failures, history, graph, probes, rollouts, per-step
statistics) on the way in, its actions (mixtures, synthesis requests, rows, probes) on the way back.

A teacher that is given the hidden structure by name (the bench's ``oracle``) says so with the class attribute
``sees_hidden_structure = True`` and is not renamed.
"""

from __future__ import annotations

import dataclasses
import random
import string
from collections.abc import Mapping, Sequence
from typing import Any

from teachgym.seeds import names_seed
from teachgym.types import (
    Action,
    Examples,
    HistoryEntry,
    Mixture,
    Observation,
    Probe,
    ProbeResult,
    Request,
    Skill,
    StepObservation,
    Synthesize,
)

SKILL_NAMES = ("given", "neutral")


def neutral_names(skills: Sequence[str], seed: int) -> dict[str, str]:
    """``{real name: neutral name}``: four random letters each, distinct, drawn from ``seed`` (the same skills and
    seed give the same names; nothing of the real name or its position is in it)."""
    rng = random.Random(names_seed(seed))
    drawn: set[str] = set()
    out = {}
    for s in skills:
        name = "".join(rng.choices(string.ascii_lowercase, k=4))
        while name in drawn:
            name = "".join(rng.choices(string.ascii_lowercase, k=4))
        drawn.add(name)
        out[s] = name
    return out


class Renaming:
    """Both directions of one seed's renaming, over observations and actions."""

    def __init__(self, skills: Sequence[str], seed: int) -> None:
        self.to = neutral_names(skills, seed)
        self.back = {v: k for k, v in self.to.items()}
        self.order = list(self.to)
        random.Random(names_seed(seed) + 1).shuffle(self.order)  # the order the teacher sees them in

    def _keys(self, m: Mapping[str, Any] | None, names: Mapping[str, str]) -> Any:
        return None if m is None else {names.get(k, k): v for k, v in m.items()}

    def skill(self, s: Skill) -> Skill:
        return Skill(self.to[s.name], "", tuple(self.to.get(p, p) for p in s.prerequisites), s.levels)

    def observation(self, obs: Observation) -> Observation:
        by_name = {s.name: s for s in obs.skills}
        to = self.to
        return dataclasses.replace(
            obs,
            skills=tuple(self.skill(by_name[s]) for s in self.order if s in by_name),
            profile={to[s]: obs.profile[s] for s in self.order if s in obs.profile},
            failures=tuple(dataclasses.replace(f, skills=tuple(to.get(s, s) for s in f.skills))
                           for f in obs.failures),
            history=tuple(HistoryEntry(h.round, self._keys(h.profile, to), self.action(h.action, to),
                                       self._keys(h.rollouts, to)) for h in obs.history),
            skill_graph=None if obs.skill_graph is None else {
                to.get(k, k): tuple(to.get(x, x) for x in v) for k, v in obs.skill_graph.items()},
            probes=tuple(ProbeResult(self._keys(p.weights, to), p.examples, self._keys(p.loss_before, to),
                                     self._keys(p.loss_after, to)) for p in obs.probes),
            subskills=self._keys(obs.subskills, to),
            rollouts=self._keys(obs.rollouts, to),
        )

    def step(self, obs: StepObservation) -> StepObservation:
        to = self.to
        return dataclasses.replace(obs, skills=tuple(to[s] for s in self.order if s in obs.skills),
                                   prior=self._keys(obs.prior, to), last=self._keys(obs.last, to),
                                   so_far=self._keys(obs.so_far, to))

    def action(self, action: Action | None, names: Mapping[str, str]) -> Any:
        """``action`` with its skill names looked up in ``names`` (:attr:`to` or :attr:`back`); an unknown name is
        left as it is, for the action check to refuse with the names the teacher was shown."""
        if isinstance(action, Mixture):
            return Mixture(self._keys(action.weights, names))
        if isinstance(action, Synthesize):
            return Synthesize(tuple(Request(names.get(r.skill, r.skill), r.n, r.level) for r in action.requests))
        if isinstance(action, Examples):
            rows = [{**row, "skills": [names.get(s, s) for s in row.get("skills", ())]} for row in action.rows]
            return Examples(rows)
        if isinstance(action, Probe):
            return Probe(self.action(action.mixture, names), action.n)
        return action


class NeutralView:
    """A teacher seen through :class:`Renaming`: the loop calls it as it calls the teacher itself."""

    def __init__(self, policy: Any, renaming: Renaming) -> None:
        self.policy, self.renaming = policy, renaming

    def act(self, obs: Observation) -> Action:
        return self.renaming.action(self.policy.act(self.renaming.observation(obs)), self.renaming.back)

    def __getattr__(self, name: str) -> Any:  # state_dict, explain, flags: the teacher's own
        if name in ("policy", "renaming"):  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.policy, name)


def _step(self: NeutralView, obs: StepObservation) -> Mixture:
    return self.renaming.action(self.policy.step(self.renaming.step(obs)), self.renaming.back)


def _probes(self: NeutralView, obs: Observation) -> Any:
    found = self.policy.probes(self.renaming.observation(obs))
    return [self.renaming.action(p, self.renaming.back) for p in found or ()]


def neutral_view(policy: Any, skills: Sequence[Skill], seed: int) -> Any:
    """``policy`` seeing neutral names (itself, for a teacher that ``sees_hidden_structure``).

    The view has the teacher's optional methods (``step``, ``probes``) only where the teacher has them, so that
    the loop's capability checks see the same teacher.
    """
    if getattr(policy, "sees_hidden_structure", False):
        return policy
    methods = {name: fn for name, fn in (("step", _step), ("probes", _probes)) if callable(getattr(policy, name, None))}
    view = type(f"Neutral{type(policy).__name__}", (NeutralView,), methods)
    return view(policy, Renaming([s.name for s in skills], seed))
