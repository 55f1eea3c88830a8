"""Several processes of one experiment (``accelerate launch``): one set of MLflow runs, identical ranks.

The slow tests launch real processes with accelerate's torchrun launcher on this machine (gloo on
CPUs, 127.0.0.1), as a user would: ``accelerate launch --multi_gpu --num_processes 2 -m teachgym run``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from teachgym.distributed import Team

from conftest import TINY, free_port

TESTS = Path(__file__).parent
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("n,size", [(10, 2), (11, 2), (1, 2), (0, 3), (7, 3), (5, 8)])
def test_every_item_is_answered_by_exactly_one_process(n, size):
    shares = [Team(r, size).split(n) for r in range(size)]
    covered = [i for s in shares for i in range(n)[s]]
    assert covered == list(range(n))  # contiguous, in rank order: gathering keeps the eval order
    assert max(s.stop - s.start for s in shares) - min(s.stop - s.start for s in shares) <= 1


def test_one_process_is_the_identity():
    team = Team()
    assert team.main and team.share({"a": 1}) == {"a": 1} and team.gather(3) == [3]
    assert team.map_split(lambda xs, ys: [x + y for x, y in zip(xs, ys)], [1, 2], [10, 20]) == [11, 22]
    with pytest.raises(ZeroDivisionError):
        team.on_main(lambda: 1 / 0)


def _overrides(tmp_path: Path, rounds: int, batch: int) -> list[str]:
    tiny = ",".join(f"{k}: {v}" for k, v in TINY.items())
    return ["env.eval_per_skill=8", "env.pool_per_skill=200", "student.name=fault_plugins:RecordingHF",
            f"student.tiny={{{tiny}}}", f"student.batch_size={batch}", "student.warmup_steps=0",
            "student.lr_scheduler=constant", "student.sft_args={}", "policy.name=missing-skill",
            f"loop.rounds={rounds}", "loop.examples_per_round=256", f"loop.output_dir={tmp_path / 'out'}",
            "tracking.plots=false"]


def _launch(tmp_path: Path, processes: int, args: list[str], record: Path, env: dict | None = None) -> subprocess.Popen:
    """``teachgym run`` in ``processes`` processes (accelerate's torchrun launcher), or plainly for one."""
    record.mkdir(exist_ok=True)
    cmd = [str(BIN / "teachgym"), "run"] if processes == 1 else [
        str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1",
        "--main_process_port", str(free_port()), "-m", "teachgym", "run"]
    full_env = {**os.environ, "PYTHONPATH": str(TESTS), "TEACHGYM_TEST_RECORD_DIR": str(record), "OMP_NUM_THREADS": "1",
                **(env or {})}
    return subprocess.Popen([*cmd, "configs/arithmetic.yaml", *args], cwd=tmp_path, env=full_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def _runs(uri: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def _curves(uri: str, runs: list, parent_name: str) -> tuple[list[float], list[float]]:
    """acc/mean and the mean eval loss over the skills, per round, from the parent run."""
    import mlflow

    parent = next(r for r in runs if r.info.run_name == parent_name)
    client = mlflow.MlflowClient(uri)  # not the process's current store: another test may have set one

    def series(key: str) -> list[float]:
        return [m.value for m in sorted(client.get_metric_history(parent.info.run_id, key), key=lambda m: m.step)]

    losses = [series(k) for k in parent.data.metrics if k.startswith("loss/")]
    return series("acc/mean"), [sum(x) / len(x) for x in zip(*losses)]


def _records(folder: Path) -> dict[str, list[dict]]:
    return {p.stem: [json.loads(x) for x in p.read_text().splitlines()] for p in sorted(folder.glob("rank*.jsonl"))}


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "arithmetic.yaml").write_text((TESTS.parent / "configs" / "arithmetic.yaml").read_text())
    return tmp_path


@pytest.mark.slow
def test_two_processes_train_one_student_and_log_one_experiment(workdir, mlflow_store):
    rounds = 3
    one = _launch(workdir, 1, [*_overrides(workdir, rounds, 16), "tracking.run_name=one"], workdir / "rec1")
    _finish(one)
    # 2 processes x 8 rows = the one process's batch of 16: the same optimizer steps, split by DDP.
    two = _launch(workdir, 2, [*_overrides(workdir, rounds, 8), "tracking.run_name=two"], workdir / "rec2")
    out = _finish(two)
    assert out.count("round  1/3") == 1, out  # only process 0 speaks

    runs = _runs(mlflow_store)
    parents = [r for r in runs if r.info.run_name == "two"]
    assert len(parents) == 1  # one parent run, not one per process
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.info.run_name for r in children) == [f"round-{i:02d}" for i in range(rounds + 1)]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert not [r for r in runs if r.info.run_name.startswith(("trainer", "checkpoint"))]

    rec = _records(workdir / "rec2")
    assert set(rec) == {"rank0", "rank1"} and len(rec["rank0"]) == rounds
    assert rec["rank0"] == rec["rank1"]  # the same rows every round (process 0's decision) and the same weights
    (acc_one, loss_one), (acc_two, loss_two) = _curves(mlflow_store, runs, "one"), _curves(mlflow_store, runs, "two")
    assert len(acc_one) == len(acc_two) == len(loss_two) == rounds + 1
    # The same optimizer steps on the same rows; gloo's all-reduce adds in another order than one process.
    assert max(abs(a - b) for a, b in zip(acc_one, acc_two)) <= 0.05, (acc_one, acc_two)  # greedy answers can flip
    # Measured: 1e-8 relative (float sums in another order); 1e-4 leaves room for other CPUs, not for other steps.
    assert max(abs(a - b) / a for a, b in zip(loss_one, loss_two)) <= 1e-4, (loss_one, loss_two)
    print(f"\n1 process: acc/mean {acc_one} loss {loss_one}\n2 processes: acc/mean {acc_two} loss {loss_two}")
    assert loss_two[-1] < 0.8 * loss_two[0]  # it learned: the comparison is not between two untrained students


@pytest.mark.slow
def test_two_processes_stop_on_sigterm_and_resume(workdir, mlflow_store):
    args = [*_overrides(workdir, 3, 8), "tracking.run_name=stopped"]
    marker = workdir / "paused"
    proc = _launch(workdir, 2, args, workdir / "rec", {"TEACHGYM_TEST_PAUSE_AT": "2",
                                                       "TEACHGYM_TEST_PAUSE_FILE": str(marker)})
    deadline = time.monotonic() + 300
    while not marker.exists() or len(marker.read_text().split()) < 2:  # both processes inside round 2's train()
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "never reached round 2"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)  # the launcher, as a scheduler would; it passes the stop on
    marker.with_suffix(".go").write_text("")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out
    runs = _runs(mlflow_store)
    assert not [r for r in runs if r.info.status == "RUNNING"], [(r.info.run_name, r.info.status) for r in runs]
    assert next(r for r in runs if r.info.run_name == "stopped").info.status == "KILLED"

    resumed = _launch(workdir, 2, [*args, "--resume"], workdir / "rec")
    out = _finish(resumed)
    assert "resuming" in out and "after round 1" in out, out
    runs = _runs(mlflow_store)
    parent = next(r for r in runs if r.info.run_name == "stopped")
    assert parent.info.status == "FINISHED"
    assert len(_curves(mlflow_store, runs, "stopped")[0]) == 4
    assert not [r for r in runs if r.info.status == "RUNNING"]
