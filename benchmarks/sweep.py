"""A sweep on Ray vs the same trials one after another: wall time, cores used, and identical results.

The simulated-student teaching-efficiency benchmark (`configs/arithmetic.yaml`, `student.name=simulated`,
every built-in policy that needs no model of its own × seeds 0-4, MLflow tracking on as in the
benchmark) is run twice in this process through the same case runner (`teachgym.sweep.run_sweep`):

- **sequential**: the trials one by one in this process (`--sequential`), logging straight to sqlite;
- **Ray**: the trials as Ray tasks, one per CPU core, logging through the local `mlflow server` the
  sweep starts over the sqlite store.

Each mode gets a fresh store and work folder. "Cores busy" is the machine's busy CPU time during the
mode divided by its wall time (psutil), so it counts everything that ran then (Ray, the MLflow
server, the trials). The curves of the two modes are compared trial by trial: a sweep must change
nothing about an experiment's result.

    python benchmarks/sweep.py                         # writes benchmarks/results/sweep_simulated.md
    python benchmarks/sweep.py --seeds 0 --policies uniform skill-it --out /tmp/s.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "arithmetic.yaml"


def busy_seconds() -> float:
    import psutil

    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def run_mode(mode: str, policies: list[str], seeds: list[int], work: Path, max_concurrent: int | None) -> dict:
    from teachgym.console import Display
    from teachgym.sweep import plan_sweep, run_sweep

    store = f"sqlite:///{work / 'mlflow.db'}"
    plan = plan_sweep(CONFIG, ["student.name=simulated", "loop.save_student=false", f"loop.output_dir={work}",
                               f"tracking.tracking_uri={store}"],
                      grid={"policy.name": policies, "loop.seed": [str(s) for s in seeds]}, name=f"bench-{mode}",
                      max_concurrent=max_concurrent)
    print(f"{mode}: {plan.describe()}", file=sys.stderr, flush=True)
    busy0, t0 = busy_seconds(), time.perf_counter()
    result = run_sweep(plan, sequential=mode == "sequential", on_event=Display(every=60))
    wall, busy = time.perf_counter() - t0, busy_seconds() - busy0
    if result.exit_code != 0:
        raise SystemExit(f"{mode}: {len(result.failed)} trials failed: {[r.error for r in result.failed][:3]}")
    return {"mode": mode, "trials": len(result.results), "wall_s": wall, "cores_busy": busy / wall,
            "trial_s": sum(r.row["wall_s"] for r in result.results),
            "curves": {r.trial.key: r.row["acc_mean"] for r in result.results}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", nargs="+", default=["all"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--max-concurrent", type=int, help="trials at once on Ray (default: one per core)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sweep_simulated.md"))
    args = parser.parse_args()
    from teachgym.console import quiet_libraries
    from teachgym.registry import BUILTINS

    quiet_libraries()
    policies = [p for p in BUILTINS["policies"] if p not in ("llm-agent", "learned")] if args.policies == ["all"] \
        else args.policies
    rows = []
    for mode in ("sequential", "ray"):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(run_mode(mode, policies, args.seeds, Path(tmp), args.max_concurrent))
    seq, ray = rows
    same = sum(seq["curves"][k] == ray["curves"].get(k) for k in seq["curves"])
    lines = [
        "## Sweep on Ray vs sequential — simulated-student teaching efficiency",
        "",
        f"`configs/arithmetic.yaml` with `student.name=simulated` (8 rounds × 8,000 examples, MLflow on): "
        f"{len(policies)} policies × {len(args.seeds)} seeds = {seq['trials']} trials, in one process one after "
        f"another, then as a sweep on a local Ray ({args.max_concurrent or os.cpu_count()} at once) with the local "
        "`mlflow server` it starts. Cores busy: the machine's busy CPU time ÷ wall time during the mode.",
        "",
        "| mode | trials | wall s | sum of trial times s | cores busy | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['trials']} | {r['wall_s']:.0f} | {r['trial_s']:.0f} | "
                     f"{r['cores_busy']:.2f} | {seq['wall_s'] / r['wall_s']:.2f}× |")
    lines += [
        "",
        f"Identical learning curves, trial by trial: {same}/{seq['trials']}. Wall time includes starting Ray and the "
        "MLflow server (a few seconds each).",
        "",
        f"Measured on {os.cpu_count()} CPU cores, no GPU: `{' '.join(['python benchmarks/sweep.py', *sys.argv[1:]])}`.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
