"""What a round's run holds besides metrics: its JSON files and its training set as an MLflow input."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from teachgym.tracking.schema import TRAIN_RUNTIME, TRAIN_STEPS, round_name
from teachgym.types import action_to_dict, profile_to_dict

if TYPE_CHECKING:  # pragma: no cover
    from teachgym.rounds import Round


def _local_path(artifact_uri: str) -> Path | None:
    """The directory of a local artifact store (``file://`` or a plain path), else None."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):  # a path (or a Windows drive)
        return Path(artifact_uri)
    return None


def round_files(entry: Round, log_predictions: bool) -> dict[str, Any]:
    """The round run's JSON artifacts: ``profile.json``, ``decision.json``, ``probes.json``, ``eval_predictions.json``.

    The predictions table is written as ``MlflowClient.log_table`` writes one (JSON, ``orient="split"``; the
    ``mlflow.loggedArtifacts`` tag is set when the round's run is created), so the UI and ``mlflow.load_table``
    read it.
    """
    index, result, action, report = entry.index, entry.result, entry.action, entry.report
    files: dict[str, Any] = {
        "profile.json": {"round": index, "profile": profile_to_dict(result.profile),
                         "mean_accuracy": result.mean_accuracy},
    }
    if entry.probes:
        files["probes.json"] = {"round": index, "probes": [dataclasses.asdict(p) for p in entry.probes]}
    if action is not None:
        decision = {"round": index, "action": action_to_dict(action)}
        if entry.teacher:
            decision["teacher"] = dict(entry.teacher)
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
        files["decision.json"] = decision
    if log_predictions:
        columns = list(result.predictions[0]) if result.predictions else []
        files["eval_predictions.json"] = {"columns": columns,
                                          "data": [[p[c] for c in columns] for p in result.predictions]}
    return files


def write_files(artifact_uri: str, files: dict[str, Any]) -> None:
    """Write JSON files into a run's artifact store (in place when it is a local folder)."""
    local = _local_path(artifact_uri)
    if local is not None:  # a local artifact store: write the files in place (what log_artifacts would copy)
        local.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (local / name).write_text(json.dumps(content))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                Path(tmp, name).write_text(json.dumps(content))
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            get_artifact_repository(artifact_uri).log_artifacts(tmp)


def log_training_set(client: Any, run_id: str, data: Any, index: int) -> None:
    """The round's training set as the run's input (rows per skill when the fast path had no rows)."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    name = f"{round_name(index)}-train"
    if hasattr(data, "counts"):  # the engine's SkillCounts: a (skill, examples) table, described directly
        # (what mlflow.data.from_pandas would record, without building a DataFrame and inferring its schema)
        import hashlib
        import json

        from mlflow.entities import Dataset as DatasetEntity

        rows = json.dumps(sorted(data.counts.items()))
        entity = DatasetEntity(
            name=name, digest=hashlib.sha256(rows.encode()).hexdigest()[:8], source_type="code",
            source=json.dumps({"tags": {"teachgym.source": "engine.SkillCounts"}}),
            schema=json.dumps({"mlflow_colspec": [{"type": "string", "name": "skill", "required": True},
                                                  {"type": "long", "name": "examples", "required": True}]}),
            profile=json.dumps({"num_rows": len(data.counts), "num_elements": 2 * len(data.counts)}))
    else:
        from mlflow.data.huggingface_dataset import from_huggingface

        entity = from_huggingface(data, name=name)._to_mlflow_entity()
    log_inputs_once(client, run_id, [DatasetInput(entity, [InputTag(MLFLOW_DATASET_CONTEXT, "training")])])


#: How the stores say that a dataset was inserted by another writer meanwhile (sqlite, PostgreSQL, MySQL).
_DATASET_RACE = ("UNIQUE constraint failed: datasets.", "duplicate key value violates unique constraint",
                 "Duplicate entry")


def log_inputs_once(client: Any, run_id: str, inputs: list[Any], attempts: int = 4) -> None:
    """``client.log_inputs``, safe when several runs log the same dataset at the same moment.

    MLflow's SQL store looks a dataset up by (experiment, name, digest) and inserts it when it is missing, in one
    transaction per request: two trials of a sweep that log an identical training set at once both miss it, and
    the second insert fails on the table's unique key (``BAD_REQUEST: ... UNIQUE constraint failed: datasets...``).
    The dataset is then there, so the call is made again and links the existing one.
    """
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            client.log_inputs(run_id, inputs)
            return
        except MlflowException as e:
            if attempt == attempts - 1 or not any(mark in str(e) for mark in _DATASET_RACE):
                raise
            time.sleep(0.05 * (attempt + 1))


def step_metric_batch(entry: Round) -> list:
    """A per-step teacher's decisions and the filter's counts, one entry per generation batch, for the round's run
    at ``step=k`` (``TrainReport.step_log``)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    log = entry.train.step_log if entry.train is not None else []
    return [Metric(k, float(v), now, step) for step, values in enumerate(log) for k, v in values.items()]


def parent_metric_batch(entry: Round) -> list:
    """A round's metrics for the parent run at ``step=entry.index`` (the student's train/* included)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = dict(entry.metrics)
    if entry.train is not None:
        metrics.update({TRAIN_STEPS: entry.train.steps, TRAIN_RUNTIME: entry.train.runtime_s})
    return [Metric(k, float(v), now, entry.index) for k, v in metrics.items()]
