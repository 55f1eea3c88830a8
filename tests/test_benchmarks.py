"""benchmarks/teaching_efficiency.py end to end on the simulated student (seconds), numbers checked by hand."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_benchmark(name: str):
    """A script of benchmarks/ as a module (they are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_teaching_efficiency_on_the_simulated_student(tmp_path, mlflow_store):
    import mlflow

    cmd = [sys.executable, str(ROOT / "benchmarks" / "teaching_efficiency.py"), "--student", "simulated",
           "--policies", "uniform", "missing-skill", "--seeds", "0", "1", "--results", str(tmp_path),
           "--extra", "loop.rounds=3", "loop.examples_per_round=3000", "env.eval_per_skill=20",
           "env.pool_per_skill=100", "--sequential", "--work-dir", str(tmp_path / "work")]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_store})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "[4/4 done" in out.stderr  # progress, case by case (the sweep's display)
    rows = [json.loads(line) for line in (tmp_path / "teaching_efficiency_simulated.jsonl").read_text().splitlines()]
    assert sorted((r["policy"], r["seed"]) for r in rows) == [("missing-skill", 0), ("missing-skill", 1),
                                                              ("uniform", 0), ("uniform", 1)]
    assert all(r["examples"] == [0, 3000, 6000, 9000] and r["budget"] == 9000 for r in rows)
    assert rows[0]["environment"]["torch"] == rows[1]["environment"]["torch"] != "-" and rows[0]["environment"]["cpu"]

    # The ratio by hand: first measured round where missing-skill reaches uniform's final, per seed.
    by = {(r["policy"], r["seed"]): r for r in rows}
    ratios = []
    for seed in (0, 1):
        target = by[("uniform", seed)]["acc_mean"][-1]
        hits = [n for n, a in zip(by[("missing-skill", seed)]["examples"], by[("missing-skill", seed)]["acc_mean"])
                if a >= target - 1e-12]
        if hits:
            ratios.append(hits[0] / 9000)
    md = (tmp_path / "teaching_efficiency_simulated.md").read_text()
    line, paired = [x for x in md.splitlines() if x.startswith("| missing-skill |")]  # unpaired, then paired
    final = sum(by[("missing-skill", s)]["acc_mean"][-1] for s in (0, 1)) / 2
    assert line.split("|")[3].strip().startswith(f"{final:.3f}")
    ratio_cell = paired.split("|")[8]
    assert (f"{sum(ratios) / len(ratios):.2f}" in ratio_cell and f"({len(ratios)}/2 reached)" in ratio_cell
            if ratios else ratio_cell.strip() == "—")
    # The paired difference by hand: final acc/mean of missing-skill minus uniform's, seed by seed.
    diff = sum(by[("missing-skill", s)]["acc_mean"][-1] - by[("uniform", s)]["acc_mean"][-1] for s in (0, 1)) / 2
    assert paired.split("|")[3].strip().startswith(f"{diff:+.3f}")
    assert (tmp_path / "teaching_efficiency_simulated.png").stat().st_size > 10_000

    # Every case is an MLflow run, and the summary run carries the table, the plot and the numbers.
    client = mlflow.MlflowClient(mlflow_store)
    exp = client.get_experiment_by_name("teachgym-benchmark/teaching-efficiency-simulated")
    runs = client.search_runs([exp.experiment_id], "tags.`teachgym.kind` = 'benchmark-summary'")
    assert len(runs) == 1
    assert runs[0].data.metrics["final/missing-skill"] == pytest.approx(final)
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id)} == {
        "teaching_efficiency_simulated.md", "teaching_efficiency_simulated.png"}
    parents = client.search_runs([exp.experiment_id], "tags.`teachgym.policy` = 'uniform'")
    assert len([r for r in parents if "mlflow.parentRunId" not in r.data.tags]) == 2

    # A second invocation runs nothing new: the cache answers. With a second baseline, a second paired table.
    again = subprocess.run(cmd + ["--no-mlflow-summary", "--baselines", "uniform", "missing-skill"],
                           capture_output=True, text=True, env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_store})
    assert "0 cases to run, 4 cached" in again.stderr
    md = (tmp_path / "teaching_efficiency_simulated.md").read_text()
    second = md.split("### Paired with missing-skill")[1]
    (vs_missing,) = [x for x in second.splitlines() if x.startswith("| uniform |")]
    assert float(vs_missing.split("|")[3].split()[0]) == pytest.approx(-diff, abs=5e-4)
    assert md.count("Target (") == 1  # the efficiency target is uniform's alone
    assert "Caution" not in md  # one environment

    # A row from another environment (here: one written before rows recorded theirs) is flagged, by policy.
    lines = (tmp_path / "teaching_efficiency_simulated.jsonl").read_text().splitlines()
    old = [json.loads(line) for line in lines]
    for r in old:
        if r["policy"] == "uniform":
            del r["environment"]
    (tmp_path / "teaching_efficiency_simulated.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    subprocess.run(cmd + ["--report-only", "--no-mlflow-summary"], check=True, capture_output=True,
                   env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_store})
    md = (tmp_path / "teaching_efficiency_simulated.md").read_text()
    assert "**Caution: these rows come from 2 environments**" in md and "not recorded: uniform" in md

    # A row of another key (another code, config, package or machine) is never reused: that case runs again.
    assert len({r["provenance"]["key"] for r in old}) == 2 and all(r["provenance"]["commit"] for r in old)
    old[0]["provenance"]["key"] = "0" * 16
    (tmp_path / "teaching_efficiency_simulated.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    rerun = subprocess.run(cmd + ["--no-mlflow-summary"], capture_output=True, text=True,
                           env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_store})
    assert rerun.returncode == 0 and "1 cases to run, 3 cached" in rerun.stderr, rerun.stderr[-2000:]


