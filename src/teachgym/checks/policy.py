"""The teacher-policy checker: a policy acts on made-up observations of every state level, per round and per
step, and what it returns is a valid action."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from teachgym.checks.common import CheckError, _methods, _require
from teachgym.protocols import Probes, TeachesPerStep
from teachgym.state import STATE_LEVELS, policy_levels, restrict
from teachgym.types import (
    Failure,
    HistoryEntry,
    InvalidActionError,
    Mixture,
    Observation,
    Probe,
    ProbeResult,
    RolloutStats,
    Skill,
    SkillStats,
    StepObservation,
    action_to_dict,
    merge_rollouts,
    validate_action,
    validate_probes,
)


def make_observation(
    skills: Sequence[Skill],
    accuracies: Sequence[float],
    round: int = 1,
    rounds_total: int = 5,
    examples_per_round: int = 100,
    losses: Sequence[float] | None = None,
    previous: Sequence[float] | None = None,
    history: Sequence[HistoryEntry] = (),
    n: int = 100,
) -> Observation:
    """Build an :class:`Observation` by hand (for tests and for checking a policy)."""
    losses = list(losses) if losses is not None else [2.0 * (1 - a) + 0.1 for a in accuracies]
    profile = {
        s.name: SkillStats(
            accuracy=float(a),
            loss=float(lo),
            n=n,
            missing_rate=1.0 - float(a),
            change=None if previous is None else float(a) - float(p),
        )
        for s, a, lo, p in zip(skills, accuracies, losses, previous or [0.0] * len(skills))
    }
    used = (round - 1) * examples_per_round
    return Observation(
        round=round,
        rounds_total=rounds_total,
        examples_per_round=examples_per_round,
        budget_used=used,
        budget_left=rounds_total * examples_per_round - used,
        skills=tuple(skills),
        profile=profile,
        failures=tuple(Failure("1+1=", "2", "3", (skills[0].name,)) for _ in range(2)),
        history=tuple(history),
        skill_graph={s.name: s.prerequisites for s in skills},
    )


def _episode(skills: Sequence[Skill], rounds: int, seed: int) -> list[Observation]:
    import random

    rng = random.Random(seed)
    acc = [rng.random() * 0.3 for _ in skills]
    obs, history, prev = [], [], None
    for r in range(1, rounds + 1):
        o = make_observation(skills, acc, round=r, rounds_total=rounds, previous=prev)
        # Rollout statistics as an RL student reports them (none before the first round's training);
        # every other round leaves a skill out, as a mixture without it would.
        rollouts = {} if r == 1 else {
            s.name: _rollout(a, rng) for i, (s, a) in enumerate(zip(skills, acc)) if (i + r) % 4 or r % 2
        }
        # As in the loop, the history ends with the profile the observation carries.
        history.append(HistoryEntry(r - 1, o.profile, None, rollouts or None))
        obs.append(dataclasses.replace(o, history=tuple(history), rollouts=rollouts))
        prev = list(acc)
        acc = [min(1.0, a + rng.random() * 0.2) for a in acc]
    return obs


def _rollout(p: float, rng: Any) -> RolloutStats:
    """Plausible rollout statistics for a skill whose pass rate is about ``p``."""
    groups = 8 + rng.randrange(8)
    return RolloutStats(pass_rate=p, learnability=p * (1 - p) * 0.8, mean_abs_advantage=0.3 + rng.random() * 0.5,
                        zero_variance_share=rng.random(), completion_length=4.0, groups=groups,
                        completions=groups * 4)


def _with_probes(policy: Any, obs: Observation) -> Observation:
    """For a probing policy: validate its plan and hand back made-up but consistent probe results."""
    if not isinstance(policy, Probes):
        return obs
    plan = policy.probes(obs)
    try:
        validate_probes(plan, obs.skills, obs.examples_per_round)
    except InvalidActionError as e:
        raise CheckError(f"round {obs.round}: invalid probes: {e}") from None
    results = []
    loss = {s: obs.profile[s].loss for s in obs.skill_names}
    for k, p in enumerate(plan):
        assert isinstance(p, Probe)
        total = sum(p.mixture.weights.values())
        after = {s: v * (1 - 0.1 * p.mixture.weights.get(s, 0.0) / total) - 0.001 * k for s, v in loss.items()}
        results.append(ProbeResult({s: w / total for s, w in p.mixture.weights.items()}, p.n, loss, after))
        loss = after
    used = sum(p.n for p in plan)
    return dataclasses.replace(obs, probes=tuple(results), budget_used=obs.budget_used + used,
                               budget_left=obs.budget_left - used)


def check_policy(
    make_policy: Callable[[], Any],
    skills: Sequence[Skill] | None = None,
    rounds: int = 6,
    require_normalized: bool = False,
) -> None:
    """Check a policy on a synthetic episode: valid actions, determinism, and state round-trips.

    Args:
        make_policy: A zero-argument factory (e.g. ``lambda: MyPolicy(seed=0)``); called several
            times, each call must give a fresh policy with the same seed.
        skills: The skills to test on (default: four skills with a prerequisite chain).
        rounds: Length of the synthetic episode.
        require_normalized: Also require mixture weights to sum to 1 (the built-ins do; a
            user's policy may return unnormalised weights, which the engine normalises).

    Raises:
        CheckError: On the first problem found.
    """
    skills = list(skills or [Skill("a"), Skill("b", prerequisites=("a",), levels=(1, 2)), Skill("c"), Skill("d")])
    episode = _episode(skills, rounds, seed=7)
    policy = make_policy()
    _methods(policy, ["act"], "policy")
    stateful = [callable(getattr(policy, m, None)) for m in ("state_dict", "load_state_dict")]
    _require(stateful[0] == stateful[1], "state_dict() and load_state_dict() go together: both, or neither")
    actions = []
    for o in episode:
        a = policy.act(_with_probes(policy, o))
        try:
            validate_action(a, skills)
        except InvalidActionError as e:
            raise CheckError(f"round {o.round}: invalid action: {e}") from None
        if isinstance(a, Mixture):
            total = sum(a.weights.values())
            _require(math.isfinite(total) and total > 0, f"round {o.round}: weights sum to {total}")
            if require_normalized:
                _require(abs(total - 1.0) < 1e-6, f"round {o.round}: weights sum to {total}, not 1")
        actions.append(action_to_dict(a))
    again = make_policy()
    replay = [action_to_dict(again.act(_with_probes(again, o))) for o in episode]
    _require(replay == actions, "two policies built the same way made different decisions (seed not honoured?)")

    _check_state_round_trip(make_policy, episode, all(stateful))
    _check_state_levels(make_policy, policy, skills, episode)
    if isinstance(policy, TeachesPerStep):
        _check_steps(make_policy, skills, episode)


def _check_state_round_trip(make_policy: Callable[[], Any], episode: Sequence[Observation], stateful: bool) -> None:
    """A policy restored from a snapshot taken halfway decides as the original does."""
    # State round-trip: snapshot halfway, continue; a fresh policy loaded from the snapshot must agree.
    # A stateless policy (no state_dict) must then decide from the observation alone: a fresh one agrees.
    half = len(episode) // 2
    first = make_policy()
    for o in episode[:half]:
        first.act(_with_probes(first, o))
    restored = make_policy()
    if stateful:
        state = copy.deepcopy(first.state_dict())
        _require(isinstance(state, dict), "state_dict() must return a dict")
        try:
            json.dumps(state)
        except TypeError as e:
            raise CheckError(f"state_dict() is not JSON-serialisable: {e}") from None
        restored.load_state_dict(state)
    rest_a = [action_to_dict(first.act(_with_probes(first, o))) for o in episode[half:]]
    rest_b = [action_to_dict(restored.act(_with_probes(restored, o))) for o in episode[half:]]
    _require(rest_a == rest_b, "a policy restored from state_dict() decides differently from the original"
             if stateful else "a stateless policy (no state_dict) decides differently after earlier rounds: "
             "it keeps state, so --resume could not reproduce it; add state_dict()/load_state_dict()")


def _check_state_levels(make_policy: Callable[[], Any], policy: Any, skills: Sequence[Skill],
                        episode: Sequence[Observation]) -> None:
    """Valid actions on every state level the policy claims (observations restricted to it)."""
    # Every state level the policy claims (DataEnvGym's open-ended / skill-list / skill-tree) must
    # give valid actions when the observation is restricted to it.
    levels = policy_levels(policy)
    bad = sorted(set(levels) - set(STATE_LEVELS))
    _require(not bad, f"state_levels names unknown levels {bad}; levels: {list(STATE_LEVELS)}")
    for level in levels:
        if level == "skill-list":
            continue
        p = make_policy()
        for o in episode:
            # Made-up sub-skills: each harder level of a skill 20% less accurate than the one before.
            acc = {s.name: [o.profile[s.name].accuracy * (1 - 0.2 * i) for i in range(len(s.levels))] for s in skills}
            tree = {s.name: {lv: dataclasses.replace(o.profile[s.name], accuracy=a, missing_rate=1 - a)
                             for lv, a in zip(s.levels, acc[s.name])} for s in skills}
            seen = restrict(o, level, tree)
            try:
                a = p.act(_with_probes(p, seen))
                validate_action(a, skills)
            except InvalidActionError as e:
                raise CheckError(f"state {level}, round {o.round}: invalid action: {e}") from None
            except (KeyError, TypeError, AttributeError) as e:
                raise CheckError(
                    f"state {level}, round {o.round}: the policy failed on what this state shows ({e!r}); "
                    f"drop {level!r} from its state_levels or handle it"
                ) from None


def _stepped(policy: Any, episode: Sequence[Observation], skills: Sequence[Skill], steps: int = 4) -> list[Any]:
    """A round-and-step episode: ``act`` each round, then ``steps`` calls of ``step`` with made-up batch rollouts.

    Returns every decision, as dicts (a step that is not a valid ``Mixture`` raises :class:`CheckError`).
    """
    import random

    rng, names, out = random.Random(11), tuple(s.name for s in skills), []
    for o in episode:
        act = policy.act(_with_probes(policy, o))
        out.append(action_to_dict(act))
        prior = dict(act.weights) if isinstance(act, Mixture) else {s: 1.0 for s in names}
        acc = {s.name: o.profile[s.name].accuracy for s in skills}
        batches: list[dict[str, RolloutStats]] = []
        for k in range(steps):
            obs = StepObservation(o.round, k, steps, names, prior, batches[-1] if batches else {},
                                  merge_rollouts(batches), 8 * k, 64 * k)
            mixture = policy.step(obs)
            where = f"round {o.round}, step {k}"
            _require(isinstance(mixture, Mixture), f"{where}: step() must return a Mixture, not "
                     f"{type(mixture).__name__}")
            try:
                validate_action(mixture, skills)
            except InvalidActionError as e:
                raise CheckError(f"{where}: invalid step mixture: {e}") from None
            out.append(action_to_dict(mixture))
            batches.append({s: _rollout(acc[s], rng) for s in names if rng.random() < 0.7})
    return out


def _check_steps(make_policy: Callable[[], Any], skills: Sequence[Skill], episode: Sequence[Observation]) -> None:
    """A policy with ``step``: valid per-step mixtures, determinism, and a state that holds what the steps learnt
    (``--resume`` restores it at the end of a round, after the round's steps)."""
    decisions = _stepped(make_policy(), episode, skills)
    _require(_stepped(make_policy(), episode, skills) == decisions,
             "two policies built the same way made different step decisions (seed not honoured?)")
    half = len(episode) // 2
    first = make_policy()
    _stepped(first, episode[:half], skills)
    restored = make_policy()
    if callable(getattr(first, "state_dict", None)):
        restored.load_state_dict(copy.deepcopy(first.state_dict()))
    _require(_stepped(first, episode[half:], skills) == _stepped(restored, episode[half:], skills),
             "a policy restored from state_dict() after a round of steps decides differently from the original: "
             "what step() learns must be in state_dict()")


# -- student ------------------------------------------------------------------------------------


