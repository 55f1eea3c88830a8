"""Skill-by-skill evaluation: the missing-skill profile that the teacher sees."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from teachgym.distributed import team
from teachgym.progress import in_batches
from teachgym.protocols import AnswersEval
from teachgym.rows import column
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
    generate: Callable[..., list[str]] | None = None,
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
        generate: What answers the prompts, called like ``student.generate`` (default: it); e.g. a vLLM
            engine's (:class:`teachgym.vllm_eval.VLLMAnswers`).
    """
    prompts, golds, skills, levels = eval_columns(env)
    # A student with the fast path (e.g. the simulated one) gives the same answers, verdicts and losses
    # without the text round trip; None means it cannot for this env.
    answered = student.answer_eval(env, max_new_tokens) if isinstance(student, AnswersEval) else None
    if answered is not None:
        outputs, correct, losses = answered[0], [bool(c) for c in answered[1]], [float(x) for x in answered[2]]
    else:
        # With several processes (accelerate) each answers its share of the items; all get every answer.
        # In the student's own batches, so that progress shows (a vLLM engine gets every prompt at once).
        split, answer = team().map_split, generate or student.generate
        chunk = batch_size if generate is None else len(prompts)
        outputs = split(lambda ps: in_batches(lambda b: answer(b, max_new_tokens=max_new_tokens, batch_size=batch_size),
                                              "evaluating: answers", "items", chunk, ps), prompts)
        losses = split(lambda ps, gs: in_batches(lambda b, g: student.loss(b, g, batch_size=batch_size),
                                                 "evaluating: loss", "items", batch_size, ps, gs), prompts, golds)
        correct = [bool(env.verify(p, o)) for p, o in zip(prompts, outputs)]

    names = [s.name for s in env.skills]
    by_skill_groups, by_leaf_groups = _groups(env)
    correct_arr, loss_arr = np.asarray(correct, dtype=float), np.asarray(losses, dtype=float)
    profile = _stats(correct_arr, loss_arr, by_skill_groups, previous or {})
    # The skill-tree's leaves: the same stats per (skill, level), over the eval items of that level.
    prev_leaves = {(s, lv): st for s, tree in (previous_subskills or {}).items() for lv, st in tree.items()}
    subskills: dict[str, dict[int, SkillStats]] = {}
    for (s, level), stats in _stats(correct_arr, loss_arr, by_leaf_groups, prev_leaves).items():
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
    prompts, golds, _, _ = eval_columns(env)
    losses = team().map_split(lambda ps, gs: student.loss(ps, gs, batch_size=batch_size), prompts, golds)
    means, _ = _group_means(np.asarray(losses, dtype=float), _groups(env)[0])
    return dict(zip(_groups(env)[0].keys, means.tolist()))


@dataclass
class _Groups:
    """Which eval items count for which key (a skill, or a ``(skill, level)`` leaf), as flat index pairs."""

    keys: list[Hashable]
    items: np.ndarray
    codes: np.ndarray

    @classmethod
    def of(cls, keys: list[Hashable], row_keys: list[list[Hashable]]) -> _Groups:
        """The groups of ``keys``, from each eval item's keys (a key not in ``keys`` is a KeyError)."""
        code = {k: i for i, k in enumerate(keys)}
        pairs = [(i, code[k]) for i, row in enumerate(row_keys) for k in row]
        items, codes = (np.array([p[j] for p in pairs], dtype=np.int64) for j in (0, 1))
        return cls(keys, items, codes)


_EVAL: weakref.WeakKeyDictionary[Any, tuple[Any, tuple, tuple[_Groups, _Groups]]] = weakref.WeakKeyDictionary()


def _cached(env: Env) -> tuple[tuple, tuple[_Groups, _Groups]]:
    """The eval set's columns and groups, computed once per eval set (the loop evaluates every round)."""
    ev = env.eval_set()
    try:
        hit = _EVAL.get(env)
    except TypeError:  # an env that cannot be weakly referenced
        hit = None
    if hit is not None and hit[0] is ev:
        return hit[1], hit[2]
    prompts, golds = column(ev, "prompt"), column(ev, "completion")
    skills = [[sk] if isinstance(sk, str) else list(sk) for sk in column(ev, "skills")]
    levels = [int(v) if v is not None else 1 for v in column(ev, "level")] if "level" in ev.column_names \
        else [1] * len(prompts)
    by_skill = _Groups.of([s.name for s in env.skills], skills)
    row_leaves = [[(s, lv) for s in sk] for sk, lv in zip(skills, levels)]
    by_leaf = _Groups.of(sorted({leaf for row in row_leaves for leaf in row}), row_leaves)
    columns = (prompts, golds, skills, levels)
    try:
        _EVAL[env] = (ev, columns, (by_skill, by_leaf))
    except TypeError:
        pass
    return columns, (by_skill, by_leaf)


def eval_columns(env: Env) -> tuple[list[str], list[str], list[list[str]], list[int]]:
    """The eval set's prompts, golds, skills (lists) and levels, read once per eval set and kept."""
    return _cached(env)[0]


def _groups(env: Env) -> tuple[_Groups, _Groups]:
    return _cached(env)[1]


def _stats(
    correct: np.ndarray, losses: np.ndarray, groups: _Groups, previous: Mapping[Hashable, SkillStats]
) -> dict[Any, SkillStats]:
    """Accuracy, loss, n, missing rate and change for each key of ``groups`` (a skill, or a (skill, level) leaf)."""
    accuracy, n = _group_means(correct, groups)
    loss, _ = _group_means(losses, groups)
    out = {}
    for k, acc, lo, count in zip(groups.keys, accuracy.tolist(), loss.tolist(), n.tolist()):
        acc = acc if count else 0.0
        prev = previous.get(k)
        out[k] = SkillStats(
            accuracy=acc,
            loss=lo,
            n=count,
            missing_rate=1.0 - acc,
            change=None if prev is None else acc - prev.accuracy,
        )
    return out


def _group_means(values: np.ndarray, groups: _Groups) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` over each key's items (NaN for a key with none), and the item counts.

    ``bincount`` adds in item order, as a Python loop would, so the means are the same to the last bit.
    """
    k = len(groups.keys)
    counts = np.bincount(groups.codes, minlength=k)
    sums = np.bincount(groups.codes, weights=values[groups.items], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan), counts
