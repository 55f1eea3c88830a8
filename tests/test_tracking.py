"""The private MLflow APIs teachgym uses (``teachgym.tracking.mlflow_private``) still behave as it expects.

An MLflow release that moves or changes one fails here, by name, rather than in the middle of a round.
"""

from __future__ import annotations

import mlflow
import pytest

from teachgym.tracking import mlflow_private
from teachgym.tracking.schema import round_name
from teachgym.tracking.store import ensure_experiment


def test_a_pushed_run_is_the_active_run_and_pops_back_to_its_parent(mlflow_store):
    client = mlflow.MlflowClient(mlflow_store)
    mlflow.set_tracking_uri(mlflow_store)
    exp = ensure_experiment(client, "teachgym/private")
    with mlflow.start_run(experiment_id=exp) as parent:
        child = client.create_run(exp, run_name=round_name(1), tags={"mlflow.parentRunId": parent.info.run_id})
        mlflow_private.push_active_run(child)
        assert mlflow.active_run().info.run_id == child.info.run_id
        mlflow.log_metric("loss", 1.0)  # what the HF MLflowCallback does: it lands in the child
        mlflow_private.pop_active_run(child.info.run_id)
        assert mlflow.active_run().info.run_id == parent.info.run_id
        mlflow_private.end_run(client, child.info.run_id, "FINISHED")
    got = client.get_run(child.info.run_id)
    assert got.info.status == "FINISHED" and got.data.metrics == {"loss": 1.0}
    assert got.info.end_time is not None
    assert client.get_run(parent.info.run_id).data.metrics == {}


def test_forgetting_the_active_runs_leaves_no_active_run(mlflow_store):
    mlflow.set_tracking_uri(mlflow_store)
    run = mlflow.start_run(experiment_id=ensure_experiment(mlflow.MlflowClient(mlflow_store), "teachgym/private"))
    assert mlflow.active_run() is not None
    mlflow_private.forget_active_runs()
    assert mlflow.active_run() is None
    mlflow.MlflowClient(mlflow_store).set_terminated(run.info.run_id, "KILLED")


def test_unloggable_skills_are_exactly_the_names_mlflow_refuses():
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_metric_name

    from teachgym.tracking.schema import ACC, unloggable_skills

    names = ["a:0", "spell_backward:1", "x/y", "a b-c.d", "math@easy", ".", "a/", "/a", "a//b", "a/../b", "é"]

    def refused(name):
        try:
            _validate_metric_name(ACC + name)
        except MlflowException:
            return True
        return False

    assert unloggable_skills(names) == [n for n in names if refused(n)]
    assert {"math@easy", ".", "a/", "a//b", "a/../b"} <= set(unloggable_skills(names))


def test_a_store_mlflow_refuses_is_a_config_error_before_anything_runs(tmp_path, monkeypatch):
    """A plain folder as the tracking URI: MLflow's file store refuses it (maintenance mode) -- said in one line."""
    from teachgym.config import ConfigError, load_config
    from teachgym.loop import run_experiment

    from conftest import tiny_config

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    cfg = tiny_config(tmp_path)
    cfg["tracking"]["tracking_uri"] = str(tmp_path / "mlruns")
    with pytest.raises(ConfigError, match=r"tracking.tracking_uri .*MLflow cannot use this store.*sqlite:///"):
        run_experiment(load_config(cfg))
    assert not (tmp_path / "out").exists()
