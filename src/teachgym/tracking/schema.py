"""The MLflow schema in one place: every tag and metric name teachgym writes or reads, and a round's metrics.

Everything that writes runs (:mod:`teachgym.tracking.writer`), reads them back
(:mod:`teachgym.tracking.runs`, ``teachgym compare``, ``teachgym calibrate``) or shows them (the
console) takes the names from here, so that the schema is spelled once. Per-skill metric names are a
prefix plus the skill: ``ACC + "add_carry"`` is ``acc/add_carry``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from teachgym.types import Examples, Mixture, Synthesize

if TYPE_CHECKING:  # pragma: no cover
    from teachgym.config import ExperimentConfig
    from teachgym.engine import DataReport
    from teachgym.evaluation import EvalResult
    from teachgym.types import Action



def experiment_name(config: ExperimentConfig, env_name: str) -> str:
    """The MLflow experiment an experiment logs to (``tracking.experiment`` or ``teachgym/<env>``)."""
    return config.tracking.experiment or f"teachgym/{env_name}"


# -- tags of a parent run (one curriculum experiment) ----------------------------------------------
TAG_POLICY = "teachgym.policy"
TAG_ENV = "teachgym.env"
TAG_STUDENT = "teachgym.student"
TAG_SEED = "teachgym.seed"
TAG_OUTPUT_DIR = "teachgym.output_dir"  # where its round states are (for --resume and `runs --stale`)
TAG_HOST, TAG_PID, TAG_PID_START = "teachgym.host", "teachgym.pid", "teachgym.pid_start"
TAG_BEST_ROUND, TAG_BEST_MODEL = "teachgym.best_round", "teachgym.best_model_id"
TAG_STAGE = "teachgym.stage"  # "warm-start" on a warm start's own run
TAG_WARM_START, TAG_WARM_START_MODEL, TAG_WARM_START_RUN = (  # on an experiment that starts from a warm start
    "teachgym.warm_start", "teachgym.warm_start_model", "teachgym.warm_start_run")
TAG_SWEEP, TAG_SWEEP_NAME = "teachgym.sweep", "teachgym.sweep_name"  # a sweep's id and name, on its trials
TAG_TRIAL, TAG_SETTING = "teachgym.trial", "teachgym.setting"
TAG_KIND = "teachgym.kind"  # "sweep" on a sweep's own run
# -- tags of a round's (child) run ---------------------------------------------------------------
TAG_ROUND, TAG_RELOGGED, TAG_PROBE = "teachgym.round", "teachgym.relogged", "teachgym.probe"
# MLflow's own
TAG_PARENT = "mlflow.parentRunId"
# MLflow 3 opens an experiment without a kind in its GenAI view (traces, prompts); teachgym's are model training.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"

# -- parent metrics, at step = round ---------------------------------------------------------------
ACC_MEAN, ACC_MIN = "acc/mean", "acc/min"
ACC, LOSS = "acc/", "loss/"  # + skill
TEACHER_WEIGHT = "teacher/weight/"  # + skill
DATA_EXAMPLES = "data/examples/"  # + skill
CUMULATIVE_EXAMPLES = "data/cumulative_examples"
PROBE_EXAMPLES = "data/probe_examples"
TRAIN_STEPS, TRAIN_RUNTIME = "train/steps", "train/runtime_s"
#: What MLflow accepts in a metric name (its own rule, ``mlflow.utils.validation``; no ``:`` on Windows).
_METRIC_NAME = re.compile(r"^[/\w.\- :]*$")


def unloggable_skills(skills: Iterable[str]) -> list[str]:
    """The skill names MLflow would refuse inside a metric name (``acc/<skill>``), so that a run can
    refuse them before it starts instead of failing at its first metric.

    MLflow's two rules, applied to the metric name itself: only the characters of :data:`_METRIC_NAME`, and
    a name that is its own normalised path (no ``//``, ``.`` or ``..`` segment, no trailing ``/``).
    """
    return [s for s in skills if not _METRIC_NAME.match(ACC + s) or posixpath.normpath(ACC + s) != ACC + s]


def round_name(index: int) -> str:
    """A round's run name: ``round-00`` (the untrained student), ``round-01``, ..."""
    return f"round-{index:02d}"


def is_parent_run(tags: dict[str, str]) -> bool:
    """A teachgym experiment's parent run (not a round, probe or sweep run, nor a run teachgym did not make)."""
    return TAG_PARENT not in tags and TAG_POLICY in tags


def teacher_weights(action: Action, report: DataReport | None = None) -> dict[str, float]:
    """The share of the round each skill got from the teacher's decision (sums to 1)."""
    if isinstance(action, Mixture):
        raw = {k: float(v) for k, v in action.weights.items()}
    elif isinstance(action, Synthesize):
        raw = {}
        for r in action.requests:
            raw[r.skill] = raw.get(r.skill, 0.0) + r.n
    elif isinstance(action, Examples):
        raw = {k: float(v) for k, v in (report.requested if report else {}).items()}
    else:  # pragma: no cover - validated earlier
        raise TypeError(action)
    total = sum(raw.values()) or 1.0
    return {k: v / total for k, v in raw.items()}


def round_metrics(
    result: EvalResult,
    action: Action | None,
    report: DataReport | None,
    cumulative: int,
    skills: list[str],
) -> dict[str, float]:
    """The parent run's metrics for one round (the same names whether or not MLflow is on)."""
    m: dict[str, float] = {}
    for s in skills:
        m[ACC + s] = result.profile[s].accuracy
        m[LOSS + s] = result.profile[s].loss
    m[ACC_MEAN] = result.mean_accuracy
    m[ACC_MIN] = result.weakest[1]
    if action is not None:
        w = teacher_weights(action, report)
        for s in skills:
            m[TEACHER_WEIGHT + s] = w.get(s, 0.0)
    if report is not None:
        for s in skills:
            m[DATA_EXAMPLES + s] = float(report.examples.get(s, 0))
        for reason, n in report.dropped.items():
            m[f"data/dropped/{reason}"] = float(n)
        m["data/repeated"] = float(sum(report.repeated.values()))
        if report.llm:
            for key in ("requested", "generated", "kept", "shortfall"):
                m[f"data/llm/{key}"] = float(getattr(report.llm, key))
            for reason, n in report.llm.rejected.items():
                m[f"data/llm/rejected/{reason}"] = float(n)
    m[CUMULATIVE_EXAMPLES] = float(cumulative)
    return m
