"""Every contract in teachgym, as ``typing.Protocol``s: the three extension points, their optional
capabilities, and the tracker.

A plugin needs no base class: anything with the right methods is a policy, student or env. The
optional capabilities (a policy's state, probes and explanations; a student's exact state and fast
evaluation; the fast path's counts) are declared here too, and the loop checks for them with
``isinstance`` instead of probing attributes. The behaviour checkers are in :mod:`teachgym.checks`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from teachgym.types import Action, Mixture, Observation, Probe, Skill, StepObservation, TrainReport

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset


@runtime_checkable
class TeacherPolicy(Protocol):
    """Decides what the student trains on next. Keeps its own state, which it can save and restore."""

    def act(self, observation: Observation) -> Action:
        """Choose the next round's data: a ``Mixture``, ``Synthesize`` or ``Examples``."""
        ...


@runtime_checkable
class Student(Protocol):
    """A model that learns from prompt/completion rows and answers prompts in batches."""

    def train(self, dataset: Dataset) -> TrainReport:
        """Continue training from the current weights on ``dataset`` (``prompt``, ``completion``)."""
        ...

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 16, batch_size: int = 256) -> list[str]:
        """Greedy answers, one per prompt, without the prompt."""
        ...

    def loss(self, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 256) -> list[float]:
        """Teacher-forced NLL per completion token, one value per row."""
        ...

    def save(self, path: str) -> None:
        """Write the student so that it can be loaded back (for the HF student: ``model=path``)."""
        ...


@runtime_checkable
class Env(Protocol):
    """A teacher environment: skills, a held-out eval set, a verifier and data sources.

    ``pool()`` returns the rows a teacher can reweight, or ``None``; ``generate()`` synthesises new
    rows when ``supports_generation`` is true (otherwise it may raise ``NotImplementedError``).
    Every row has the columns in :data:`teachgym.types.EXAMPLE_COLUMNS`. An env may also set
    ``verifies_new_prompts = True`` when ``verify`` can check prompts it never produced (it solves
    them); the LLM data engine then checks its rows with the verifier instead of self-consistency.
    """

    name: str
    skills: Sequence[Skill]
    supports_generation: bool

    def eval_set(self) -> Dataset:
        """The fixed held-out eval items."""
        ...

    def pool(self) -> Dataset | None:
        """Existing rows to reweight, or ``None`` if the env has no pool."""
        ...

    def generate(self, skill: str, n: int, level: int | None = None, seed: int = 0) -> list[dict]:
        """Up to ``n`` fresh rows of ``skill``; never an eval prompt."""
        ...

    def verify(self, prompt: str, output: str) -> bool:
        """Whether ``output`` is a correct answer to ``prompt``."""
        ...


# -- optional capabilities: the loop checks for them with isinstance, and uses them where present ----------


@runtime_checkable
class Stateful(Protocol):
    """A policy whose state survives ``--resume``: ``state_dict()`` (JSON-serialisable) and ``load_state_dict``.

    Without both, a policy is stateless and is rebuilt from its constructor on resume.
    """

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


StatefulPolicy = Stateful  # the name earlier releases used


@runtime_checkable
class Probes(Protocol):
    """A policy that first probes the student (Aioli): short training runs on mixtures, paid from the round's budget.

    ``probes(observation)`` returns :class:`~teachgym.types.Probe` s; the loop trains each one, measures the
    per-skill eval loss before and after, and hands the results back in ``observation.probes``.
    """

    def probes(self, observation: Observation) -> Sequence[Probe]: ...


@runtime_checkable
class Explains(Protocol):
    """A policy that says why it chose its last action: ``{"metrics": {name: float}, "details": any JSON}``.

    The metrics are logged on the parent run as they are named; the details go into ``decision.json``.
    """

    def explain(self) -> Mapping[str, Any]: ...


@runtime_checkable
class TeachesPerStep(Protocol):
    """A policy that also acts inside a round (``loop.teach_every: step``): before each generation batch of a
    batch-wise student (GRPO), ``step(observation)`` sees the rollouts of the round's batches so far
    (:class:`~teachgym.types.StepObservation`) and returns the ``Mixture`` to draw the next batch from.

    ``act`` still decides the round (its mixture is ``observation.prior``), and the budget stays the round's.
    What ``step`` learns belongs in the policy's ``state_dict`` (saved at the end of each round).
    """

    def step(self, observation: StepObservation) -> Mixture: ...


@runtime_checkable
class TrainsBatchwise(Protocol):
    """A student that draws its prompts batch by batch from a :class:`~teachgym.steps.BatchSource` (GRPO).

    Needed for ``loop.teach_every: step`` (the source asks the teacher before each generation batch) and for
    online filtering (the source refills dropped groups from the round's mixture). The batches add up to the
    rows of ``dataset``; the student tells the source, batch by batch, what it generated and what it kept.
    """

    def train_batches(self, dataset: Dataset, source: Any) -> TrainReport: ...


@runtime_checkable
class MeasuresTokens(Protocol):
    """A student that says how long texts are in its tokens and what fits, so that the loop can check before
    round 0 that the env's questions and answers fit (:func:`teachgym.fit.check_fit`).

    ``token_lengths(texts, special_tokens=False)`` measures completions (no BOS). ``limits()`` maps
    ``"context"`` (positions the model has), ``"train"`` (the longest training sequence) and ``"completion"``
    (the longest rollout) to ``(tokens, the setting that sets it)``; any may be left out.
    """

    def token_lengths(self, texts: Sequence[str], special_tokens: bool = True) -> list[int]: ...

    def limits(self) -> Mapping[str, tuple[int, str]]: ...


