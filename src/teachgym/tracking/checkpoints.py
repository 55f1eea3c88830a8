"""The parts of the MLflow tracker that keep the student's checkpoints and the experiment's plots
(:class:`teachgym.protocols.CheckpointingTracker`), mixed into :class:`teachgym.tracking.writer.MLflowTracker`."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from teachgym.plots import write_round_plots
from teachgym.tracking.schema import ACC_MEAN, TAG_BEST_MODEL, TAG_BEST_ROUND

#: The largest share of the time the plots may take (the next drawing waits for it).
PLOT_MAX_SHARE = 0.2
#: The plots are redrawn at most this often while an experiment runs (and always after its last round).
PLOT_EVERY_S = 10.0


class Checkpoints:
    """Checkpoints of the student as pyfunc models, and the parent run's plots (needs the tracker's state:
    ``mlflow``, ``parent_id``, ``plots``, ``skills``, ``checkpoints``, ``model_config``, ``best``, and its
    background writer ``_submit``/``wait``/``log_artifact_dir``)."""

    mlflow: Any
    parent_id: str | None
    best: tuple | None
    plots: bool
    skills: list[str]
    checkpoints: str
    model_config: dict[str, Any]
    _plots: tuple | None
    _plotted_at: float
    _plot_seconds: float

    def log_plots(self, records: list) -> None:
        """Redraw ``plots/*.png`` in the parent run from the rounds so far, in the background (with ``plots``).

        At most every :data:`PLOT_EVERY_S` seconds; :meth:`finish` draws the rounds not drawn yet.
        """
        if not self.plots:
            return
        self._plots = (list(records), list(self.skills))
        # At most every PLOT_EVERY_S, and at most PLOT_MAX_SHARE of the time: drawing takes longer as rounds add up.
        if time.monotonic() - self._plotted_at >= max(PLOT_EVERY_S, self._plot_seconds / PLOT_MAX_SHARE):
            self._plotted_at = time.monotonic()
            self._submit(self._draw_plots, *self._plots)
            self._plots = None

    def _draw_plots(self, records: list, skills: list[str]) -> None:
        start = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            write_round_plots(records, skills, tmp)
            self.log_artifact_dir(tmp, "plots")
        self._plot_seconds = time.monotonic() - start

    def log_checkpoint(self, student: Any, index: int, metrics: Mapping[str, float]) -> str | None:
        """Log the student as pyfunc model ``student-round-NN`` (parent run, ``step=index``); return its id.

        With ``checkpoints="none"`` nothing is logged; ``"best"`` logs only a round that beats the best so far
        and deletes the one it replaces; ``"every"`` logs every round.
        """
        keep, model_config = self.checkpoints, self.model_config
        if keep == "none":
            return None
        # Imported here: defining the pyfunc model class makes MLflow warn, which a run without checkpoints never needs.
        from teachgym.mlflow_model import StudentModel

        mlflow = self.mlflow
        acc = float(metrics[ACC_MEAN])
        if keep == "best" and self.best is not None and acc <= self.best[0]:
            return None
        self.wait()  # the round's metrics in the store first: log_model links the run's metrics at this step
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
            client.set_tag(self.parent_id, TAG_BEST_ROUND, str(index))
            client.set_tag(self.parent_id, TAG_BEST_MODEL, info.model_id)
        return info.model_id

    def restore_best(self, records: list, saved: tuple | None) -> None:
        """On resume: the best checkpoint so far, from the parent's tags (they are written after the round's state,
        so they may know a checkpoint the state does not); else what the state saved."""
        tags = self.mlflow.MlflowClient().get_run(self.parent_id).data.tags
        r = int(tags.get(TAG_BEST_ROUND, -1))
        if 0 <= r < len(records) and TAG_BEST_MODEL in tags:
            self.best = (records[r].mean_accuracy, r, tags[TAG_BEST_MODEL])
        else:
            self.best = saved
