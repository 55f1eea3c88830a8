"""The data the loop passes around: skills, observations and teacher actions.

These are plain dataclasses with no heavy imports, so a policy author can ``from teachgym import
Observation, Mixture`` without pulling in torch or MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Union

from teachgym.errors import TeachgymError

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

#: Columns every example row carries (a ``datasets.Dataset`` row).
EXAMPLE_COLUMNS = ("prompt", "completion", "skills", "level", "source")


@dataclass(frozen=True)
class Skill:
    """A named ability the student can have.

    Attributes:
        name: Unique identifier used everywhere (metrics are ``acc/<name>``).
        description: One line a human (or an LLM teacher) can read.
        prerequisites: Names of skills that must be learned first.
        levels: The difficulty levels the env can generate, easiest first.
    """

    name: str
    description: str = ""
    prerequisites: tuple[str, ...] = ()
    levels: tuple[int, ...] = (1,)


@dataclass(frozen=True)
class SkillStats:
    """One skill's line in the missing-skill profile.

    Attributes:
        accuracy: Fraction of the skill's eval items the student got right.
        loss: Mean teacher-forced NLL per completion token on those items.
        n: Number of eval items that need the skill.
        missing_rate: Fraction of those items the student failed (STAT's missing-skill rate).
        change: ``accuracy`` minus the previous round's; ``None`` at round 0.
    """

    accuracy: float
    loss: float
    n: int
    missing_rate: float
    change: float | None = None


@dataclass(frozen=True)
class Failure:
    """One eval item the student got wrong."""

    prompt: str
    gold: str
    output: str
    skills: tuple[str, ...]


@dataclass(frozen=True)
class RolloutStats:
    """One skill's line in an RL student's rollout statistics for one round (see ``students/grpo.py``).

    Measured on the round's own training rollouts: every prompt of the skill was answered
    ``num_generations`` times by sampling, each answer scored by the env's verifier. A row with several
    skills counts for each of them.

    Attributes:
        pass_rate: ``p``, the share of the skill's completions the verifier accepted.
        learnability: The mean over the skill's prompts of ``p_i (1 - p_i)``, with ``p_i`` the prompt's own
            pass rate: the reward variance inside a group, which is what GRPO learns from (0 when every
            completion of a prompt is right, or every one wrong).
        mean_abs_advantage: Mean ``|A|`` over the completions, as the trainer computed the advantages.
        zero_variance_share: Share of the skill's groups whose rewards were all equal: no learning signal.
        completion_length: Mean completion length in tokens (EOS included when generated).
        groups: Prompts (groups) of the skill rolled out this round.
        completions: Completions of the skill this round (``groups * num_generations``).
    """

    pass_rate: float
    learnability: float
    mean_abs_advantage: float
    zero_variance_share: float
    completion_length: float
    groups: int
    completions: int


#: The statistics of :class:`RolloutStats` logged as ``rl/<stat>/<skill>``.
ROLLOUT_STATS = ("pass_rate", "learnability", "mean_abs_advantage", "zero_variance_share", "completion_length")


def merge_rollouts(parts: Sequence[Mapping[str, RolloutStats]]) -> dict[str, RolloutStats]:
    """Several batches' (or rounds') per-skill statistics as one, each weighted by its groups and completions."""
    out: dict[str, RolloutStats] = {}
    for skill in dict.fromkeys(s for part in parts for s in part):
        rows = [part[skill] for part in parts if skill in part and part[skill].groups > 0]
        groups, completions = sum(r.groups for r in rows), sum(r.completions for r in rows)
        if not groups:
            continue
        per_group = {k: sum(getattr(r, k) * r.groups for r in rows) / groups
                     for k in ("learnability", "zero_variance_share")}
        per_completion = {k: sum(getattr(r, k) * r.completions for r in rows) / max(1, completions)
                          for k in ("pass_rate", "mean_abs_advantage", "completion_length")}
        out[skill] = RolloutStats(**per_group, **per_completion, groups=groups, completions=completions)
    return out


@dataclass(frozen=True)
class StepObservation:
    """What a per-step teacher sees before each generation batch of a round (``loop.teach_every: step``).

    Attributes:
        round: The round being trained (1-based).
        step: Generation batches already drawn this round (0 before the first).
        steps_total: Generation batches the round's budget holds.
        skills: Skill names, in the env's order.
        prior: The round's mixture (what ``act`` chose, as the built rows' shares), normalised.
        last: Per-skill rollout statistics of the latest generation batch (empty at step 0); every group
            generated counts, dropped ones (online filtering) included.
        so_far: The same over this round's batches so far.
        prompts: Prompts generated so far this round (groups; dropped ones included).
        completions: Completions generated so far this round (the rollouts spent).
    """

    round: int
    step: int
    steps_total: int
    skills: tuple[str, ...]
    prior: Mapping[str, float]
    last: Mapping[str, RolloutStats] = field(default_factory=dict)
    so_far: Mapping[str, RolloutStats] = field(default_factory=dict)
    prompts: int = 0
    completions: int = 0


@dataclass(frozen=True)
class HistoryEntry:
    """What happened in an earlier round: the profile measured after it and the action taken in it.

    ``rollouts`` are an RL student's per-skill rollout statistics from that round's training (None for a
    student that does not report any, and at round 0).
    """

    round: int
    profile: Mapping[str, SkillStats]
    action: Action | None
    rollouts: Mapping[str, RolloutStats] | None = None


@dataclass(frozen=True)
class ProbeResult:
    """What a short training probe did to the student's per-skill eval loss (see :class:`Probe`)."""

    weights: Mapping[str, float]
    examples: int
    loss_before: Mapping[str, float]
    loss_after: Mapping[str, float]


