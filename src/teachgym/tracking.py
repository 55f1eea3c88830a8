"""MLflow logging, following the schema in DESIGN.md.

* experiment ``teachgym/<env>`` (overridable); one **parent run** per curriculum experiment, named
  ``<policy>-s<seed>``, tagged ``teachgym.policy/env/student/seed``, with the flattened config as
  params, the config as an artifact, and per-round metrics at ``step=round``: ``acc/<skill>``,
  ``acc/mean``, ``acc/min``, ``loss/<skill>``, ``teacher/weight/<skill>``,
  ``data/examples/<skill>``, ``data/cumulative_examples``; artifacts ``plots/*.png`` redrawn as
  rounds finish (at most every :data:`PLOT_EVERY_S` seconds) and after the last one; with
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

The store is made ready before anything trains (:func:`prepare_store`): a fresh sqlite file gets its
schema and experiment under a file lock (several processes starting on one fresh file otherwise race
on ``CREATE TABLE``), and an ``http(s)://`` server that does not answer is reported within seconds
instead of after MLflow's four minutes of retries.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
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


#: The parent's metrics of fast rounds are written in one batch at most this often.
BACKLOG_EVERY_S = 0.5

#: The largest share of the time the plots may take (the next drawing waits for it).
PLOT_MAX_SHARE = 0.2

#: Background writes that may wait at once before the loop waits for them. Small on purpose: a loop that
#: runs ahead competes with the writer for the interpreter lock, and every one of the store's many short
#: waits on sqlite then costs the writer a switch interval (5 ms): letting it catch up is faster overall.
MAX_QUEUED = 8

#: The plots are redrawn at most this often while an experiment runs (and always after its last round).
PLOT_EVERY_S = 10.0

#: How long to wait for a tracking server before saying it is unreachable.
CONNECT_TIMEOUT_S = 5.0
# MLflow's HTTP client retries an unreachable server for about four minutes by default (7 retries,
# backoff factor 2). A training loop should notice in seconds; users can still set these themselves.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


# MLflow 3 opens an experiment without a kind in its GenAI view (traces, prompts); teachgym's are model training.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def ensure_experiment(client: Any, name: str) -> str:
    """The id of experiment ``name``, created if missing, and marked model training unless it has a kind already."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException:  # created meanwhile by another process
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if EXPERIMENT_KIND_TAG not in exp.tags:  # made by an older teachgym, or by mlflow.set_experiment
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return exp.experiment_id


def _local_path(artifact_uri: str) -> Path | None:
    """The directory of a local artifact store (``file://`` or a plain path), else None."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):  # a path (or a Windows drive)
        return Path(artifact_uri)
    return None


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking server cannot be reached (before the experiment, or in the middle of it)."""


def resolve_tracking_uri(configured: str | None) -> str:
    """Config first, then ``$MLFLOW_TRACKING_URI``, then ``sqlite:///mlflow.db`` in the working dir."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def server_reachable(uri: str, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether an ``http(s)://`` tracking server answers at all (any HTTP status counts); True for other stores."""
    if not uri.startswith(("http://", "https://")):
        return True
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return True
    except urllib.error.HTTPError:  # it answered, if not with 200 (auth, a proxy path, ...)
        return True
    except (OSError, ValueError):
        return False


def unreachable_message(uri: str) -> str:
    """What to tell a user whose tracking server does not answer."""
    from_env = os.environ.get("MLFLOW_TRACKING_URI") == uri
    local = "unset MLFLOW_TRACKING_URI" if from_env else "drop tracking.tracking_uri (with MLFLOW_TRACKING_URI unset)"
    return (
        f"the MLflow tracking server at {uri} does not answer (set by "
        f"{'$MLFLOW_TRACKING_URI' if from_env else 'tracking.tracking_uri'}). Start it (e.g. `mlflow server --host "
        f"127.0.0.1 --port <port> --backend-store-uri sqlite:///mlflow.db`), point tracking.tracking_uri at a running "
        f"one, or {local} to log to the local sqlite:///mlflow.db; tracking.enabled=false runs without MLflow"
    )


