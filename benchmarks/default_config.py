"""Time and score the embedded default (`configs/arithmetic.yaml`) as a user runs it.

Each case is a whole `teachgym run` command in a subprocess, so the wall time includes imports, the
MLflow store and saving the student — what `make run` costs. Scores are read back from the MLflow
store the run wrote. Prints a markdown table and writes it to benchmarks/results/default_config.md.

    python benchmarks/default_config.py                       # the three built-in policies, seed 0
    python benchmarks/default_config.py --policies uniform --seeds 0 1 --extra env.format=plain
    python benchmarks/default_config.py --policies all --seeds 0 1 2 --jsonl benchmarks/results/policies.jsonl
    python benchmarks/default_config.py --summarize benchmarks/results/policies.jsonl   # mean ± sd per policy
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_case(policy: str, seed: int, extra: list[str], store: str, out_dir: str) -> dict:
    cmd = [
        sys.executable, "-m", "teachgym.cli", "run", str(ROOT / "configs" / "arithmetic.yaml"),
        f"policy.name={policy}", f"loop.seed={seed}", f"tracking.tracking_uri={store}",
        f"tracking.run_name={policy}-s{seed}-{'-'.join(extra) or 'default'}", f"loop.output_dir={out_dir}", *extra,
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{output[-3000:]}")
    run_id = re.search(r"MLflow: run (\w+)", output).group(1)

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store)
    run = client.get_run(run_id)
    mean = {m.step: m.value for m in client.get_metric_history(run_id, "acc/mean")}
    last = max(mean)
    accs = {k[4:]: v for k, v in run.data.metrics.items() if k.startswith("acc/") and k not in ("acc/mean", "acc/min")}
    weakest = min(accs, key=accs.get)
    return {
        "policy": policy,
        "extra": " ".join(extra) or "-",
        "seed": seed,
        "acc0": mean[0],
        "final": mean[last],
        "gain": mean[last] - mean[0],
        "auc": sum(mean.values()) / len(mean),
        "weakest": f"{weakest} {accs[weakest]:.2f}",
        "min_acc": accs[weakest],
        "examples": int(run.data.metrics["data/cumulative_examples"]),
        "wall_s": wall,
        "rss_mb": usage.ru_maxrss / 1024,  # Linux reports KiB
    }


def summarize(path: str) -> str:
    """Group the rows of a JSONL results file by policy: mean ± sd over seeds."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["policy"] + ("" if r["extra"] == "-" else f" ({r['extra']})"), []).append(r)

    def ms(vals: list[float]) -> str:
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return f"{statistics.mean(vals):.3f} ± {sd:.3f}"

    lines = [
        "| policy | seeds | final acc/mean | weakest-skill acc | AUC (mean acc over rounds 0..R) | wall s |",
        "|---|---|---|---|---|---|",
    ]
    order = sorted(by, key=lambda k: -statistics.mean(r["final"] for r in by[k]))
    for k in order:
        rs = by[k]
        lines.append(
            f"| {k} | {','.join(str(r['seed']) for r in rs)} | {ms([r['final'] for r in rs])} "
            f"| {ms([r['min_acc'] for r in rs])} | {ms([r['auc'] for r in rs])} "
            f"| {statistics.mean(r['wall_s'] for r in rs):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", nargs="+", default=["missing-skill", "uniform", "targeted-synthesis"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--extra", nargs="*", default=[], help="extra key=value overrides for every case")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "default_config.md"))
    parser.add_argument("--jsonl", help="also append each finished case to this JSONL file (survives a crash)")
    parser.add_argument("--summarize", metavar="JSONL", help="print mean ± sd per policy from a JSONL file, and stop")
    args = parser.parse_args()
    if args.summarize:
        print(summarize(args.summarize))
        return
    if args.policies == ["all"]:
        sys.path.insert(0, str(ROOT / "src"))
        from teachgym.registry import BUILTINS

        args.policies = list(BUILTINS["policies"])

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        for policy in args.policies:
            for seed in args.seeds:
                print(f"running {policy} seed {seed} {' '.join(args.extra)} ...", file=sys.stderr, flush=True)
                rows.append(run_case(policy, seed, args.extra, store, f"{tmp}/out"))
                if args.jsonl:
                    with open(args.jsonl, "a") as f:
                        f.write(json.dumps(rows[-1]) + "\n")
    header = ("| policy | overrides | seed | acc/mean round 0 | final acc/mean | gain | mean acc over rounds (AUC) "
              "| weakest at end | examples | wall s | peak RSS MB |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [
        f"| {r['policy']} | {r['extra']} | {r['seed']} | {r['acc0']:.3f} | {r['final']:.3f} | {r['gain']:+.3f} "
        f"| {r['auc']:.3f} | {r['weakest']} | {r['examples']} | {r['wall_s']:.0f} | {r['rss_mb']:.0f} |"
        for r in rows
    ]
    table = "\n".join([header, *lines])
    print(table)
    cpu = os.cpu_count()
    note = (f"\n\nMeasured {time.strftime('%Y-%m-%d')} on {cpu} CPU cores, no GPU; "
            f"`python benchmarks/default_config.py {' '.join(sys.argv[1:])}`.\n")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(table + note + "\n")
    print(f"appended to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
