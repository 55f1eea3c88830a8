"""Committed benchmark reports are generated from their committed results files, never edited by hand."""

import importlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@pytest.fixture
def benchmarks(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    yield lambda name: importlib.import_module(name)
    for name in ("reasoning_gym_tasks", "reasoning_gym_curve", "teaching_efficiency", "round_state", "bench_readme",
                 "per_step"):
        sys.modules.pop(name, None)


def test_reasoning_gym_tasks_report_matches_its_results(benchmarks):
    tasks = benchmarks("reasoning_gym_tasks")
    rows = [json.loads(line) for line in (RESULTS / "reasoning_gym_tasks.jsonl").read_text().splitlines()]
    assert [r["task"] for r in rows] == tasks.TASKS
    keys = {r["provenance"]["key"] for r in rows}
    assert len(keys) == len(rows)  # one case per key: never two runs of one key
    text = tasks.markdown(rows, "python benchmarks/reasoning_gym_tasks.py")
    assert (RESULTS / "reasoning_gym_tasks.md").read_text() == text


def test_reasoning_gym_curve_report_matches_its_results(benchmarks):
    curve = benchmarks("reasoning_gym_curve")
    result = json.loads((RESULTS / "reasoning_gym_curve.json").read_text())
    assert (RESULTS / "reasoning_gym_curve.md").read_text() == curve.markdown(result)
    assert (RESULTS / "reasoning_gym_curve.png").stat().st_size > 10_000
    # The README shows the generated figure, not numbers typed from it.
    assert "benchmarks/results/reasoning_gym_curve.png" in (ROOT / "README.md").read_text()


def test_round_state_report_matches_its_results(benchmarks):
    report = benchmarks("round_state")
    rows = json.loads((RESULTS / "round_state.json").read_text())
    assert (RESULTS / "round_state.md").read_text() == report.markdown(rows, "python benchmarks/round_state.py")
    full = {r["dtype"]: r["state_mb"] for r in rows if r["mode"] == "full"}
    assert all(r["state_mb"] < 0.05 * full[r["dtype"]] for r in rows if r["r"] == 16)  # LoRA: a small fraction


@pytest.mark.parametrize("folder, kind", [("bench", "simulated"), ("bench", "lm"), ("per_step", "lm")])
def test_bench_reports_match_their_results(folder, kind):
    """benchmarks/results/<folder>/<kind>.md is what `teachgym bench` makes of the rows its .json names
    (per_step: the ladder-rl leaderboard with the per-step and filtering variants)."""
    from teachgym.bench_command import reported_rows, stored_report

    results = RESULTS / folder
    rows = reported_rows(results, kind)
    assert rows, f"no {kind} rows"
    index = json.loads((results / f"{kind}.json").read_text())
    assert len(rows) == len(index["cases"]) + len(index["failed"])  # every case it names is in the results file
    text = stored_report(results, kind, ROOT / "configs" / "bench")  # stale rows said to be, by the current keys
    assert (results / f"{kind}.md").read_text() == text


def test_the_readme_leaderboard_is_what_the_bench_results_make(benchmarks):
    readme = benchmarks("bench_readme")
    text = (ROOT / "README.md").read_text()
    assert readme.current(text) == readme.block()
    assert "| learnability |" in readme.block()  # every built-in has its row, not only the anchors


def test_the_per_step_report_and_docs_block_are_what_their_rows_make(benchmarks):
    per_step = benchmarks("per_step")
    rows = per_step.reported()
    assert {r["challenge"] for r in rows} == {"ladder-rl", "arithmetic-grpo"}
    assert {r["policy"] for r in rows} >= {"dump@step", "sec@step", "learnability@step", "uniform+filter"}
    text = per_step.markdown(per_step.summary(rows), per_step.notice(rows))
    assert (RESULTS / "per_step" / "per_step.md").read_text() == per_step.REPORT_TITLE + text
    assert per_step.page_block(rows) in (ROOT / "docs" / "rl-students.md").read_text()
