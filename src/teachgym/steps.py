"""Teaching inside a round: each generation batch of a batch-wise student (GRPO) drawn from a :class:`BatchSource`.

With ``loop.teach_every: round`` (the default) the teacher acts once a round and the student trains on the
rows the engine built. Two things need the prompts to come batch by batch instead:

* ``loop.teach_every: step`` — before each generation batch, the policy's ``step(observation)``
  (:class:`~teachgym.protocols.TeachesPerStep`) sees the rollouts of the round's batches so far and picks the
  mixture of the next batch, as DUMP, SEC and learnability sampling were designed to act;
* online filtering (a GRPO student option) — a group whose rewards are all equal is dropped before it takes
  a gradient step, and the source refills it from the current mixture.

The round's budget stays the round's: the batches add up to ``examples_per_round`` trained prompts. The
round's ``act`` is the prior: its rows (what the engine built) set the first mixture, and with
``teach_every: round`` they are what the student trains on, refills aside. Prompts come from a reservoir per
skill that the engine builds once a round (the same rows, filters and eval exclusion as any round's data),
cycled when a skill is drawn more often than its reservoir holds.

:func:`train_round` is the loop's one call: it trains the round either way and returns what was trained on.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from teachgym.config import ConfigError, LoopConfig
from teachgym.engine import DataReport, EngineError, materialize
from teachgym.protocols import TeachesPerStep, TrainsBatchwise, filters_groups
from teachgym.rows import column
from teachgym.seeds import batch_seed, reservoir_seed
from teachgym.types import (
    InvalidActionError,
    Mixture,
    PolicyError,
    RolloutStats,
    Skill,
    StepObservation,
    TrainReport,
    merge_rollouts,
    validate_action,
)

#: Rows per skill in a round's reservoir at most (cycled beyond): enough for a round that draws one skill only.
RESERVOIR_MAX = 1024


class BatchSource:
    """The prompts of each generation batch of one round, and what the student reported about each batch.

    Args:
        reservoir: Rows per skill (``prompt`` and ``skills`` at least) to draw prompts from.
        prior: The round's mixture (normalised here); the first batch's and the refills' when no teacher steps.
        skills: The env's skills.
        round: The round being trained.
        seed: Seeds the draws.
        teacher: ``policy.step`` when the teacher acts per step (``loop.teach_every: step``), else None.
        name: The policy's name, for error messages.
    """

    def __init__(self, reservoir: Mapping[str, Sequence[Mapping[str, Any]]], prior: Mapping[str, float],
                 skills: Sequence[Skill], round: int, seed: int,
                 teacher: Callable[[StepObservation], Any] | None = None, name: str = "policy") -> None:
        self.env_skills = tuple(skills)
        self.skills = tuple(s.name for s in skills)
        self.round, self.teacher, self.name = round, teacher, name
        self.steps_total = 0  # the student sets it: generation batches the round's budget holds
        total = sum(max(0.0, float(w)) for w in prior.values())
        self.prior = {s: max(0.0, float(prior.get(s, 0.0))) / total for s in self.skills} if total > 0 else \
            {s: 1 / len(self.skills) for s in self.skills}
        self.mixture = dict(self.prior)
        self.rng = random.Random(seed)
        self.queues = {s: list(rows) for s, rows in reservoir.items() if rows}
        self.cursor = {s: len(rows) for s, rows in self.queues.items()}  # at the end: shuffled on first draw
        self.batches: list[dict[str, RolloutStats]] = []
        self.prompts = self.completions = 0
        self.trained: list[dict[str, Any]] = []  # the rows each step trained on, in order
        self.log: list[dict[str, float]] = []  # one entry per generation batch (TrainReport.step_log)
        self._decided: dict[str, float] | None = None  # the mixture the teacher chose for the batch being drawn

    @property
    def stepping(self) -> bool:
        """Whether a teacher picks each batch's mixture."""
        return self.teacher is not None

    # -- what the student asks for ------------------------------------------------------------------------
    def batch(self, n: int) -> list[dict[str, Any]]:
        """The next generation batch's ``n`` prompts; a stepping teacher picks their mixture first."""
        if self.teacher is not None:
            obs = StepObservation(self.round, len(self.batches), self.steps_total, self.skills, dict(self.prior),
                                  self.batches[-1] if self.batches else {}, merge_rollouts(self.batches),
                                  self.prompts, self.completions)
            try:
                action = self.teacher(obs)
            except Exception as e:
                raise PolicyError(f"policy {self.name!r} raised {type(e).__name__} in step() at round {self.round}, "
                                  f"step {obs.step}: {e}") from e
            if not isinstance(action, Mixture):
                raise InvalidActionError(f"policy {self.name!r}: step() must return a Mixture, not "
                                         f"{type(action).__name__} (round {self.round}, step {obs.step})")
            validate_action(action, self.env_skills)
            total = sum(action.weights.values())
            self.mixture = {s: float(action.weights.get(s, 0.0)) / total for s in self.skills}
            self._decided = dict(self.mixture)
        return self.draw(n)

    def refill(self, n: int) -> list[dict[str, Any]]:
        """``n`` more prompts from the current mixture (to replace dropped groups)."""
        return self.draw(n)

    def draw(self, n: int) -> list[dict[str, Any]]:
        """``n`` prompts, each one's skill drawn from the current mixture (skills without rows are skipped)."""
        names = [s for s in self.skills if self.mixture.get(s, 0.0) > 0 and s in self.queues]
        if not names:
            raise InvalidActionError(f"round {self.round}: the mixture {self.mixture} puts no weight on a skill "
                                     "with rows to draw")
        picks = self.rng.choices(names, weights=[self.mixture[s] for s in names], k=n)
        return [self._next_row(s) for s in picks]

    def _next_row(self, skill: str) -> dict[str, Any]:
        rows = self.queues[skill]
        if self.cursor[skill] >= len(rows):  # a new pass over the skill's reservoir, in a new order
            self.rng.shuffle(rows)
            self.cursor[skill] = 0
        self.cursor[skill] += 1
        return dict(rows[self.cursor[skill] - 1])

    # -- what the student reports -------------------------------------------------------------------------
    def observe(self, stats: Mapping[str, RolloutStats], prompts: int, completions: int,
                kept: Sequence[Mapping[str, Any]], dropped: int = 0, filled: int = 0) -> None:
        """One generation batch done: its per-skill statistics (every group generated), the prompts and
        completions generated, the rows kept for the gradient step, the groups dropped and those trained
        although the filter would drop them (the batch could not be filled otherwise)."""
        self.batches.append(dict(stats))
        self.prompts += prompts
        self.completions += completions
        self.trained.extend(dict(r) for r in kept)
        groups = sum(s.groups for s in stats.values()) or 1
        zero = sum(s.zero_variance_share * s.groups for s in stats.values()) / groups
        entry = {"teacher/step_zero_variance_share": zero, "filter/generated_prompts": float(prompts),
                 "filter/dropped_groups": float(dropped), "filter/filled_groups": float(filled)}
        if self._decided is not None:
            entry.update({f"teacher/step_weight/{s}": w for s, w in self._decided.items()})
        self.log.append(entry)
        self._decided = None

    def summary(self, filtering: bool) -> dict[str, float]:
        """The round's summary for the parent run: ``teacher/…`` when a teacher stepped, ``filter/…`` when filtering."""
        out: dict[str, float] = {}
        steps = [e for e in self.log if any(k.startswith("teacher/step_weight/") for k in e)]
        if steps:
            mean = {s: sum(e[f"teacher/step_weight/{s}"] for e in steps) / len(steps) for s in self.skills}
            out["teacher/steps"] = float(len(steps))
            out["teacher/step_prior_distance"] = sum(abs(mean[s] - self.prior[s]) for s in self.skills) / 2
            out["teacher/step_change"] = (sum(
                sum(abs(b[f"teacher/step_weight/{s}"] - a[f"teacher/step_weight/{s}"]) for s in self.skills) / 2
                for a, b in zip(steps, steps[1:])) / max(1, len(steps) - 1))
            out.update({f"teacher/step_mean_weight/{s}": w for s, w in mean.items()})
        if filtering:
            trained = max(1, len(self.trained))
            out["filter/dropped_groups"] = sum(e["filter/dropped_groups"] for e in self.log)
            out["filter/filled_groups"] = sum(e["filter/filled_groups"] for e in self.log)
            out["filter/generated_prompts"] = float(self.prompts)
            out["filter/extra_generation"] = self.prompts / trained - 1  # generated beyond what was trained on
        return out


