"""The embedded default, end to end, as `make run` runs it (slow: about 90 s on 2 CPU cores)."""

import pytest

from teachgym.config import load_config
from teachgym.loop import run_experiment


@pytest.mark.slow
def test_default_config_really_learns(tmp_path, mlflow_store):
    config = load_config("configs/arithmetic.yaml", [f"loop.output_dir={tmp_path}"])
    result = run_experiment(config)
    first, last = result.rounds[0], result.final
    assert last.examples == config.loop.rounds * config.loop.examples_per_round
    # The bar: mean per-skill accuracy at the last round at least 0.30 above round 0.
    assert last.mean_accuracy - first.mean_accuracy >= 0.30, [r.mean_accuracy for r in result.rounds]

    import mlflow

    run = mlflow.MlflowClient(tracking_uri=mlflow_store).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["acc/mean"] == pytest.approx(last.mean_accuracy)


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    import pathlib

    monkeypatch.chdir(pathlib.Path(__file__).parent.parent)
