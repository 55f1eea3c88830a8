"""Resume, signals, stale runs, the tracking store and plugin checks — with real processes and signals.

The exactness tests compare a run that was interrupted and resumed with the same experiment run
without interruption: every per-round ``acc/<skill>`` must be identical (not close: identical).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from teachgym.config import ConfigError, load_config
from teachgym.loop import PolicyError, run_experiment
from teachgym.resume import ResumeError, RoundState, RunDir

from conftest import free_port, tiny_config

TESTS = Path(__file__).parent
TEACHGYM = str(Path(sys.executable).with_name("teachgym"))


def sim_config(tmp_path: Path, policy: str = "exp3", rounds: int = 5, **tracking) -> dict:
    """The simulated student on a small arithmetic env: a whole experiment in about a second."""
    return {
        "env": {"name": "arithmetic", "eval_per_skill": 20, "pool_per_skill": 100},
        "student": {"name": "simulated", "examples_to_learn": 1500},
        "policy": {"name": policy},
        "loop": {"rounds": rounds, "examples_per_round": 2000, "seed": 3, "output_dir": str(tmp_path / "out")},
        "tracking": {"enabled": True, "plots": False, "log_predictions": False, **tracking},
    }


def accuracies(result) -> list[dict[str, float]]:
    return [r.accuracies for r in result.rounds]


def mlflow_curves(uri: str, run_id: str) -> dict[str, dict[int, list[float]]]:
    """Every parent metric as {key: {step: [values...]}} (a duplicated step shows as two values)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    out: dict[str, dict[int, list[float]]] = {}
    for key in client.get_run(run_id).data.metrics:
        for m in client.get_metric_history(run_id, key):
            out.setdefault(key, {}).setdefault(m.step, []).append(m.value)
    return out