def prepare_store(uri: str, experiment: str | None) -> None:
    """Make the store ready before any training: reachable, schema created, experiment present.

    Raises:
        TrackingUnavailable: An ``http(s)://`` server did not answer within :data:`CONNECT_TIMEOUT_S`.
    """
    if uri.startswith(("http://", "https://")):
        for key, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        if not server_reachable(uri):
            raise TrackingUnavailable(unreachable_message(uri))
        import mlflow

        try:  # something answers; is it an MLflow tracking server?
            client = mlflow.MlflowClient(uri)
            client.search_experiments(max_results=1)
        except Exception as e:  # noqa: BLE001 - any failure here means: not a usable MLflow server
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise TrackingUnavailable(
                f"{uri} answers, but not as an MLflow tracking server ({first}). Check the address and port "
                "(`mlflow server --host 127.0.0.1 --port <port>` serves one), or unset MLFLOW_TRACKING_URI / drop "
                "tracking.tracking_uri to log to the local sqlite:///mlflow.db"
            ) from None
        if experiment is not None:
            ensure_experiment(client, experiment)
        return
    if not uri.startswith("sqlite:///"):
        return
    import mlflow
    from filelock import FileLock

    db = uri.removeprefix("sqlite:///")
    if db in ("", ":memory:"):
        return
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    # One process creates the schema and the experiment; the others wait, then find both there.
    with FileLock(db + ".lock", timeout=300):
        client = mlflow.MlflowClient(uri)
        if experiment is None:
            client.search_experiments(max_results=1)  # creates the schema
        else:
            ensure_experiment(client, experiment)


def close_below(client: Any, parent_id: str, status: str = "KILLED") -> list[str]:
    """End with ``status`` every run nested below ``parent_id`` that is still ``RUNNING``; return their ids."""
    exp = client.get_run(parent_id).info.experiment_id
    closed: list[str] = []
    todo = [parent_id]
    while todo:
        parent = todo.pop()
        for run in client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'"):
            todo.append(run.info.run_id)
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, status)
                closed.append(run.info.run_id)
    return closed


def stale_runs(uri: str, close: bool = False) -> list[dict[str, Any]]:
    """teachgym parent runs marked ``RUNNING`` whose process is gone (checked on this host by pid and start time).

    Args:
        uri: The tracking store.
        close: Also end them, and every run below them, ``KILLED``.
    """
    import mlflow

    from teachgym.resume import RunDir, process_alive

    client = mlflow.MlflowClient(uri)
    names = {e.experiment_id: e.name for e in client.search_experiments()}
    out = []
    for run in client.search_runs(list(names), "attributes.status = 'RUNNING'", max_results=5000):
        tags = run.data.tags
        if "teachgym.pid" not in tags:
            continue
        start = tags.get("teachgym.pid_start")
        if process_alive(tags.get("teachgym.host"), int(tags["teachgym.pid"]), float(start) if start else None) \
                is not False:
            continue  # alive, or on another host (cannot tell from here)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "acc/mean")]
        folder = tags.get("teachgym.output_dir")
        # The state on disk may be ahead of the store: logging is written in the background, and a SIGKILL
        # loses what was queued (--resume logs it).
        saved = RunDir(folder).latest() if folder and Path(folder).is_dir() else None
        out.append({"run_id": run.info.run_id, "experiment": names[run.info.experiment_id],
                    "run_name": run.info.run_name, "host": tags.get("teachgym.host"), "pid": tags["teachgym.pid"],
                    "last_round": max(steps) if steps else None, "last_saved": saved, "output_dir": folder})
        if close:
            close_below(client, run.info.run_id)
            client.set_terminated(run.info.run_id, "KILLED")
    return out


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


