"""The private MLflow APIs teachgym relies on, in one place, each with the version it was checked against.

Checked against MLflow 3.17.2 (``mlflow.__version__``); ``tests/test_tracking.py`` exercises each one, so
an MLflow release that moves them fails there, by name, rather than somewhere in a round.

* the fluent API's active-run stack (``mlflow.tracking.fluent._active_run_stack``): a round's child run is
  created with one ``MlflowClient.create_run`` and then pushed onto it, as ``start_run(nested=True)``
  would do after several more lookups, so that the HF trainer's ``MLflowCallback`` logs into it;
* the tracking store behind a client (``MlflowClient()._tracking_client.store``): ending a run with
  ``update_run_info`` directly, because ``MlflowClient.set_terminated`` also stops and restarts MLflow's
  async-logging queue, about a second per round.
"""

from __future__ import annotations

import time
from typing import Any

CHECKED_WITH = "3.17.2"


def push_active_run(run: Any) -> None:
    """Make ``run`` (an ``mlflow.entities.Run``) the active run, nested in the current one."""
    from mlflow.tracking.fluent import ActiveRun, _active_run_stack

    _active_run_stack.get().append(ActiveRun(run))


def pop_active_run(run_id: str) -> None:
    """Undo :func:`push_active_run` if ``run_id`` is still on top (the parent is active again)."""
    from mlflow.tracking.fluent import _active_run_stack

    stack = _active_run_stack.get()
    if stack and stack[-1].info.run_id == run_id:
        stack.pop()


def forget_active_runs() -> None:
    """Empty the active-run stack without telling the store (it is unreachable)."""
    from mlflow.tracking.fluent import _active_run_stack

    _active_run_stack.get().clear()


def end_run(client: Any, run_id: str, status: str) -> None:
    """End ``run_id`` with ``status`` through the client's store, without touching the async-logging queue."""
    from mlflow.entities import RunStatus

    store = client._tracking_client.store
    store.update_run_info(run_id, RunStatus.from_string(status), int(time.time() * 1000), None)
