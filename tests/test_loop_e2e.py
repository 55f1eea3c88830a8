"""The whole loop on a tiny student into a temporary MLflow store, and the logged schema."""

import json
import sys

import pytest

from teachgym.config import load_config
from teachgym.engine import largest_remainder
from teachgym.loop import run_experiment
from teachgym.types import InvalidActionError

from conftest import policy_kwargs, tiny_config

SKILLS = ["add_nocarry", "add_carry", "add_3d", "sub_noborrow", "sub_borrow", "mul_2x1"]


@pytest.fixture
def client(mlflow_store):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=mlflow_store)


def _runs(client, experiment="teachgym/arithmetic"):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def test_two_rounds_log_the_schema(tmp_path, client):
    config = load_config(tiny_config(tmp_path))
    result = run_experiment(config)
    assert [r.round for r in result.rounds] == [0, 1, 2]
    assert result.final.examples == 48

    runs = _runs(client)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_name == "missing-skill-s0" and parent.info.status == "FINISHED"
    assert parent.info.run_id == result.run_id
    tags = parent.data.tags
    assert (tags["teachgym.policy"], tags["teachgym.env"], tags["teachgym.student"], tags["teachgym.seed"]) == (
        "missing-skill", "arithmetic", "hf", "0")
    params = parent.data.params
    assert params["loop.rounds"] == "2" and params["policy.name"] == "missing-skill"
    assert params["student.tiny.hidden_size"] == "32"

    # Per-round metrics on the parent at step=round.
    for skill in SKILLS:
        hist = client.get_metric_history(parent.info.run_id, f"acc/{skill}")
        assert sorted(m.step for m in hist) == [0, 1, 2]
        assert all(0.0 <= m.value <= 1.0 for m in hist)
        assert sorted(m.step for m in client.get_metric_history(parent.info.run_id, f"loss/{skill}")) == [0, 1, 2]
        weights = client.get_metric_history(parent.info.run_id, f"teacher/weight/{skill}")
        assert sorted(m.step for m in weights) == [1, 2]
    mean = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "acc/mean")}
    assert mean[2] == pytest.approx(result.final.mean_accuracy)
    assert sorted(m.step for m in client.get_metric_history(parent.info.run_id, "acc/min")) == [0, 1, 2]
    cumulative = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "data/cumulative_examples")}
    assert cumulative == {0: 0, 1: 24, 2: 48}
    per_skill = [client.get_metric_history(parent.info.run_id, f"data/examples/{s}") for s in SKILLS]
    for step in (1, 2):  # the round's composition adds up to the budget
        assert sum(m.value for hist in per_skill for m in hist if m.step == step) == 24
    # The data follows the teacher's weights: each skill's rows (counted from the training set's own `skills`
    # column) are its weight's share of the 24, split by largest remainder, so within one row of w * 24.
    round1 = {s: next(m.value for m in h if m.step == 1) for s, h in zip(SKILLS, per_skill)}
    weights1 = {s: next(m.value for m in client.get_metric_history(parent.info.run_id, f"teacher/weight/{s}")
                        if m.step == 1) for s in SKILLS}
    assert sum(weights1.values()) == pytest.approx(1.0)
    assert round1 == {s: float(n) for s, n in largest_remainder(weights1, 24).items()}
    assert all(abs(round1[s] - weights1[s] * 24) < 1 for s in SKILLS)

    # Config as an artifact of the parent.
    parent_files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert "config.yaml" in parent_files

    # One nested child per round (round 0 = the untrained student).
    assert sorted(c.info.run_name for c in children) == ["round-00", "round-01", "round-02"]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        files = {f.path for f in client.list_artifacts(child.info.run_id)}
        assert {"profile.json", "eval_predictions.json"} <= files
        if child.info.run_name != "round-00":
            assert "decision.json" in files
            # The trainer's curves land in the round's child run (HF MLflowCallback, active run).
            assert client.get_metric_history(child.info.run_id, "loss")
            assert len(child.inputs.dataset_inputs) == 1  # the training set, via mlflow.log_input
    r1 = next(c for c in children if c.info.run_name == "round-01")
    decision = json.loads(open(client.download_artifacts(r1.info.run_id, "decision.json", str(tmp_path))).read())
    assert decision["action"]["type"] == "mixture"
    assert sum(decision["data"]["examples"].values()) == 24
    assert {s: float(n) for s, n in decision["data"]["examples"].items()} == round1  # what was trained on
    assert decision["action"]["weights"] == pytest.approx(weights1)
    profile = json.loads(open(client.download_artifacts(r1.info.run_id, "profile.json", str(tmp_path))).read())
    assert set(profile["profile"]) == set(SKILLS)
    assert profile["profile"]["add_carry"]["n"] == 6

    # The final student was saved and loads back through the model-path route.
    from teachgym.students.hf import HFStudent

    assert HFStudent(model=f"{result.output_dir}/student").generate(["12+34="], max_new_tokens=4)


