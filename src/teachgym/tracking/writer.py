"""The MLflow tracker: one experiment's parent run, a child run per round, written in the background.

The schema (every name in :mod:`teachgym.tracking.schema`):

* experiment ``teachgym/<env>`` (overridable); one **parent run** per curriculum experiment, named
  ``<policy>-s<seed>``, tagged ``teachgym.policy/env/student/seed``, with the flattened config as
  params, the config as an artifact, and per-round metrics at ``step=round``: ``acc/<skill>``,
  ``acc/mean``, ``acc/min``, ``loss/<skill>``, ``teacher/weight/<skill>``,
  ``data/examples/<skill>``, ``data/cumulative_examples``; artifacts ``plots/*.png`` redrawn as
  rounds finish (at most every :data:`~teachgym.tracking.checkpoints.PLOT_EVERY_S` seconds) and after the last one; with
  ``checkpoints``, the student as pyfunc models ``student-round-NN``;
* one **child run** per round (``nested=True``) named ``round-NN``: the trainer's curves (the HF
  ``MLflowCallback`` logs into the active run, which is this child), the training set
  (``mlflow.log_input``), the profile and the teacher's decision as JSON, and the eval predictions
  as a table.

Logging does not hold up training: a round's metrics, artifacts, child run and the plots are written
by one background thread while the next rounds train (the trainer's own curves go through MLflow's
asynchronous logging). Rounds that queue up while it is busy have their parent metrics written in one
batch. Every round's saved state lists the rounds the store has not confirmed yet
(:meth:`MLflowTracker.unconfirmed`), and ``--resume`` re-logs those; the parent run ends only after
everything is written.

Runs that end by an exception are marked ``FAILED`` (``KILLED`` on Ctrl-C or SIGTERM), never left
``RUNNING``; a run whose process was SIGKILLed carries ``teachgym.host``/``teachgym.pid`` tags, so
``--resume`` and ``teachgym runs --stale`` can tell that nobody is writing it any more.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from teachgym.config import ConfigError
from teachgym.tracking import mlflow_private
from teachgym.tracking.artifacts import (
    log_training_set,
    parent_metric_batch,
    round_files,
    step_metric_batch,
    write_files,
)
from teachgym.tracking.checkpoints import Checkpoints
from teachgym.tracking.recovery import Recovery
from teachgym.tracking.runs import close_below
from teachgym.tracking.schema import (
    TAG_PROBE,
    TAG_RELOGGED,
    TAG_ROUND,
    round_name,
    unloggable_skills,
)
from teachgym.tracking.store import ensure_experiment, resolve_tracking_uri, server_reachable

if TYPE_CHECKING:  # pragma: no cover
    from teachgym.rounds import Round

log = logging.getLogger(__name__)

# transformers' MLflowCallback reads these; each would send the trainer's curves somewhere other
# than the round's child run.
_HF_MLFLOW_ENV = ("MLFLOW_NESTED_RUN", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME")

#: The parent's metrics of fast rounds are written in one batch at most this often.
BACKLOG_EVERY_S = 0.5

#: Background writes that may wait at once before the loop waits for them. Small on purpose: a loop that
#: runs ahead competes with the writer for the interpreter lock, and every one of the store's many short
#: waits on sqlite then costs the writer a switch interval (5 ms): letting it catch up is faster overall.
MAX_QUEUED = 8


@contextmanager
def _ending(end: Any) -> Iterator[None]:
    """Call ``end(status)`` when the block exits: ``FINISHED``, ``KILLED`` on a stop signal, else ``FAILED``."""
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        end(status)


class MLflowTracker(Checkpoints, Recovery):
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
        active_rounds: bool = True,
        skills: Sequence[str] = (),
        plots: bool = True,
        checkpoints: str = "none",
        model_config: Mapping[str, Any] | None = None,
    ) -> None:
        """Set up (nothing is written before :meth:`start`).

        Args:
            active_rounds: Make each round's child run the active MLflow run while the student trains (the
                HF trainer's callback logs into it). ``False`` for a student that logs nothing itself (the
                loop's fast path): the child runs are then created by the background thread.
            skills: The env's skills, in order (the plots' rows).
            plots: Redraw ``plots/*.png`` as rounds finish (``tracking.plots``).
            checkpoints: ``none``, ``best`` or ``every``: log the student as a pyfunc model (``tracking.checkpoints``).
            model_config: What a logged student model needs to answer prompts (env, student, max_new_tokens).
        """
        import mlflow

        bad = unloggable_skills(skills)
        if bad:
            raise ConfigError(
                f"MLflow cannot store metrics named after the skills {bad[:5]}: a metric name may hold letters, "
                f"digits, '_', '-', '.', ' ', ':' and '/' only; rename the skills or set tracking.enabled=false")
        self.mlflow = mlflow
        self.active_rounds = active_rounds
        self.uri = tracking_uri or resolve_tracking_uri(None)  # the loop passes the URI it resolved once
        self.experiment, self.run_name = experiment, run_name
        self.tags, self.params, self.config_yaml = dict(tags), dict(params), config_yaml
        self.log_predictions = log_predictions
        self.skills, self.plots, self.checkpoints = list(skills), plots, checkpoints
        self.model_config = dict(model_config or {})
        self.parent_id: str | None = None
        self._saved_env: dict[str, str] = {}
        self.best: tuple[float, int, str] | None = None  # (acc/mean, round, model id) of the best checkpoint
        self._experiment_id: str | None = None
        self._writer: Any = None  # one background thread: artifacts, child-run ends, plots (in order)
        self._pending: list[Any] = []  # its futures, not yet waited for
        self._children: dict[int, tuple[str, str]] = {}  # round -> (child run id, artifact URI)
        self._in_flight: dict[int, Round] = {}  # rounds handed to the thread and not yet written whole
        self._backlog: list[tuple[int, list]] = []  # (round, the parent's metrics) not yet written
        self._backlog_lock = threading.Lock()
        self._backlog_at = 0.0  # when the backlog was last written
        self._flush_timer: threading.Timer | None = None
        self._written: set[int] = set()  # rounds of in_flight whose parent metrics are in the store
        self._ended: set[int] = set()  # rounds of in_flight whose child run is written and ended
        self._plots: tuple[list, list[str]] | None = None  # the newest rounds to draw, if not drawn yet
        self._plotted_at = -math.inf
        self._plot_seconds = 0.0  # how long the last drawing took
        self._logged_before: set[int] = set()  # on resume: steps the parent run had before (see rerun_after)

    def start(self, run_id: str | None = None) -> str:
        """Open the parent run (or reopen ``run_id``'s, back to ``RUNNING``, on resume); return its id."""
        from concurrent.futures import ThreadPoolExecutor

        mlflow = self.mlflow
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="teachgym-mlflow")
        self._plotted_at = time.monotonic()  # the first plots after PLOT_EVERY_S (a short run draws them once)
        for var in _HF_MLFLOW_ENV:
            if var in os.environ:
                log.warning("ignoring $%s during the experiment: teachgym places the trainer's runs itself", var)
                self._saved_env[var] = os.environ.pop(var)
        mlflow.set_tracking_uri(self.uri)
        self._experiment_id = ensure_experiment(mlflow.MlflowClient(self.uri), self.experiment)
        mlflow.set_experiment(experiment_id=self._experiment_id)
        if run_id is not None:
            run = mlflow.start_run(run_id=run_id)
            self.parent_id = run.info.run_id
            mlflow.set_tags(self.tags)  # the new process's host and pid
            self.close_orphans()
            return self.parent_id
        run = mlflow.start_run(run_name=self.run_name, tags=self.tags)
        self.parent_id = run.info.run_id
        # MLflow caps a param value at 6000 characters.
        mlflow.log_params({k: str(v)[:6000] for k, v in self.params.items()})
        mlflow.log_text(self.config_yaml, "config.yaml")
        return self.parent_id

    def reachable(self) -> bool:
        """Whether the store still answers (an experiment that failed mid-run asks, to say why)."""
        return server_reachable(self.uri)

    def close_orphans(self) -> list[str]:
        """End ``KILLED`` every run below the parent still ``RUNNING`` (a dead process's round and probes)."""
        return close_below(self.mlflow.MlflowClient(), self.parent_id)

    def log(self, entry: Round, parent_metrics: bool = True) -> None:
        """Log a finished round: the parent's metrics at ``step=entry.index``, the rest into the round's child run.

        Returns at once; the background thread writes it (:meth:`wait` blocks until it has). Rounds that
        queue up while the thread is busy have their parent metrics written in one batch.
        """
        parent_metrics = parent_metrics and entry.index not in self._logged_before  # a re-run round: logged already
        if parent_metrics:  # one batch per round at least, so a crash leaves the step either whole or absent
            with self._backlog_lock:
                self._backlog.append((entry.index, parent_metric_batch(entry)))
        with self._backlog_lock:
            self._in_flight[entry.index] = entry
            self._written.discard(entry.index)
            self._ended.discard(entry.index)
            if not parent_metrics:
                self._written.add(entry.index)
        self._submit(self.log_round, entry)

    def unconfirmed(self, entry: Round | None = None) -> list[Round]:
        """``entry`` and every round logged before it that the store does not have whole yet.

        Waits while more than :data:`MAX_QUEUED` writes are queued (see there why). Never raises: the
        round's state is saved first, then :meth:`check` reports a failure.
        """
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_for

        while True:
            queued = [f for f in self._pending if not f.done()]
            if len(queued) <= MAX_QUEUED:
                break
            wait_for(queued, return_when=FIRST_COMPLETED)
        with self._backlog_lock:
            rounds = [e for i, e in sorted(self._in_flight.items()) if entry is None or i != entry.index]
        return rounds + ([entry] if entry is not None else [])

    def check(self) -> None:
        """Raise the first failure of the background thread so far (e.g. a lost server); forget finished jobs."""
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for f in done:
            if f.exception() is not None:
                raise f.exception()

    def log_metrics_now(self, entry: Round) -> None:
        """Write a round's parent metrics at once (on resume, for a round whose child run is already whole)."""
        self.mlflow.MlflowClient().log_batch(self.parent_id, metrics=parent_metric_batch(entry))

    def _write_backlog(self, force: bool = True) -> None:
        """Write the queued rounds' parent metrics, whole rounds in batches of at most ~1000 metrics.

        Unless ``force``, only every :data:`BACKLOG_EVERY_S` seconds (or once 1000 metrics wait): MLflow's
        ``log_batch`` costs about as much for one round's metrics as for thirty rounds'.
        """
        with self._backlog_lock:
            waiting = sum(len(m) for _, m in self._backlog)
            if not waiting:
                return
            if not force and waiting < 1000 and time.monotonic() - self._backlog_at < BACKLOG_EVERY_S:
                if self._flush_timer is None:  # write it soon even if no other round comes (a long round next)
                    self._flush_timer = threading.Timer(BACKLOG_EVERY_S, self._flush_backlog_later)
                    self._flush_timer.daemon = True
                    self._flush_timer.start()
                return
            rounds, self._backlog = self._backlog, []
        client = self.mlflow.MlflowClient()
        done: list[int] = []  # rounds in the batch being built
        written: set[int] = set()
        try:
            batch: list[Any] = []
            for i, (r, metrics) in enumerate(rounds):
                batch += metrics
                done.append(r)
                if i + 1 == len(rounds) or len(batch) + len(rounds[i + 1][1]) > 1000:  # MLflow's limit per batch
                    client.log_batch(self.parent_id, metrics=batch)
                    written.update(done)
                    self._confirm(written=done)
                    batch, done = [], []
        except Exception:
            with self._backlog_lock:  # not written: kept for the next try (wait() raises if that fails too)
                self._backlog[:0] = [(r, m) for r, m in rounds if r not in written]
            raise
        self._backlog_at = time.monotonic()

    def _flush_backlog_later(self) -> None:
        with self._backlog_lock:
            self._flush_timer = None
        try:
            self._writer.submit(self._write_backlog)  # a failure here is raised by the next wait()
        except (RuntimeError, AttributeError):  # the tracker has finished meanwhile
            pass

    def _confirm(self, written: list[int] = (), ended: list[int] = ()) -> None:
        """Rounds whose parent metrics and child run are both in the store leave ``in_flight``."""
        with self._backlog_lock:
            self._written.update(written)
            self._ended.update(ended)
            for r in self._written & self._ended:
                self._in_flight.pop(r, None)
                self._written.discard(r)
                self._ended.discard(r)

    @contextmanager
    def round(self, index: int, relogged: bool = False) -> Iterator[None]:
        """The round's child run, active while the student trains (so the trainer logs into it).

        A round that finishes is ended ``FINISHED`` by the background thread, after its artifacts.
        Without ``active_rounds`` the background thread also creates it.
        """
        import json

        from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        name = round_name(index)
        tags = {MLFLOW_PARENT_RUN_ID: self.parent_id, MLFLOW_RUN_NAME: name, TAG_ROUND: str(index),
                **({TAG_RELOGGED: "true"} if relogged else {})}
        if self.log_predictions:  # what MlflowClient.log_table adds, so that the UI shows it as a table
            tags[MLFLOW_LOGGED_ARTIFACTS] = json.dumps([{"path": "eval_predictions.json", "type": "table"}])
        child_id = None  # set when the child is pushed onto MLflow's active-run stack
        if self.active_rounds:
            # One insert instead of mlflow.start_run's lookups; the run is then made the active one, as
            # start_run(nested=True) would, so that the trainer's MLflowCallback logs into it.
            run = self.mlflow.MlflowClient().create_run(self._experiment_id, run_name=name, tags=tags)
            self._children[index] = (run.info.run_id, run.info.artifact_uri)
            mlflow_private.push_active_run(run)
            child_id = run.info.run_id
        else:
            self._submit(self._create_child, index, name, tags)

        def end(status: str) -> None:
            if child_id is not None:
                mlflow_private.pop_active_run(child_id)  # the parent is active again
            self._submit(self._end_child, index, status)

        with _ending(end):
            yield

    def _create_child(self, index: int, name: str, tags: dict[str, str]) -> None:
        run = self.mlflow.MlflowClient().create_run(self._experiment_id, run_name=name, tags=tags)
        self._children[index] = (run.info.run_id, run.info.artifact_uri)

    def _end_child(self, index: int, status: str) -> None:
        child = self._children.pop(index, None)
        if child is None:  # its creation failed (and raised in wait())
            return
        # Not MlflowClient.set_terminated: it also stops and restarts MLflow's async-logging queue (about a
        # second each time); the queue is flushed once, when the experiment ends (flush()).
        mlflow_private.end_run(self.mlflow.MlflowClient(), child[0], status)
        if status == "FINISHED":
            self._confirm(ended=[index])

    @contextmanager
    def _child(self, name: str, tags: dict[str, str]) -> Iterator[None]:
        """A nested run that ends FINISHED, FAILED, or KILLED on a stop signal (MLflow's own ``with`` says FAILED)."""
        self.mlflow.start_run(run_name=name, nested=True, tags=tags)

        def end(status: str) -> None:
            try:
                self.mlflow.end_run(status)
            except Exception as e:  # noqa: BLE001 - the store is gone; finish() forgets the run
                if status == "FINISHED":
                    raise
                log.warning("could not mark run %s %s: %s", name, status, e)

        with _ending(end):
            yield

    @contextmanager
    def probe(self, index: int, k: int) -> Iterator[None]:
        """A probe's own run, nested in the round's (the trainer logs its params once per run).

        Without ``active_rounds`` (a student that logs nothing itself) there is nothing to put in it: no run.
        """
        if not self.active_rounds:
            yield
            return
        with self._child(f"{round_name(index)}-probe-{k}", {TAG_PROBE: str(k)}):
            yield

    def log_round(self, entry: Round) -> None:
        """Write a round: the parent's queued metrics, then the artifacts of its child run (background thread).

        The JSON files and the predictions table are written straight into the run's artifact store; the
        table as ``MlflowClient.log_table`` writes one (JSON, ``orient="split"``, and the
        ``mlflow.loggedArtifacts`` tag set when the child was created), so the UI and ``mlflow.load_table``
        read it.
        """
        self._write_backlog(force=False)
        run_id, artifact_uri = self._children[entry.index]
        write_files(artifact_uri, round_files(entry, self.log_predictions))
        steps = step_metric_batch(entry)
        for i in range(0, len(steps), 1000):  # MLflow's limit per batch
            self.mlflow.MlflowClient().log_batch(run_id, metrics=steps[i : i + 1000])
        if entry.data is not None:
            log_training_set(self.mlflow.MlflowClient(), run_id, entry.data, entry.index)

    def _submit(self, fn: Any, *args: Any) -> None:
        self._pending.append(self._writer.submit(fn, *args))

    def flush(self) -> None:
        """Draw the plots not drawn yet and wait for everything, the trainer's queued curves included."""
        if self._plots is not None and self._writer is not None:
            self._submit(self._draw_plots, *self._plots)
            self._plots = None
        self.wait()
        self.mlflow.flush_async_logging()  # what the trainer's MLflowCallback queued (about a second)

    def wait(self) -> None:
        """Block until everything logged so far is in the store; raise the first failure."""
        if self._writer is not None:
            self._submit(self._write_backlog)
        pending, self._pending = self._pending, []
        first: BaseException | None = None
        for item in pending:
            try:
                item.result() if hasattr(item, "result") else item.wait()
            except Exception as e:  # noqa: BLE001 - every item is waited for; the first failure is raised
                first = first or e
        if first is not None:
            raise first

    def log_artifact_dir(self, path: str, artifact_path: str) -> None:
        """Attach a directory (e.g. the saved student) to the parent run."""
        self.mlflow.MlflowClient().log_artifacts(self.parent_id, path, artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        """End every open run (children first) with ``status`` and restore the environment.

        Everything still being written is waited for first (and the plots of the last rounds drawn).
        If the server is gone, the runs are forgotten locally (``--resume`` closes them later).
        """
        try:
            self.flush()
        except Exception as e:  # noqa: BLE001 - the runs still have to be ended
            log.warning("could not finish writing to MLflow: %s", e)
            status = "FAILED" if status == "FINISHED" else status
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None
        try:
            while self.mlflow.active_run() is not None:
                self.mlflow.end_run(status=status)
        except Exception as e:  # noqa: BLE001 - the store is unreachable: nothing more can be told to it
            log.warning("could not mark the MLflow runs %s: %s", status, e)
            mlflow_private.forget_active_runs()
        finally:
            os.environ.update(self._saved_env)
            self._saved_env.clear()
