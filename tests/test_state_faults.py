"""Round states that cannot run code and survive damage: the fault matrix.

Each fault hits the newest saved round of an interrupted experiment (or the save itself); each must end in
an exact resume from an intact round (the same per-round accuracies as an uninterrupted run) or in a clear
message, never a traceback and never a silently wrong curve.
"""

from __future__ import annotations

import errno
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_resume import TESTS, _StopInRound, accuracies, child_runs, mlflow_curves, sim_config

from teachgym.cli import main
from teachgym.config import load_config
from teachgym.interrupts import Interrupted
from teachgym.loop import run_experiment
from teachgym.resume import ResumeError, RunDir, StateSaveError

TEACHGYM = str(Path(sys.executable).parent / "teachgym")


def _interrupted(tmp_path, monkeypatch, enabled=False, rounds=5, stop=3, policy="exp3"):
    """A reference run, and the same experiment stopped in round ``stop`` (rounds stop-2 and stop-1 kept)."""
    cfg = sim_config(tmp_path, policy, rounds=rounds, enabled=enabled)
    ref = run_experiment(load_config({**cfg, "tracking": {**cfg["tracking"], "run_name": "ref"}}))
    with monkeypatch.context() as m:
        _StopInRound(m, stop)
        with pytest.raises(Interrupted):
            run_experiment(load_config(cfg))
    rd = RunDir(next(p for p in (tmp_path / "out").iterdir() if p.name.startswith(f"{policy}-s3-")))
    assert rd.latest() == stop - 1 and rd.saved_rounds() == [stop - 2, stop - 1]
    return ref, cfg, rd


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


FILES = ["state.json", "rng.npz", "meta.json", "student/simulated_student.json"]


@pytest.mark.parametrize("fault", [_truncate, _flip], ids=["truncated", "bit-flipped"])
@pytest.mark.parametrize("name", FILES)
def test_a_damaged_file_of_the_newest_round_resumes_exactly_from_the_one_before(tmp_path, monkeypatch, name, fault):
    ref, cfg, rd = _interrupted(tmp_path, monkeypatch)
    target = rd.state_dir / "round-02" / name
    assert target.exists(), sorted(p.name for p in target.parent.rglob("*"))
    fault(target)
    infos = []
    done = run_experiment(load_config(cfg), resume=True, on_start=infos.append)
    assert accuracies(done) == accuracies(ref)  # rounds 2.. ran again, exactly
    assert infos[0].resumed_from == 1
    assert len(infos[0].skipped) == 1 and infos[0].skipped[0].startswith(f"round-02: {name.split('/')[0]}")
    assert RunDir(rd.path).latest() == 5 and RunDir(rd.path).info["status"] == "FINISHED"


def test_the_damage_is_named_file_by_file(tmp_path, monkeypatch):
    _, _, rd = _interrupted(tmp_path, monkeypatch)
    _truncate(rd.state_dir / "round-02" / "state.json")
    _flip(rd.state_dir / "round-02" / "rng.npz")
    from teachgym.envs.arithmetic import SKILLS
    from teachgym.policies.exp3 import Exp3Policy
    from teachgym.students.simulated import SimulatedStudent

    state = rd.load(SimulatedStudent(skills=[s.name for s in SKILLS], seed=0), Exp3Policy())
    assert state.round == 1
    assert len(rd.skipped) == 1 and rd.skipped[0].startswith("round-02: ")
    assert "state.json is" in rd.skipped[0] and "truncated" in rd.skipped[0]
    assert "rng.npz differs from its sha256" in rd.skipped[0]


def test_a_missing_latest_pointer_uses_the_newest_intact_round(tmp_path, monkeypatch):
    ref, cfg, rd = _interrupted(tmp_path, monkeypatch)
    (rd.state_dir / "LATEST").unlink()
    done = run_experiment(load_config(cfg), resume=True)
    assert accuracies(done) == accuracies(ref)


def test_a_missing_round_folder_falls_back_to_the_one_before(tmp_path, monkeypatch):
    import shutil

    ref, cfg, rd = _interrupted(tmp_path, monkeypatch)
    shutil.rmtree(rd.state_dir / "round-02")
    done = run_experiment(load_config(cfg), resume=True)
    assert accuracies(done) == accuracies(ref)


