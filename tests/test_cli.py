import re

import pytest

from teachgym import progress
from teachgym.cli import main

from conftest import TINY


def test_list_shows_every_component_with_a_description(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("arithmetic", "hf", "uniform", "missing-skill", "targeted-synthesis"):
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert len(line.split(maxsplit=1)[1]) > 10  # a one-line description follows


def test_run_reports_a_config_typo_with_its_path(capsys):
    assert main(["run", "configs/arithmetic.yaml", "loop.roundz=2"]) == 2
    assert "loop.roundz: unknown key; did you mean 'loop.rounds'?" in capsys.readouterr().err


def test_run_reports_an_unknown_policy_with_near_names_before_anything_else(capsys, tmp_path):
    out = tmp_path / "out"
    assert main(["run", "configs/arithmetic.yaml", "policy.name=unifrom", f"loop.output_dir={out}"]) == 2
    said = capsys.readouterr()
    assert "policy.name: unknown policy 'unifrom'. Did you mean 'uniform'?" in said.err
    assert said.out == "" and not out.exists()  # no run header, no run folder: nothing was started


def test_run_prints_a_line_per_round(capsys, tmp_path):
    args = [
        "run", "configs/arithmetic.yaml",
        "env.eval_per_skill=4", "env.pool_per_skill=20",
        f"student.tiny={TINY}".replace("'", '"'), "student.batch_size=8",
        "policy.name=uniform", "loop.rounds=2", "loop.examples_per_round=16", f"loop.output_dir={tmp_path}",
    ]
    assert main([*args, "--progress"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if re.match(r"round +\d+/2  acc/mean", line)]
    assert len(lines) == 3
    assert "acc/mean" in lines[1] and "weakest" in lines[1] and "teacher: mixture" in lines[1]
    # --progress in a log: the work inside each round, as it goes
    assert re.search(r"^round 0/2 · evaluating: answers: 24/24 items \[", out, re.M), out
    assert re.search(r"^round 1/2 · training: 1/2 steps \[.*steps/s\]$", out, re.M), out
    assert re.search(r"^round 2/2 · evaluating: loss: 24/24 items", out, re.M), out
    # the closing summary: every skill from round 0 to the last, the teacher's share, where the run is
    table = out[out.index("  skill "):].splitlines()
    assert table[0].split() == ["skill", "round", "0", "round", "2", "change", "rows"]
    assert {row.split()[0] for row in table[1:7]} == {"add_nocarry", "add_carry", "add_3d", "sub_noborrow",
                                                     "sub_borrow", "mul_2x1"}
    assert all(row.split()[-1].endswith("%") for row in table[1:7]) and table[7].split()[-2:] == ["32", "rows"]
    assert "MLflow: run" in out and "browse with: /" in out  # the absolute path of the teachgym that ran
    assert not progress.enabled()  # and off again after the run: the next library call is silent


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    import pathlib

    monkeypatch.chdir(pathlib.Path(__file__).parent.parent)


@pytest.mark.parametrize("command", [[], ["run"], ["sweep"], ["bench"], ["compare"], ["ui"], ["runs"], ["calibrate"],
                                     ["skill-graph"], ["list"]])
def test_help_is_plain_text_without_restructured_text_markup(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "usage: teachgym" in out
    assert not re.search(r"``|:(func|class|mod|meth|data):`", out), out