@dataclass(frozen=True)
class Observation:
    """The teacher's state before it decides round ``round``.

    Attributes:
        round: The round about to be trained (1-based); the profile was measured after ``round - 1``.
        rounds_total: Rounds in the experiment.
        examples_per_round: Training rows the engine will build from the next action.
        budget_used: Training rows spent so far.
        budget_left: Training rows left, this round included.
        skills: The env's skill taxonomy.
        profile: Per-skill stats, keyed by skill name.
        failures: A sample of eval items the student failed.
        history: Earlier rounds, oldest first (round 0 has no action).
        skill_graph: ``skill -> prerequisites`` when the env declares them.
        probes: Results of this round's probes, for a policy that asked for some (else empty).
        state: DataEnvGym's level of state: ``open-ended`` (no profile, no history profiles, no skill
            graph: only the failures), ``skill-list`` (the per-skill profile) or ``skill-tree`` (the
            profile plus ``subskills``).
        subskills: In the ``skill-tree`` state, ``{skill: {level: stats}}``: each skill's sub-skills
            are its difficulty levels, which a ``Request(skill, n, level)`` can target.
        rollouts: An RL student's rollout statistics from the round just trained (``round - 1``), per
            skill: pass rate, learnability, mean |advantage|, zero-variance groups, completion length.
            Only skills that round sampled appear; empty at round 1 and for students that do not roll
            out (SFT). Earlier rounds' statistics are in ``history``.
    """

    round: int
    rounds_total: int
    examples_per_round: int
    budget_used: int
    budget_left: int
    skills: tuple[Skill, ...]
    profile: Mapping[str, SkillStats]
    failures: tuple[Failure, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    skill_graph: Mapping[str, tuple[str, ...]] | None = None
    probes: tuple[ProbeResult, ...] = ()
    state: str = "skill-list"
    subskills: Mapping[str, Mapping[int, SkillStats]] | None = None
    rollouts: Mapping[str, RolloutStats] = field(default_factory=dict)

    @property
    def skill_names(self) -> list[str]:
        """Skill names in the env's order."""
        return [s.name for s in self.skills]

    def accuracies(self) -> dict[str, float]:
        """``{skill: accuracy}`` in the env's order."""
        return {s: self.profile[s].accuracy for s in self.skill_names}

    def missing_rates(self) -> dict[str, float]:
        """``{skill: missing_rate}`` in the env's order.

        In the ``open-ended`` state there is no profile; each skill's share of the failure sample
        stands in for its missing rate (0 for every skill when nothing failed).
        """
        if not self.profile:
            counts = {s: 0 for s in self.skill_names}
            for f in self.failures:
                for s in f.skills:
                    if s in counts:
                        counts[s] += 1
            total = sum(counts.values())
            return {s: (c / total if total else 0.0) for s, c in counts.items()}
        return {s: self.profile[s].missing_rate for s in self.skill_names}


@dataclass(frozen=True)
class Mixture:
    """Reweight: sample the round's data from the skills in these proportions.

    Weights need not sum to one (the engine normalises) but must be finite, non-negative, name only
    known skills and not all be zero. Skills left out get weight zero.
    """

    weights: Mapping[str, float]


@dataclass(frozen=True)
class Request:
    """Ask the data source for ``n`` new rows of ``skill`` at ``level`` (``None``: any level)."""

    skill: str
    n: int
    level: int | None = None


@dataclass(frozen=True)
class Synthesize:
    """Synthesise: generate fresh rows for these requests.

    The engine treats the ``n`` of each request as its share of the round's budget: if the
    requests do not add up to ``examples_per_round`` they are scaled to it.
    """

    requests: tuple[Request, ...]

    def __init__(self, requests: Sequence[Request]) -> None:
        object.__setattr__(self, "requests", tuple(requests))


@dataclass(frozen=True)
class Examples:
    """Teacher-written rows (a ``datasets.Dataset`` or a list of dicts with at least ``prompt``,
    ``completion`` and ``skills``). Every row is checked by the env's verifier before training."""

    rows: Dataset | Sequence[Mapping[str, Any]]


Action = Union[Mixture, Synthesize, Examples]


@dataclass(frozen=True)
class Probe:
    """Ask the loop to train the student for real on ``n`` rows of ``mixture`` before the policy acts.

    A policy that defines ``probes(observation) -> Sequence[Probe]`` (Aioli does) gets, in the
    observation its ``act`` then receives, one :class:`ProbeResult` per probe: the per-skill eval
    loss before and after. Probe rows are real training and count against the round's budget: the
    action then fills only what is left of ``examples_per_round``.
    """

    mixture: Mixture
    n: int


def validate_probes(probes: object, skills: Sequence[Skill], budget: int) -> None:
    """Reject malformed probe plans (bad mixtures, sizes, or more rows than the round leaves for ``act``)."""
    if not isinstance(probes, (list, tuple)):
        raise InvalidActionError(f"probes() must return a list of Probe, got {type(probes).__name__}")
    total = 0
    for p in probes:
        if not isinstance(p, Probe):
            raise InvalidActionError(f"probes() must return Probe objects, got {p!r}")
        validate_action(p.mixture, skills)
        if isinstance(p.n, bool) or not isinstance(p.n, int) or p.n < 1:
            raise InvalidActionError(f"a probe asks for n={p.n!r}; n must be an int >= 1")
        total += p.n
    if probes and total >= budget:
        raise InvalidActionError(
            f"probes ask for {total} rows but the round has {budget}: at least one row must be left for act()"
        )


class PolicyError(TeachgymError, RuntimeError):
    """The teacher policy raised an exception (a bug in the policy, not in teachgym)."""


class InvalidActionError(TeachgymError, ValueError):
    """A teacher returned an action the engine cannot train on."""


def validate_action(action: object, skills: Sequence[Skill]) -> None:
    """Reject malformed actions before any data is built or any training starts.

    Args:
        action: What the policy returned.
        skills: The env's skills.

    Raises:
        InvalidActionError: With a message that says what is wrong and with which skill.
    """
    known = {s.name: s for s in skills}
    if isinstance(action, Mixture):
        if not isinstance(action.weights, Mapping) or not action.weights:
            raise InvalidActionError("Mixture.weights must be a non-empty mapping of skill -> weight")
        unknown = sorted(set(action.weights) - set(known))
        if unknown:
            raise InvalidActionError(
                f"Mixture has weights for unknown skills {unknown}; known skills: {sorted(known)}"
            )
        for skill, w in action.weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)):
                raise InvalidActionError(f"Mixture weight for {skill!r} is {w!r}, not a number")
            if math.isnan(w) or math.isinf(w):
                raise InvalidActionError(f"Mixture weight for {skill!r} is {w}, not finite")
            if w < 0:
                raise InvalidActionError(f"Mixture weight for {skill!r} is negative ({w})")
        if sum(action.weights.values()) <= 0:
            raise InvalidActionError("Mixture weights are all zero")
    elif isinstance(action, Synthesize):
        if not action.requests:
            raise InvalidActionError("Synthesize has no requests")
        for r in action.requests:
            if not isinstance(r, Request):
                raise InvalidActionError(f"Synthesize.requests must hold Request objects, got {r!r}")
            if r.skill not in known:
                raise InvalidActionError(
                    f"Request for unknown skill {r.skill!r}; known skills: {sorted(known)}"
                )
            if isinstance(r.n, bool) or not isinstance(r.n, int) or r.n < 1:
                raise InvalidActionError(f"Request for {r.skill!r} asks for n={r.n!r}; n must be an int >= 1")
            if r.level is not None and r.level not in known[r.skill].levels:
                raise InvalidActionError(
                    f"Request for {r.skill!r} asks for level {r.level!r}; "
                    f"levels: {list(known[r.skill].levels)}"
                )
    elif isinstance(action, Examples):
        rows = action.rows
        if rows is None or len(rows) == 0:
            raise InvalidActionError("Examples has no rows")
        columns = rows.column_names if hasattr(rows, "column_names") else None
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise InvalidActionError(f"Examples row {i} is {type(row).__name__}, not a mapping")
            missing = [c for c in ("prompt", "completion", "skills") if c not in (columns or row)]
            if missing:
                raise InvalidActionError(f"Examples row {i} lacks {missing}")
            row_skills = [row["skills"]] if isinstance(row["skills"], str) else list(row["skills"])
            bad = sorted(set(row_skills) - set(known))
            if not row_skills or bad:
                raise InvalidActionError(f"Examples row {i} names unknown or no skills {bad or row_skills}")
    else:
        raise InvalidActionError(
            f"a policy must return Mixture, Synthesize or Examples, got {type(action).__name__}: {action!r}"
        )