def child_runs(uri: str, run_id: str) -> list[tuple[str, str]]:
    import mlflow

    client = mlflow.MlflowClient(uri)
    exp = client.get_run(run_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.mlflow.parentRunId = '{run_id}'", order_by=["attributes.start_time ASC"])
    return [(r.info.run_name, r.info.status) for r in runs]


class _StopInRound:
    """Patch evaluate() so that the evaluation ending round ``r`` first gets a real SIGTERM (mid-round)."""

    def __init__(self, monkeypatch, r: int, sig: int = signal.SIGTERM) -> None:
        import teachgym.loop as loop

        self.calls, self.r, self.sig = 0, r, sig
        real = loop.evaluate

        def evaluate(*args, **kwargs):
            self.calls += 1
            if self.calls == self.r + 1:  # call 1 is round 0
                os.kill(os.getpid(), self.sig)
                time.sleep(5)  # the handler raises here
            return real(*args, **kwargs)

        monkeypatch.setattr(loop, "evaluate", evaluate)


# -- exactness, in process: every built-in policy --------------------------------------------------


@pytest.mark.parametrize("policy", ["exp3", "tscl", "aioli", "skill-it", "learning-progress", "random",
                                    "missing-skill", "targeted-synthesis", "uniform"])
def test_resume_after_sigterm_is_exact(tmp_path, monkeypatch, policy):
    from teachgym.interrupts import Interrupted

    cfg = sim_config(tmp_path, policy)
    cfg["tracking"]["enabled"] = policy in ("exp3", "aioli")  # MLflow on for two, off for speed elsewhere
    reference = run_experiment(load_config({**cfg, "tracking": {**cfg["tracking"], "run_name": "reference"}}))

    with monkeypatch.context() as m:
        _StopInRound(m, 3)
        with pytest.raises(Interrupted) as info:
            run_experiment(load_config(cfg))
    assert info.value.exit_code == 143
    run_dir = next(p for p in (tmp_path / "out").iterdir() if p.name.startswith(f"{policy}-s3"))
    assert RunDir(run_dir).latest() == 2 and RunDir(run_dir).info["status"] == "KILLED"

    resumed = run_experiment(load_config(cfg), resume=True)
    assert accuracies(resumed) == accuracies(reference)
    assert [r.examples for r in resumed.rounds] == [r.examples for r in reference.rounds]
    if cfg["tracking"]["enabled"]:
        uri = os.environ["MLFLOW_TRACKING_URI"]
        curves = mlflow_curves(uri, resumed.run_id)
        for key, steps in curves.items():
            assert all(len(v) == 1 for v in steps.values()), (key, steps)
        ref = mlflow_curves(uri, reference.run_id)
        assert {k: v for k, v in curves.items() if k.startswith("acc/")} == \
            {k: v for k, v in ref.items() if k.startswith("acc/")}
        names = child_runs(uri, resumed.run_id)
        assert ("round-03", "KILLED") in names and names.count(("round-03", "FINISHED")) == 1
        assert [n for n, s in names if s == "FINISHED" and "probe" not in n] == [f"round-{i:02d}" for i in range(6)]


def test_llm_engine_memory_and_rngs_are_in_the_state(tmp_path):
    from teachgym.resume import _read_state

    run_experiment(load_config(sim_config(tmp_path, "tscl", rounds=2, enabled=False)))
    rd = RunDir(next((tmp_path / "out").iterdir()))
    state = _read_state(rd.state_dir / "round-02")
    assert state.round == 2 and state.used == 4000 and state.journaled == 3  # records: in the journal
    records, history = rd._read_journal(2)
    assert [r.round for r in records] == [0, 1, 2] and [h.round for h in history] == [0, 1, 2]
    assert {"python", "numpy"} <= set(state.rng)
    assert state.policy_state["rng"] and rd.saved_rounds() == [1, 2]  # the newest two rounds are kept
    files = {p.name for p in (rd.state_dir / "round-02").iterdir()}
    assert {"state.json", "rng.npz", "meta.json", "student"} <= files and not any(f.endswith(".pkl") for f in files)


def test_the_journal_ignores_a_torn_record_and_rounds_past_latest(tmp_path):
    """A kill while a record is appended, or after it but before the round's state is named LATEST."""
    run_experiment(load_config(sim_config(tmp_path, "uniform", rounds=3, enabled=False)))
    rd = RunDir(next((tmp_path / "out").iterdir()))
    journal = rd.state_dir / "rounds.jsonl"
    whole = journal.read_bytes()
    records, _ = rd._read_journal(2)  # LATEST says round 2: round 3's record is there but not used
    assert [r.round for r in records] == [0, 1, 2]
    journal.write_bytes(whole[:-7])  # killed while round 3's record was appended
    records, _ = rd._read_journal(2)
    assert [r.round for r in records] == [0, 1, 2]
    with pytest.raises(ResumeError, match="rounds \\[3\\] are missing"):
        rd._read_journal(3)
    journal.write_bytes(whole + whole)  # every round appended twice (saved again after a resume): the later wins
    assert [r.round for r in rd._read_journal(3)[0]] == [0, 1, 2, 3]
    lines = whole.decode().splitlines()
    lines[1] = lines[1].replace('"round": 1', '"round": 7')  # a changed byte: the checksum no longer matches
    journal.write_text("\n".join(lines) + "\n")
    with pytest.raises(ResumeError, match="rounds \\[1\\] are missing \\(1 damaged"):
        rd._read_journal(3)


def test_the_best_checkpoint_survives_a_resume(tmp_path, monkeypatch, mlflow_store):
    import mlflow

    from teachgym.interrupts import Interrupted

    cfg = sim_config(tmp_path, "uniform", rounds=4, checkpoints="best")
    with monkeypatch.context() as m:
        _StopInRound(m, 4)  # after round 3's checkpoint was logged
        with pytest.raises(Interrupted):
            run_experiment(load_config(cfg))
    done = run_experiment(load_config(cfg), resume=True)
    mlflow.set_tracking_uri(mlflow_store)
    models = mlflow.search_logged_models(output_format="list")
    accs = [r.mean_accuracy for r in done.rounds]
    best = max(range(1, 5), key=lambda r: (accs[r], -r))
    assert [m.name for m in models] == [f"student-round-{best:02d}"]  # "best" keeps one, across the resume too
    assert mlflow.MlflowClient().get_run(done.run_id).data.tags["teachgym.best_round"] == str(best)


def test_checkpoints_every_keeps_every_round(tmp_path):
    run_experiment(load_config(sim_config(tmp_path, "uniform", rounds=3, enabled=False, checkpoints="every")))
    rd = RunDir(next((tmp_path / "out").iterdir()))
    assert rd.saved_rounds() == [0, 1, 2, 3] and rd.latest() == 3


def test_a_kill_while_saving_leaves_the_previous_round_whole(tmp_path):
    from teachgym.students.simulated import SimulatedStudent

    student = SimulatedStudent(skills=["a", "b"], seed=1)
    rd = RunDir(tmp_path / "run")
    rd.save(RoundState(1, 10, [], [], None, {"x": 1}), student)

    class Dies(SimulatedStudent):
        def save_state(self, path):
            Path(path).mkdir(parents=True)
            (Path(path) / "half-written").write_text("x")
            raise KeyboardInterrupt  # the process dies in the middle of writing round 2

    with pytest.raises(KeyboardInterrupt):
        rd.save(RoundState(2, 20, [], [], None, {"x": 2}), Dies(skills=["a", "b"], seed=1))
    assert rd.latest() == 1 and rd.saved_rounds() == [1]
    fresh = SimulatedStudent(skills=["a", "b"], seed=1)
    state = rd.load(fresh, type("P", (), {"state_dict": dict, "load_state_dict": lambda self, s: None})())
    assert state.round == 1 and state.policy_state == {"x": 1}
    rd.save(RoundState(3, 30, [], [], None, {"x": 3}), student)  # the next save clears the debris
    assert not list(rd.state_dir.glob(".round-*")) and rd.saved_rounds() == [1, 3]


# -- config on resume -----------------------------------------------------------------------------


def test_resume_refuses_a_changed_config_and_allows_logging_keys(tmp_path, monkeypatch):
    from teachgym.interrupts import Interrupted

    cfg = sim_config(tmp_path, "exp3", rounds=3, enabled=False)
    with monkeypatch.context() as m:
        _StopInRound(m, 2, signal.SIGINT)  # Ctrl-C
        with pytest.raises(Interrupted) as stopped:
            run_experiment(load_config(cfg))
    assert stopped.value.exit_code == 130
    with pytest.raises(ResumeError) as info:
        run_experiment(load_config(cfg, ["student.half_life=100", "policy.gamma=0.5", "loop.seed=3"]), resume=True)
    msg = str(info.value)
    assert "student.half_life: stored '<unset>', given 100" in msg and "policy.gamma" in msg
    assert "loop.seed" not in msg  # unchanged keys are not listed
    done = run_experiment(load_config(cfg, ["tracking.plots=true", "loop.save_student=false"]), resume=True)
    assert len(done.rounds) == 4
    with pytest.raises(ResumeError, match="finished all its rounds"):
        run_experiment(load_config(cfg), resume=True)
    with pytest.raises(ResumeError, match="nothing to resume: found no run 'nope'"):
        run_experiment(load_config(cfg), resume="nope")


# -- plugins ----------------------------------------------------------------------------------------


def test_a_stateless_policy_runs_and_resumes(tmp_path, monkeypatch):
    from teachgym.interrupts import Interrupted

    monkeypatch.syspath_prepend(str(TESTS))
    cfg = sim_config(tmp_path, "fault_plugins:ActOnly", rounds=3, enabled=False)
    ref = run_experiment(load_config({**cfg, "tracking": {**cfg["tracking"], "run_name": "ref"}}))
    assert not (Path(ref.output_dir) / "policy_state.json").exists()
    assert (Path(ref.output_dir) / "student" / "simulated_student.json").exists()  # saved at the end, as before
    with monkeypatch.context() as m:
        _StopInRound(m, 2)
        with pytest.raises(Interrupted):
            run_experiment(load_config(cfg))
    seen = []
    resumed = run_experiment(load_config(cfg), resume=True, on_start=seen.append)
    assert seen[0].stateless_policy and seen[0].resumed_from == 1
    assert accuracies(resumed) == accuracies(ref)


def test_a_policy_exception_fails_the_runs_and_keeps_the_state(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("TEACHGYM_TEST_FAIL_ROUND", "2")
    cfg = sim_config(tmp_path, "fault_plugins:FailsAtRound", rounds=3)
    with pytest.raises(PolicyError, match=r"raised ZeroDivisionError in act\(\) at round 2"):
        run_experiment(load_config(cfg))
    import mlflow

    uri = os.environ["MLFLOW_TRACKING_URI"]
    parent = mlflow.search_runs(search_all_experiments=True, filter_string="tags.mlflow.runName = 'FailsAtRound-s3'",
                                output_format="list")[0]
    assert parent.info.status == "FAILED"
    assert ("round-02", "FAILED") in child_runs(uri, parent.info.run_id)
    rd = RunDir(next((tmp_path / "out").iterdir()))
    assert rd.latest() == 1 and rd.info["status"] == "FAILED"
    monkeypatch.delenv("TEACHGYM_TEST_FAIL_ROUND")  # the user fixed the policy
    done = run_experiment(load_config(cfg), resume=True)
    assert done.run_id == parent.info.run_id and len(done.rounds) == 4
    assert mlflow.get_run(done.run_id).info.status == "FINISHED"


@pytest.mark.parametrize(("section", "name", "missing"), [
    ("student", "fault_plugins:NoTrainStudent", "lacks train; a student needs train(dataset)"),
    ("policy", "fault_plugins:NoTrainStudent", "lacks act; a policy needs act(observation)"),
])
def test_a_plugin_missing_a_method_is_refused_before_round_0(tmp_path, monkeypatch, section, name, missing):
    monkeypatch.syspath_prepend(str(TESTS))
    cfg = sim_config(tmp_path, rounds=1)
    cfg[section] = {"name": name}
    with pytest.raises(ConfigError, match=re.escape(missing)):
        run_experiment(load_config(cfg))
    assert not (tmp_path / "out").exists()  # refused before anything ran


# -- real processes, real signals -------------------------------------------------------------------


def _cli(tmp_path: Path, *args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONPATH": str(TESTS), **(env or {})}
    return subprocess.Popen([TEACHGYM, "run", *args], cwd=tmp_path, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)


def _overrides(tmp_path: Path, student: str = "fault_plugins:PausingSimulated", rounds: int = 5) -> list[str]:
    return ["env.eval_per_skill=20", "env.pool_per_skill=100", f"student.name={student}",
            "student.examples_to_learn=1500", "policy.name=exp3", f"loop.rounds={rounds}",
            "loop.examples_per_round=2000", "loop.seed=3", f"loop.output_dir={tmp_path / 'out'}",
            "tracking.plots=false"]


def _kill_in_round(tmp_path: Path, args: list[str], r: int, sig: int) -> tuple[int, str]:
    """Start `teachgym run`, wait until it is in the middle of round r (inside train()), send sig."""
    marker = tmp_path / "paused"
    proc = _cli(tmp_path, *args, env={"TEACHGYM_TEST_PAUSE_AT": str(r), "TEACHGYM_TEST_PAUSE_FILE": str(marker)})
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "never reached the round"
        time.sleep(0.05)
    os.kill(proc.pid, sig)
    if sig != signal.SIGKILL:
        marker.with_suffix(".go").write_text("")  # let train() go on: the stop must come from the signal
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def _parent(uri: str, name: str):
    import mlflow

    runs = mlflow.MlflowClient(uri).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(uri).search_experiments()],
        f"tags.mlflow.runName = '{name}'")
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_cli_killed_mid_round_then_resumed_matches_an_uninterrupted_run(tmp_path, mlflow_store, sig):
    config = "configs/arithmetic.yaml"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "arithmetic.yaml").write_text((TESTS.parent / config).read_text())
    args = [config, *_overrides(tmp_path)]
    ref = subprocess.run([TEACHGYM, "run", *args, "tracking.run_name=reference"], cwd=tmp_path, text=True,
                         capture_output=True, env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert ref.returncode == 0, ref.stdout + ref.stderr

    code, out = _kill_in_round(tmp_path, args, 3, sig)
    name = "exp3-s3"
    parent = _parent(mlflow_store, name)
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
        assert parent.info.status == "RUNNING"  # nobody could say anything...
        stale = subprocess.run([TEACHGYM, "runs", "--stale"], cwd=tmp_path, text=True, capture_output=True)
        # The store may lag the saved state (logging is written in the background; --resume logs the rest).
        assert parent.info.run_id in stale.stdout and "saved: 2" in stale.stdout, stale.stdout
    else:
        assert code == 143, out
        assert "stopped by SIGTERM" in out and "rounds 0-2 are saved" in out and "--resume" in out, out
        assert "Traceback" not in out, out
        assert parent.info.status == "KILLED"
        assert ("round-03", "KILLED") in child_runs(mlflow_store, parent.info.run_id)

    resumed = subprocess.run([TEACHGYM, "run", *args, "--resume"], cwd=tmp_path, text=True, capture_output=True,
                             env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming" in resumed.stdout and "after round 2" in resumed.stdout, resumed.stdout
    parent = _parent(mlflow_store, name)
    assert parent.info.status == "FINISHED"
    curves = mlflow_curves(mlflow_store, parent.info.run_id)
    reference = mlflow_curves(mlflow_store, _parent(mlflow_store, "reference").info.run_id)
    for key, steps in curves.items():
        assert sorted(steps) == sorted(reference[key]) and all(len(v) == 1 for v in steps.values()), key
        if key.startswith(("acc/", "data/", "teacher/")):
            assert steps == reference[key], key
    children = child_runs(mlflow_store, parent.info.run_id)
    # Every round has exactly one finished run; nothing is left RUNNING. (After a SIGKILL, the run of the
    # round in progress exists only if the background writer had created it: this student's rounds are
    # logged by it, see MLflowTracker.active_rounds.)
    assert [n for n, s in children if s == "FINISHED"] == [f"round-{i:02d}" for i in range(6)], children
    assert all(s in ("FINISHED", "KILLED") for _, s in children), children
    if sig != signal.SIGKILL:
        assert ("round-03", "KILLED") in children


def test_runs_stale_lists_and_closes_runs_whose_process_is_gone(tmp_path, mlflow_store):
    import mlflow

    from teachgym.cli import main
    from teachgym.resume import this_process
    from teachgym.tracking.runs import stale_runs

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs
    me = this_process()
    client = mlflow.MlflowClient(mlflow_store)
    exp = client.create_experiment("teachgym/stale")
    dead = client.create_run(exp, run_name="dead-s0", tags={
        "teachgym.host": me["host"], "teachgym.pid": str(gone.pid), "teachgym.pid_start": "1.0"})
    child = client.create_run(exp, run_name="round-02", tags={"mlflow.parentRunId": dead.info.run_id})
    alive = client.create_run(exp, run_name="alive-s0", tags={
        "teachgym.host": me["host"], "teachgym.pid": str(me["pid"]), "teachgym.pid_start": str(me["pid_start"])})
    elsewhere = client.create_run(exp, run_name="other-host", tags={"teachgym.host": "elsewhere", "teachgym.pid": "1"})
    assert [r["run_id"] for r in stale_runs(mlflow_store)] == [dead.info.run_id]
    assert main(["runs", "--stale", "--close"]) == 0
    status = {r: client.get_run(r).info.status for r in (dead.info.run_id, child.info.run_id, alive.info.run_id,
                                                          elsewhere.info.run_id)}
    assert status == {dead.info.run_id: "KILLED", child.info.run_id: "KILLED", alive.info.run_id: "RUNNING",
                      elsewhere.info.run_id: "RUNNING"}
    assert stale_runs(mlflow_store) == []


def test_concurrent_runs_on_a_fresh_sqlite_store_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    procs = [
        _cli(tmp_path, str(TESTS.parent / "configs/arithmetic.yaml"), *_overrides(tmp_path, "simulated", rounds=1),
             f"loop.seed={seed}", f"tracking.run_name=s{seed}", env={"MLFLOW_TRACKING_URI": uri})
        for seed in range(6)
    ]
    outs = [(p.communicate(timeout=600)[0], p.returncode) for p in procs]
    assert [code for _, code in outs] == [0] * 6, "\n\n".join(o for o, _ in outs)
    import mlflow

    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("teachgym/arithmetic").experiment_id],
                              "attributes.run_name LIKE 's%'")
    assert sorted(r.info.run_name for r in runs) == [f"s{i}" for i in range(6)]
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_an_unreachable_tracking_server_is_reported_in_seconds(tmp_path):
    port = free_port()  # nothing listens there
    start = time.monotonic()
    proc = subprocess.run(
        [TEACHGYM, "run", str(TESTS.parent / "configs/arithmetic.yaml"), *_overrides(tmp_path, "simulated"),
         f"tracking.tracking_uri=http://127.0.0.1:{port}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert f"http://127.0.0.1:{port} does not answer" in proc.stderr and "mlflow server" in proc.stderr
    assert "MLFLOW_TRACKING_URI" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert "round  0/" not in proc.stdout  # nothing ran
    assert not (tmp_path / "out").exists()
    # Includes the interpreter start and imports; MLflow alone would retry for about four minutes.
    assert time.monotonic() - start < 60


def test_a_server_that_is_not_mlflow_is_reported_without_a_traceback(tmp_path):
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        proc = subprocess.run(
            [TEACHGYM, "run", str(TESTS.parent / "configs/arithmetic.yaml"), *_overrides(tmp_path, "simulated"),
             f"tracking.tracking_uri={uri}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    assert proc.returncode == 2
    assert f"{uri} answers, but not as an MLflow tracking server" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.slow
def test_tracking_server_lost_mid_run_then_resume_relogs_what_it_missed(tmp_path):
    from conftest import Served

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    server_cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                  "--backend-store-uri", backend, "--artifacts-destination", str(tmp_path / "artifacts"),
                  "--workers", "1"]
    args = [str(TESTS.parent / "configs/arithmetic.yaml"), *_overrides(tmp_path), f"tracking.tracking_uri={uri}"]
    marker = tmp_path / "paused"
    with Served(server_cmd, port):
        ref = subprocess.run([TEACHGYM, "run", *args, "tracking.run_name=reference"], cwd=tmp_path, text=True,
                             capture_output=True, env={**os.environ, "PYTHONPATH": str(TESTS)})
        assert ref.returncode == 0, ref.stdout + ref.stderr
        proc = _cli(tmp_path, *args, env={"TEACHGYM_TEST_PAUSE_AT": "3", "TEACHGYM_TEST_PAUSE_FILE": str(marker)})
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.05)
    # The server is gone while round 3 trains; the round finishes, is saved, and cannot be logged. The
    # background writer notices when it next writes, so the loop may finish a round or two more: all saved.
    marker.with_suffix(".go").write_text("")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2, out
    assert f"{uri} does not answer" in out and "every finished round is saved" in out, out
    assert "Traceback" not in out, out
    saved = RunDir(next((tmp_path / "out").glob("exp3-s3-*"))).latest()
    assert 3 <= saved < 6, saved

    with Served(server_cmd, port):
        resumed = subprocess.run([TEACHGYM, "run", *args, "--resume"], cwd=tmp_path, text=True,
                                 capture_output=True, env={**os.environ, "PYTHONPATH": str(TESTS)})
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert f"after round {saved}" in resumed.stdout
        parent = _parent(uri, "exp3-s3")
        curves = mlflow_curves(uri, parent.info.run_id)
        reference = mlflow_curves(uri, _parent(uri, "reference").info.run_id)
        assert parent.info.status == "FINISHED"
        for key, steps in reference.items():
            assert sorted(curves[key]) == sorted(steps) and all(len(v) == 1 for v in curves[key].values()), key
            if key.startswith("acc/"):
                assert curves[key] == steps, key
        names = child_runs(uri, parent.info.run_id)
        assert sorted(n for n, s in names if s == "FINISHED") == [f"round-{i:02d}" for i in range(6)], names
        assert all(s in ("FINISHED", "KILLED") for _, s in names), names


@pytest.mark.slow
def test_tiny_lm_killed_mid_round_then_resumed_is_exact(tmp_path, mlflow_store):
    import yaml

    cfg = tiny_config(tmp_path, rounds=4, examples_per_round=48)
    cfg["student"]["name"] = "fault_plugins:PausingHF"
    cfg["policy"]["name"] = "exp3"
    cfg["tracking"]["plots"] = False
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(cfg))
    ref = subprocess.run([TEACHGYM, "run", "lm.yaml", "tracking.run_name=reference"], cwd=tmp_path, text=True,
                         capture_output=True, env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert ref.returncode == 0, ref.stdout + ref.stderr
    code, out = _kill_in_round(tmp_path, ["lm.yaml"], 3, signal.SIGKILL)
    assert code == -signal.SIGKILL
    resumed = subprocess.run([TEACHGYM, "run", "lm.yaml", "--resume"], cwd=tmp_path, text=True,
                             capture_output=True, env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    curves = mlflow_curves(mlflow_store, _parent(mlflow_store, "exp3-s0").info.run_id)
    reference = mlflow_curves(mlflow_store, _parent(mlflow_store, "reference").info.run_id)
    for key in reference:
        if key.startswith(("acc/", "loss/")):
            assert curves[key] == reference[key], key
