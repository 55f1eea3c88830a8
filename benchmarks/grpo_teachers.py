"""Teachers for an RL student: every policy x seeds on `configs/arithmetic_grpo.yaml`, paired with uniform.

Each case is one real experiment of the config (GRPO student on the env's verifier, from the shared
SFT warm start), run as a trial of the config's own sweep (`teachgym.sweep`: Ray tasks, or
`--sequential`) and logged to MLflow like any `teachgym run`. Per policy the report gives, over seeds:

- final acc/mean and weakest-skill accuracy (greedy eval, as for SFT runs), mean ± 95% t-interval;
- the share of zero-variance groups (GRPO groups whose completions all got the same reward: no
  learning signal), over all rounds, each round weighted by its prompts per skill;
- prompts to reach uniform's final acc/mean on the same seed, seed by seed (– : never reached);
- the paired table of `teachgym compare --baseline uniform` (Δ final, Δ weakest, Δ AUC with 95%
  t-intervals on the differences, wins, P(improvement), data-efficiency ratio).

Finished cases are cached in `benchmarks/results/grpo_teachers.jsonl` (learning curves and rollout
statistics), so `--report-only` rebuilds `grpo_teachers.md` and `.png` without running anything. Rows
carry `teachgym bench`'s provenance key, as in `teaching_efficiency.py`: reused only under the same key,
reported only with rows of the current keys (a file from before keys existed is reported as it is).

    python benchmarks/grpo_teachers.py                       # the config's grid: 6 policies x seeds 0-4
    python benchmarks/grpo_teachers.py --policies uniform sec --seeds 0 1
    python benchmarks/grpo_teachers.py --report-only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONFIG = ROOT / "configs" / "arithmetic_grpo.yaml"

from teachgym.benchmarking import current, curves, git_commit, keyed_name, keys_for  # noqa: E402  (the same rows, the same paired table, the same keys)


def rollout_curves(client, run_id: str, skills: list[str]) -> dict[str, list[float]]:
    """Per round (1..R): the zero-variance share and pass rate over all groups, weighted by prompts per skill."""
    def history(key: str) -> dict[int, float]:
        return {m.step: m.value for m in client.get_metric_history(run_id, key)}

    prompts = {s: history(f"data/examples/{s}") for s in skills}
    zero = {s: history(f"rl/zero_variance_share/{s}") for s in skills}
    passed = {s: history(f"rl/pass_rate/{s}") for s in skills}
    rounds = sorted({r for s in skills for r in zero[s]})
    out: dict[str, list[float]] = {"zero_variance": [], "pass_rate": []}
    for r in rounds:
        n = {s: prompts[s].get(r, 0.0) for s in skills if r in zero[s]}
        total = sum(n.values()) or 1.0
        out["zero_variance"].append(sum(zero[s][r] * n[s] for s in n) / total)
        out["pass_rate"].append(sum(passed[s][r] * n[s] for s in n) / total)
    return out


def overrides_for(args: argparse.Namespace) -> list[str]:
    out = [f"loop.output_dir={args.work_dir}", "loop.save_student=false"]
    return out + ([f"tracking.tracking_uri={args.tracking_uri}"] if args.tracking_uri else [])


def case_keys(policies: list[str], args: argparse.Namespace) -> dict[str, dict]:
    """Each policy's provenance (``teachgym.bench``'s key) for this benchmark's cases, seed aside."""
    return keys_for(CONFIG, overrides_for(args), {p: {"name": p} for p in policies}, simulated=False)


def run_cases(policies: list[str], seeds: list[int], args: argparse.Namespace, keys: dict[str, dict]) -> list[dict]:
    """Run policies x seeds as one sweep (the package's case runner); one row per finished case, with its key."""
    import mlflow

    from teachgym.console import Display
    from teachgym.sweep import plan_sweep, run_sweep
    from teachgym.tracking.store import resolve_tracking_uri

    overrides = overrides_for(args)
    grid = {"policy.name": policies, "loop.seed": [str(s) for s in seeds]}
    plan = plan_sweep(CONFIG, overrides, grid=grid, name=f"{args.name}-{keyed_name(keys, policies)}",
                      max_concurrent=args.max_concurrent)
    result = run_sweep(plan, sequential=args.sequential, on_event=Display())
    for r in result.failed:
        print(f"case {r.trial.name} failed: {r.error}", file=sys.stderr)
    if result.interrupted is not None:
        raise result.interrupted
    client = mlflow.MlflowClient(resolve_tracking_uri(plan.base.tracking.tracking_uri))
    budget = plan.base.loop.rounds * plan.base.loop.examples_per_round
    rows = []
    for r in result.finished:
        skills = list(r.row["final_acc"])
        rows.append({
            "student": "grpo", "policy": r.trial.policy, "seed": r.trial.seed, "extra": "", "budget": budget,
            "examples": r.row["examples"], "acc_mean": r.row["acc_mean"], "acc_min": r.row["acc_min"],
            "final_acc": r.row["final_acc"], "wall_s": r.row["wall_s"], "run_id": r.row.get("run_id"),
            **rollout_curves(client, r.row["run_id"], skills), "commit": git_commit(),
            "provenance": keys[r.trial.policy],
        })
    return rows


