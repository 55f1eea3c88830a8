"""Trials that log an identical training set at the same instant through one ``mlflow server`` lose nothing.

MLflow's SQL store looks a dataset up and inserts it if missing in one request; two requests for the same
(experiment, name, digest) at once both miss it and the second insert fails on the unique key. A sweep saw this
as a trial FAILED with ``UNIQUE constraint failed: datasets...`` (issue 39); the writer now logs inputs with
:func:`teachgym.tracking.artifacts.log_inputs_once`, which links the dataset the other writer inserted.
"""

from __future__ import annotations

import sys
import threading

import mlflow
import pytest

from teachgym.tracking.artifacts import log_training_set
from teachgym.tracking.store import ensure_experiment

from conftest import Served, free_port


@pytest.mark.slow
def test_identical_training_sets_logged_at_once_through_a_server_are_all_linked(tmp_path):
    from datasets import Dataset

    data = Dataset.from_dict({"prompt": ["1+1=", "2+2="], "completion": ["2", "4"], "skills": [["add"], ["add"]],
                              "level": [1, 1], "source": ["pool", "pool"]})
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
           "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]  # how the sweep serves its store (tracking.store.serve_store)
    with Served(cmd, port):
        uri = f"http://127.0.0.1:{port}"
        client = mlflow.MlflowClient(uri)
        exp = ensure_experiment(client, "teachgym/race")
        calls, errors, runs = [], [], []

        class Counting(mlflow.MlflowClient):
            def log_inputs(self, run_id, datasets=None, models=None):
                calls.append(run_id)
                return super().log_inputs(run_id, datasets, models)

        for rep in range(8):  # eight rounds, each logged by six trials at the same instant
            ids = [client.create_run(exp).info.run_id for _ in range(6)]
            runs += [(run_id, rep) for run_id in ids]
            barrier = threading.Barrier(len(ids))

            def log(run_id: str, rep: int = rep, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                try:
                    log_training_set(Counting(uri), run_id, data, rep)
                except Exception as e:  # noqa: BLE001 - every lost log is counted, not just the first
                    errors.append(f"{type(e).__name__}: {e}"[:300])

            threads = [threading.Thread(target=log, args=(run_id,)) for run_id in ids]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert errors == []
        for run_id, rep in runs:  # every trial's round links the training set, one dataset per round
            inputs = client.get_run(run_id).inputs.dataset_inputs
            assert [i.dataset.name for i in inputs] == [f"round-{rep:02d}-train"]
        digests = {(i.dataset.name, i.dataset.digest) for run_id, _ in runs
                   for i in client.get_run(run_id).inputs.dataset_inputs}
        assert len(digests) == 8
        print(f"{len(calls) - len(runs)} of {len(runs)} calls met the race and were made again")