def test_the_rows_trained_on_follow_a_skewed_mixture(tmp_path, monkeypatch):
    """The training set the student receives has exactly the teacher's split (0, 1, ..., 5 parts of 15), and its
    rows really are of those skills (each row's own `skills`, and a prompt of that skill's form)."""
    from collections import Counter

    from teachgym.students import hf

    seen = []
    original = hf.HFStudent.train
    monkeypatch.setattr(hf.HFStudent, "train", lambda self, data: seen.append(data.to_list()) or original(self, data))
    cfg = tiny_config(tmp_path, rounds=2, save_student=False)
    cfg["policy"] = {"name": "helpers_policies:SkewedPolicy"}
    cfg["loop"]["examples_per_round"] = 30
    cfg["tracking"] = {"enabled": False}
    result = run_experiment(load_config(cfg))
    want = largest_remainder({s: i / 15 for i, s in enumerate(SKILLS)}, 30)
    assert want == {"add_nocarry": 0, "add_carry": 2, "add_3d": 4, "sub_noborrow": 6, "sub_borrow": 8, "mul_2x1": 10}
    assert len(seen) == 2
    for rows in seen:
        assert {s: n for s, n in Counter(r["skills"][0] for r in rows).items()} == {s: n for s, n in want.items() if n}
        assert all(("*" in r["prompt"]) == (r["skills"] == ["mul_2x1"]) for r in rows)
        assert all(("-" in r["prompt"]) == r["skills"][0].startswith("sub") for r in rows)
    assert result.rounds[1].metrics["teacher/weight/mul_2x1"] == pytest.approx(5 / 15)
    assert result.rounds[1].metrics["data/examples/add_nocarry"] == 0


