"""The MLflow store: which one (the URI, resolved once here), whether it answers, and making it ready.

* :func:`resolve_tracking_uri`: ``tracking.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else
  ``sqlite:///mlflow.db`` in the working directory (MLflow's own default);
* :func:`prepare_store`: before anything trains, an ``http(s)://`` server that does not answer is
  reported within seconds (MLflow's client would retry for about four minutes), and a fresh sqlite
  file gets its schema and experiment under a file lock (several processes starting on one fresh file
  otherwise race on ``CREATE TABLE``);
* :func:`serve_store`: a local ``mlflow server`` over a sqlite file, so that many trials have one writer.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from teachgym.config import ConfigError
from teachgym.errors import TeachgymError
from teachgym.tracking.schema import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

#: How long to wait for a tracking server before saying it is unreachable.
CONNECT_TIMEOUT_S = 5.0
# MLflow's HTTP client retries an unreachable server for about four minutes by default (7 retries,
# backoff factor 2). A training loop should notice in seconds; users can still set these themselves.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


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


class TrackingUnavailable(TeachgymError, RuntimeError):
    """The MLflow tracking server cannot be reached (before the experiment, or in the middle of it)."""


def resolve_tracking_uri(configured: str | None) -> str:
    """Config first, then ``$MLFLOW_TRACKING_URI``, then ``sqlite:///mlflow.db`` in the working dir."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def run_is_active() -> bool:
    """Whether an MLflow run is active in this process (without importing MLflow when nothing has)."""
    if "mlflow" not in sys.modules:
        return False
    import mlflow

    return mlflow.active_run() is not None


def download(artifact_uri: str) -> str:
    """A local copy of ``models:/<id>`` or ``runs:/<run>/<path>`` (the store from ``$MLFLOW_TRACKING_URI``)."""
    import mlflow

    return mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri)


def server_reachable(uri: str, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether an ``http(s)://`` tracking server answers at all (any HTTP status counts); True for other stores."""
    if not uri.startswith(("http://", "https://")):
        return True
    import requests  # MLflow's own HTTP client library

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout)
        return True  # it answered, whatever the status (auth, a proxy path, ...)
    except (requests.RequestException, ValueError):
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


def _check_other_store(uri: str) -> None:
    """A store that is neither a server nor sqlite (a folder, ``file:``, another database): MLflow must open it.

    Raises:
        ConfigError: MLflow refuses it (e.g. a plain folder: MLflow's file store is in maintenance mode).
    """
    import mlflow

    try:
        mlflow.MlflowClient(uri).search_experiments(max_results=1)
    except Exception as e:  # noqa: BLE001 - whatever MLflow raises, the store cannot be used
        first = str(e).strip().splitlines()[0][:400] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"tracking.tracking_uri (or $MLFLOW_TRACKING_URI) {uri!r}: MLflow cannot use this store ({first}). "
            "A local store is sqlite:///<path>/mlflow.db"
        ) from None


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
        _check_other_store(uri)
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


@contextlib.contextmanager
def serve_store(uri: str, timeout: float = 120.0) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 over a sqlite store for the duration of the block; yields its URL.

    Its artifacts keep going where the store's experiments say (the server does not proxy them), so
    the store reads the same afterwards with or without a server. The server runs in its own session,
    so that a Ctrl-C in the terminal reaches the trials, which still log their end to it.
    """
    import signal
    import socket
    import subprocess
    import tempfile

    db = Path(uri.removeprefix("sqlite:///")).resolve()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
           "--default-artifact-root", str(Path("mlruns").resolve()), "--no-serve-artifacts",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    logf = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, text=True,
                            preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + timeout
        while not server_reachable(url, timeout=2.0):
            if proc.poll() is not None or time.monotonic() > deadline:
                logf.seek(0)
                raise TrackingUnavailable(f"could not start `mlflow server` over {uri}:\n{logf.read()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        logf.close()


def _die_with_parent() -> None:
    """In the server's process before exec: SIGTERM it when the sweep dies, even by SIGKILL (Linux only)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
