"""One round as data: :class:`Round`, built once by the loop, and the views other layers take of it.

A round produces one :class:`Round` (``teachgym.loop.play_round``). Everything else that describes a
round is derived from it, never built by hand elsewhere:

* :meth:`Round.record` -> :class:`RoundRecord`, the light summary the caller, the console, the plots
  and the resume journal keep for every round (it stays small: no rows, no predictions);
* :meth:`Round.history_entry` -> :class:`~teachgym.types.HistoryEntry`, what a teacher sees of the round
  in later observations (part of the teacher contract, so it lives in :mod:`teachgym.types`);
* the tracker logs the :class:`Round` itself, and the round's saved state holds the rounds the store has
  not confirmed yet (:attr:`RoundState.pending_log`), so ``--resume`` can log what MLflow missed.

:class:`RoundState` is the one other record: not a round but the loop's carry-over
between rounds (budget used, last evaluation, policy state, RNGs), which is what a resume needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from teachgym.types import HistoryEntry, action_to_dict

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

    from teachgym.engine import DataReport
    from teachgym.evaluation import EvalResult
    from teachgym.types import Action, ProbeResult, TrainReport


@dataclass
class RoundRecord:
    """One finished round, as the loop's caller sees it (round 0 is the untrained student)."""

    round: int
    mean_accuracy: float
    weakest: tuple[str, float]
    accuracies: dict[str, float]
    action: dict[str, Any] | None
    examples: int
    train_loss: float | None
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Round:
    """Everything one round produced: the evaluation after it, the teacher's decision, the data and training.

    Round 0 (the untrained student) has only ``index``, ``result``, ``metrics`` and ``seconds``.
    """

    index: int
    result: EvalResult  # measured after the round's training: the next observation is built from it
    metrics: dict[str, float]  # the parent run's metrics at step=index (tracking.schema.round_metrics)
    action: Action | None = None
    report: DataReport | None = None  # what the engine built from the action, and what it dropped
    train: TrainReport | None = None
    data: Dataset | Any = None  # the training set (or the fast path's SkillCounts)
    probes: list[ProbeResult] = field(default_factory=list)
    teacher: dict[str, Any] | None = None  # what the policy's explain() said about its decision
    used: int = 0  # examples used so far, this round's and its probes' included
    seconds: float = 0.0

    def record(self) -> RoundRecord:
        """The light summary kept for every round."""
        return RoundRecord(
            round=self.index,
            mean_accuracy=self.result.mean_accuracy,
            weakest=self.result.weakest,
            accuracies={k: v.accuracy for k, v in self.result.profile.items()},
            action=action_to_dict(self.action),
            examples=self.used,
            train_loss=self.train.train_loss if self.train is not None else None,
            seconds=self.seconds,
            metrics=self.metrics,
        )

    def history_entry(self) -> HistoryEntry:
        """What later observations show the teacher of this round."""
        rollouts = (self.train.rollouts or None) if self.train is not None else None
        return HistoryEntry(self.index, self.result.profile, self.action, rollouts)


@dataclass
class RoundState:
    """Everything the rounds after ``round`` need, as the loop had it when the round ended.

    Saved at each round's end (:meth:`teachgym.resume.RunDir.save`, in :mod:`teachgym.statefile`'s format)
    and read back by ``--resume``.
    """

    round: int
    used: int
    records: list
    history: list
    result: Any  # the EvalResult measured after `round`: the next observation is built from it
    policy_state: Any = None  # None: the policy is stateless (no state_dict/load_state_dict)
    llm_seen: list[str] | None = None  # prompts the LLM data engine has already produced
    tracker_best: tuple | None = None  # (acc/mean, round, model id) of the best MLflow checkpoint
    rng: dict[str, Any] = field(default_factory=dict)
    journaled: int | None = None  # set on disk: records/history are the journal's first `journaled` rounds
    pending_log: Any = None  # tracking.RoundLogs not yet confirmed by MLflow: re-logged on resume if it missed them