def markdown(rows: list[dict]) -> str:
    from teachgym.analysis import examples_to_reach, format_ci, mean_ci
    from teachgym.compare import paired_rows, render_paired

    budget = rows[0]["budget"]
    uniform = {r["seed"]: r for r in rows if r["policy"] == "uniform"}
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"## Teachers for a GRPO student — configs/arithmetic_grpo.yaml ({budget:,} prompts per experiment, "
        "8 completions each)",
        "",
        "Mean ± 95% Student-t interval over seeds. Weakest skill: the final acc/min, and the skill that is weakest "
        "most often. Zero-variance groups: share of GRPO groups (one prompt, 8 completions) whose rewards were all "
        "equal, over every round. Prompts to reach uniform: prompts trained on when acc/mean first reached uniform's "
        f"final acc/mean of the same seed, seeds {', '.join(map(str, seeds))} (– : never within the budget).",
        "",
        "| policy | seeds | final acc/mean | weakest-skill acc | weakest skill | zero-variance groups | "
        "mean pass rate of rollouts | prompts to reach uniform's final |",
        "|---|---|---|---|---|---|---|---|",
    ]
    stats = []
    for policy in dict.fromkeys(r["policy"] for r in rows):
        rs = sorted((r for r in rows if r["policy"] == policy), key=lambda r: r["seed"])
        weakest = statistics.mode(min(r["final_acc"], key=r["final_acc"].get) for r in rs)
        reach = []
        for r in rs:
            base = uniform.get(r["seed"])
            n = examples_to_reach(r["examples"], r["acc_mean"], base["acc_mean"][-1]) if base else None
            reach.append("–" if n is None else f"{int(n):,}")
        stats.append((mean_ci([r["acc_mean"][-1] for r in rs])[0], policy, (
            f"| {policy} | {len(rs)} | {format_ci(*mean_ci([r['acc_mean'][-1] for r in rs]))} "
            f"| {format_ci(*mean_ci([r['acc_min'][-1] for r in rs]))} | {weakest} "
            f"| {format_ci(*mean_ci([statistics.fmean(r['zero_variance']) for r in rs]))} "
            f"| {format_ci(*mean_ci([statistics.fmean(r['pass_rate']) for r in rs]))} | {', '.join(reach)} |")))
    lines += [line for _, _, line in sorted(stats, key=lambda s: -s[0])]
    if uniform:
        lines += ["", "### Paired with uniform, seed by seed", "",
                  "Δ: mean difference [95% t-interval on the differences]; wins: seeds with a higher final acc/mean; "
                  "P(> uniform): probability of improvement [bootstrap 95%]; data-efficiency ratio: prompts to first "
                  "reach uniform's final acc/mean of the same seed ÷ uniform's budget, over the seeds that reached it.",
                  "", render_paired(paired_rows(curves(rows), "uniform")).rstrip()]
    commits = sorted({r.get("commit", "?") for r in rows})
    lines += ["", f"Measured on {os.cpu_count()} CPU cores, no GPU; commits {', '.join(commits)}; "
              "`python benchmarks/grpo_teachers.py`.", ""]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    from teachgym.analysis import plot_learning_curves

    groups = {p: [(r["examples"], r["acc_mean"]) for r in rows if r["policy"] == p]
              for p in dict.fromkeys(r["policy"] for r in rows)}
    plot_learning_curves(groups, str(path), "GRPO student: acc/mean vs prompts (mean and 95% band over seeds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", nargs="+", default=["uniform", "learnability", "sec", "dump", "missing-skill",
                                                           "skill-it"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--name", default="arithmetic_grpo", help="the sweep's name (its folder under --work-dir)")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the .jsonl cache, .md and .png")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the cache, run nothing")
    parser.add_argument("--work-dir", default="outputs", help="where the sweep keeps its trials (resume state)")
    parser.add_argument("--sequential", action="store_true", help="run the cases one by one here instead of on Ray")
    parser.add_argument("--max-concurrent", type=int, help="cases at once on Ray (default: one per CPU core)")
    args = parser.parse_args()
    from teachgym.console import quiet_libraries

    quiet_libraries()
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    cache = results / "grpo_teachers.jsonl"
    rows = [json.loads(line) for line in cache.read_text().splitlines() if line.strip()] if cache.exists() else []
    keys = case_keys(args.policies, args)
    rows = current(rows, keys)
    if not args.report_only:
        done = {(r["policy"], r["seed"]) for r in rows if "provenance" in r}  # a row without a key reruns
        if any((p, s) not in done for p in args.policies for s in args.seeds):
            for row in run_cases(args.policies, args.seeds, args, keys):
                if (row["policy"], row["seed"]) not in done:
                    rows.append(row)
                    with cache.open("a") as f:
                        f.write(json.dumps(row) + "\n")
    rows = [r for r in current(rows, keys) if r["policy"] in args.policies and r["seed"] in args.seeds]
    if not rows:
        sys.exit("no finished cases")
    md, png = results / "grpo_teachers.md", results / "grpo_teachers.png"
    text = markdown(rows)
    md.write_text(text + "\n![learning curves](grpo_teachers.png)\n")
    plot(rows, png)
    print(text)
    print(f"wrote {md} and {png}", file=sys.stderr)


if __name__ == "__main__":
    main()
