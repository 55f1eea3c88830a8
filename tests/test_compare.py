"""`teachgym compare` on a real MLflow store: 2 policies x 2 seeds, numbers checked against the logged metrics."""

import csv
import io
import math

import mlflow
import pytest

from teachgym.cli import main
from teachgym.config import load_config
from teachgym.loop import run_experiment

from conftest import tiny_config

T_975_DF1 = 12.706204736  # Student t, 97.5% quantile, 1 degree of freedom (two seeds)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """One store with 2 policies x 2 seeds for the whole module (the tests only read it)."""
    tmp_path = tmp_path_factory.mktemp("compare")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for policy in ("uniform", "missing-skill"):
        for seed in (0, 1):
            cfg = tiny_config(tmp_path, rounds=3, examples_per_round=1500, seed=seed, save_student=False)
            cfg["student"] = {"name": "simulated", "examples_to_learn": 400}
            cfg["env"] = {"name": "arithmetic", "eval_per_skill": 20, "pool_per_skill": 100}
            cfg["policy"] = {"name": policy}
            cfg["tracking"] = {"enabled": True, "log_predictions": False, "plots": False, "tracking_uri": uri}
            run_experiment(load_config(cfg))
    return uri


@pytest.fixture
def store(shared_store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_store)
    return shared_store


def logged(uri):
    """What MLflow has, read with the plain client: {(policy, seed): (examples, acc_mean, acc_min)}."""
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("teachgym/arithmetic")
    out = {}
    for run in client.search_runs([exp.experiment_id]):
        if "mlflow.parentRunId" in run.data.tags:
            continue
        h = {k: [m.value for m in sorted(client.get_metric_history(run.info.run_id, k), key=lambda m: m.step)]
             for k in ("data/cumulative_examples", "acc/mean", "acc/min")}
        out[(run.data.tags["teachgym.policy"], run.data.tags["teachgym.seed"])] = (
            h["data/cumulative_examples"], h["acc/mean"], h["acc/min"])
    return out


def test_per_run_numbers_match_the_logged_metrics(store, capsys):
    assert main(["compare", "--runs", "--format", "csv", "--target", "0.2"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4
    truth = logged(store)
    for r in rows:
        x, mean, low = truth[(r["policy"], r["seed"])]
        assert x == [0, 1500, 3000, 4500] and int(r["rounds"]) == 3 and int(r["examples"]) == 4500
        assert float(r["final_acc"]) == pytest.approx(mean[-1]) and float(r["weakest_acc"]) == pytest.approx(low[-1])
        trapezoids = sum(1500 * (mean[i] + mean[i + 1]) / 2 for i in range(3)) / 4500
        assert float(r["auc"]) == pytest.approx(trapezoids)
        first = next((n for n, a in zip(x, mean) if a >= 0.2 - 1e-9), None)  # 0.2 can log as 0.19999999999999998
        assert (r["examples_to_target"] or None) == (None if first is None else f"{first:.0f}")


def test_grouped_by_policy_with_intervals(store, capsys, tmp_path):
    plot = tmp_path / "curves.png"
    assert main(["compare", "teachgym/arithmetic", "--format", "csv", "--plot", str(plot)]) == 0
    rows = {r["policy"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert set(rows) == {"uniform", "missing-skill"}
    truth = logged(store)
    for policy, r in rows.items():
        finals = [truth[(policy, s)][1][-1] for s in ("0", "1")]
        mean = sum(finals) / 2
        sd = math.sqrt(sum((f - mean) ** 2 for f in finals))  # n - 1 = 1
        assert r["seeds"] == "0 1"
        assert float(r["final_acc"]) == pytest.approx(mean)
        assert float(r["final_acc_ci"] or 0) == pytest.approx(T_975_DF1 * sd / math.sqrt(2))
    assert plot.stat().st_size > 10_000
    # The markdown table has the same numbers, rounded.
    assert main(["compare"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("| policy | seeds | rounds | examples | final acc/mean |")
    line = next(x for x in md.splitlines() if x.startswith("| uniform |"))
    assert float(line.split("|")[5].split("±")[0]) == pytest.approx(float(rows["uniform"]["final_acc"]), abs=6e-4)


def test_clear_errors(store, capsys, tmp_path):
    assert main(["compare", "teachgym/arithmetc"]) == 2
    assert "did you mean 'teachgym/arithmetic'" in capsys.readouterr().err
    assert main(["compare", "--tracking-uri", f"sqlite:///{tmp_path / 'empty.db'}"]) == 2
    assert "no finished teachgym runs" in capsys.readouterr().err
