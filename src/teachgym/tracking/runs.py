"""The read side of the store, and its housekeeping: finding experiments and parent runs, reading curves,
and closing runs a dead process left ``RUNNING``.

``teachgym compare``, ``teachgym calibrate`` and ``teachgym runs --stale`` read runs through here, so the
experiment lookup (with near names on a miss), the parent-run filter and the metric history are written once.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from teachgym.liveness import process_alive
from teachgym.statefile import latest_round
from teachgym.tracking.schema import (
    ACC_MEAN,
    TAG_HOST,
    TAG_OUTPUT_DIR,
    TAG_PARENT,
    TAG_PID,
    TAG_PID_START,
    is_parent_run,
)
from teachgym.tracking.store import resolve_tracking_uri


def client(tracking_uri: str | None) -> Any:
    """An ``MlflowClient`` for ``tracking_uri`` as teachgym resolves it (config, ``$MLFLOW_TRACKING_URI``, default)."""
    import mlflow

    return mlflow.MlflowClient(resolve_tracking_uri(tracking_uri))


def output_dir_of(tracking_uri: str | None, run_id: str) -> str | None:
    """The output folder a parent run's ``teachgym.output_dir`` tag names (None: no such run, or no tag)."""
    import mlflow

    try:
        run = client(tracking_uri).get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return None
    return run.data.tags.get(TAG_OUTPUT_DIR)


def logged_text(tracking_uri: str | None, run_id: str, artifact_path: str) -> str | None:
    """The text of a run's artifact (e.g. its ``config.yaml``), or None when the run has no such artifact."""
    import mlflow

    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path,
                                                   tracking_uri=resolve_tracking_uri(tracking_uri))
    except Exception:  # noqa: BLE001 - a run without the artifact, whatever MLflow raises for it
        return None
    return Path(path).read_text()


def find_experiments(client: Any, names: Sequence[str], error: type[Exception] = LookupError,
                     prefix: str = "teachgym/") -> list[Any]:
    """The named experiments (default: every one whose name starts with ``prefix``).

    Raises:
        error: A named experiment does not exist; the message names the near ones (or all of them).
    """
    every = {e.name: e for e in client.search_experiments()}
    if not names:
        return [e for n, e in every.items() if n.startswith(prefix)]
    chosen = []
    for name in names:
        if name not in every:
            near = difflib.get_close_matches(name, list(every), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, near))}?" if near else f"; there are {sorted(every)}"
            raise error(f"no experiment {name!r} in {client.tracking_uri}{hint}")
        chosen.append(every[name])
    return chosen


def parent_runs(client: Any, experiment_ids: Sequence[str], finished_only: bool = True) -> Iterator[Any]:
    """teachgym's parent runs (one per curriculum experiment) of these experiments, oldest first."""
    query = "attributes.status = 'FINISHED'" if finished_only else ""
    for run in client.search_runs(list(experiment_ids), query, max_results=50_000,
                                  order_by=["attributes.start_time"]):
        if is_parent_run(run.data.tags):
            yield run


def series(client: Any, run_id: str, key: str) -> dict[int, float]:
    """A metric's history as ``{step: value}`` (step = round for the parent run's metrics)."""
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def close_below(client: Any, parent_id: str, status: str = "KILLED") -> list[str]:
    """End with ``status`` every run nested below ``parent_id`` that is still ``RUNNING``; return their ids."""
    exp = client.get_run(parent_id).info.experiment_id
    closed: list[str] = []
    todo = [parent_id]
    while todo:
        parent = todo.pop()
        for run in client.search_runs([exp], f"tags.{TAG_PARENT} = '{parent}'"):
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

    client = mlflow.MlflowClient(uri)
    names = {e.experiment_id: e.name for e in client.search_experiments()}
    out = []
    for run in client.search_runs(list(names), "attributes.status = 'RUNNING'", max_results=5000):
        tags = run.data.tags
        if TAG_PID not in tags:
            continue
        start = tags.get(TAG_PID_START)
        if process_alive(tags.get(TAG_HOST), int(tags[TAG_PID]), float(start) if start else None) is not False:
            continue  # alive, or on another host (cannot tell from here)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, ACC_MEAN)]
        folder = tags.get(TAG_OUTPUT_DIR)
        # The state on disk may be ahead of the store: logging is written in the background, and a SIGKILL
        # loses what was queued (--resume logs it).
        saved = latest_round(Path(folder)) if folder and Path(folder).is_dir() else None
        out.append({"run_id": run.info.run_id, "experiment": names[run.info.experiment_id],
                    "run_name": run.info.run_name, "host": tags.get(TAG_HOST), "pid": tags[TAG_PID],
                    "last_round": max(steps) if steps else None, "last_saved": saved, "output_dir": folder})
        if close:
            close_below(client, run.info.run_id)
            client.set_terminated(run.info.run_id, "KILLED")
    return out
