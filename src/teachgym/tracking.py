"""MLflow logging, following the schema in DESIGN.md.

* experiment ``teachgym/<env>`` (overridable); one **parent run** per curriculum experiment, named
  ``<policy>-s<seed>``, tagged ``teachgym.policy/env/student/seed``, with the flattened config as
  params, the config as an artifact, and per-round metrics at ``step=round``: ``acc/<skill>``,
  ``acc/mean``, ``acc/min``, ``loss/<skill>``, ``teacher/weight/<skill>``,
  ``data/examples/<skill>``, ``data/cumulative_examples``; artifacts ``plots/*.png`` redrawn after
  every round; with ``checkpoints``, the student as pyfunc models ``student-round-NN``;
* one **child run** per round (``nested=True``) named ``round-NN``: the trainer's curves (the HF
  ``MLflowCallback`` logs into the active run, which is this child), the training set
  (``mlflow.log_input``), the profile and the teacher's decision as JSON, and the eval predictions
  as a table.

Runs that end by an exception are marked ``FAILED`` (``KILLED`` on Ctrl-C), never left ``RUNNING``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from teachgym.types import Examples, Mixture, Synthesize, action_to_dict, profile_to_dict

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

    from teachgym.engine import DataReport
    from teachgym.evaluation import EvalResult
    from teachgym.types import Action, TrainReport

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
# transformers' MLflowCallback reads these; each would send the trainer's curves somewhere other
# than the round's child run.
_HF_MLFLOW_ENV = ("MLFLOW_NESTED_RUN", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME")


def resolve_tracking_uri(configured: str | None) -> str:
    """Config first, then ``$MLFLOW_TRACKING_URI``, then ``sqlite:///mlflow.db`` in the working dir."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


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
        m[f"acc/{s}"] = result.profile[s].accuracy
        m[f"loss/{s}"] = result.profile[s].loss
    m["acc/mean"] = result.mean_accuracy
    m["acc/min"] = result.weakest[1]
    if action is not None:
        w = teacher_weights(action, report)
        for s in skills:
            m[f"teacher/weight/{s}"] = w.get(s, 0.0)
    if report is not None:
        for s in skills:
            m[f"data/examples/{s}"] = float(report.examples.get(s, 0))
        for reason, n in report.dropped.items():
            m[f"data/dropped/{reason}"] = float(n)
        m["data/repeated"] = float(sum(report.repeated.values()))
        if report.llm:
            for key in ("requested", "generated", "kept", "shortfall"):
                m[f"data/llm/{key}"] = float(getattr(report.llm, key))
            for reason, n in report.llm.rejected.items():
                m[f"data/llm/rejected/{reason}"] = float(n)
    m["data/cumulative_examples"] = float(cumulative)
    return m


