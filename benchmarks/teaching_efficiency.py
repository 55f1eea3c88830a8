"""Teaching efficiency: every built-in policy x seeds, at equal budgets, on the simulated student and the tiny LM.

Each case is one real experiment (`configs/arithmetic.yaml`, the policy and seed swapped in) run in
this process through `teachgym.loop.run_experiment`, logged to MLflow like any `teachgym run`. For
each policy the report gives, as mean ± 95% Student-t interval over seeds:

- final mean accuracy, and final weakest-skill accuracy;
- area under the learning curve (mean accuracy over the budget, trapezoids between rounds);
- the data-efficiency ratio: examples the policy had trained on at the first round where its mean
  accuracy reached the *uniform* policy's final mean accuracy on the same seed, divided by
  uniform's budget. Below 1.0 the policy needs less data than uniform; seeds where it never gets
  there are counted and left out of the interval (the table says how many).

Finished cases are appended to `benchmarks/results/teaching_efficiency_<student>.jsonl` (whole
learning curves), so an interrupted benchmark resumes where it stopped and the report can be
rebuilt without re-running (`--report-only`). Writes `teaching_efficiency_<student>.md` and
`.png` there, and logs both to a `summary` run in the MLflow experiment
`teachgym-benchmark/teaching-efficiency-<student>`.

    python benchmarks/teaching_efficiency.py --student simulated                  # all policies, seeds 0-4
    python benchmarks/teaching_efficiency.py --student lm --policies uniform skill-it --seeds 0 1
    python benchmarks/teaching_efficiency.py --student lm --report-only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONFIG = ROOT / "configs" / "arithmetic.yaml"
LEARNED = RESULTS / "learned_teacher.zip"
# What changes per student; everything else (env, budget, rounds) is the default config's.
STUDENTS = {"simulated": ["student.name=simulated"], "lm": []}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_case(student: str, policy: str, seed: int, extra: list[str], tracking_uri: str | None,
             learned: str, label: str) -> dict:
    """Run one experiment and return its learning curve."""
    from teachgym.config import load_config
    from teachgym.loop import run_experiment

    overrides = [f"policy.name={policy}", f"loop.seed={seed}", "loop.save_student=false",
                 f"tracking.experiment=teachgym-benchmark/teaching-efficiency-{student}", *STUDENTS[student]]
    if tracking_uri:
        overrides.append(f"tracking.tracking_uri={tracking_uri}")
    if policy == "learned":
        overrides.append(f"policy.path={learned}")
    config = load_config(CONFIG, [*overrides, *extra])

    def progress(rec, rounds):
        print(f"\r{label} round {rec.round}/{rounds}  acc/mean {rec.mean_accuracy:.3f}   ", end="", file=sys.stderr,
              flush=True)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        config.loop.output_dir = tmp
        result = run_experiment(config, on_round=progress)
    wall = time.perf_counter() - start
    print(f"\r{label} done in {wall:.0f} s, final acc/mean {result.final.mean_accuracy:.3f}          ",
          file=sys.stderr, flush=True)
    return {
        "student": student,
        "policy": policy,
        "seed": seed,
        "extra": " ".join(extra),
        "budget": config.loop.rounds * config.loop.examples_per_round,
        "examples": [r.examples for r in result.rounds],
        "acc_mean": [r.mean_accuracy for r in result.rounds],
        "acc_min": [r.weakest[1] for r in result.rounds],
        "final_acc": result.final.accuracies,
        "wall_s": wall,
        "run_id": result.run_id,
        "commit": git_commit(),
    }


def summarize(rows: list[dict]) -> list[dict]:
    """Per-policy statistics (see the module docstring); rows must share a student."""
    from teachgym.analysis import auc, examples_to_reach, mean_ci

    uniform = {r["seed"]: r for r in rows if r["policy"] == "uniform"}
    out = []
    for policy in dict.fromkeys(r["policy"] for r in rows):
        rs = sorted((r for r in rows if r["policy"] == policy), key=lambda r: r["seed"])
        ratios, unreached = [], 0
        for r in rs:
            u = uniform.get(r["seed"])
            if u is None:
                continue
            n = examples_to_reach(r["examples"], r["acc_mean"], u["acc_mean"][-1])
            if n is None:
                unreached += 1
            else:
                ratios.append(n / u["budget"])
        out.append({
            "policy": policy,
            "seeds": [r["seed"] for r in rs],
            "final": mean_ci([r["acc_mean"][-1] for r in rs]),
            "weakest": mean_ci([r["acc_min"][-1] for r in rs]),
            "auc": mean_ci([auc(r["examples"], r["acc_mean"], r["budget"]) for r in rs]),
            "ratio": mean_ci(ratios) if ratios else (math.nan, math.nan),
            "ratio_reached": (len(ratios), len(ratios) + unreached),
            "wall_s": sum(r["wall_s"] for r in rs) / len(rs),
        })
    return sorted(out, key=lambda s: -s["final"][0])


def markdown(student: str, stats: list[dict], rows: list[dict]) -> str:
    from teachgym.analysis import format_ci

    budget = rows[0]["budget"]
    lines = [
        f"## Teaching efficiency — {student} student, configs/arithmetic.yaml ({budget:,} examples per experiment)",
        "",
        "Mean ± 95% Student-t interval over seeds. Ratio = examples to first reach uniform's final mean accuracy "
        "(same seed) ÷ uniform's budget; *reached* counts the seeds where that happened within the budget "
        "(only those enter the interval). s/run: wall time of one case as measured, which depends on what else "
        "shared the machine (not a speed comparison between policies).",
        "",
        "| policy | seeds | final acc/mean | weakest-skill acc | AUC | data-efficiency ratio | reached | s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in stats:
        k, n = s["ratio_reached"]
        ratio = "—" if math.isnan(s["ratio"][0]) else format_ci(*s["ratio"], digits=2)
        lines.append(
            f"| {s['policy']} | {len(s['seeds'])} | {format_ci(*s['final'])} | {format_ci(*s['weakest'])} "
            f"| {format_ci(*s['auc'])} | {ratio} | {k}/{n} | {s['wall_s']:.1f} |"
        )
    best = [s for s in stats if s["policy"] != "uniform" and s["ratio_reached"][0] == s["ratio_reached"][1]
            and s["ratio_reached"][1] > 1 and s["ratio"][0] <= 0.5 and s["ratio"][0] + s["ratio"][1] < 1.0]
    lines += ["", "Target (a policy reaches uniform's final accuracy with at most half of its examples on average, "
              "every seed reaching it, and the 95% interval excluding 1.0): "
              + (", ".join(s["policy"] for s in best) + " — met." if best else "not met by any policy.")]
    commits = sorted({r.get("commit", "?") for r in rows})
    lines += ["", f"Measured on {os.cpu_count()} CPU cores, no GPU; commits {', '.join(commits)}; "
              f"`python benchmarks/teaching_efficiency.py --student {student}`.", ""]
    return "\n".join(lines)


def plot(student: str, stats: list[dict], rows: list[dict], path: Path) -> None:
    """Mean learning curve per policy with a 95% band over seeds."""
    from teachgym.analysis import plot_learning_curves

    curves = {s["policy"]: [(r["examples"], r["acc_mean"]) for r in rows if r["policy"] == s["policy"]]
              for s in stats}
    plot_learning_curves(curves, str(path), f"Teaching efficiency — {student} student (mean and 95% band over seeds)")


def log_summary(student: str, stats: list[dict], md: Path, png: Path, tracking_uri: str | None) -> str:
    import mlflow

    from teachgym.tracking import resolve_tracking_uri

    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    mlflow.set_experiment(f"teachgym-benchmark/teaching-efficiency-{student}")
    with mlflow.start_run(run_name="summary", tags={"teachgym.kind": "benchmark-summary"}) as run:
        for s in stats:
            p = s["policy"]
            mlflow.log_metrics({f"final/{p}": s["final"][0], f"weakest/{p}": s["weakest"][0], f"auc/{p}": s["auc"][0]})
            if not math.isnan(s["ratio"][0]):
                mlflow.log_metric(f"efficiency_ratio/{p}", s["ratio"][0])
        mlflow.log_artifact(str(md))
        mlflow.log_artifact(str(png))
        return run.info.run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", choices=[*STUDENTS, "both"], default="simulated")
    parser.add_argument("--policies", nargs="+", default=["all"], help="policy names, or 'all' built-ins")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--extra", nargs="*", default=[], help="extra key=value overrides for every case")
    parser.add_argument("--learned", default=str(LEARNED), help="model file for policy 'learned'")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the .jsonl cache, .md and .png")
    parser.add_argument("--fresh", action="store_true", help="ignore cached cases and run everything again")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the cache, run nothing")
    parser.add_argument("--no-mlflow-summary", action="store_true", help="do not log the summary run")
    args = parser.parse_args()
    from teachgym.cli import _quiet
    from teachgym.registry import BUILTINS

    _quiet()
    policies = list(BUILTINS["policies"]) if args.policies == ["all"] else args.policies
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    for student in STUDENTS if args.student == "both" else [args.student]:
        cache = results / f"teaching_efficiency_{student}.jsonl"
        extra = " ".join(args.extra)
        rows = [] if args.fresh or not cache.exists() else [
            json.loads(line) for line in cache.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["extra"] == extra]
        if not args.report_only:
            done = {(r["policy"], r["seed"]) for r in rows}
            todo = [(p, s) for p in policies for s in args.seeds if (p, s) not in done]
            if "learned" in policies and not Path(args.learned).exists():
                print(f"skipping 'learned': no model at {args.learned} (benchmarks/train_learned_teacher.py makes one)",
                      file=sys.stderr)
                todo = [(p, s) for p, s in todo if p != "learned"]
            print(f"{student}: {len(todo)} cases to run, {len(done)} cached in {cache}", file=sys.stderr)
            start = time.perf_counter()
            for i, (policy, seed) in enumerate(todo):
                eta = "" if i == 0 else f", ETA {(time.perf_counter() - start) / i * (len(todo) - i) / 60:.0f} min"
                label = f"[{i + 1}/{len(todo)}{eta}] {student} {policy} seed {seed}"
                row = run_case(student, policy, seed, args.extra, args.tracking_uri, args.learned, label)
                rows.append(row)
                with cache.open("a") as f:
                    f.write(json.dumps(row) + "\n")
        rows = [r for r in rows if r["policy"] in policies and r["seed"] in args.seeds]
        if not rows:
            continue
        stats = summarize(rows)
        md, png = results / f"teaching_efficiency_{student}.md", results / f"teaching_efficiency_{student}.png"
        text = markdown(student, stats, rows)
        md.write_text(text + f"\n![learning curves](teaching_efficiency_{student}.png)\n")
        plot(student, stats, rows, png)
        print(text)
        if not args.no_mlflow_summary:
            run_id = log_summary(student, stats, md, png, args.tracking_uri)
            print(f"MLflow summary run {run_id}", file=sys.stderr)
        print(f"wrote {md} and {png}", file=sys.stderr)


if __name__ == "__main__":
    main()
