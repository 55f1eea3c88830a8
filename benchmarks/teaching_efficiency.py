"""Teaching efficiency: every built-in policy x seeds, at equal budgets, on the simulated student and the tiny LM.

Each case is one real experiment (`configs/arithmetic.yaml`, or `--config`; the policy and seed swapped in), run as
a trial of one sweep (`teachgym.sweep`: Ray tasks on this machine's cores, or `--sequential`) and
logged to MLflow like any `teachgym run`. For each policy the report gives:

- unpaired, as mean ± 95% Student-t interval over seeds: final mean accuracy, final weakest-skill
  accuracy, and the area under the learning curve (mean accuracy over the budget);
- paired with uniform seed by seed (`teachgym.compare.paired_rows`, as `teachgym compare --baseline
  uniform`): the mean difference of those three with a 95% t-interval on the differences, wins,
  the probability of improvement P(policy > uniform) (rliable), and the data-efficiency ratio:
  examples the policy had trained on at the first round where its mean accuracy reached uniform's
  final mean accuracy on the same seed, divided by uniform's budget (below 1.0: less data than
  uniform; seeds where it never gets there are counted and left out of its interval).

Finished cases are appended to `benchmarks/results/teaching_efficiency_<student>.jsonl` (whole
learning curves), so the report can be rebuilt without re-running (`--report-only`). Each row carries
`teachgym bench`'s provenance key (the resolved config, the policy's and env's sources, a hash of the
code that decides the numbers, the packages, the hardware, and the learned teacher's model file): a
cached row is reused only under the same key, the report pairs only rows of the current keys (a file
of rows written before keys existed is reported as it is), and each row records its commit; an interrupted
benchmark resumes through its sweep (`<work-dir>/sweep-teaching-efficiency-<student>-<keys>`). Writes
`teaching_efficiency_<student>.md` and `.png` there, and logs both to a `summary` run in the MLflow
experiment `teachgym-benchmark/teaching-efficiency-<student>`.

    python benchmarks/teaching_efficiency.py --student simulated                  # all policies, seeds 0-4
    python benchmarks/teaching_efficiency.py --student lm --policies uniform skill-it --seeds 0 1
    python benchmarks/teaching_efficiency.py --student lm --report-only
    python benchmarks/teaching_efficiency.py --student lm --config configs/lego.yaml --policies uniform skill-it

With a config other than the default, its stem names the files, the sweep and the experiment
(`teaching_efficiency_lm_lego.*`, `teaching-efficiency-lm-lego`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from pathlib import Path

from teachgym.benchmarking import current, curves, environment, git_commit, keyed_name, keys_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONFIG = ROOT / "configs" / "arithmetic.yaml"
LEARNED = RESULTS / "learned_teacher.zip"
# What changes per student; everything else (env, budget, rounds) is the default config's.
STUDENTS = {"simulated": ["student.name=simulated"], "lm": []}
# Built-ins that need a model of their own to run (llm-agent: an LLM), left out of "all".
NEEDS_A_MODEL = {"llm-agent"}


def label(student: str, config: str | Path) -> str:
    """What names a benchmark's files, sweep and experiment: the student, plus the config's stem unless default."""
    return student if Path(config).resolve() == CONFIG else f"{student}-{Path(config).stem}"


def overrides_for(student: str, args: argparse.Namespace) -> list[str]:
    """The overrides every case of this benchmark gets (the policy and seed are the sweep's axes)."""
    name = label(student, args.config)
    out = [*STUDENTS[student], "loop.save_student=false", f"loop.output_dir={args.work_dir}",
           f"tracking.experiment=teachgym-benchmark/teaching-efficiency-{name}", *args.extra]
    return out + ([f"tracking.tracking_uri={args.tracking_uri}"] if args.tracking_uri else [])


def policy_section(policy: str, args: argparse.Namespace) -> dict:
    return {"name": policy, "path": args.learned} if policy == "learned" else {"name": policy}


def case_keys(student: str, policies: list[str], args: argparse.Namespace) -> dict[str, dict]:
    """Each policy's provenance (``teachgym.bench``'s key) for this benchmark's cases, seed aside."""
    sections = {p: policy_section(p, args) for p in policies}
    return keys_for(args.config, overrides_for(student, args), sections, student == "simulated")


def run_cases(student: str, policies: list[str], seeds: list[int], args: argparse.Namespace,
              keys: dict[str, dict]) -> list[dict]:
    """Run policies x seeds as one sweep (the package's case runner) and return one row per finished case.

    ``keys`` holds each policy's provenance (:func:`case_keys`); the rows carry it.
    """
    from teachgym.console import Display
    from teachgym.sweep import plan_sweep, run_sweep

    extra = " ".join(args.extra)
    name = label(student, args.config)
    overrides = overrides_for(student, args)
    grid = {"policy": [policy_section(p, args) for p in policies], "loop.seed": [str(s) for s in seeds]}
    sweep = f"teaching-efficiency-{name}" + (f"-{hashlib.sha1(extra.encode()).hexdigest()[:6]}" if extra else "") \
        + f"-{keyed_name(keys, policies)}"
    plan = plan_sweep(args.config, overrides, grid=grid, name=sweep, max_concurrent=args.max_concurrent)
    result = run_sweep(plan, sequential=args.sequential, on_event=Display())
    for r in result.failed:
        print(f"case {r.trial.name} failed: {r.error}", file=sys.stderr)
    if result.interrupted is not None:
        raise result.interrupted
    budget = plan.base.loop.rounds * plan.base.loop.examples_per_round
    env = environment()
    return [{
        "student": student, "policy": r.trial.policy, "seed": r.trial.seed, "extra": extra, "budget": budget,
        "examples": r.row["examples"], "acc_mean": r.row["acc_mean"], "acc_min": r.row["acc_min"],
        "final_acc": r.row["final_acc"], "wall_s": r.row["wall_s"], "run_id": r.row.get("run_id"),
        "commit": git_commit(), "environment": env, "provenance": keys[r.trial.policy],
    } for r in result.finished]


def summarize(rows: list[dict]) -> list[dict]:
    """Per-policy unpaired statistics; rows must share a student."""
    from teachgym.analysis import auc, mean_ci

    out = []
    for policy in dict.fromkeys(r["policy"] for r in rows):
        rs = sorted((r for r in rows if r["policy"] == policy), key=lambda r: r["seed"])
        out.append({
            "policy": policy,
            "seeds": [r["seed"] for r in rs],
            "final": mean_ci([r["acc_mean"][-1] for r in rs]),
            "weakest": mean_ci([r["acc_min"][-1] for r in rs]),
            "auc": mean_ci([auc(r["examples"], r["acc_mean"], r["budget"]) for r in rs]),
            "wall_s": sum(r["wall_s"] for r in rs) / len(rs),
        })
    return sorted(out, key=lambda s: -s["final"][0])


def markdown(student: str, stats: list[dict], rows: list[dict], baselines: tuple[str, ...] = ("uniform",),
             config: str | Path = CONFIG) -> str:
    from teachgym.analysis import format_ci
    from teachgym.compare import paired_rows, render_paired

    budget = rows[0]["budget"]
    lines = [
        f"## Teaching efficiency — {student} student, {_shown(config)} ({budget:,} examples per experiment)",
        "",
        "Mean ± 95% Student-t interval over seeds. s/run: wall time of one case as measured, which depends on what "
        "else shared the machine (not a speed comparison between policies).",
        "",
        "| policy | seeds | final acc/mean | weakest-skill acc | AUC | s/run |",
        "|---|---|---|---|---|---|",
    ]
    for s in stats:
        lines.append(f"| {s['policy']} | {len(s['seeds'])} | {format_ci(*s['final'])} | {format_ci(*s['weakest'])} "
                     f"| {format_ci(*s['auc'])} | {s['wall_s']:.1f} |")
    for baseline in baselines:
        paired = paired_rows(curves(rows), baseline) if any(r["policy"] == baseline for r in rows) else []
        if not paired:
            continue
        lines += [
            "",
            f"### Paired with {baseline}, seed by seed",
            "",
            f"Each seed fixes the eval set, the initial weights and the data seed, so each policy is compared with "
            f"{baseline} on the same seed. Δ: mean difference [95% t-interval on the differences]; wins: seeds with a "
            f"higher final acc/mean; P(> {baseline}): probability of improvement (rliable) [bootstrap 95%]; "
            f"data-efficiency ratio: examples to first reach {baseline}'s final acc/mean of the same seed ÷ "
            f"{baseline}'s budget, over the seeds that reached it.",
            "",
            render_paired(paired).rstrip(),
        ]
        if baseline == "uniform":  # the efficiency target is stated against uniform alone
            best = [r for r in paired if r["reached"] == len(r["seeds"]) > 1 and r["ratio"][0] <= 0.5
                    and r["ratio"][0] + r["ratio"][1] < 1.0]
            lines += ["", "Target (a policy reaches uniform's final accuracy with at most half of its examples on "
                      "average, every seed reaching it, and the 95% interval excluding 1.0): "
                      + (", ".join(r["policy"] for r in best) + " — met." if best else "not met by any policy.")]
    envs: dict[str, set[str]] = {}
    for r in rows:
        key = ", ".join(f"{k} {v}" for k, v in r["environment"].items()) if r.get("environment") else "not recorded"
        envs.setdefault(key, set()).add(r["policy"])
    if len(envs) > 1:
        lines += ["", f"**Caution: these rows come from {len(envs)} environments** (package versions and CPU). The "
                  "same case need not give the same curve in two of them, so a paired difference between policies "
                  "run in different ones includes that drift. " + "; ".join(
                      f"{key}: {', '.join(sorted(policies))}" for key, policies in envs.items()) + "."]
    commits = sorted({r.get("commit", "?") for r in rows})
    lines += ["", f"Measured on {os.cpu_count()} CPU cores, no GPU; commits {', '.join(commits)}; "
              f"`python benchmarks/teaching_efficiency.py --student {student}"
              + ("" if label(student, config) == student else f" --config {_shown(config)}") + "`.", ""]
    return "\n".join(lines)


def plot(student: str, stats: list[dict], rows: list[dict], path: Path) -> None:
    """Mean learning curve per policy with a 95% band over seeds."""
    from teachgym.analysis import plot_learning_curves

    groups = {s["policy"]: [(r["examples"], r["acc_mean"]) for r in rows if r["policy"] == s["policy"]]
              for s in stats}
    plot_learning_curves(groups, str(path), f"Teaching efficiency — {student} student (mean and 95% band over seeds)")


def _shown(config: str | Path) -> str:
    path = Path(config).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(config)


def log_summary(name: str, stats: list[dict], rows: list[dict], md: Path, png: Path,
                tracking_uri: str | None) -> str:
    import mlflow

    from teachgym.compare import paired_rows
    from teachgym.tracking.store import ensure_experiment, resolve_tracking_uri

    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    experiment = f"teachgym-benchmark/teaching-efficiency-{name}"
    mlflow.set_experiment(experiment_id=ensure_experiment(mlflow.MlflowClient(), experiment))
    with mlflow.start_run(run_name="summary", tags={"teachgym.kind": "benchmark-summary"}) as run:
        for s in stats:
            p = s["policy"]
            mlflow.log_metrics({f"final/{p}": s["final"][0], f"weakest/{p}": s["weakest"][0], f"auc/{p}": s["auc"][0]})
        if any(r["policy"] == "uniform" for r in rows):
            for r in paired_rows(curves(rows), "uniform"):
                mlflow.log_metric(f"paired/d_final/{r['policy']}", r["d_final"][0])
                if not math.isnan(r["ratio"][0]):
                    mlflow.log_metric(f"efficiency_ratio/{r['policy']}", r["ratio"][0])
        mlflow.log_artifact(str(md))
        mlflow.log_artifact(str(png))
        return run.info.run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", choices=[*STUDENTS, "both"], default="simulated")
    parser.add_argument("--config", default=str(CONFIG), help="the experiment every case runs (default: the default)")
    parser.add_argument("--policies", nargs="+", default=["all"], help="policy names, or 'all' built-ins")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--extra", nargs="*", default=[], help="extra key=value overrides for every case")
    parser.add_argument("--learned", default=str(LEARNED), help="model file for policy 'learned'")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the .jsonl cache, .md and .png")
    parser.add_argument("--fresh", action="store_true", help="ignore cached cases and run everything again")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the cache, run nothing")
    parser.add_argument("--no-mlflow-summary", action="store_true", help="do not log the summary run")
    parser.add_argument("--work-dir", default="outputs", help="where the sweep keeps its trials (resume state)")
    parser.add_argument("--sequential", action="store_true", help="run the cases one by one here instead of on Ray")
    parser.add_argument("--max-concurrent", type=int, help="cases at once on Ray (default: one per CPU core)")
    parser.add_argument("--baselines", nargs="+", default=["uniform"],
                        help="pair every policy with each of these, seed by seed (a table per baseline)")
    args = parser.parse_args()
    from teachgym.console import quiet_libraries
    from teachgym.registry import BUILTINS

    quiet_libraries()
    policies = [p for p in BUILTINS["policies"] if p not in NEEDS_A_MODEL] if args.policies == ["all"] \
        else args.policies
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    for student in STUDENTS if args.student == "both" else [args.student]:
        name = label(student, args.config)
        stem = f"teaching_efficiency_{name.replace('-', '_')}"
        cache = results / f"{stem}.jsonl"
        extra = " ".join(args.extra)
        rows = [] if args.fresh or not cache.exists() else [
            json.loads(line) for line in cache.read_text().splitlines() if line.strip()]
        keys = case_keys(student, policies, args)
        rows = current([r for r in rows if r["extra"] == extra], keys)
        if not args.report_only:
            done = {(r["policy"], r["seed"]) for r in rows if "provenance" in r}  # a row without a key reruns
            todo = [(p, s) for p in policies for s in args.seeds if (p, s) not in done]
            if "learned" in policies and not Path(args.learned).exists():
                print(f"skipping 'learned': no model at {args.learned} (benchmarks/train_learned_teacher.py makes one)",
                      file=sys.stderr)
                todo = [(p, s) for p, s in todo if p != "learned"]
            print(f"{student}: {len(todo)} cases to run, {len(done)} cached in {cache}", file=sys.stderr)
            if todo:
                # One sweep over the policies and seeds with a case missing (a cached case in it is skipped by
                # the sweep if its folder remembers it, else run again to the same result).
                todo_policies = list(dict.fromkeys(p for p, _ in todo))
                todo_seeds = sorted({s for _, s in todo})
                try:
                    new = run_cases(student, todo_policies, todo_seeds, args, keys)
                except KeyboardInterrupt:  # Ctrl-C or a signal: the sweep stopped its trials cleanly
                    print(f"interrupted: the sweep in {args.work_dir} keeps the finished cases and each stopped "
                          "one's last round; run the same command again to resume", file=sys.stderr)
                    raise SystemExit(130) from None
                for row in new:
                    if (row["policy"], row["seed"]) in done:
                        continue
                    rows.append(row)
                    with cache.open("a") as f:
                        f.write(json.dumps(row) + "\n")
        rows = [r for r in current(rows, keys) if r["policy"] in policies and r["seed"] in args.seeds]
        if not rows:
            continue
        stats = summarize(rows)
        md, png = results / f"{stem}.md", results / f"{stem}.png"
        text = markdown(student, stats, rows, tuple(args.baselines), args.config)
        md.write_text(text + f"\n![learning curves]({png.name})\n")
        plot(student, stats, rows, png)
        print(text)
        if not args.no_mlflow_summary:
            run_id = log_summary(name, stats, rows, md, png, args.tracking_uri)
            print(f"MLflow summary run {run_id}", file=sys.stderr)
        print(f"wrote {md} and {png}", file=sys.stderr)


if __name__ == "__main__":
    main()
