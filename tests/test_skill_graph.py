"""`teachgym skill-graph`: a real estimate on a tiny student, written as JSON + heatmap, logged, and usable."""

import json
import math

from teachgym.cli import main
from teachgym.config import load_config
from teachgym.loop import run_experiment

from conftest import tiny_config


def test_skill_graph_end_to_end(tmp_path, mlflow_store, monkeypatch, capsys):
    import yaml

    cfg = tiny_config(tmp_path)
    cfg["env"]["skills"] = ["add_nocarry", "add_carry", "mul_2x1"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "graph.json"
    assert main(["skill-graph", str(path), "--out", str(out), "--examples", "32", "--warmup", "16"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("trained on") == 3  # a progress line per skill

    graph = json.loads(out.read_text())
    assert graph["skills"] == ["add_nocarry", "add_carry", "mul_2x1"]
    m = graph["matrix"]
    assert len(m) == 3 and all(len(row) == 3 for row in m)
    assert all(math.isfinite(x) for row in m for x in row)
    assert any(abs(x) > 1e-6 for row in m for x in row)  # each copy really trained
    assert out.with_suffix(".png").stat().st_size > 1000

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_store)
    exp = client.get_experiment_by_name("teachgym/arithmetic")
    run = client.search_runs([exp.experiment_id], "tags.`teachgym.kind` = 'skill-graph'")[0]
    assert {f.path for f in client.list_artifacts(run.info.run_id)} == {"graph.json", "graph.png"}

    # skill-it takes the file
    cfg["policy"] = {"name": "skill-it", "graph": str(out)}
    cfg["loop"]["rounds"] = 1
    cfg["tracking"] = {"enabled": False}
    result = run_experiment(load_config(cfg))
    assert set(result.final.action["weights"]) == set(graph["skills"])


def test_skill_graph_rejects_bad_config(tmp_path, capsys):
    assert main(["skill-graph", "configs/arithmetic.yaml", "loop.roundz=1"]) == 2
    assert "did you mean 'loop.rounds'" in capsys.readouterr().err