def test_teaching_efficiency_on_another_config(tmp_path, mlflow_store):
    """--config: the cases run that config, and its stem names the files and the experiment."""
    import mlflow

    cmd = [sys.executable, str(ROOT / "benchmarks" / "teaching_efficiency.py"), "--student", "simulated",
           "--config", str(ROOT / "configs" / "lego.yaml"), "--policies", "uniform", "skill-it", "--seeds", "0",
           "--results", str(tmp_path), "--extra", "loop.rounds=2", "loop.examples_per_round=1000",
           "env.eval_per_skill=20", "env.pool_per_skill=50", "--sequential", "--work-dir", str(tmp_path / "work")]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_store})
    assert out.returncode == 0, out.stderr[-3000:]
    cache = tmp_path / "teaching_efficiency_simulated_lego.jsonl"
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert sorted(r["policy"] for r in rows) == ["skill-it", "uniform"]
    assert all(sorted(r["final_acc"]) == ["hop1", "hop2", "hop3", "hop4", "hop5"] for r in rows)
    md = (tmp_path / "teaching_efficiency_simulated_lego.md").read_text()
    assert "simulated student, configs/lego.yaml (2,000 examples" in md and "--config configs/lego.yaml`" in md
    assert not (tmp_path / "teaching_efficiency_simulated.jsonl").exists()
    client = mlflow.MlflowClient(mlflow_store)
    assert client.get_experiment_by_name("teachgym-benchmark/teaching-efficiency-simulated-lego") is not None
    assert client.get_experiment_by_name("teachgym-benchmark/teaching-efficiency-simulated") is None


def test_an_interrupted_teaching_efficiency_benchmark_says_how_to_resume(tmp_path, monkeypatch, capsys):
    """Ctrl-C during the cases (the sweep stops them and re-raises): exit 130 and a line, no traceback."""
    te = load_benchmark("teaching_efficiency")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(te, "run_cases", interrupted)
    monkeypatch.setattr(sys, "argv", ["teaching_efficiency.py", "--student", "simulated", "--policies", "uniform",
                                      "--results", str(tmp_path), "--work-dir", str(tmp_path / "work")])
    with pytest.raises(SystemExit) as e:
        te.main()
    assert e.value.code == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    assert not (tmp_path / "teaching_efficiency_simulated.jsonl").exists()


def test_the_scale_benchmark_measures_a_small_pool(tmp_path):
    """benchmarks/scale.py's pool case on a small file: the file, the env, the rounds, and the table it prints."""
    scale = load_benchmark("scale")
    result = scale.pool_case(3000, 20, 500, tmp_path)
    assert (result["rows"], result["skills"], result["per_round"]) == (3000, 20, 500)
    assert result["eval_rows"] == 20 * 50 and result["pool_rows"] + result["eval_rows"] <= 3000
    assert result["ready_s"] > 0 and result["round_s"] > 0 and result["peak_rss_mb"] > 0
    table = scale.render({"pools": [result]}, "test")
    assert "| 3,000 rows / 20 skills | 500 |" in table and "peak RSS" in table