def test_a_damaged_journal_line_falls_back_to_a_round_it_does_not_need(tmp_path, monkeypatch):
    ref, cfg, rd = _interrupted(tmp_path, monkeypatch)
    journal = rd.state_dir / "rounds.jsonl"
    lines = journal.read_text().splitlines()
    lines[2] = lines[2][:40] + ("X" if lines[2][40] != "X" else "Y") + lines[2][41:]  # round 2's record
    journal.write_text("\n".join(lines) + "\n")
    done = run_experiment(load_config(cfg), resume=True)
    assert accuracies(done) == accuracies(ref)


def test_no_intact_round_is_a_clear_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    _, cfg, rd = _interrupted(tmp_path, monkeypatch)
    for r in (1, 2):
        _truncate(rd.state_dir / f"round-{r:02d}" / "state.json")
    config = tmp_path / "exp.yaml"
    import yaml

    config.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(config), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "no intact round state" in err and "round-01: state.json is" in err and "round-02: state.json is" in err
    assert "without --resume" in err and "Traceback" not in err


def test_a_full_disk_while_saving_is_a_message_and_the_previous_round_resumes(tmp_path, monkeypatch, capsys):
    import yaml

    from teachgym import resume

    cfg = sim_config(tmp_path, "exp3", rounds=5, enabled=False)
    ref = run_experiment(load_config({**cfg, "tracking": {**cfg["tracking"], "run_name": "ref"}}))
    real = resume._write_state

    def full(state, folder):
        if state.round == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(state, folder)

    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(cfg))
    with monkeypatch.context() as m:
        m.setattr(resume, "_write_state", full)
        with pytest.raises(StateSaveError, match="No space left on device.*Round 2 is whole"):
            run_experiment(load_config(cfg))
        assert main(["run", str(config)]) == 2  # the CLI: a message and the resume command, no traceback
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" in err and "Traceback" not in err
    rd = RunDir(sorted((tmp_path / "out").glob("exp3-s3-*"))[-1])
    assert rd.latest() == 2 and not list(rd.state_dir.glob(".round-*"))  # no half-written round left behind
    done = run_experiment(load_config(cfg), resume=True)
    assert accuracies(done) == accuracies(ref)


