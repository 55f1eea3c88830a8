"""Skill-by-skill evaluation: the missing-skill profile that the teacher sees."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from teachgym.types import Failure, SkillStats

if TYPE_CHECKING:  # pragma: no cover
    from teachgym.protocols import Env, Student


@dataclass
class EvalResult:
    """The profile plus what it was computed from."""

    profile: dict[str, SkillStats]
    predictions: list[dict[str, Any]]
    failures: list[Failure]
    #: ``{skill: {level: stats}}`` over the eval items of each level (the skill-tree state's sub-skills).
    subskills: dict[str, dict[int, SkillStats]] = field(default_factory=dict)

    @property
    def mean_accuracy(self) -> float:
        """Mean of the per-skill accuracies (each skill counts once, however many items it has)."""
        return sum(s.accuracy for s in self.profile.values()) / len(self.profile)

    @property
    def weakest(self) -> tuple[str, float]:
        """The skill with the lowest accuracy (first in env order on ties) and its accuracy."""
        name = min(self.profile, key=lambda s: self.profile[s].accuracy)
        return name, self.profile[name].accuracy


def evaluate(
    student: Student,
    env: Env,
    previous: Mapping[str, SkillStats] | None = None,
    max_new_tokens: int = 16,
    batch_size: int = 256,
    num_failures: int = 20,
    previous_subskills: Mapping[str, Mapping[int, SkillStats]] | None = None,
) -> EvalResult:
    """Answer every eval item, verify each answer, and aggregate per skill.

    A skill's accuracy is over the eval items that need it (items can need several skills); its
    missing rate is ``1 - accuracy`` (STAT); its loss is the mean teacher-forced NLL on those items.

    Args:
        student: The student under test.
        env: Supplies the eval set and the verifier.
        previous: Last round's profile, for ``change``.
        max_new_tokens: Longest generated answer.
        batch_size: Prompts per generation batch.
        num_failures: Failed items to keep for the teacher, taken from each skill in turn (eval order).
        previous_subskills: Last round's per-level stats, for their ``change``.
    """
    ev = env.eval_set()
    prompts, golds, skills = ev["prompt"], ev["completion"], ev["skills"]
    outputs = student.generate(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    losses = student.loss(prompts, golds, batch_size=batch_size)
    correct = [bool(env.verify(p, o)) for p, o in zip(prompts, outputs)]

    names = [s.name for s in env.skills]
    profile = _stats(correct, losses, skills, names, previous or {})
    # The skill-tree's leaves: the same stats per (skill, level), over the eval items of that level.
    levels = ev["level"] if "level" in ev.column_names else [1] * len(prompts)
    row_leaves = [[(s, int(level)) for s in sk] for sk, level in zip(skills, levels)]
    leaves = sorted({leaf for row in row_leaves for leaf in row})
    prev_leaves = {(s, lv): st for s, tree in (previous_subskills or {}).items() for lv, st in tree.items()}
    subskills: dict[str, dict[int, SkillStats]] = {}
    for (s, level), stats in _stats(correct, losses, row_leaves, leaves, prev_leaves).items():
        subskills.setdefault(s, {})[level] = stats
    predictions = [
        {"prompt": p, "gold": g, "output": o, "correct": ok, "loss": lo, "skills": ",".join(sk)}
        for p, g, o, ok, lo, sk in zip(prompts, golds, outputs, correct, losses, skills)
    ]
    # Take failures skill by skill in turn (the eval set is grouped by skill), so that the sample shows
    # every weak skill rather than only the first one's items.
    by_skill: dict[str, list[Failure]] = {s: [] for s in names}
    for p, sk in zip(predictions, skills):
        if not p["correct"]:
            by_skill[sk[0]].append(Failure(prompt=p["prompt"], gold=p["gold"], output=p["output"], skills=tuple(sk)))
    failures: list[Failure] = []
    queues = [q for q in by_skill.values() if q]
    while queues and len(failures) < num_failures:
        failures += [q.pop(0) for q in queues][: num_failures - len(failures)]
        queues = [q for q in queues if q]
    return EvalResult(profile=profile, predictions=predictions, failures=failures, subskills=subskills)


def loss_profile(student: Student, env: Env, batch_size: int = 256) -> dict[str, float]:
    """Mean teacher-forced eval loss per skill, without generating (cheap: used between probes)."""
    ev = env.eval_set()
    losses = student.loss(ev["prompt"], ev["completion"], batch_size=batch_size)
    return _per_skill_mean(losses, ev["skills"], [s.name for s in env.skills])[0]


def _stats(
    correct: Sequence[bool],
    losses: Sequence[float],
    row_keys: Sequence[Sequence[Hashable]],
    keys: Sequence[Hashable],
    previous: Mapping[Hashable, SkillStats],
) -> dict[Any, SkillStats]:
    """Accuracy, loss, n, missing rate and change for each key (a skill, or a (skill, level) leaf)."""
    accuracy, n = _per_skill_mean(correct, row_keys, keys)
    loss, _ = _per_skill_mean(losses, row_keys, keys)
    out = {}
    for k in keys:
        acc = accuracy[k] if n[k] else 0.0
        prev = previous.get(k)
        out[k] = SkillStats(
            accuracy=acc,
            loss=loss[k],
            n=n[k],
            missing_rate=1.0 - acc,
            change=None if prev is None else acc - prev.accuracy,
        )
    return out


def _per_skill_mean(
    values: Sequence[float], row_skills: Sequence[Sequence[str]], names: Sequence[str]
) -> tuple[dict[str, float], dict[str, int]]:
    """Mean of ``values`` over the eval rows that need each skill (NaN for none), and the row counts."""
    sums = {s: 0.0 for s in names}
    counts = {s: 0 for s in names}
    for value, skills in zip(values, row_skills):
        for s in skills:
            sums[s] += float(value)
            counts[s] += 1
    return {s: sums[s] / counts[s] if counts[s] else float("nan") for s in names}, counts
