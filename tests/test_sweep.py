"""Sweeps: the grid, trials run one by one and on Ray (one machine and a two-node cluster), reruns that skip
and resume, failures, Ctrl-C, the sweep run in MLflow, and the paired comparison."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from teachgym.analysis import paired_difference, probability_of_improvement, probability_of_improvement_ci
from teachgym.cli import main
from teachgym.compare import RunCurve, load_runs, paired_rows, render_paired
from teachgym.config import ConfigError
from teachgym.registry import RegistryError
from teachgym.sweep import SweepError, axis_values, plan_sweep, run_sweep, split_overrides

from conftest import Served, free_port

TESTS = Path(__file__).resolve().parent


def sim_config(tmp_path, **loop) -> dict:
    """A simulated-student experiment that takes about a second."""
    return {
        "env": {"name": "arithmetic", "eval_per_skill": 20, "pool_per_skill": 100},
        "student": {"name": "simulated", "examples_to_learn": 400},
        "policy": {"name": "uniform"},
        "loop": {"rounds": 2, "examples_per_round": 1500, "seed": 0, "output_dir": str(tmp_path / "out"),
                 "save_student": False, **loop},
        "tracking": {"enabled": True, "plots": False, "log_predictions": False},
    }


def write_config(tmp_path, cfg: dict, name: str = "exp.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def parent_runs(uri: str, sweep: str | None = None) -> list:
    client = mlflow.MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, max_results=1000)
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags and "teachgym.policy" in r.data.tags
            and (sweep is None or r.data.tags.get("teachgym.sweep_name") == sweep)]


# ------------------------------------------------------------------------------------------------ the grid


def test_axis_values_lists_ranges_and_sections():
    assert axis_values("policy.name", "uniform,skill-it, exp3") == ["uniform", "skill-it", "exp3"]
    assert axis_values("loop.seed", "0:5") == ["0", "1", "2", "3", "4"]
    assert axis_values("loop.seed", "10:20:5") == ["10", "15"]
    assert axis_values("student.learning_rate", [1e-3, 2e-3]) == ["0.001", "0.002"]
    assert axis_values("policy", [{"name": "learned", "path": "t.zip"}]) == ['{"name": "learned", "path": "t.zip"}']
    with pytest.raises(SweepError, match="loop.seed: the range '5:5' is empty"):
        axis_values("loop.seed", "5:5")
    with pytest.raises(SweepError, match="empty value"):
        axis_values("policy.name", "uniform,,exp3")
    fixed, axes = split_overrides(["loop.rounds=3", "policy.name=a,b", "loop.seed=0:2", "policy.name2=my_mod:Cls"])
    assert fixed == ["loop.rounds=3", "policy.name2=my_mod:Cls"]  # an import path is not a range
    assert axes == {"policy.name": ["a", "b"], "loop.seed": ["0", "1"]}


def test_plan_expands_the_yaml_grid_and_command_line_axes(tmp_path):
    cfg = sim_config(tmp_path)
    cfg["sweep"] = {"name": "study", "grid": {"policy.name": ["uniform", "skill-it"], "loop.seed": "0:2",
                                              "student.examples_to_learn": "300,400"}, "max_concurrent": 3}
    path = write_config(tmp_path, cfg)
    plan = plan_sweep(path, ["loop.seed=0:3", "student.examples_to_learn=500"])  # CLI axis wins; fixed pins
    assert plan.name == "study" and plan.options.max_concurrent == 3
    assert plan.grid == {"policy.name": ["uniform", "skill-it"], "loop.seed": ["0", "1", "2"]}
    assert len(plan.trials) == 6
    assert [t.name for t in plan.trials[:3]] == ["uniform-s0", "uniform-s1", "uniform-s2"]
    assert all(c.student.kwargs["examples_to_learn"] == 500 for c in plan.configs.values())
    assert all(c.sweep is None for c in plan.configs.values())  # trials are ordinary experiments
    outs = {c.loop.output_dir for c in plan.configs.values()}
    assert len(outs) == 6 and all(o.startswith(str(plan.directory / "trials")) for o in outs)
    # A swept setting other than the policy and the seed names the trial and is what pairs trials.
    plan = plan_sweep(path, [], name="lr")
    settings = {t.setting for t in plan.trials}
    assert settings == {"student.examples_to_learn=300", "student.examples_to_learn=400"}
    assert "uniform-s0-examples_to_learn=300" in {t.name for t in plan.trials}
    assert plan.directory.name == "sweep-lr"


def test_plan_errors_name_the_trial_the_key_or_the_near_policy(tmp_path):
    path = write_config(tmp_path, sim_config(tmp_path))
    with pytest.raises(RegistryError, match="skill-it"):
        plan_sweep(path, ["policy.name=uniform,skil-it"])
    with pytest.raises(SweepError, match=r"trial loop.rounds=0: invalid config:\n  loop.rounds"):
        plan_sweep(path, ["loop.rounds=0,1"])
    with pytest.raises(ConfigError, match="loop.rouns"):
        plan_sweep(path, ["loop.rouns=3"])
    with pytest.raises(SweepError, match="needs a tracking server every node can reach"):
        plan_sweep(path, ["policy.name=uniform,exp3"], address="127.0.0.1:6379")
    twice = {**sim_config(tmp_path), "sweep": {"grid": {"policy": [{"name": "missing-skill", "floor": 0.1},
                                                                   {"name": "missing-skill"}]}}}
    with pytest.raises(SweepError, match="same run"):
        plan_sweep(twice)
    with pytest.raises(SweepError, match="sweep options"):
        plan_sweep(path, [], max_concurrent=0)


# ------------------------------------------------------------------------------------------------ one by one


def test_a_sequential_sweep_logs_trials_and_the_sweep_run_and_a_rerun_skips_them(tmp_path, mlflow_store):
    path = write_config(tmp_path, sim_config(tmp_path))
    plan = plan_sweep(path, ["policy.name=uniform,skill-it", "loop.seed=0:3"], name="seq")
    events = []
    result = run_sweep(plan, sequential=True, on_event=lambda kind, **info: events.append((kind, info)))
    assert result.exit_code == 0 and len(result.finished) == 6
    # Every trial is an ordinary experiment run, tagged with the sweep.
    runs = parent_runs(mlflow_store, "seq")
    assert len(runs) == 6 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["teachgym.sweep"] for r in runs} == {result.sweep_id}
    assert sorted(r.info.run_name for r in runs) == sorted(t.name for t in plan.trials)
    # The same curves as running each experiment alone: the sweep changes nothing about a trial.
    from teachgym.config import load_config
    from teachgym.loop import run_experiment

    alone = run_experiment(load_config(path, ["policy.name=skill-it", "loop.seed=2", "tracking.enabled=false",
                                              f"loop.output_dir={tmp_path / 'alone'}"]))
    trial = next(r for r in result.results if r.trial.name == "skill-it-s2")
    assert trial.row["acc_mean"] == [r.mean_accuracy for r in alone.rounds]
    # The sweep run: grid, progress, and the comparison as artifacts and as its description.
    client = mlflow.MlflowClient(mlflow_store)
    sweep_run = client.get_run(result.run_id)
    assert sweep_run.info.run_name == "sweep-seq" and sweep_run.info.status == "FINISHED"
    assert sweep_run.data.params["sweep.grid.policy.name"] == "uniform,skill-it"
    assert sweep_run.data.params["sweep.grid.loop.seed"] == "0,1,2"
    assert [m.value for m in client.get_metric_history(result.run_id, "sweep/finished")][-1] == 6
    arts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"summary.md", "summary.csv", "paired.csv", "curves.png", "trials.txt"} <= arts
    assert "Paired with uniform" in sweep_run.data.tags["mlflow.note.content"]
    assert "| skill-it | 3 |" in result.summary
    kinds = [k for k, _ in events]
    assert kinds.count("start") == 6 and kinds.count("end") == 6 and kinds.count("round") == 18
    # Experiments teachgym creates open in MLflow's model-training view.
    exp = client.get_experiment_by_name("teachgym/arithmetic")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"

    # Again, with one more seed: only the new trials run; the sweep run is the same one.
    plan = plan_sweep(path, ["policy.name=uniform,skill-it", "loop.seed=0:4"], name="seq")
    again = run_sweep(plan, sequential=True)
    assert again.run_id == result.run_id and again.sweep_id == result.sweep_id
    assert sum(not r.row.get("skipped") for r in again.results) == 2
    assert len(parent_runs(mlflow_store, "seq")) == 8
    # A changed base config is refused: its trials would not compare with the finished ones.
    with pytest.raises(SweepError, match=r"another base config:\n  loop.examples_per_round"):
        run_sweep(plan_sweep(path, ["loop.examples_per_round=100", "loop.seed=0:2"], name="seq"), sequential=True)


def test_a_failing_trial_is_listed_the_others_finish_and_a_rerun_retries_it(tmp_path, mlflow_store, monkeypatch,
                                                                            capsys):
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("TEACHGYM_TEST_FAIL_SEED", "1")
    path = write_config(tmp_path, sim_config(tmp_path))
    args = ["sweep", path, "policy.name=fault_plugins:FailsOnSeed", "loop.seed=0:3", "--sequential", "--name", "f"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "1 of 3 trials failed" in err
    assert "FailsOnSeed-s1 (loop.seed=1): PolicyError" in err  # the policy is fixed: the seed names the trial
    assert "my teacher cannot handle seed 1" in err and "run the same command again" in err
    assert "--name f --sequential" in err
    rows = [json.loads(line) for line in (tmp_path / "out" / "sweep-f" / "trials.jsonl").read_text().splitlines()]
    failed = next(r for r in rows if r["status"] == "failed")
    assert "ValueError: my teacher cannot handle seed 1" in failed["traceback"]  # the user's own traceback
    statuses = sorted(r.info.status for r in parent_runs(mlflow_store, "f"))
    assert statuses == ["FAILED", "FINISHED", "FINISHED"]
    assert mlflow.MlflowClient(mlflow_store).search_runs(
        [mlflow.MlflowClient(mlflow_store).get_experiment_by_name("teachgym/arithmetic").experiment_id],
        "attributes.run_name = 'sweep-f'")[0].info.status == "FAILED"
    # Fixed: the rerun runs only the failed trial, which resumes after its last saved round.
    monkeypatch.delenv("TEACHGYM_TEST_FAIL_SEED")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 finished." in out
    assert sorted(r.info.status for r in parent_runs(mlflow_store, "f")) == ["FINISHED", "FINISHED", "FINISHED"]


def test_sweep_cli_dry_run_and_errors(tmp_path, capsys):
    path = write_config(tmp_path, sim_config(tmp_path))
    assert main(["sweep", path, "policy.name=uniform,exp3", "loop.seed=0:2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 trials = policy.name (2) × loop.seed (2)" in out and "exp3-s1" in out
    assert main(["sweep", path, "policy.name=uniform,exp", "--dry-run"]) == 2
    assert "Did you mean 'exp3'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing ran


# ------------------------------------------------------------------------------------------------ paired statistics


def test_paired_difference_and_probability_of_improvement_match_their_definitions():
    from scipy import stats

    x, y = [0.70, 0.65, 0.72, 0.60, 0.68], [0.60, 0.62, 0.70, 0.58, 0.61]
    mean, low, high = paired_difference(x, y)
    d = [a - b for a, b in zip(x, y)]
    assert mean == pytest.approx(sum(d) / 5)
    half = stats.t.ppf(0.975, 4) * stats.tstd(d) / 5**0.5
    assert (low, high) == pytest.approx((mean - half, mean + half))
    assert low > 0  # a consistent gain: the paired interval excludes 0 ...
    assert stats.ttest_ind(x, y).pvalue > 0.05  # ... where an unpaired test cannot tell them apart
    # rliable: P(X > Y) = mean over every pair of runs of [x > y] + 0.5 [x == y].
    z = [0.7, 0.6, 0.6]
    pairs = list(itertools.product(z, y))
    assert probability_of_improvement(z, y) == pytest.approx(sum((a > b) + 0.5 * (a == b) for a, b in pairs) / 15)
    assert probability_of_improvement(x, x) == 0.5
    lo, hi = probability_of_improvement_ci(x, y)
    assert 0 <= lo <= probability_of_improvement(x, y) <= hi <= 1
    assert paired_difference([0.5, 0.6], [0.4, 0.5]) == pytest.approx((0.1, 0.1, 0.1))  # no spread
    assert paired_difference([0.5], [0.4])[1] != paired_difference([0.5], [0.4])[1]  # nan for one pair


def _curve(policy, seed, acc, setting="", minimum=None):
    ex = [0, 100, 200, 300][: len(acc)]
    return RunCurve("teachgym/x", f"{policy}{seed}{setting}", f"{policy}-s{seed}", policy, str(seed), "FINISHED",
                    ex, acc, minimum or [a / 2 for a in acc], setting=setting)


def test_paired_rows_pair_seed_by_seed_within_a_setting():
    curves = [
        _curve("uniform", 0, [0, 0.2, 0.4, 0.5]), _curve("uniform", 1, [0, 0.3, 0.5, 0.6]),
        _curve("uniform", 2, [0, 0.1, 0.2, 0.3]),
        _curve("better", 0, [0, 0.3, 0.5, 0.6]), _curve("better", 1, [0, 0.4, 0.6, 0.7]),
        _curve("worse", 0, [0, 0.1, 0.3, 0.4]), _curve("worse", 5, [0, 0.9, 0.9, 0.9]),  # seed 5: no partner
        _curve("uniform", 0, [0, 0.0, 0.0, 0.0], setting="lr=1"), _curve("better", 0, [0, 0.1, 0.1, 0.1], "lr=1"),
    ]
    rows = {(r["setting"], r["policy"]): r for r in paired_rows(curves, "uniform")}
    b = rows[("", "better")]
    assert b["seeds"] == ["0", "1"] and b["wins"] == 2 and b["poi"] == 0.875  # 0.6 ties 0.6
    assert b["d_final"] == pytest.approx((0.1, 0.1, 0.1))
    assert b["reached"] == 2 and b["ratio"][0] == pytest.approx(200 / 300)  # 0.5 and 0.6 reached at 200
    w = rows[("", "worse")]
    assert w["seeds"] == ["0"] and w["wins"] == 0 and w["reached"] == 0
    assert rows[("lr=1", "better")]["d_final"][0] == pytest.approx(0.1)  # paired only within its setting
    text = render_paired(list(rows.values()))
    assert "| teachgym/x | lr=1 | better | 1 |" in text and "2/2" in text
    with pytest.raises(Exception, match="did you mean 'uniform'"):
        paired_rows(curves, "unifrom")


def test_compare_baseline_from_the_store(tmp_path, mlflow_store, capsys):
    path = write_config(tmp_path, sim_config(tmp_path))
    run_sweep(plan_sweep(path, ["policy.name=uniform,skill-it", "loop.seed=0:2"], name="cmp"), sequential=True)
    assert len(load_runs(mlflow_store, sweep="cmp")) == 4
    assert main(["compare", "--baseline", "uniform", "--sweep", "cmp"]) == 0
    out = capsys.readouterr().out
    assert "Δ final acc/mean vs uniform" in out and "| skill-it | 2 |" in out
    assert "Unpaired" in out and "| uniform | 0,1 |" in out
    assert main(["compare", "--baseline", "uniform", "--format", "csv"]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert head.startswith("experiment,setting,policy,baseline,seeds,d_final,d_final_low")
    assert main(["compare", "--baseline", "unifrm"]) == 2
    assert "did you mean 'uniform'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ Ray


@pytest.mark.slow
def test_a_sweep_on_local_ray_uses_one_mlflow_server_and_survives_ctrl_c(tmp_path, mlflow_store):
    """Two trials at once on a local Ray, the sqlite store behind a local `mlflow server`; SIGINT stops the
    sweep with the trials saved and KILLED; the same command resumes them to the same results."""
    marker = tmp_path / "paused"
    cfg = sim_config(tmp_path, rounds=3)
    path = write_config(tmp_path, cfg)
    args = [sys.executable, "-m", "teachgym.cli", "sweep", path, "student.name=fault_plugins:PausingSimulated",
            "student.examples_to_learn=400", "policy.name=uniform,skill-it", "--name", "ray"]
    env = {**os.environ, "PYTHONPATH": str(TESTS), "TEACHGYM_TEST_PAUSE_AT": "2",
           "TEACHGYM_TEST_PAUSE_FILE": str(marker)}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240

    def paused() -> int:  # trials paused in round 2 (each appends its pid)
        return len(set(marker.read_text().split())) if marker.exists() else 0

    while paused() < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert paused() == 2, proc.communicate()[0] if proc.poll() is not None else "2 trials not paused in 240 s"
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends the sweep
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "stopping 2 running trial(s)" in line:
            proc.send_signal(signal.SIGINT)  # pressed twice, while the trials stop: they still save
            break
    rest, _ = proc.communicate(timeout=240)
    out = "".join(lines) + rest
    assert proc.returncode == 130, out
    assert "stopping 2 running trial(s)" in out and "run the same command again" in out
    assert "already stopping" in out and "Traceback" not in out
    assert "MLflow server for" in out  # two trials at once on sqlite: one server writes it
    runs = parent_runs(mlflow_store, "ray")
    assert sorted(r.info.status for r in runs) == ["KILLED", "KILLED"], out
    sweep_dir = tmp_path / "out" / "sweep-ray"
    assert all(list(d.glob("*/state/LATEST")) for d in (sweep_dir / "trials").iterdir())  # rounds saved

    # The same command, without the pause: both trials resume and finish, in the same two runs.
    env.pop("TEACHGYM_TEST_PAUSE_AT")
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = parent_runs(mlflow_store, "ray")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    client = mlflow.MlflowClient(mlflow_store)
    for r in runs:  # one point per round, nothing twice
        assert sorted(m.step for m in client.get_metric_history(r.info.run_id, "acc/mean")) == [0, 1, 2, 3]
    rows = [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]
    finished = {r["name"]: r for r in rows if r["status"] == "finished"}
    assert all(r["resumed"] for r in finished.values())
    # Resumed exactly: the same curves as the experiment run alone, uninterrupted.
    from teachgym.config import load_config
    from teachgym.loop import run_experiment

    ref = run_experiment(load_config(path, ["policy.name=skill-it", "tracking.enabled=false",
                                            f"loop.output_dir={tmp_path / 'ref'}"]))
    assert finished["skill-it-s0"]["acc_mean"] == [r.mean_accuracy for r in ref.rounds]
    assert len({r["worker_pid"] for r in rows}) >= 2  # two Ray workers ran them


@pytest.mark.slow
def test_a_two_node_ray_cluster_runs_a_sweep_submitted_with_address(tmp_path, mlflow_store, monkeypatch):
    """`ray start --head` and a second `ray start --address`, both on 127.0.0.1; every trial lands in the server."""
    ray_bin = str(Path(sys.executable).parent / "ray")
    # Ray's token authentication, on for the nodes, the status probe and the driver alike (~/.ray/auth_token).
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    port = free_port()
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=100000000",
              "--disable-usage-stats", "--block"]
    head = subprocess.Popen([ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    nodes = [head]
    try:
        deadline = time.monotonic() + 120
        while subprocess.run([ray_bin, "status", f"--address=127.0.0.1:{port}"], capture_output=True).returncode:
            assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(1)
        nodes.append(subprocess.Popen([ray_bin, "start", f"--address=127.0.0.1:{port}", *common],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        while "2 node" not in _ray_status(ray_bin, port):
            assert time.monotonic() < deadline, _ray_status(ray_bin, port)
            time.sleep(1)
        server_port = free_port()
        uri = f"http://127.0.0.1:{server_port}"
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'srv.db'}",
               "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port",
               str(server_port), "--workers", "1"]
        with Served(cmd, server_port):
            path = write_config(tmp_path, sim_config(tmp_path))
            assert main(["sweep", path, "policy.name=uniform,exp3", "loop.seed=0:2", f"tracking.tracking_uri={uri}",
                         "--address", f"127.0.0.1:{port}", "--name", "cluster"]) == 0
            runs = parent_runs(uri, "cluster")
            assert sorted(r.info.run_name for r in runs) == ["exp3-s0", "exp3-s1", "uniform-s0", "uniform-s1"]
            assert {r.info.status for r in runs} == {"FINISHED"}
            sweep_run = mlflow.MlflowClient(uri).search_runs(
                [runs[0].info.experiment_id], "attributes.run_name = 'sweep-cluster'")[0]
            assert sweep_run.info.status == "FINISHED"
        rows = [json.loads(line) for line in (tmp_path / "out" / "sweep-cluster" / "trials.jsonl").read_text()
                .splitlines()]
        assert len({r["node"] for r in rows}) == 2  # both nodes ran trials
    finally:
        for node in reversed(nodes):  # only the processes this test started: each `ray start --block` session
            try:
                os.killpg(node.pid, signal.SIGTERM)
                node.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(node.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _ray_status(ray_bin: str, port: int) -> str:
    res = subprocess.run([ray_bin, "status", f"--address=127.0.0.1:{port}"], capture_output=True, text=True)
    if res.returncode:
        return res.stderr[-2000:]
    active = res.stdout.split("Active:")[-1].split("Pending:")[0]
    return f"{active.count('node_')} node(s)"