def action_to_dict(action: Action | None) -> dict[str, Any] | None:
    """A JSON-ready description of an action (teacher-written rows are summarised, not copied)."""
    if action is None:
        return None
    if isinstance(action, Mixture):
        total = float(sum(action.weights.values())) or 1.0
        return {"type": "mixture", "weights": {k: float(v) / total for k, v in action.weights.items()}}
    if isinstance(action, Synthesize):
        return {"type": "synthesize", "requests": [asdict(r) for r in action.requests]}
    if isinstance(action, Examples):
        return {"type": "examples", "n_rows": len(action.rows)}
    raise TypeError(f"not an action: {action!r}")


def profile_to_dict(profile: Mapping[str, SkillStats]) -> dict[str, dict[str, Any]]:
    """A JSON-ready copy of a profile."""
    return {k: asdict(v) for k, v in profile.items()}


@dataclass
class TrainReport:
    """What a student's ``train()`` returns.

    ``rollouts`` is filled by an RL student only: its per-skill rollout statistics for the round, which
    the loop logs as ``rl/<stat>/<skill>`` and shows to the teacher as ``Observation.rollouts``.
    """

    steps: int
    train_loss: float
    runtime_s: float
    metrics: dict[str, float] = field(default_factory=dict)
    rollouts: dict[str, RolloutStats] = field(default_factory=dict)
    #: Per generation batch, when a teacher stepped or groups were filtered: ``{metric: value}`` for each step,
    #: logged in the round's run at ``step=k`` (``teacher/…``, ``filter/…``).
    step_log: list[dict[str, float]] = field(default_factory=list)


#: Prefixes of a student's own metrics that go on the parent run each round (see :func:`rollout_metrics`).
ROUND_PREFIXES = ("rl/", "teacher/", "filter/")


def rollout_metrics(report: TrainReport) -> dict[str, float]:
    """A round's RL metrics: ``rl/<stat>/<skill>`` for every skill with rollouts, and the student's own
    ``rl/*`` totals (``rl/prompts``, ``rl/completions``: the rollouts spent), with the round's summaries of a
    per-step teacher (``teacher/…``) and of online filtering (``filter/…``). Empty for an SFT student."""
    m = {k: float(v) for k, v in report.metrics.items() if k.startswith(ROUND_PREFIXES)}
    for skill, st in report.rollouts.items():
        for stat in ROLLOUT_STATS:
            m[f"rl/{stat}/{skill}"] = float(getattr(st, stat))
    return m