def test_synthesis_policy_runs_without_tracking(tmp_path):
    cfg = tiny_config(tmp_path, rounds=1, save_student=False)
    cfg["policy"] = {"name": "targeted-synthesis", "top_k": 2}
    cfg["tracking"] = {"enabled": False}
    result = run_experiment(load_config(cfg))
    assert result.run_id is None and result.rounds[1].action["type"] == "synthesize"
    assert len(result.rounds[1].action["requests"]) == 2
    assert result.rounds[1].metrics["data/cumulative_examples"] == 24


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("helpers_policies:NaNPolicy", "not finite"),
        ("helpers_policies:UnknownSkillPolicy", "unknown skills ['calculus']"),
        ("helpers_policies:EmptyRequestPolicy", "no requests"),
        ("helpers_policies:LateGarbagePolicy", "n must be an int >= 1"),
    ],
)
def test_garbage_from_the_teacher_is_caught_before_training(tmp_path, client, monkeypatch, policy, message):
    from teachgym.students import hf

    trained = []
    original = hf.HFStudent.train
    monkeypatch.setattr(hf.HFStudent, "train", lambda self, data: trained.append(len(data)) or original(self, data))
    cfg = tiny_config(tmp_path)
    cfg["policy"] = {"name": policy}
    with pytest.raises(InvalidActionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run_experiment(load_config(cfg))
    # Garbage in round r means exactly r - 1 rounds were trained.
    assert trained == ([24] if policy.endswith("LateGarbagePolicy") else [])
    runs = _runs(client)
    assert runs and all(r.info.status == "FAILED" for r in runs if r.info.run_name in ("NaNPolicy-s0",))
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FAILED"


def test_default_tracking_uri_is_sqlite_in_the_working_dir(tmp_path, monkeypatch):
    from teachgym.tracking.store import resolve_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(None) == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    assert resolve_tracking_uri(None) == "sqlite:///x.db"
    assert resolve_tracking_uri("file:///y") == "file:///y"


sys.path.insert(0, __import__("os").path.dirname(__file__))  # helpers_policies by import path


@pytest.mark.parametrize("policy", [n for n in __import__("teachgym.registry").registry.BUILTINS["policies"]])
def test_every_builtin_policy_runs_a_short_loop(tmp_path, policy, request):
    cfg = tiny_config(tmp_path, rounds=2, save_student=False)
    # aioli probes each of the 6 skills inside the round: 24 rows need half the round for that
    cfg["policy"] = {"name": policy, **({"probe_fraction": 0.5} if policy == "aioli" else {}),
                     **policy_kwargs(policy, request)}
    cfg["tracking"] = {"enabled": False}
    result = run_experiment(load_config(cfg))
    assert [r.examples for r in result.rounds] == [0, 24, 48]
    assert all(r.action is not None for r in result.rounds[1:])


def test_aioli_probes_are_real_training_inside_the_budget(tmp_path, client):
    cfg = tiny_config(tmp_path, rounds=1, save_student=False)
    cfg["policy"] = {"name": "aioli", "probe_fraction": 0.5}
    result = run_experiment(load_config(cfg))
    assert result.final.examples == 24  # probes included: the same budget as every other policy
    assert result.final.metrics["data/probe_examples"] == 12.0
    runs = _runs(client)
    names = sorted(r.info.run_name for r in runs)
    assert [n for n in names if "probe" in n] == [f"round-01-probe-{k}" for k in range(6)]
    round1 = next(r for r in runs if r.info.run_name == "round-01")
    probe_runs = [r for r in runs if "probe" in r.info.run_name]
    assert all(r.data.tags["mlflow.parentRunId"] == round1.info.run_id for r in probe_runs)
    probes = json.loads(open(client.download_artifacts(round1.info.run_id, "probes.json", str(tmp_path))).read())
    assert len(probes["probes"]) == 6 and all(p["examples"] == 2 for p in probes["probes"])
    decision = json.loads(open(client.download_artifacts(round1.info.run_id, "decision.json", str(tmp_path))).read())
    assert decision["data"]["sources"]["probe"] == 12 and sum(decision["data"]["examples"].values()) == 24


@pytest.mark.parametrize("seed", [0, 1])
def test_the_lm_learns_an_easy_skill_in_one_round(tmp_path, seed):
    """The fast suite notices a student that stops learning: one round of 1,000 rows of one easy skill (strings
    `copy` of three letters) takes the built-in tiny LM from 0 to well above it (1.0 when written, in 2 s)."""
    cfg = {
        "env": {"name": "strings", "eval_per_skill": 20, "pool_per_skill": 300, "lengths": [3]},
        "student": {"name": "hf", "model": "tiny", "batch_size": 16, "learning_rate": 3e-3},
        "policy": {"name": "helpers_policies:OnlyFirst"},
        "loop": {"rounds": 1, "examples_per_round": 1000, "seed": seed, "output_dir": str(tmp_path),
                 "save_student": False},
        "tracking": {"enabled": False},
    }
    result = run_experiment(load_config(cfg))
    before, after = result.rounds[0].accuracies["copy"], result.rounds[1].accuracies["copy"]
    assert before <= 0.1
    assert after >= 0.8, f"copy: {before:.2f} -> {after:.2f} after 1,000 rows of it"
    assert result.rounds[1].metrics["data/examples/copy"] == 1000
