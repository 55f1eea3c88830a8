import re

import pytest

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


def test_run_reports_an_unknown_policy_with_near_names(capsys, tmp_path):
    assert main(["run", "configs/arithmetic.yaml", "policy.name=unifrom", f"loop.output_dir={tmp_path}"]) == 2
    assert "Did you mean 'uniform'?" in capsys.readouterr().err


def test_run_prints_a_line_per_round(capsys, tmp_path):
    args = [
        "run", "configs/arithmetic.yaml",
        "env.eval_per_skill=4", "env.pool_per_skill=20",
        f"student.tiny={TINY}".replace("'", '"'), "student.batch_size=8",
        "policy.name=uniform", "loop.rounds=2", "loop.examples_per_round=16", f"loop.output_dir={tmp_path}",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("round")]
    assert len(lines) == 3
    assert "acc/mean" in lines[1] and "weakest" in lines[1] and "teacher: mixture" in lines[1]
    assert "MLflow: run" in out


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