def test_the_grpo_report_on_rows_computed_by_hand(mlflow_store):
    """benchmarks/grpo_teachers.py: the rollout aggregation read back from MLflow, and the table's figures."""
    import mlflow
    from mlflow.entities import Metric

    sys.path.insert(0, str(ROOT / "benchmarks"))
    grpo = load_benchmark("grpo_teachers")

    client = mlflow.MlflowClient()
    run = client.create_run(client.create_experiment("grpo-bench-test")).info.run_id
    # round 1: a 30 prompts (zero-variance 0.5, pass 0.2), b 10 (0.0, 0.6); round 2: only a, 40 (1.0, 0.0)
    values = {("data/examples/a", 1): 30, ("data/examples/b", 1): 10, ("data/examples/a", 2): 40,
              ("data/examples/b", 2): 0, ("rl/zero_variance_share/a", 1): 0.5, ("rl/zero_variance_share/b", 1): 0.0,
              ("rl/pass_rate/a", 1): 0.2, ("rl/pass_rate/b", 1): 0.6, ("rl/zero_variance_share/a", 2): 1.0,
              ("rl/pass_rate/a", 2): 0.0}
    client.log_batch(run, metrics=[Metric(k, v, 0, step) for (k, step), v in values.items()])
    got = grpo.rollout_curves(client, run, ["a", "b"])
    assert got["zero_variance"] == pytest.approx([(0.5 * 30) / 40, 1.0])
    assert got["pass_rate"] == pytest.approx([(0.2 * 30 + 0.6 * 10) / 40, 0.0])

    def row(policy, seed, acc, zero=(0.5, 0.5)):
        return {"student": "grpo", "policy": policy, "seed": seed, "extra": "", "budget": 200,
                "examples": [0, 100, 200], "acc_mean": acc, "acc_min": [0.0, 0.1, 0.2],
                "final_acc": {"a": acc[-1], "b": 0.1}, "wall_s": 1.0,
                "run_id": "", "zero_variance": list(zero), "pass_rate": [0.3, 0.4], "commit": "x"}

    rows = [row("uniform", 0, [0.1, 0.3, 0.5]), row("uniform", 1, [0.1, 0.2, 0.4]),
            row("sec", 0, [0.1, 0.6, 0.7], zero=(0.2, 0.4)), row("sec", 1, [0.1, 0.3, 0.35])]
    text = grpo.markdown(rows)
    # sec reaches uniform's 0.5 at 100 prompts on seed 0 and never reaches 0.4 on seed 1; zero-variance 0.3 and 0.5
    line = next(x for x in text.splitlines() if x.startswith("| sec |"))
    assert line.endswith("| 100, – |") and "| 0.400 ±" in line and "| b |" in line
    assert "### Paired with uniform" in text and "| sec |" in text.split("### Paired with uniform")[1]