def check_step_setup(loop: LoopConfig, policy: Any, student: Any, policy_name: str, student_name: str,
                     processes: int) -> None:
    """Refuse, before round 0, a per-step or filtering setup the parts cannot run.

    Raises:
        ConfigError: ``teach_every: step`` with a policy without ``step()`` or a student that trains whole
            rounds; batch-wise training across several processes.
    """
    stepping = loop.teach_every == "step"
    if stepping and not isinstance(policy, TeachesPerStep):
        raise ConfigError(f"loop.teach_every: step needs a policy with step(observation) (e.g. dump, sec, "
                          f"learnability); {policy_name!r} acts once a round: use loop.teach_every=round")
    if (stepping or filters_groups(student)) and not isinstance(student, TrainsBatchwise):
        raise ConfigError(f"loop.teach_every: step needs a student that draws its prompts batch by batch "
                          f"(train_batches, e.g. grpo); {student_name!r} trains on whole rounds")
    if (stepping or filters_groups(student)) and processes > 1:
        raise ConfigError("loop.teach_every: step and online filtering run in one process; with accelerate "
                          "(several processes) use loop.teach_every=round without student.filter_groups")


def train_round(student: Any, policy: Any, data: Any, report: DataReport, loop: LoopConfig, env: Any, round: int,
                seed: int, eval_prompts: set[str], policy_name: str) -> tuple[TrainReport, Any]:
    """Train one round, batch by batch where a teacher steps or the student filters; return the report and the
    rows trained on (``data`` itself when the round trains as a whole). ``report.examples`` then counts the rows
    trained on."""
    if len(data) == 0:  # a trainer's sampler would fail on it with a traceback that names nothing of ours
        raise EngineError(f"round {round}: no rows to train on (the round's budget, loop.examples_per_round minus "
                          f"any probes, left none, or the env made none for the teacher's action)")
    stepping = loop.teach_every == "step"
    if not stepping and not filters_groups(student):
        return student.train(data), data
    from datasets import Dataset

    prior = Counter(s for row in column(data, "skills") for s in row)
    reservoir = {}
    for i, skill in enumerate(s.name for s in env.skills):  # every skill the round may draw, built like any rows
        if stepping or prior.get(skill):
            rows, _ = materialize(Mixture({skill: 1.0}), env, min(len(data), RESERVOIR_MAX), reservoir_seed(seed, i),
                                  eval_prompts)
            reservoir[skill] = rows.to_list()
    source = BatchSource(reservoir, prior, env.skills, round, batch_seed(seed), policy.step if stepping else None,
                         policy_name)
    train = student.train_batches(data, source)
    train.metrics.update(source.summary(filters_groups(student)))
    train.step_log = list(source.log)
    report.examples = dict(Counter(s for row in source.trained for s in row["skills"]))
    return train, Dataset.from_list(source.trained)
