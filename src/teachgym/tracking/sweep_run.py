"""The ``sweep-<name>`` MLflow run of a sweep: the grid as params, progress metrics, and the final comparison.

:mod:`teachgym.sweep.report` decides what goes in (from the plan and the trials' results); this module is the
only one that writes it, so that every MLflow call of teachgym stays inside :mod:`teachgym.tracking`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from teachgym.tracking.schema import TAG_KIND, TAG_SWEEP, TAG_SWEEP_NAME
from teachgym.tracking.store import ensure_experiment


class SweepRun:
    """The sweep's own run; ``meta`` is the sweep's ``sweep.json`` (its ``id``, and the ``run_id`` once created).

    Args:
        uri: The tracking store (resolved).
        name: The sweep's name: the run is ``sweep-<name>``.
        meta: The sweep's metadata; ``run_id`` is set in it when the run is created.
        save_meta: Called with ``meta`` after the run was created (the sweep writes it to its folder).
    """

    def __init__(self, uri: str, name: str, meta: dict[str, Any], save_meta: Callable[[dict[str, Any]], None]
                 ) -> None:
        import mlflow

        self.client = mlflow.MlflowClient(uri)
        self.name, self.meta, self.save_meta = name, meta, save_meta
        self.run_id: str | None = None
        self.step = 0

    def start(self, experiment: str, params: Mapping[str, Any], trial_keys: Sequence[str], done: int, todo: int
              ) -> None:
        """Reopen the run ``meta`` names (the sweep continues), or create it in ``experiment`` with ``params``."""
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        client = self.client
        if self.meta.get("run_id"):
            try:
                run = client.get_run(self.meta["run_id"])
                self.run_id = run.info.run_id
                client.update_run(self.run_id, status="RUNNING")
                hist = client.get_metric_history(self.run_id, "sweep/finished")
                self.step = max((m.step for m in hist), default=-1) + 1
            except MlflowException:  # another store this time
                self.run_id = None
        if self.run_id is None:
            exp = ensure_experiment(client, experiment)
            run = client.create_run(exp, run_name=f"sweep-{self.name}", tags={
                TAG_KIND: "sweep", TAG_SWEEP: self.meta["id"], TAG_SWEEP_NAME: self.name,
                "mlflow.note.content": f"Sweep {self.name}: the trials are the runs with tag teachgym.sweep = "
                f"'{self.meta['id']}'. The comparison appears here when it ends."})
            self.run_id = run.info.run_id
            self.meta["run_id"] = self.run_id
            self.save_meta(self.meta)
            client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])
            client.log_text(self.run_id, "\n".join(trial_keys) + "\n", "trials.txt")
        self.metrics({"sweep/finished": done, "sweep/failed": 0, "sweep/pending": todo})

    def metrics(self, values: Mapping[str, float]) -> None:
        """Progress metrics at the next step (best effort: a trial's own logging is what matters)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with contextlib.suppress(Exception):
            self.client.log_batch(self.run_id, [Metric(k, float(v), now, self.step) for k, v in values.items()])
            self.step += 1

    def finish(self, files: Sequence[Path], markdown: str, paired: Mapping[str, float], status: str) -> None:
        """The comparison: ``files`` as artifacts, ``markdown`` as the run's note, ``paired`` metrics; then end."""
        with contextlib.suppress(Exception):
            for path in files:
                if path.exists():
                    self.client.log_artifact(self.run_id, str(path))
            self.client.set_tag(self.run_id, "mlflow.note.content", markdown
                                + f"\n\nTrials: runs with tag `teachgym.sweep = '{self.meta['id']}'`.\n")
            for key, value in paired.items():
                self.client.log_metric(self.run_id, key, value)
        self.end(status)

    def end(self, status: str) -> None:
        """End the run with ``status``."""
        with contextlib.suppress(Exception):
            self.client.set_terminated(self.run_id, status)
