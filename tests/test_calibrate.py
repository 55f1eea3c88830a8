"""teachgym calibrate: the simulated student fitted back to curves it made itself, and the config it writes."""

from __future__ import annotations

import dataclasses
import os

import pytest
import yaml

from teachgym.cli import main
from teachgym.config import load_config
from teachgym.loop import run_experiment

TRUE = {"examples_to_learn": 1500.0, "transfer": 0.3, "half_life": 0.0, "ceiling": 0.9}


def simulated_runs(tmp_path, policies=("uniform", "missing-skill", "random"), seeds=(0, 1, 2)):
    for policy in policies:
        for seed in seeds:
            run_experiment(load_config({
                "env": {"name": "arithmetic", "eval_per_skill": 100, "pool_per_skill": 200},
                "student": {"name": "simulated", **TRUE},
                "policy": {"name": policy},
                "loop": {"rounds": 6, "examples_per_round": 1500, "seed": seed, "output_dir": str(tmp_path / "out"),
                         "save_student": False},
                "tracking": {"plots": False, "log_predictions": False, "experiment": "teachgym/arithmetic",
                             "tracking_uri": os.environ["MLFLOW_TRACKING_URI"]}}))


def test_calibrate_recovers_a_simulated_student(tmp_path, capsys, monkeypatch):
    from teachgym.calibrate import Model, fit, load_runs, render, rmse_per_skill
    from teachgym.envs.arithmetic import ArithmeticEnv
    from teachgym.students.simulated import SimulatedStudent

    simulated_runs(tmp_path)
    runs = load_runs(None, "teachgym/arithmetic", student="simulated")
    assert len(runs) == 9 and runs[0].counts.shape == (6, 6) and runs[0].accuracy.shape == (7, 6)
    env = ArithmeticEnv(eval_per_skill=100, pool_per_skill=200)
    prereq = {s.name: list(s.prerequisites) for s in env.skills}
    held = [r for r in runs if r.seed == "2"]
    cal = fit([r for r in runs if r.seed != "2"], prereq, held, forgetting=False)
    # The truth predicts the logged curves up to the eval's binomial noise (100 items: sd <= 0.05); the fit
    # must do as well on the runs it saw and on the ones it did not.
    truth = SimulatedStudent(skills=[s.name for s in env.skills], prerequisites=prereq, **TRUE)
    model = Model(runs[0].skills, prereq, forgetting=False)
    true_params = {"difficulty": dict(zip(truth.skills, truth.difficulty.tolist())), "transfer": 0.3,
                   "gate": [0.3, 0.7], "ceiling": 0.9, "half_life": 0.0, "initial": 0.0}
    floor = rmse_per_skill(model, true_params, held)
    floor_train = rmse_per_skill(model, true_params, [r for r in runs if r.seed != "2"])
    assert max(floor.values()) < 0.08  # the binomial noise of 100 eval items
    for s in runs[0].skills:
        assert cal.train_rmse[s] <= floor_train[s] + 0.01  # least squares: at least as close as the truth, nearly
        assert cal.heldout_rmse[s] <= floor[s] + 0.02
    assert cal.params["ceiling"] == pytest.approx(0.9, abs=0.05)
    # The truth has no format stage: the fitted one is learned within a fraction of the first round. The
    # bounds keep onset within one run's budget (9000 examples), where it and difficulty are both identified.
    assert cal.params["onset"] < 1500 / 4
    assert model.size == len(model.names()) == len(model.bounds(runs)[0])
    assert all(v >= 1 for v in cal.params["difficulty"].values())
    assert all(b.split(" (")[0] in model.names() for b in cal.at_bound)
    pinned = dataclasses.replace(cal, at_bound=["onset (upper)"])
    assert "at a bound of the fit (not pinned down by these runs): onset (upper)" in render(pinned, runs, held)
    # the skills without prerequisites are identified well: 1500 examples to close 63% of the gap
    assert cal.params["difficulty"]["add_nocarry"] == pytest.approx(1500, rel=0.3)

    # the command: table on stdout, a config that `student.name=simulated` loads
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cal.yaml"
    assert main(["calibrate", "teachgym/arithmetic", "--student", "simulated", "--holdout-seeds", "2",
                 "--no-forgetting", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| add_nocarry |" in table and "RMSE held-out runs" in table
    written = yaml.safe_load(out.read_text())
    assert written["student"]["name"] == "simulated" and written["env"]["name"] == "arithmetic"
    # not the fitted runs' store or experiment: the simulator's runs are not the LM's
    assert written["tracking"]["tracking_uri"] is None and written["tracking"]["experiment"] is None
    cfg = load_config(written, [f"loop.output_dir={tmp_path / 'again'}", "tracking.enabled=false", "loop.rounds=1"])
    assert run_experiment(cfg).rounds[-1].mean_accuracy > 0


def test_calibrate_errors_are_clear(tmp_path, capsys):
    assert main(["calibrate", "teachgym/arithmetc"]) == 2
    assert "no experiment 'teachgym/arithmetc'" in capsys.readouterr().err
    simulated_runs(tmp_path, policies=("uniform",), seeds=(0,))
    assert main(["calibrate", "teachgym/arithmetic", "--student", "simulated", "--holdout-seeds", "0"]) == 2
    assert "every run is held out" in capsys.readouterr().err


def test_the_format_onset_gives_a_slow_start_and_resumes_exactly(tmp_path):
    from teachgym.students.simulated import SimulatedStudent

    plain = SimulatedStudent(skills=["a", "b"], examples_to_learn=1000.0)
    slow = SimulatedStudent(skills=["a", "b"], examples_to_learn=1000.0, onset=4000.0)
    curve_plain, curve_slow = [], []
    for _ in range(6):
        plain.practice([500, 500])
        slow.practice([500, 500])
        curve_plain.append(plain.competence[0])
        curve_slow.append(slow.competence[0])
    # without the stage: fastest gain first (concave); with it: nothing until the format passes the gate, then a rise
    assert curve_plain[0] > 0.3 and curve_slow[0] < 0.01
    gains = [b - a for a, b in zip([0.0, *curve_slow], curve_slow)]
    assert max(gains) > gains[0] + 0.05 and curve_slow[-1] > 0.5
    assert 0 < slow.format < 1
    slow.save_state(str(tmp_path / "s"))
    again = SimulatedStudent(skills=["a", "b"], examples_to_learn=1000.0, onset=4000.0)
    again.load_state(str(tmp_path / "s"))
    slow.practice([300, 100])
    again.practice([300, 100])
    assert again.format == slow.format and (again.competence == slow.competence).all()


FORGETFUL = {"examples_to_learn": 1500.0, "transfer": 0.3, "half_life": 4000.0, "ceiling": 0.9}


def test_calibrate_recovers_forgetting_and_transfer_from_runs_that_leave_skills_out(tmp_path, monkeypatch):
    """With forgetting on: runs whose mixtures leave skills out for whole rounds (alternating halves, and
    STAT-Syn's top-2) are what pin a half-life down; the fit finds the true half-life and transfer, and predicts
    held-out runs as well as the truth does. Fitted without forgetting, the same runs are predicted worse."""
    import sys

    from teachgym.calibrate import Model, fit, load_runs, rmse_per_skill
    from teachgym.envs.arithmetic import ArithmeticEnv
    from teachgym.students.simulated import SimulatedStudent

    monkeypatch.syspath_prepend(os.path.dirname(__file__))
    for policy in ("helpers_policies:AlternatingHalves", "targeted-synthesis", "uniform"):
        for seed in (0, 1, 2):
            run_experiment(load_config({
                "env": {"name": "arithmetic", "eval_per_skill": 100, "pool_per_skill": 200},
                "student": {"name": "simulated", **FORGETFUL},
                "policy": {"name": policy, **({"top_k": 2} if policy == "targeted-synthesis" else {})},
                "loop": {"rounds": 8, "examples_per_round": 3000, "seed": seed, "output_dir": str(tmp_path / "out"),
                         "save_student": False},
                "tracking": {"plots": False, "log_predictions": False, "experiment": "teachgym/forgetting",
                             "tracking_uri": os.environ["MLFLOW_TRACKING_URI"]}}))
    assert "helpers_policies" in sys.modules
    runs = load_runs(None, "teachgym/forgetting", student="simulated")
    assert len(runs) == 9
    assert sum((r.counts == 0).any() for r in runs) == 6  # skills really were left out of whole rounds
    env = ArithmeticEnv(eval_per_skill=100, pool_per_skill=200)
    prereq = {s.name: list(s.prerequisites) for s in env.skills}
    held = [r for r in runs if r.seed == "2"]
    fitted = [r for r in runs if r.seed != "2"]
    cal = fit(fitted, prereq, held, forgetting=True)
    assert cal.params["half_life"] == pytest.approx(4000.0, rel=0.25)  # found 4250 when written
    assert cal.params["transfer"] == pytest.approx(0.3, abs=0.1)  # found 0.32
    model = Model(runs[0].skills, prereq, forgetting=True)
    student = SimulatedStudent(skills=[s.name for s in env.skills], prerequisites=prereq, **FORGETFUL)
    truth = {"difficulty": dict(zip(student.skills, student.difficulty.tolist())), "transfer": 0.3,
             "gate": [0.3, 0.7], "ceiling": 0.9, "half_life": 4000.0, "initial": 0.0}
    floor = rmse_per_skill(model, truth, held)
    assert max(floor.values()) < 0.08  # the truth, up to the eval's binomial noise
    for s in runs[0].skills:
        assert cal.heldout_rmse[s] <= floor[s] + 0.02
    # Without forgetting, the same runs cannot be explained: the held-out error is far larger (0.24 vs 0.10).
    without = fit(fitted, prereq, held, forgetting=False)
    assert sum(without.heldout_rmse.values()) > 1.5 * sum(cal.heldout_rmse.values())