class MLflowTracker:
    """Logs one experiment to MLflow (see the module docstring for the schema)."""

    def __init__(
        self,
        tracking_uri: str | None,
        experiment: str,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        config_yaml: str,
        log_predictions: bool = True,
    ) -> None:
        import mlflow

        self.mlflow = mlflow
        self.uri = resolve_tracking_uri(tracking_uri)
        self.experiment, self.run_name = experiment, run_name
        self.tags, self.params, self.config_yaml = dict(tags), dict(params), config_yaml
        self.log_predictions = log_predictions
        self.parent_id: str | None = None
        self._saved_env: dict[str, str] = {}
        self.best: tuple[float, int, str] | None = None  # (acc/mean, round, model id) of the best checkpoint

    def start(self) -> str:
        """Open the parent run; return its id."""
        mlflow = self.mlflow
        for var in _HF_MLFLOW_ENV:
            if var in os.environ:
                log.warning("ignoring $%s during the experiment: teachgym places the trainer's runs itself", var)
                self._saved_env[var] = os.environ.pop(var)
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment(self.experiment)
        run = mlflow.start_run(run_name=self.run_name, tags=self.tags)
        self.parent_id = run.info.run_id
        # MLflow caps a param value at 6000 characters.
        mlflow.log_params({k: str(v)[:6000] for k, v in self.params.items()})
        mlflow.log_text(self.config_yaml, "config.yaml")
        return self.parent_id

    @contextmanager
    def round(self, index: int) -> Iterator[None]:
        """The round's child run, active while the student trains (so the trainer logs into it)."""
        with self.mlflow.start_run(run_name=f"round-{index:02d}", nested=True, tags={"teachgym.round": str(index)}):
            yield

    @contextmanager
    def probe(self, index: int, k: int) -> Iterator[None]:
        """A probe's own run, nested in the round's (the trainer logs its params once per run)."""
        name = f"round-{index:02d}-probe-{k}"
        with self.mlflow.start_run(run_name=name, nested=True, tags={"teachgym.probe": str(k)}):
            yield

    def log_probes(self, index: int, probes: list) -> None:
        """The round's probe results as JSON in the round's run."""
        from dataclasses import asdict

        self.mlflow.log_dict({"round": index, "probes": [asdict(p) for p in probes]}, "probes.json")

    def log_round(
        self,
        index: int,
        result: EvalResult,
        action: Action | None,
        report: DataReport | None,
        train: TrainReport | None,
        data: Dataset | None,
        metrics: Mapping[str, float],
    ) -> None:
        """Log a finished round: parent metrics at ``step=index``, artifacts into the active child run."""
        mlflow = self.mlflow
        client = mlflow.MlflowClient()

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        client.log_batch(
            self.parent_id, metrics=[Metric(k, float(v), now, index) for k, v in metrics.items()], synchronous=True
        )
        mlflow.log_metrics({k: v for k, v in metrics.items() if k.startswith(("acc/", "loss/"))}, step=index)
        mlflow.log_dict(
            {"round": index, "profile": profile_to_dict(result.profile), "mean_accuracy": result.mean_accuracy},
            "profile.json",
        )
        if action is not None:
            decision = {"round": index, "action": action_to_dict(action)}
            if report is not None:
                decision["data"] = {
                    "requested": report.requested,
                    "examples": report.examples,
                    "sources": report.sources,
                    "dropped": report.dropped,
                    "repeated": report.repeated,
                    "rejected_sample": report.rejected_sample,
                    "llm": dataclasses.asdict(report.llm) if report.llm else None,
                }
            mlflow.log_dict(decision, "decision.json")
        if train is not None:
            mlflow.log_metrics({"train/steps": train.steps, "train/runtime_s": train.runtime_s}, step=index)
        if data is not None:
            from mlflow.data.huggingface_dataset import from_huggingface

            mlflow.log_input(from_huggingface(data, name=f"round-{index:02d}-train"), context="training")
        if self.log_predictions:
            import pandas as pd

            mlflow.log_table(pd.DataFrame(result.predictions), artifact_file="eval_predictions.json")

    def log_plots(self, records: list, skills: list[str]) -> None:
        """Rewrite ``plots/*.png`` in the parent run from the rounds so far (a run in progress shows them)."""
        import tempfile

        from teachgym.plots import write_round_plots

        with tempfile.TemporaryDirectory() as tmp:
            write_round_plots(records, skills, tmp)
            self.log_artifact_dir(tmp, "plots")

    def log_checkpoint(self, student: Any, index: int, metrics: Mapping[str, float], keep: str,
                       model_config: Mapping[str, Any]) -> str | None:
        """Log the student as pyfunc model ``student-round-NN`` (parent run, ``step=index``); return its id.

        ``keep="best"`` logs only a round that beats the best so far and deletes the one it replaces.
        """
        import tempfile
        from pathlib import Path

        from teachgym.mlflow_model import StudentModel

        mlflow = self.mlflow
        acc = float(metrics["acc/mean"])
        if keep == "best" and self.best is not None and acc <= self.best[0]:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            student.save(str(Path(tmp) / "student"))
            info = mlflow.pyfunc.log_model(
                name=f"student-round-{index:02d}", python_model=StudentModel(),
                artifacts={"student": str(Path(tmp) / "student")}, model_config=dict(model_config),
                pip_requirements=["teachgym"], step=index,
            )
        # MLflow links the run's metrics of step `index` (acc/mean, acc/min, ...) to the model itself.
        client = mlflow.MlflowClient()
        if keep == "best" and self.best is not None:
            client.delete_logged_model(self.best[2])
        if self.best is None or acc > self.best[0]:
            self.best = (acc, index, info.model_id)
            client.set_tag(self.parent_id, "teachgym.best_round", str(index))
            client.set_tag(self.parent_id, "teachgym.best_model_id", info.model_id)
        return info.model_id

    def log_artifact_dir(self, path: str, artifact_path: str) -> None:
        """Attach a directory (e.g. the saved student) to the parent run."""
        self.mlflow.MlflowClient().log_artifacts(self.parent_id, path, artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        """End every open run (children first) with ``status`` and restore the environment."""
        while self.mlflow.active_run() is not None:
            self.mlflow.end_run(status=status)
        os.environ.update(self._saved_env)
        self._saved_env.clear()
