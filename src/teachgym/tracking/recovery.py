"""The parts of the MLflow tracker that ``--resume`` uses to reconcile the store with the round states on disk
(:class:`teachgym.protocols.ResumableTracker`), mixed into :class:`teachgym.tracking.writer.MLflowTracker`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from teachgym.tracking.schema import ACC_MEAN, TAG_ROUND

if TYPE_CHECKING:  # pragma: no cover
    from teachgym.rounds import Round


class Recovery:
    """Rounds that run again after a resume, and rounds the store missed (needs the tracker's ``mlflow``,
    ``parent_id``, ``_experiment_id``, and its ``round``/``log``/``log_metrics_now``/``wait``)."""

    mlflow: Any
    parent_id: str | None
    _experiment_id: str
    _logged_before: set[int]

    def rerun_after(self, index: int) -> list[str]:
        """On resume after round ``index``: the rounds after it run again (their state was lost or damaged).

        Their earlier ``round-NN`` runs that finished are deleted (the re-run logs new ones), and the parent's
        metrics at steps it already has are not written again, so every metric keeps one point per step (a
        resume is exact: the values are the same).

        Returns:
            The ids of the round runs deleted.
        """
        client = self.mlflow.MlflowClient()
        self._logged_before = self.logged_steps()
        deleted = []
        for run in client.search_runs([self._experiment_id], f"tags.mlflow.parentRunId = '{self.parent_id}' and "
                                      "attributes.status = 'FINISHED'", max_results=5000):
            if int(run.data.tags.get(TAG_ROUND, -1)) > index:
                client.delete_run(run.info.run_id)
                deleted.append(run.info.run_id)
        return deleted

    def logged_steps(self, key: str = ACC_MEAN) -> set[int]:
        """The steps at which the parent run has ``key`` (what an earlier process already logged)."""
        return {m.step for m in self.mlflow.MlflowClient().get_metric_history(self.parent_id, key)}

    def relog(self, entries: Round | list[Round] | None) -> int:
        """On resume: log the rounds the store missed (the server was down, or the process died while logging).

        A round's parent metrics are written only if its step is not there yet, so every metric keeps
        exactly one point per step; its artifacts go to a fresh ``round-NN`` run unless a finished one exists.

        Returns:
            How many rounds were logged again.
        """
        if entries is None:
            return 0
        client = self.mlflow.MlflowClient()
        logged = self.logged_steps()
        count = 0
        for entry in entries if isinstance(entries, list) else [entries]:
            done = client.search_runs(
                [self._experiment_id], f"tags.mlflow.parentRunId = '{self.parent_id}' and "
                f"tags.`{TAG_ROUND}` = '{entry.index}' and attributes.status = 'FINISHED'", max_results=1)
            missing_metrics = entry.index not in logged
            if done and not missing_metrics:
                continue
            if done:  # the round's run is whole; only the parent's metrics were still queued
                self.log_metrics_now(entry)
                count += 1
                continue
            with self.round(entry.index, relogged=True):
                self.log(entry, parent_metrics=missing_metrics)
            count += 1
        self.wait()
        return count
