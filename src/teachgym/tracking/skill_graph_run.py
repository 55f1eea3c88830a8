"""The ``skill-graph`` MLflow run that ``teachgym skill-graph`` logs beside an env's experiments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from teachgym.tracking.schema import TAG_KIND
from teachgym.tracking.store import ensure_experiment


def log_skill_graph(uri: str, experiment: str, params: Mapping[str, Any], files: Sequence[Path]) -> str:
    """A ``skill-graph`` run in ``experiment`` with ``params`` and ``files`` as artifacts; returns its id."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=ensure_experiment(mlflow.MlflowClient(), experiment))
    with mlflow.start_run(run_name="skill-graph", tags={TAG_KIND: "skill-graph"}) as run:
        mlflow.log_params(dict(params))
        for path in files:
            mlflow.log_artifact(str(path))
        return run.info.run_id
