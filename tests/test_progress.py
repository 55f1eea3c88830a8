"""Progress inside a round, and what `teachgym run` prints around it (teachgym.progress, teachgym.run_output)."""

import io
import os
import shlex
import subprocess
import sys

import pytest

from teachgym import progress
from teachgym.rounds import RoundRecord
from teachgym.run_output import absolute_uri, describe_action, program, skill_table


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _off():
    yield
    progress.disable()


def test_progress_is_silent_unless_turned_on():
    assert not progress.enabled()
    out = progress.in_batches(lambda xs: [x * 2 for x in xs], "work", "items", 3, list(range(7)))
    assert out == [0, 2, 4, 6, 8, 10, 12]  # and nothing was written anywhere: there is no sink


def test_a_log_gets_lines_with_the_count_rate_and_eta():
    log = io.StringIO()
    progress.enable(log, every=0)
    with progress.scope("round 2/3"):
        progress.in_batches(lambda xs: xs, "evaluating: answers", "items", 4, list(range(10)))
    lines = log.getvalue().splitlines()
    assert [line.split(": ")[-1].split(" ")[0] for line in lines] == ["4/10", "8/10", "10/10"]
    assert lines[0].startswith("round 2/3 · evaluating: answers: 4/10 items [")
    assert "items/s" in lines[-1] and "<00:00" in lines[-1]  # the rate, and the time left (none)


def test_a_log_line_at_once_then_at_most_every_few_seconds():
    log = io.StringIO()
    progress.enable(log, every=3600)
    with progress.task("training", 100, "steps") as tick:
        for _ in range(100):
            tick.update()
    assert log.getvalue().count("\n") == 1 and "training: 1/100 steps" in log.getvalue()


def test_a_terminal_line_is_redrawn_in_place_and_erased_at_the_end():
    tty = _Tty()
    progress.enable(tty, every=0)
    with progress.task("training", 3, "steps") as tick:
        tick.update(3)
    text = tty.getvalue()
    assert "\n" not in text and text.count("\r\033[K") == 2 and "3/3" in text and text.endswith("\r\033[K")


def test_in_batches_cuts_the_batches_a_student_cuts():
    seen = []
    progress.in_batches(lambda a, b: seen.append((list(a), list(b))) or list(a), "x", "items", 2, [1, 2, 3], "abc")
    assert seen == [([1, 2], ["a", "b"]), ([3], ["c"])]


def test_the_round_line_names_every_weight_or_how_many_it_leaves_out():
    four = {"type": "mixture", "weights": {"a:0": 0.25, "a:1": 0.25, "b:0": 0.25, "chain_sum:0": 0.25}}
    assert describe_action(four).count("=") == 4 and "chain_sum:0=0.25" in describe_action(four)
    many = {"type": "mixture", "weights": {f"s{i}": (i + 1) / 78 for i in range(12)}}
    text = describe_action(many)
    assert text.count("=") == 7 and text.endswith("+5 more") and text.startswith("mixture s11=")


def _record(r, accs, rows):
    metrics = {f"data/examples/{s}": float(n) for s, n in rows.items()}
    mean = sum(accs.values()) / len(accs)
    return RoundRecord(r, mean, min(accs.items(), key=lambda kv: kv[1]), accs, None, 0, None, 1.0, metrics)


def test_the_closing_table_has_every_skill_round_0_to_last_and_the_teachers_share():
    records = [_record(0, {"add": 0.0, "mul": 0.1}, {}), _record(1, {"add": 0.5, "mul": 0.2}, {"add": 30, "mul": 10}),
               _record(2, {"add": 0.9, "mul": 0.3}, {"add": 10, "mul": 50})]
    lines = skill_table(records)
    assert lines[0].split() == ["skill", "round", "0", "round", "2", "change", "rows"]
    assert lines[1].split() == ["mul", "0.100", "0.300", "+0.200", "60%"]  # weakest first
    assert lines[2].split() == ["add", "0.000", "0.900", "+0.900", "40%"]
    assert lines[3].split() == ["mean", "0.050", "0.600", "+0.550", "100", "rows"]


def test_a_long_table_says_how_many_skills_it_leaves_out():
    accs = {f"s{i:03d}": i / 110 for i in range(110)}
    lines = skill_table([_record(0, accs, {}), _record(1, accs, {s: 1 for s in accs})])
    assert sum(1 for line in lines if line.split()[0][1:].isdigit()) == 30
    assert any("80 more skills" in line for line in lines)


def test_the_store_in_the_hint_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path}/mlflow.db"
    assert absolute_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert absolute_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert absolute_uri("mlruns") == f"{tmp_path}/mlruns"


def test_the_program_in_the_hint_runs_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["teachgym"])  # as a console script typed by its bare name
    words = program()
    assert os.path.isabs(words[0]) and os.access(words[0], os.X_OK)
    done = subprocess.run([*words, "list"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "uniform" in done.stdout, shlex.join(words) + done.stderr