@dataclasses.dataclass
class RoundLog:
    """Everything :meth:`MLflowTracker.log` writes for one round (kept in the round's state until it is logged)."""

    index: int
    result: EvalResult
    metrics: dict[str, float]
    action: Action | None = None
    report: DataReport | None = None
    train: TrainReport | None = None
    data: Dataset | None = None
    probes: list = dataclasses.field(default_factory=list)
    teacher: dict[str, Any] | None = None  # what the policy's explain() said about its decision


def _parent_metrics(entry: RoundLog) -> list:
    """A round's metrics for the parent run at ``step=entry.index`` (the student's train/* included)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = dict(entry.metrics)
    if entry.train is not None:
        metrics.update({"train/steps": entry.train.steps, "train/runtime_s": entry.train.runtime_s})
    return [Metric(k, float(v), now, entry.index) for k, v in metrics.items()]


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
        active_rounds: bool = True,
    ) -> None:
        """Set up (nothing is written before :meth:`start`).

        Args:
            active_rounds: Make each round's child run the active MLflow run while the student trains (the
                HF trainer's callback logs into it). ``False`` for a student that logs nothing itself (the
                loop's fast path): the child runs are then created by the background thread.
        """
        import mlflow

        self.mlflow = mlflow
        self.active_rounds = active_rounds
        self.uri = resolve_tracking_uri(tracking_uri)
        self.experiment, self.run_name = experiment, run_name
        self.tags, self.params, self.config_yaml = dict(tags), dict(params), config_yaml
        self.log_predictions = log_predictions
        self.parent_id: str | None = None
        self._saved_env: dict[str, str] = {}
        self.best: tuple[float, int, str] | None = None  # (acc/mean, round, model id) of the best checkpoint
        self._experiment_id: str | None = None
        self._writer: Any = None  # one background thread: artifacts, child-run ends, plots (in order)
        self._pending: list[Any] = []  # its futures, not yet waited for
        self._children: dict[int, tuple[str, str]] = {}  # round -> (child run id, artifact URI)
        self._in_flight: dict[int, RoundLog] = {}  # rounds handed to the thread and not yet written whole
        self._backlog: list[tuple[int, list]] = []  # (round, the parent's metrics) not yet written
        self._backlog_lock = threading.Lock()
        self._backlog_at = 0.0  # when the backlog was last written
        self._flush_timer: threading.Timer | None = None
        self._written: set[int] = set()  # rounds of in_flight whose parent metrics are in the store
        self._ended: set[int] = set()  # rounds of in_flight whose child run is written and ended
        self._plots: tuple[list, list[str]] | None = None  # the newest rounds to draw, if not drawn yet
        self._plotted_at = -math.inf
        self._plot_seconds = 0.0  # how long the last drawing took

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

    def close_orphans(self) -> list[str]:
        """End ``KILLED`` every run below the parent still ``RUNNING`` (a dead process's round and probes)."""
        return close_below(self.mlflow.MlflowClient(), self.parent_id)

    def restore_best(self, records: list, saved: tuple | None) -> None:
        """On resume: the best checkpoint so far, from the parent's tags (they are written after the round's state,
        so they may know a checkpoint the state does not); else what the state saved."""
        tags = self.mlflow.MlflowClient().get_run(self.parent_id).data.tags
        r = int(tags.get("teachgym.best_round", -1))
        if 0 <= r < len(records) and "teachgym.best_model_id" in tags:
            self.best = (records[r].mean_accuracy, r, tags["teachgym.best_model_id"])
        else:
            self.best = saved

    def logged_steps(self, key: str = "acc/mean") -> set[int]:
        """The steps at which the parent run has ``key`` (what an earlier process already logged)."""
        return {m.step for m in self.mlflow.MlflowClient().get_metric_history(self.parent_id, key)}

    def log(self, entry: RoundLog, parent_metrics: bool = True) -> None:
        """Log a finished round: the parent's metrics at ``step=entry.index``, the rest into the round's child run.

        Returns at once; the background thread writes it (:meth:`wait` blocks until it has). Rounds that
        queue up while the thread is busy have their parent metrics written in one batch.
        """
        if parent_metrics:  # one batch per round at least, so a crash leaves the step either whole or absent
            with self._backlog_lock:
                self._backlog.append((entry.index, _parent_metrics(entry)))
        with self._backlog_lock:
            self._in_flight[entry.index] = entry
            self._written.discard(entry.index)
            self._ended.discard(entry.index)
            if not parent_metrics:
                self._written.add(entry.index)
        self._submit(self.log_round, entry)

    def unconfirmed(self, entry: RoundLog | None = None) -> list[RoundLog]:
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

    def log_metrics_now(self, entry: RoundLog) -> None:
        """Write a round's parent metrics at once (on resume, for a round whose child run is already whole)."""
        self.mlflow.MlflowClient().log_batch(self.parent_id, metrics=_parent_metrics(entry))

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

    def relog(self, entries: RoundLog | list[RoundLog] | None) -> int:
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
                f"tags.`teachgym.round` = '{entry.index}' and attributes.status = 'FINISHED'", max_results=1)
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

    @contextmanager
    def round(self, index: int, relogged: bool = False) -> Iterator[None]:
        """The round's child run, active while the student trains (so the trainer logs into it).

        A round that finishes is ended ``FINISHED`` by the background thread, after its artifacts.
        Without ``active_rounds`` the background thread also creates it.
        """
        import json

        from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        name = f"round-{index:02d}"
        tags = {MLFLOW_PARENT_RUN_ID: self.parent_id, MLFLOW_RUN_NAME: name, "teachgym.round": str(index),
                **({"teachgym.relogged": "true"} if relogged else {})}
        if self.log_predictions:  # what MlflowClient.log_table adds, so that the UI shows it as a table
            tags[MLFLOW_LOGGED_ARTIFACTS] = json.dumps([{"path": "eval_predictions.json", "type": "table"}])
        stack: list = []  # MLflow's active-run stack, when the child is pushed onto it
        if self.active_rounds:
            from mlflow.tracking.fluent import ActiveRun, _active_run_stack

            # One insert instead of mlflow.start_run's lookups; the run is then made the active one, as
            # start_run(nested=True) would, so that the trainer's MLflowCallback logs into it.
            run = self.mlflow.MlflowClient().create_run(self._experiment_id, run_name=name, tags=tags)
            self._children[index] = (run.info.run_id, run.info.artifact_uri)
            stack = _active_run_stack.get()
            stack.append(ActiveRun(run))
            child_id = run.info.run_id
        else:
            self._submit(self._create_child, index, name, tags)
        status = "FAILED"
        try:
            yield
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            if stack and stack[-1].info.run_id == child_id:
                stack.pop()  # the parent is active again
            self._submit(self._end_child, index, status)

    def _create_child(self, index: int, name: str, tags: dict[str, str]) -> None:
        run = self.mlflow.MlflowClient().create_run(self._experiment_id, run_name=name, tags=tags)
        self._children[index] = (run.info.run_id, run.info.artifact_uri)

    def _end_child(self, index: int, status: str) -> None:
        from mlflow.entities import RunStatus

        child = self._children.pop(index, None)
        if child is None:  # its creation failed (and raised in wait())
            return
        # Not MlflowClient.set_terminated: it also stops and restarts MLflow's async-logging queue (about a
        # second each time); the queue is flushed once, when the experiment ends (flush()).
        store = self.mlflow.MlflowClient()._tracking_client.store
        store.update_run_info(child[0], RunStatus.from_string(status), int(time.time() * 1000), None)
        if status == "FINISHED":
            self._confirm(ended=[index])

    @contextmanager
    def _child(self, name: str, tags: dict[str, str]) -> Iterator[None]:
        """A nested run that ends FINISHED, FAILED, or KILLED on a stop signal (MLflow's own ``with`` says FAILED)."""
        self.mlflow.start_run(run_name=name, nested=True, tags=tags)
        status = "FAILED"
        try:
            yield
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            try:
                self.mlflow.end_run(status)
            except Exception as e:  # noqa: BLE001 - the store is gone; finish() forgets the run
                if status == "FINISHED":
                    raise
                log.warning("could not mark run %s %s: %s", name, status, e)

    @contextmanager
    def probe(self, index: int, k: int) -> Iterator[None]:
        """A probe's own run, nested in the round's (the trainer logs its params once per run).

        Without ``active_rounds`` (a student that logs nothing itself) there is nothing to put in it: no run.
        """
        if not self.active_rounds:
            yield
            return
        with self._child(f"round-{index:02d}-probe-{k}", {"teachgym.probe": str(k)}):
            yield

    def log_round(self, entry: RoundLog) -> None:
        """Write a round: the parent's queued metrics, then the artifacts of its child run (background thread).

        The JSON files and the predictions table are written straight into the run's artifact store; the
        table as ``MlflowClient.log_table`` writes one (JSON, ``orient="split"``, and the
        ``mlflow.loggedArtifacts`` tag set when the child was created), so the UI and ``mlflow.load_table``
        read it.
        """
        import json
        import tempfile

        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        self._write_backlog(force=False)
        client = self.mlflow.MlflowClient()
        run_id, artifact_uri = self._children[entry.index]
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
        if self.log_predictions:
            columns = list(result.predictions[0]) if result.predictions else []
            files["eval_predictions.json"] = {"columns": columns,
                                              "data": [[p[c] for c in columns] for p in result.predictions]}
        local = _local_path(artifact_uri)
        if local is not None:  # a local artifact store: write the files in place (what log_artifacts would copy)
            local.mkdir(parents=True, exist_ok=True)
            for name, content in files.items():
                (local / name).write_text(json.dumps(content))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                for name, content in files.items():
                    Path(tmp, name).write_text(json.dumps(content))
                get_artifact_repository(artifact_uri).log_artifacts(tmp)
        if entry.data is not None:
            self._log_training_set(client, run_id, entry.data, index)

    @staticmethod
    def _log_training_set(client: Any, run_id: str, data: Any, index: int) -> None:
        """The round's training set as the run's input (rows per skill when the fast path had no rows)."""
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        name = f"round-{index:02d}-train"
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
        client.log_inputs(run_id, [DatasetInput(entity, [InputTag(MLFLOW_DATASET_CONTEXT, "training")])])

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

    def log_plots(self, records: list, skills: list[str]) -> None:
        """Redraw ``plots/*.png`` in the parent run from the rounds so far, in the background.

        At most every :data:`PLOT_EVERY_S` seconds; :meth:`finish` draws the rounds not drawn yet.
        """
        self._plots = (list(records), list(skills))
        # At most every PLOT_EVERY_S, and at most PLOT_MAX_SHARE of the time: drawing takes longer as rounds add up.
        if time.monotonic() - self._plotted_at >= max(PLOT_EVERY_S, self._plot_seconds / PLOT_MAX_SHARE):
            self._plotted_at = time.monotonic()
            self._submit(self._draw_plots, *self._plots)
            self._plots = None

    def _draw_plots(self, records: list, skills: list[str]) -> None:
        import tempfile

        from teachgym.plots import write_round_plots

        start = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            write_round_plots(records, skills, tmp)
            self.log_artifact_dir(tmp, "plots")
        self._plot_seconds = time.monotonic() - start

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
            client.set_tag(self.parent_id, "teachgym.best_round", str(index))
            client.set_tag(self.parent_id, "teachgym.best_model_id", info.model_id)
        return info.model_id

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
            from mlflow.tracking.fluent import _active_run_stack

            _active_run_stack.get().clear()
        finally:
            os.environ.update(self._saved_env)
            self._saved_env.clear()
