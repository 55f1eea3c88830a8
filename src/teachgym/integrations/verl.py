"""A teachgym teacher as verl's curriculum sampler: it chooses the mixture of a verl PPO/GRPO run's prompts.

verl 0.7.x asks ``data.sampler`` for a sampler class and, after every training step, calls its
``update(batch)`` with the step's ``DataProto`` (the hook was removed in verl 0.8; ``pip install
'teachgym[verl]'`` pins 0.7.1, in a virtual environment of its own: verl 0.7 needs ``numpy < 2``). The lines a
verl config (or command line) needs::

    data.sampler.class_path=pkg://teachgym.integrations.verl
    data.sampler.class_name=TeacherSampler
    data.dataloader_num_workers=0          # verl's own rule for a curriculum sampler: no rows drawn ahead
    +data.sampler.teacher=learnability     # any teachgym policy (default learnability)
    +data.sampler.skill_key=data_source    # the row field that names its skill (dotted: extra_info.skill)
    +data.sampler.threshold=0.5            # a response passes when its score exceeds it

**Drawing.** Each index is drawn when verl's data loader asks for it (``num_workers=0``: nothing is drawn
ahead): a skill from the teacher's current weights, then a row of that skill. One epoch is as many draws as
the dataset has rows.

**Updating.** ``update(batch)`` reads each response's score (``token_level_scores`` summed over the response,
the reward before any KL penalty), its skill (``skill_key`` in ``non_tensor_batch``; verl passes the row's
fields there) and its prompt group (``uid``: one per prompt, repeated over its ``rollout.n`` responses), makes
per-skill statistics (:func:`teachgym.teacher.group_stats`) and updates the teacher
(:meth:`teachgym.teacher.Teacher.update`: one step, one round). The new weights decide the next batch.

**Checkpoints.** ``state_dict()`` / ``load_state_dict()`` carry the teacher's history and its policy's state and
the draws' random state; verl's ``StatefulDataLoader`` saves them with the data loader's state.

verl names used: ``verl.experimental.dataset.sampler.AbstractCurriculumSampler`` (experimental in verl: "may
be changed/removed"; it was, in 0.8), ``DataProto.batch`` / ``non_tensor_batch``, ``token_level_scores``,
``uid``, the dataset's ``dataframe``. Checked against verl 0.7.1 by ``tests/test_integrations_verl.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sized
from typing import Any

import numpy as np
from verl.experimental.dataset.sampler import AbstractCurriculumSampler

from teachgym.config import ConfigError
from teachgym.teacher import group_stats, teacher

__all__ = ["TeacherSampler", "field"]

OPTIONS = ("class_path", "class_name", "teacher", "skill_key", "threshold", "options")


def field(row: Mapping[str, Any], key: str) -> Any:
    """``row[key]``, where ``key`` may be dotted into nested mappings (``extra_info.skill``)."""
    value: Any = row
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def _column(data_source: Sized, key: str) -> list[str]:
    """Each row's ``key`` (its skill), from the dataset's ``dataframe`` (verl's ``RLHFDataset``) or row by row."""
    frame = getattr(data_source, "dataframe", None)
    head, _, rest = key.partition(".")
    if frame is not None and head in getattr(frame, "column_names", ()):
        values = frame[head]
        return [str(field(v, rest) if rest else v) for v in values]
    try:
        return [str(field(data_source[i], key)) for i in range(len(data_source))]  # type: ignore[index]
    except KeyError:
        known = list(getattr(frame, "column_names", None) or (sorted(data_source[0]) if len(data_source) else []))  # type: ignore[index]
        raise ConfigError(f"data.sampler.skill_key={key!r}: the rows have no such field; their fields: {known}") \
            from None


class TeacherSampler(AbstractCurriculumSampler):
    """verl's curriculum sampler, driven by a teachgym teacher (see the module docstring for the config keys)."""

    def __init__(self, data_source: Sized, data_config: Any) -> None:
        found = dict(data_config.get("sampler") or {})
        unknown = sorted(set(found) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"data.sampler has unknown keys {unknown}; teachgym's sampler reads {list(OPTIONS)}")
        self.skill_key = str(found.get("skill_key") or "data_source")
        self.threshold = float(found.get("threshold", 0.5))
        skills = _column(data_source, self.skill_key)
        self.rows = {s: np.flatnonzero(np.asarray(skills) == s) for s in dict.fromkeys(skills)}
        seed = int(data_config.get("seed") or 0)
        options = dict(found.get("options") or {})
        self.teacher = teacher(str(found.get("teacher") or "learnability"), list(self.rows), seed=seed, **options)
        self.num_samples = len(skills)
        self.gen = np.random.default_rng(seed)
        self.drawn = {s: 0 for s in self.rows}

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.num_samples):
            yield self._draw()

    def _draw(self) -> int:
        names = list(self.rows)
        p = np.asarray([self.teacher.weights[s] for s in names], dtype=float)
        skill = names[int(self.gen.choice(len(names), p=p / p.sum()))]
        self.drawn[skill] += 1
        rows = self.rows[skill]
        return int(rows[self.gen.integers(len(rows))])

    def update(self, batch: Any) -> None:
        """One training step's ``DataProto``: its responses' scores, skills and groups, into the teacher."""
        scores = batch.batch["token_level_scores"].sum(-1).float().cpu().numpy()
        extra = batch.non_tensor_batch
        head = self.skill_key.partition(".")[0]
        if head not in extra:
            raise ConfigError(f"data.sampler.skill_key={self.skill_key!r}: the batch's non-tensor fields are "
                              f"{sorted(extra)}")
        skills = [str(field({head: v}, self.skill_key)) for v in extra[head]]
        uids = extra["uid"] if "uid" in extra else np.arange(len(scores))
        order: dict[Any, list[int]] = {}
        for i, uid in enumerate(uids):
            order.setdefault(uid, []).append(i)
        groups = [(skills[ix[0]], [float(scores[i] > self.threshold) for i in ix], [float(scores[i]) for i in ix])
                  for ix in order.values()]
        self.teacher.update(group_stats(groups))

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher.state_dict(), "rng": self.gen.bit_generator.state, "drawn": dict(self.drawn)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.teacher.load_state_dict(state["teacher"])
        self.gen.bit_generator.state = state["rng"]
        self.drawn = dict(state["drawn"])
