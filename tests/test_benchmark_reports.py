"""Committed benchmark reports are generated from their committed results files, never edited by hand."""

import importlib
import json
import math
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
                 "per_step", "rollouts_to_target", "trl_sampler", "vllm_cpu"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("name", ["trl_sampler", "vllm_cpu"])
def test_a_keyed_script_report_is_what_its_rows_make(benchmarks, name):
    """trl_sampler.md and vllm_cpu.md (made in .venv-vllm) are their scripts' reports of their committed rows, one
    row per case key, every shape the script measures."""
    script = benchmarks(name)
    rows = json.loads((RESULTS / f"{name}.json").read_text())
    assert (RESULTS / f"{name}.md").read_text() == script.report(rows)
    assert len({r["provenance"]["key"] for r in rows}) == len(rows)
    assert {r["shape_name"] for r in rows} == set(script.SHAPES)


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


def _grpo_row(policy: str, seed: int, curve: list[float], per_round: float) -> dict:
    return {"policy": policy, "seed": seed, "curve": curve, "wall_s": 1.0, "status": "finished",
            "totals": [{}] + [{"rl/completions": per_round}] * (len(curve) - 1)}


def test_rollouts_to_target_registers_on_calibration_seeds_and_scores_a_faster_teacher_below_one(benchmarks):
    """The target sits between uniform's start and final on the calibration rows; a teacher that climbs twice as
    fast reaches it with about half of uniform's rollouts, one that never climbs never does, and filtering is
    compared with the compute-matched uniform the calibration named."""
    rt = benchmarks("rollouts_to_target")
    assert rt.reach([0, 10, 20], [0.1, 0.3, 0.5], 0.4) == 15.0 and rt.reach([0, 10], [0.1, 0.2], 0.4) == math.inf
    climb = [0.2 + 0.025 * k for k in range(9)]  # 0.2 -> 0.4 over 8 rounds
    cal = [_grpo_row("uniform", s, climb, 100) for s in (100, 101)]
    cal += [_grpo_row("uniform+filter", s, climb, 230) for s in (100, 101)]
    registered = rt.calibrate(cal, [100, 101])
    assert registered["target"] == pytest.approx(0.2 + rt.SHARE * 0.175, abs=1e-4)  # final: the last-3 mean
    assert registered["matched_uniform"] == "uniform+x2.3"
    fast = [min(0.2 + 0.05 * k, 0.45) for k in range(9)]
    rows = []
    for s in range(4):
        wobble = 0.004 * (s - 1.5)
        rows += [_grpo_row("uniform", s, [x + wobble for x in climb], 100),
                 _grpo_row("learnability", s, [x + wobble for x in fast], 100),
                 _grpo_row("dump", s, [0.2 + wobble] * 9, 100),
                 _grpo_row("uniform+filter", s, [x + wobble for x in fast], 230),
                 _grpo_row("uniform+x2.3", s, [x + wobble + 0.01 for x in climb], 230)]
    lines = {r["variant"]: r for r in rt.summary(rows, registered)}
    assert lines["uniform"]["ratio"] == pytest.approx(1.0)
    assert 0.4 < lines["learnability"]["ratio"] < 0.6 and lines["learnability"]["reached"] == 1.0
    assert lines["dump"]["ratio"] == math.inf and lines["dump"]["reached"] == 0.0
    assert lines["learnability"]["diff"][0] > 0 and lines["learnability"]["diff_matched"] is None
    assert lines["uniform+filter"]["diff_matched"][0] == pytest.approx(lines["uniform+filter"]["diff"][0] - 0.01)
    text = rt.markdown(list(lines.values()), registered)
    assert "| dump | 4 | never [never, never] | 0% |" in text and "uniform+x2.3" in text


def test_the_rollouts_to_target_report_is_what_its_rows_make(benchmarks):
    """benchmarks/results/rollouts/rollouts.md: the registered target (calibration seeds only) and the scored
    variants, from the rows its .json names; no scoring seed is a calibration seed."""
    import yaml

    rt = benchmarks("rollouts_to_target")
    registered = yaml.safe_load(rt.REGISTERED.read_text())
    rows = rt.reported()
    assert {r["policy"] for r in rows} >= {"uniform", "learnability", "uniform+filter", registered["matched_uniform"]}
    assert not {r["seed"] for r in rows} & set(registered["calibration_seeds"])
    text = rt.markdown(rt.summary(rows, registered), registered, rt.notice(rows))
    assert (rt.RESULTS / "rollouts.md").read_text() == rt.REPORT_TITLE + text
