"""Behaviour checkers for the extension points, in the spirit of gymnasium's ``utils/env_checker.py``.

Each checker exercises a component the way the loop will and raises :class:`CheckError` with a precise
message when it misbehaves: :func:`check_env`, :func:`check_policy`, :func:`check_student`, and
:func:`check_plugin`, the quick structural check the loop runs on every component it builds. The test
suite runs them on every built-in; run them on your own plugin before a long experiment. The
contracts themselves are in :mod:`teachgym.protocols`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from teachgym.errors import TeachgymError
from teachgym.protocols import Probes, TeachesPerStep, learns_from_rewards, supports_generation
from teachgym.types import (
    EXAMPLE_COLUMNS,
    Failure,
    HistoryEntry,
    InvalidActionError,
    Mixture,
    Observation,
    RolloutStats,
    Skill,
    SkillStats,
    StepObservation,
    TrainReport,
    action_to_dict,
    validate_action,
)

if TYPE_CHECKING:  # pragma: no cover
    pass


class CheckError(TeachgymError, AssertionError):
    """A component does not behave as its protocol requires."""


#: What the loop calls on each kind of component; checked when the loop builds it, before round 0.
REQUIRED = {
    "policy": ("act(observation) -> Action", ["act"]),
    "student": ("train(dataset), generate(prompts), loss(prompts, completions), save(path)",
                ["train", "generate", "loss", "save"]),
    "env": ("eval_set(), pool(), generate(skill, n, level, seed), verify(prompt, output), name, skills",
            ["eval_set", "pool", "generate", "verify"]),
}


def check_plugin(kind: str, obj: Any, name: str) -> None:
    """The quick structural check the loop runs on every component it builds (before any training).

    Raises:
        ConfigError: A required method (or attribute) is missing; the message names it and the protocol.
    """
    from teachgym.config import ConfigError

    signature, methods = REQUIRED[kind]
    missing = [m for m in methods if not callable(getattr(obj, m, None))]
    if kind == "env":
        missing += [a for a in ("name", "skills") if not hasattr(obj, a)]
    if kind == "policy" and callable(getattr(obj, "state_dict", None)) != callable(
        getattr(obj, "load_state_dict", None)
    ):
        missing.append("load_state_dict" if callable(getattr(obj, "state_dict", None)) else "state_dict")
        signature += "; state_dict() and load_state_dict(state) go together (both, or neither for a stateless policy)"
    if missing:
        raise ConfigError(
            f"{kind} {name!r} ({type(obj).__name__}) lacks {', '.join(missing)}; a {kind} needs {signature}"
        )


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckError(msg)


def _methods(obj: Any, names: Sequence[str], what: str) -> None:
    missing = [n for n in names if not callable(getattr(obj, n, None))]
    _require(not missing, f"{what} {type(obj).__name__} lacks the method(s) {missing}")


# -- env ----------------------------------------------------------------------------------------


def _check_rows(rows: Any, skills: set[str], what: str) -> None:
    cols = rows.column_names if hasattr(rows, "column_names") else list(rows[0]) if len(rows) else []
    missing = [c for c in EXAMPLE_COLUMNS if c not in cols]
    _require(not missing, f"{what} lacks the columns {missing}")
    for i, row in enumerate(rows):
        _require(isinstance(row["prompt"], str) and row["prompt"] != "", f"{what} row {i} has an empty prompt")
        _require(isinstance(row["completion"], str), f"{what} row {i}: completion is not a string")
        rs = row["skills"]
        _require(
            isinstance(rs, (list, tuple)) and len(rs) > 0 and set(rs) <= skills,
            f"{what} row {i} has skills {rs!r}; each row needs a non-empty list of known skills",
        )


def check_env(env: Any, min_eval_per_skill: int = 1, sample: int = 200) -> None:
    """Check an env: skill graph, eval set, verifier, pool/generator disjointness and determinism.

    Args:
        env: The env instance.
        min_eval_per_skill: Fewest eval items each skill must have.
        sample: Rows of each data source to check with the verifier.

    Raises:
        CheckError: On the first problem found.
    """
    _methods(env, ["eval_set", "pool", "generate", "verify"], "env")
    _require(isinstance(getattr(env, "name", None), str), "env.name must be a string")
    skills = list(env.skills)
    _require(len(skills) > 0 and all(isinstance(s, Skill) for s in skills), "env.skills must be non-empty Skills")
    names = [s.name for s in skills]
    _require(len(set(names)) == len(names), f"duplicate skill names in {names}")
    for s in skills:
        unknown = set(s.prerequisites) - set(names)
        _require(not unknown, f"skill {s.name!r} has unknown prerequisites {sorted(unknown)}")
        _require(len(s.levels) > 0, f"skill {s.name!r} has no levels")
    # The prerequisite graph must be acyclic, or no skill in a cycle could ever be learned first.
    state: dict[str, int] = {}
    graph = {s.name: s.prerequisites for s in skills}

    def visit(n: str, path: tuple[str, ...]) -> None:
        _require(state.get(n) != 1, f"prerequisite cycle: {' -> '.join((*path, n))}")
        if state.get(n) == 2:
            return
        state[n] = 1
        for p in graph[n]:
            visit(p, (*path, n))
        state[n] = 2

    for n in names:
        visit(n, ())

    ev = env.eval_set()
    _check_rows(ev, set(names), "eval set")
    counts = {n: 0 for n in names}
    for rs in ev["skills"][:]:
        for s in rs:
            counts[s] += 1
    thin = {s: c for s, c in counts.items() if c < min_eval_per_skill}
    _require(not thin, f"skills with fewer than {min_eval_per_skill} eval items: {thin}")
    eval_prompts = set(ev["prompt"][:])
    for row in ev.select(range(min(sample, len(ev)))):
        _require(env.verify(row["prompt"], row["completion"]), f"verify() rejects the gold answer of {row!r}")
        _require(not env.verify(row["prompt"], row["completion"] + "9x"), f"verify() accepts junk for {row!r}")

    pool = env.pool()
    has_gen = supports_generation(env)
    _require(pool is not None or has_gen, "env has neither a pool nor a generator: nothing to train on")
    if pool is not None:
        _check_rows(pool, set(names), "pool")
        overlap = eval_prompts & set(pool["prompt"][:])
        _require(not overlap, f"pool contains {len(overlap)} eval prompts, e.g. {sorted(overlap)[:3]}")
        for row in pool.select(range(min(sample, len(pool)))):
            _require(env.verify(row["prompt"], row["completion"]), f"pool row fails its own verifier: {row!r}")
    if has_gen:
        for s in skills:
            for level in (None, *s.levels):
                rows = env.generate(s.name, 8, level=level, seed=3)
                _require(len(rows) > 0, f"generate({s.name!r}, level={level}) returned no rows")
                _check_rows(rows, set(names), f"generate({s.name!r})")
                for r in rows:
                    _require(s.name in r["skills"], f"generate({s.name!r}) returned a row of {r['skills']}")
                    _require(r["prompt"] not in eval_prompts, f"generate({s.name!r}) returned eval prompt {r!r}")
                    _require(env.verify(r["prompt"], r["completion"]), f"generated row fails the verifier: {r!r}")
                    if level is not None:
                        _require(r["level"] == level, f"generate(level={level}) returned level {r['level']}")
            again = env.generate(s.name, 8, seed=3)
            _require(again == env.generate(s.name, 8, seed=3), f"generate({s.name!r}) is not deterministic by seed")


# -- policy -------------------------------------------------------------------------------------


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
    from teachgym.types import Probe, ProbeResult, validate_probes

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

    # State round-trip: snapshot halfway, continue; a fresh policy loaded from the snapshot must agree.
    # A stateless policy (no state_dict) must then decide from the observation alone: a fresh one agrees.
    half = len(episode) // 2
    first = make_policy()
    for o in episode[:half]:
        first.act(_with_probes(first, o))
    restored = make_policy()
    if all(stateful):
        state = copy.deepcopy(first.state_dict())
        _require(isinstance(state, dict), "state_dict() must return a dict")
        import json

        try:
            json.dumps(state)
        except TypeError as e:
            raise CheckError(f"state_dict() is not JSON-serialisable: {e}") from None
        restored.load_state_dict(state)
    rest_a = [action_to_dict(first.act(_with_probes(first, o))) for o in episode[half:]]
    rest_b = [action_to_dict(restored.act(_with_probes(restored, o))) for o in episode[half:]]
    _require(rest_a == rest_b, "a policy restored from state_dict() decides differently from the original"
             if all(stateful) else "a stateless policy (no state_dict) decides differently after earlier rounds: "
             "it keeps state, so --resume could not reproduce it; add state_dict()/load_state_dict()")

    # Every state level the policy claims (DataEnvGym's open-ended / skill-list / skill-tree) must
    # give valid actions when the observation is restricted to it.
    from teachgym.state import STATE_LEVELS, policy_levels, restrict

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


    if isinstance(policy, TeachesPerStep):
        _check_steps(make_policy, skills, episode)


def _stepped(policy: Any, episode: Sequence[Observation], skills: Sequence[Skill], steps: int = 4) -> list[Any]:
    """A round-and-step episode: ``act`` each round, then ``steps`` calls of ``step`` with made-up batch rollouts.

    Returns every decision, as dicts (a step that is not a valid ``Mixture`` raises :class:`CheckError`).
    """
    import random

    from teachgym.types import merge_rollouts

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


def check_student(
    student: Any,
    train_rows: Sequence[dict],
    tmp_dir: str,
    load: Callable[[str], Any],
    make: Callable[[], Any] | None = None,
) -> None:
    """Check a student: batched generation matches one-by-one, losses are finite, training lowers
    the loss on the training rows (an RL student, ``learns_from_rewards``, reports its prompts and rollouts
    instead), and a saved student loads back with the same outputs. A student
    with ``save_state``/``load_state`` (what ``--resume`` needs) must also restore *exactly*: a fresh
    student loaded from the state answers, scores and trains on bit for bit like the original.

    Args:
        student: The student instance.
        train_rows: A few ``prompt``/``completion`` dicts to train on.
        tmp_dir: A scratch directory for :meth:`Student.save`.
        load: Loads a saved student from a directory (e.g. ``lambda p: HFStudent(model=p)``).
        make: Builds a fresh student configured like ``student`` (for the exact-resume check).

    Raises:
        CheckError: On the first problem found.
    """
    from datasets import Dataset

    _methods(student, ["train", "generate", "loss", "save"], "student")
    prompts = [r["prompt"] for r in train_rows]
    completions = [r["completion"] for r in train_rows]
    # Prompts of different lengths in one batch exercise padding.
    batched = student.generate(prompts, max_new_tokens=6)
    _require(isinstance(batched, list) and len(batched) == len(prompts), "generate() must return one str per prompt")
    _require(all(isinstance(x, str) for x in batched), "generate() must return strings")
    single = [student.generate([p], max_new_tokens=6)[0] for p in prompts]
    _require(batched == single, f"batched generation differs from one-by-one (padding?): {batched} vs {single}")
    before = student.loss(prompts, completions)
    _require(len(before) == len(prompts), "loss() must return one value per row")
    _require(all(math.isfinite(x) and x >= 0 for x in before), f"loss() returned {before}")
    report = student.train(Dataset.from_list([{"prompt": p, "completion": c} for p, c in zip(prompts, completions)]))
    _require(isinstance(report, TrainReport), f"train() must return a TrainReport, got {type(report).__name__}")
    after = student.loss(prompts, completions)
    if learns_from_rewards(student):
        # An RL student samples its own answers and learns from their rewards, not from the completions;
        # it must say what it trained on: every prompt once, and its rollout statistics.
        _require(report.metrics.get("rl/prompts") == len(prompts),
                 f"an RL student's train() must report rl/prompts = {len(prompts)}, got {report.metrics}")
        _require(isinstance(report.rollouts, dict), "an RL student's train() must report its rollouts")
    else:
        _require(sum(after) < sum(before), f"training did not lower the loss on its own data: {before} -> {after}")
    student.save(tmp_dir)
    loaded = load(tmp_dir)
    _require(loaded.generate(prompts, max_new_tokens=6) == student.generate(prompts, max_new_tokens=6),
             "a saved and reloaded student answers differently")
    reloaded_loss = loaded.loss(prompts, completions)
    _require(all(abs(a - b) < 1e-4 for a, b in zip(after, reloaded_loss)), "a reloaded student has other losses")

    has_state = [callable(getattr(student, m, None)) for m in ("save_state", "load_state")]
    _require(has_state[0] == has_state[1], "save_state() and load_state() go together: both, or neither")
    if all(has_state) and make is not None:
        import os

        state_dir = os.path.join(tmp_dir, "resume-state")
        student.save_state(state_dir)
        fresh = make()
        fresh.load_state(state_dir)
        _require(fresh.loss(prompts, completions) == student.loss(prompts, completions),
                 "a student restored by load_state() has other losses (it must be exact for --resume)")
        data = Dataset.from_list([{"prompt": p, "completion": c} for p, c in zip(prompts, completions)])
        student.train(data)
        fresh.train(data)
        _require(fresh.loss(prompts, completions) == student.loss(prompts, completions),
                 "a student restored by load_state() trains differently from the original (seed or step state lost?)")
