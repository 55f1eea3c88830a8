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
import os
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

    from teachgym.resume import process_alive

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
        out.append({"run_id": run.info.run_id, "experiment": names[run.info.experiment_id],
                    "run_name": run.info.run_name, "host": tags.get("teachgym.host"), "pid": tags["teachgym.pid"],
                    "last_round": max(steps) if steps else None, "output_dir": tags.get("teachgym.output_dir")})
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

    def start(self, run_id: str | None = None) -> str:
        """Open the parent run (or reopen ``run_id``'s, back to ``RUNNING``, on resume); return its id."""
        mlflow = self.mlflow
        for var in _HF_MLFLOW_ENV:
            if var in os.environ:
                log.warning("ignoring $%s during the experiment: teachgym places the trainer's runs itself", var)
                self._saved_env[var] = os.environ.pop(var)
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment(experiment_id=ensure_experiment(mlflow.MlflowClient(self.uri), self.experiment))
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
        """Log a finished round into the active child run (:meth:`log_round`, plus its probes)."""
        if entry.probes:
            self.log_probes(entry.index, entry.probes)
        self.log_round(entry.index, entry.result, entry.action, entry.report, entry.train, entry.data,
                       entry.metrics, parent_metrics=parent_metrics, teacher=entry.teacher)

    def relog(self, entry: RoundLog) -> bool:
        """On resume: log a round the store missed (the server was down, or the process died while logging).

        The parent's metrics are written only if step ``entry.index`` is not there yet, so every metric
        keeps exactly one point per step; the artifacts go to a fresh ``round-NN`` run.

        Returns:
            Whether anything was logged.
        """
        client = self.mlflow.MlflowClient()
        exp = client.get_run(self.parent_id).info.experiment_id
        done = client.search_runs(
            [exp], f"tags.mlflow.parentRunId = '{self.parent_id}' and tags.`teachgym.round` = '{entry.index}' "
            "and attributes.status = 'FINISHED'", max_results=1)
        missing_metrics = entry.index not in self.logged_steps()
        if done and not missing_metrics:
            return False
        with self.round(entry.index, relogged=True):
            self.log(entry, parent_metrics=missing_metrics)
        return True

    @contextmanager
    def round(self, index: int, relogged: bool = False) -> Iterator[None]:
        """The round's child run, active while the student trains (so the trainer logs into it)."""
        tags = {"teachgym.round": str(index), **({"teachgym.relogged": "true"} if relogged else {})}
        with self._child(f"round-{index:02d}", tags):
            yield

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
        """A probe's own run, nested in the round's (the trainer logs its params once per run)."""
        with self._child(f"round-{index:02d}-probe-{k}", {"teachgym.probe": str(k)}):
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
        parent_metrics: bool = True,
        teacher: Mapping[str, Any] | None = None,
    ) -> None:
        """Log a finished round: parent metrics at ``step=index``, artifacts into the active child run."""
        mlflow = self.mlflow
        client = mlflow.MlflowClient()

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        if parent_metrics:  # one batch, so a crash leaves the step either whole or absent
            client.log_batch(
                self.parent_id, metrics=[Metric(k, float(v), now, index) for k, v in metrics.items()],
                synchronous=True,
            )
        mlflow.log_metrics({k: v for k, v in metrics.items() if k.startswith(("acc/", "loss/"))}, step=index)
        mlflow.log_dict(
            {"round": index, "profile": profile_to_dict(result.profile), "mean_accuracy": result.mean_accuracy},
            "profile.json",
        )
        if action is not None:
            decision = {"round": index, "action": action_to_dict(action)}
            if teacher:
                decision["teacher"] = dict(teacher)
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
        """End every open run (children first) with ``status`` and restore the environment.

        If the server is gone, the runs are forgotten locally (``--resume`` closes them later).
        """
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