@runtime_checkable
class Resumable(Protocol):
    """A student that can write and restore its exact state (weights, optimiser, RNGs): needed for ``--resume``."""

    def save_state(self, path: str) -> None: ...

    def load_state(self, path: str) -> None: ...


@runtime_checkable
class AnswersEval(Protocol):
    """A student that gives its eval answers, verdicts and losses without generating text (the simulated student).

    ``answer_eval(env, max_new_tokens)`` returns ``(outputs, correct, losses)`` over ``env.eval_set()``, or None
    when it cannot for this env (the loop then generates and verifies).
    """

    def answer_eval(self, env: Env, max_new_tokens: int) -> tuple[list[str], list[bool], list[float]] | None: ...


# Capability flags: class attributes that default to False when a plugin does not set them.


def learns_from_counts(student: Any) -> bool:
    """``learns_from_counts = True``: the student trains on rows per skill (:class:`teachgym.engine.SkillCounts`),
    not on text (the fast path's student side)."""
    return bool(getattr(student, "learns_from_counts", False))


def learns_from_rewards(student: Any) -> bool:
    """``learns_from_rewards = True``: an RL student (GRPO); it reports rollouts, and its loss is not the SFT loss."""
    return bool(getattr(student, "learns_from_rewards", False))


def filters_groups(student: Any) -> bool:
    """``filters_groups = True``: the student drops GRPO groups without signal and refills them, so it trains
    through :class:`TrainsBatchwise` ``.train_batches`` even when the teacher acts once a round."""
    return bool(getattr(student, "filters_groups", False))


def fills_requests(env: Any) -> bool:
    """``fills_requests = True``: any (skill, n) request can be met by the env's generator, so the engine may hand
    over counts without building and checking rows (the fast path's env side)."""
    return bool(getattr(env, "fills_requests", False))


def supports_generation(env: Any) -> bool:
    """``supports_generation = True``: ``env.generate(skill, n, level, seed)`` synthesises fresh rows."""
    return bool(getattr(env, "supports_generation", False))


def verifies_new_prompts(env: Any) -> bool:
    """``verifies_new_prompts = True``: ``env.verify`` can check prompts it never produced (it solves them), so the
    LLM data engine checks its rows with the verifier instead of self-consistency."""
    return bool(getattr(env, "verifies_new_prompts", False))


@runtime_checkable
class Tracker(Protocol):
    """Where an experiment is logged: the core every tracker implements (torchtune's metric logger is as small).

    :class:`teachgym.tracking.writer.MLflowTracker` writes MLflow runs; :class:`teachgym.tracking.null.NullTracker`
    does nothing. ``parent_id``/``uri`` are None when nothing is tracked. A tracker that has only these methods
    works: :func:`teachgym.tracking.null.complete` gives it the no-op defaults of the optional
    :class:`ResumableTracker` and :class:`CheckpointingTracker`, so the loop calls every method of both without
    asking which tracker it has.
    """

    parent_id: str | None
    uri: str | None

    def start(self, run_id: str | None = None) -> str | None:
        """Open the experiment's run (or reopen ``run_id``'s on resume)."""
        ...

    def round(self, index: int) -> AbstractContextManager[None]:
        """The round's own run, active while the student trains."""
        ...

    def probe(self, index: int, k: int) -> AbstractContextManager[None]:
        """A probe's run, inside the round's."""
        ...

    def log(self, entry: Any) -> None:
        """Log a finished :class:`~teachgym.rounds.Round` (may return before it is written)."""
        ...

    def finish(self, status: str = "FINISHED") -> None:
        """End every open run with ``status``."""
        ...


@runtime_checkable
class ResumableTracker(Protocol):
    """Optional: a tracker that writes in the background to a store that can be lost, and that ``--resume``
    reconciles with the round states on disk."""

    def unconfirmed(self, entry: Any = None) -> list[Any]:
        """``entry`` and the earlier rounds the store has not confirmed (saved with the round, re-logged on resume)."""
        ...

    def check(self) -> None:
        """Raise a failure of writing so far (a lost server)."""
        ...

    def reachable(self) -> bool:
        """Whether the store still answers."""
        ...

    def flush(self) -> None:
        """Wait until everything logged is written."""
        ...

    def relog(self, entries: Any) -> int:
        """On resume: log the rounds the store missed."""
        ...

    def rerun_after(self, index: int) -> list[str]:
        """On resume after round ``index``: the rounds after it run again; their earlier logging is superseded."""
        ...


@runtime_checkable
class CheckpointingTracker(Protocol):
    """Optional: a tracker that keeps the student's checkpoints and the experiment's plots.

    ``best`` is the best checkpoint so far (saved with the round state, restored on resume).
    """

    best: tuple | None

    def log_plots(self, records: list) -> None:
        """Redraw the plots from the rounds so far (if configured)."""
        ...

    def log_checkpoint(self, student: Any, index: int, metrics: Mapping[str, float]) -> str | None:
        """Log the student as a model (if configured)."""
        ...

    def restore_best(self, records: list, saved: tuple | None) -> None:
        """On resume: the best checkpoint so far."""
        ...


class CompleteTracker(Tracker, ResumableTracker, CheckpointingTracker, Protocol):
    """What the loop holds: a tracker with both optional parts (:func:`teachgym.tracking.null.complete`)."""