def test_the_gpu_benchmark_runs_its_smoke_mode_and_refuses_a_cpu_otherwise():
    """benchmarks/gpu.py is for a CUDA machine; --smoke runs every part but vLLM on the CPU at tiny size."""
    import torch

    script = str(ROOT / "benchmarks" / "gpu.py")
    out = subprocess.run([sys.executable, script, "--smoke"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| SFT round, 64 rows" in out.stdout and "bare TRL" in out.stdout and "GRPO round, 8 prompts" in out.stdout
    if not torch.cuda.is_available():
        refused = subprocess.run([sys.executable, script], capture_output=True, text=True)
        assert refused.returncode == 2 and "needs a CUDA GPU" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_the_bench_teachers_train_on_shuffled_skills_that_map_back_to_the_env():
    """A shuffled episode shows env skill i at position pos[i], and the action at pos[i] trains skill i."""
    import numpy as np

    from teachgym.bench import load_challenges

    bench = load_benchmark("train_bench_teachers")
    challenge = load_challenges(ROOT / "configs" / "bench", ["prerequisites"])[0]
    env = bench.shuffled(bench.score_env(challenge))
    shown, info = env.reset(seed=3)
    skills, pos = env.unwrapped.skills, env.pos
    assert sorted(pos) == list(range(len(skills))) and list(pos) != list(range(len(skills)))
    acc = np.array([info["accuracy"][s] for s in skills])
    assert np.allclose(shown[pos], acc)  # the accuracy block, reordered
    action = -np.ones(len(skills), dtype=np.float32)
    action[pos[2]] = 1.0  # the shown position of env skill 2
    _, reward, *_, info = env.step(action)
    assert max(info["mixture"], key=info["mixture"].get) == skills[2]
    learnable = challenge.learnable
    assert reward == pytest.approx(np.mean([info["accuracy"][s] for s in learnable]) - np.mean(
        [acc[skills.index(s)] for s in learnable]))  # score: final, so the reward is the learnable mean's gain


def test_per_step_report_figures_by_hand():
    """benchmarks/per_step.py: paired differences, what stepping adds, rollouts spent, filtering's extra generation
    (rollouts to a target are benchmarks/rollouts_to_target.py's, under the protocol)."""
    per_step = load_benchmark("per_step")

    def row(policy, seed, curve, completions, extra=None):
        totals = [{}] + [{"rl/completions": c, "rl/zero_variance_share": 0.5, **(extra or {})} for c in completions]
        return {"challenge": "ladder-rl", "policy": policy, "seed": seed, "status": "finished", "score": curve[-1],
                "curve": curve, "totals": totals, "wall_s": 10.0 if policy == "uniform" else 30.0,
                "provenance": {"commit": "abc", "dirty": False}}

    rows = [row("uniform", 0, [0.1, 0.2, 0.3, 0.4], [100, 100, 100]),
            row("uniform", 1, [0.1, 0.3, 0.2, 0.2], [100, 100, 100]),
            row("dump@step", 0, [0.1, 0.5, 0.6, 0.7], [100, 100, 100], {"teacher/step_change": 0.2}),
            row("dump@step", 1, [0.1, 0.1, 0.1, 0.1], [100, 100, 100], {"teacher/step_change": 0.4}),
            row("uniform+filter", 0, [0.1, 0.4, 0.4, 0.4], [150, 150, 150], {"filter/extra_generation": 0.5})]
    rows += [row("dump", 0, [0.1, 0.2, 0.3, 0.5], [100, 100, 100]),
             row("dump", 1, [0.1, 0.1, 0.1, 0.3], [100, 100, 50])]
    table = per_step.summary(rows)["ladder-rl"]
    by = {r["variant"]: r for r in table["variants"]}
    contrast = {c["pair"]: c for c in table["contrasts"]}
    assert set(contrast) == {"dump@step − dump"}  # uniform+filter has one seed: no interval, no line
    assert contrast["dump@step − dump"]["score"][0] == pytest.approx(((0.7 - 0.5) + (0.1 - 0.3)) / 2)
    assert contrast["dump@step − dump"]["rollouts"] == pytest.approx((1 + 300 / 250) / 2)
    assert by["dump@step"]["diff"][0] == pytest.approx((0.3 - 0.1) / 2)
    assert by["dump@step"]["step_change"] == pytest.approx(0.3) and by["uniform+filter"]["rollouts"] == 450
    assert by["uniform+filter"]["extra_generation"] == 0.5 and "reach" not in by["uniform"]
    text = per_step.markdown(per_step.summary(rows))
    assert "| per step, dump | dump@step − dump | " in text and "to target" not in text
    assert "| dump@step | 0.400 ± " in text and "30 (3.00)" in text and "rollouts_to_target.py" in text


def test_a_script_row_is_current_for_the_cpu_that_made_it_and_stale_when_its_code_moved():
    """A benchmark script's key covers the CPU (floating point differs across CPUs), so its report compares a row
    with the key its config has on the row's own CPU: another machine's row is its machine's, not stale; a row
    whose code moved is stale on any machine."""
    from teachgym.benchmarking import REASONING_GYM_ROOTS, cpu_name, script_provenance, script_staleness

    config = {"env": {"name": "arithmetic"}, "student": {"name": "simulated"}, "policy": {"name": "uniform"}}
    here = script_provenance(config, roots=REASONING_GYM_ROOTS)
    there = script_provenance(config, roots=REASONING_GYM_ROOTS, cpu="Other CPU 9000")
    assert there["packages"]["cpu"] == "Other CPU 9000" != cpu_name() and there["key"] != here["key"]
    assert script_staleness([here, there], [], REASONING_GYM_ROOTS, "python x.py") == ""
    moved = {**there, "key": "0" * 16}
    notice = script_staleness([here, moved], [], REASONING_GYM_ROOTS, "python x.py")
    assert notice.startswith("**Stale: 1 of 2 rows are not the current code's numbers.**") and "`python x.py`" in notice


def test_keyed_rows_reuse_a_stored_row_of_the_same_key_and_measure_the_rest(tmp_path):
    from teachgym.benchmarking import keyed_rows

    file = tmp_path / "rows.json"
    measured = []

    def measure(name):
        measured.append(name)
        return {"value": len(measured)}

    cases = {"a": {"key": "ka"}, "b": {"key": "kb"}}
    first = keyed_rows(file, cases, measure)
    assert measured == ["a", "b"] and [r["value"] for r in first] == [1, 2]
    again = keyed_rows(file, {**cases, "b": {"key": "kb2"}}, measure)  # b's key moved: only b is measured again
    assert measured == ["a", "b", "b"] and [r["value"] for r in again] == [1, 3]
    assert json.loads(file.read_text()) == again
    keyed_rows(file, cases, measure, force=True)
    assert measured == ["a", "b", "b", "a", "b"]
