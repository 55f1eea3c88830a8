"""The README's custom-policy example really runs, exactly as printed."""

import re
from pathlib import Path

from teachgym.cli import main

from conftest import TINY

README = Path(__file__).parent.parent / "README.md"


def test_readme_custom_policy_example(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    code = re.search(r"```python\n(# my_teacher.py\n.*?)```", text, re.S).group(1)
    command = re.search(r"\.venv/bin/teachgym run (configs/arithmetic.yaml policy.name=my_teacher:\S+.*)\n", text)
    (tmp_path / "my_teacher.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    args = command.group(1).split()
    args[0] = str(README.parent / args[0])
    # The README's command, shrunk to unit-test size (smaller model and budget; same code path).
    small = ["env.eval_per_skill=4", "env.pool_per_skill=20", f"student.tiny={TINY}".replace("'", '"'),
             "student.batch_size=8", "loop.examples_per_round=16", f"loop.output_dir={tmp_path}"]
    assert main(["run", *args, *small]) == 0
    out = capsys.readouterr().out
    round_lines = [line for line in out.splitlines() if line.startswith("round")]
    assert len(round_lines) == 3  # round 0 + the README's loop.rounds=2
    assert "teacher: mixture" in round_lines[1] and round_lines[1].count("=") == 2  # two skills, as written


def test_the_readme_stays_a_front_door():
    """Generated tables and long explanations live on the docs pages they belong to."""
    assert len(README.read_text().splitlines()) <= 250