def test_sigkill_in_the_middle_of_a_save_resumes_exactly(tmp_path, mlflow_store):
    import yaml

    cfg = sim_config(tmp_path, "exp3", rounds=5)
    cfg["student"]["name"] = "fault_plugins:KillsWhileSaving"
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    ref = subprocess.run([TEACHGYM, "run", str(config), "tracking.run_name=ref"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    killed = subprocess.run([TEACHGYM, "run", str(config)], cwd=tmp_path, capture_output=True, text=True,
                            env={**env, "TEACHGYM_TEST_KILL_SAVE_AT": "4"})  # the 4th save: round 3's
    assert killed.returncode == -signal.SIGKILL
    rd = RunDir(next(p for p in (tmp_path / "out").iterdir() if p.name.startswith("exp3-s3-")))
    assert rd.latest() == 2
    resumed = subprocess.run([TEACHGYM, "run", str(config), "--resume"], cwd=tmp_path, env=env, capture_output=True,
                             text=True)
    assert resumed.returncode == 0 and "after round 2" in resumed.stdout, resumed.stdout + resumed.stderr
    import mlflow

    client = mlflow.MlflowClient(mlflow_store)
    runs = {r.info.run_name: r for r in client.search_runs(
        [client.get_experiment_by_name("teachgym/arithmetic").experiment_id], "tags.teachgym.policy = 'exp3'")}
    curves, reference = (mlflow_curves(mlflow_store, runs[n].info.run_id) for n in ("exp3-s3", "ref"))
    for key, steps in curves.items():
        assert all(len(v) == 1 for v in steps.values()), key
        if key.startswith(("acc/", "loss/", "data/", "teacher/")):
            assert steps == reference[key], key


def test_a_damaged_newest_round_with_mlflow_keeps_one_point_per_step_and_one_run_per_round(
        tmp_path, monkeypatch, mlflow_store):
    ref, cfg, rd = _interrupted(tmp_path, monkeypatch, enabled=True)
    _flip(rd.state_dir / "round-02" / "state.json")
    done = run_experiment(load_config(cfg), resume=True)
    assert accuracies(done) == accuracies(ref)
    curves = mlflow_curves(mlflow_store, done.run_id)
    for key, steps in curves.items():
        assert all(len(v) == 1 for v in steps.values()), (key, steps)
    assert {k: v for k, v in curves.items() if k.startswith("acc/")} == \
        {k: v for k, v in mlflow_curves(mlflow_store, ref.run_id).items() if k.startswith("acc/")}
    names = child_runs(mlflow_store, done.run_id)  # round-02 ran twice: the first run was deleted
    assert [n for n, s in names if s == "FINISHED"] == [f"round-{i:02d}" for i in range(6)]


def test_a_state_of_an_older_teachgym_is_read_only_when_trusted_and_then_rewritten(tmp_path, monkeypatch, capsys):
    """An older teachgym's pickled round (``loop.pkl`` + ``rounds.pkl``): refused with the reason, read once with
    --trust-old-state, rewritten in the data-only format, and the experiment ends exactly as if uninterrupted."""
    import dataclasses

    import yaml

    from teachgym.resume import _read_state

    ref, cfg, rd = _interrupted(tmp_path, monkeypatch)
    # Write round 2 the way teachgym did before the data-only format (the same content, pickled).
    where = rd.state_dir / "round-02"
    state = _read_state(where)
    records, history = rd._read_journal(2)
    with open(rd.state_dir / "rounds.pkl", "wb") as f:
        for record, entry in zip(records, history, strict=True):
            f.write(pickle.dumps((record.round, record, entry)))
    (where / "loop.pkl").write_bytes(pickle.dumps(dataclasses.replace(state, records=[], history=[])))
    for name in ("state.json", "rng.npz", "meta.json"):
        (where / name).unlink()
    (rd.state_dir / "rounds.jsonl").unlink()
    import shutil

    shutil.rmtree(rd.state_dir / "round-01")
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(config), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "older teachgym as a pickle" in err and "--trust-old-state" in err and "Traceback" not in err
    done = run_experiment(load_config(cfg), resume=True, trust_old_state=True)
    assert accuracies(done) == accuracies(ref)
    assert not (rd.state_dir / "rounds.pkl").exists() and not list(rd.state_dir.rglob("*.pkl"))


def test_a_damaged_training_set_table_of_the_lm_student_falls_back_exactly(tmp_path, monkeypatch, mlflow_store):
    """The tiny LM with MLflow on: the round's training set waits in the state as Parquet until MLflow has it; a
    bit flip there (or in the weights) is caught by its sha256, and the LM's curve is still exact."""
    from conftest import tiny_config

    cfg = tiny_config(tmp_path, rounds=4, save_student=False)
    cfg["policy"] = {"name": "exp3"}
    ref = run_experiment(load_config({**cfg, "tracking": {"enabled": True, "run_name": "ref"}}))
    with monkeypatch.context() as m:
        _StopInRound(m, 3)
        with pytest.raises(Interrupted):
            run_experiment(load_config(cfg))
    rd = RunDir(next(p for p in (tmp_path / "out").iterdir() if p.name.startswith("exp3-s0-")))
    newest = rd.state_dir / "round-02"
    assert (newest / "data-0.parquet").exists() and (newest / "student" / "model.safetensors").exists()
    _flip(newest / "data-0.parquet")
    _flip(rd.state_dir / "round-01" / "student" / "model.safetensors")  # and the round before: round 0 is gone
    with pytest.raises(ResumeError, match="no intact round state"):
        run_experiment(load_config(cfg), resume=True)
    _flip(rd.state_dir / "round-01" / "student" / "model.safetensors")  # flipped back: round 1 is whole again
    done = run_experiment(load_config(cfg), resume=True)
    assert accuracies(done) == accuracies(ref)
    assert [r.mean_accuracy for r in done.rounds] == [r.mean_accuracy for r in ref.rounds]
