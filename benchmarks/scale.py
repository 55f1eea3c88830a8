"""Performance at scale: big pools, the loop's own cost, the simulated student's rate, a big eval.

Each figure is printed next to its goal (issue 14):

* **pools** — a parquet file of ``sNNNNN: a+b=`` rows with one skill label each (made once, cached
  under the work dir). ``DatasetEnv`` ready (load, eval split, pool, the loop's set of eval prompts),
  one ``Mixture`` round materialised (Dirichlet weights over every skill; mean of 3 rounds after a
  first one that is timed on its own), and the process's peak RSS. Each size runs in its own process.
* **loop** — the default LM config (``configs/arithmetic.yaml``), 3 rounds, with and without MLflow:
  a round's wall time (between two ``on_round`` calls, so logging, plots and the round's saved state
  are in it) minus the time inside the student's ``train``, ``generate`` and ``loss``.
* **simulated** — the same config with ``student.name=simulated`` through ``run_experiment``:
  rounds per second, with and without MLflow (a sqlite store): after a 2-round warm-up (imports),
  whole calls of 100 and of 500 rounds, and the steady rate ``400 / (t500 - t100)``, which cancels what
  a call costs once (building the env, the last plots) but keeps every round's logging, however late
  it is written.
* **eval** — ``evaluate`` of the tiny LM (untrained, built from its config) on 10,000 eval items
  over 100 skills: seconds per 1,000 items, split into generate, loss and the rest.

Usage::

    python benchmarks/scale.py                      # everything but the 10M-row pool
    python benchmarks/scale.py --parts pools --big  # the pools, 10M rows / 10,000 skills included
    python benchmarks/scale.py --label after        # writes benchmarks/results/scale_after.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from teachgym.benchmarking import git_commit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

POOLS = [  # (rows, skills, rows per round)
    (100_000, 100, 10_000),
    (1_000_000, 1_000, 100_000),
]
BIG_POOL = (10_000_000, 10_000, 100_000)


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_pool_file(rows: int, skills: int, work: Path) -> Path:
    """``rows`` rows ``{prompt: "sNNNNN: a+b=", completion: "a+b", skills: "sNNNNN"}``, round-robin over skills."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = work / f"pool-{rows}-{skills}.parquet"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    writer = None
    chunk = 1_000_000
    for start in range(0, rows, chunk):
        i = np.arange(start, min(rows, start + chunk))
        k = i % skills
        a, b = rng.integers(0, 1000, len(i)), rng.integers(0, 1000, len(i))
        names = pc.binary_join_element_wise("s", pc.utf8_lpad(pa.array(k).cast(pa.string()), 5, "0"), "")
        prompt = pc.binary_join_element_wise(names, ": ", pa.array(a).cast(pa.string()), "+",
                                             pa.array(b).cast(pa.string()), "=", "")
        table = pa.table({"prompt": prompt, "completion": pa.array(a + b).cast(pa.string()), "skills": names})
        writer = writer or pq.ParquetWriter(path.with_suffix(".tmp"), table.schema)
        writer.write_table(table)
    writer.close()
    path.with_suffix(".tmp").rename(path)
    return path


def pool_case(rows: int, skills: int, per_round: int, work: Path) -> dict:
    """One pool size, measured in this process (run it in a fresh one for a clean peak RSS)."""
    import numpy as np

    from teachgym.engine import materialize
    from teachgym.envs.dataset import DatasetEnv
    from teachgym.types import Mixture

    path = make_pool_file(rows, skills, work)
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    env = DatasetEnv(str(path), eval_per_skill=50, seed=1234)
    eval_prompts = set(env.eval_set()["prompt"])
    pool = env.pool()
    ready = time.perf_counter() - start
    names = [s.name for s in env.skills]
    rounds = []
    for r in range(4):
        w = np.random.default_rng(r).dirichlet(np.ones(len(names)))
        t = time.perf_counter()
        data, report = materialize(Mixture(dict(zip(names, w.tolist()))), env, per_round, r, eval_prompts)
        rounds.append(time.perf_counter() - t)
        assert len(data) == per_round
    return {"rows": rows, "skills": skills, "per_round": per_round, "pool_rows": len(pool),
            "eval_rows": len(env.eval_set()), "ready_s": ready, "first_round_s": rounds[0],
            "round_s": sum(rounds[1:]) / 3, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss_before}


def run_pools(work: Path, big: bool) -> list[dict]:
    out = []
    for rows, skills, per_round in POOLS + ([BIG_POOL] if big else []):
        make_pool_file(rows, skills, work)  # outside the measured process
        proc = subprocess.run(
            [sys.executable, __file__, "--pool-case", f"{rows},{skills},{per_round}", "--work-dir", str(work)],
            capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            out.append({"rows": rows, "skills": skills, "per_round": per_round, "error": proc.stderr[-300:]})
            continue
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  pool {rows:,} rows / {skills:,} skills: {out[-1]}", flush=True)
    return out


def timed_student_methods() -> dict[str, float]:
    """Wrap the students' train/generate/loss to add up the time spent inside them."""
    from teachgym.students.hf import HFStudent

    spent = {"student": 0.0}
    for name in ("train", "generate", "loss"):
        original = getattr(HFStudent, name)

        def timed(self, *args, __original=original, **kwargs):
            t = time.perf_counter()
            try:
                return __original(self, *args, **kwargs)
            finally:
                spent["student"] += time.perf_counter() - t

        setattr(HFStudent, name, timed)
    return spent


def run_loop(work: Path, rounds: int = 3) -> list[dict]:
    from teachgym.config import load_config
    from teachgym.console import quiet_libraries
    from teachgym.loop import run_experiment

    quiet_libraries()
    spent = timed_student_methods()
    out = []
    for tracking in (False, True):
        cfg = load_config(ROOT / "configs" / "arithmetic.yaml", [
            f"loop.rounds={rounds}", f"tracking.enabled={str(tracking).lower()}",
            f"tracking.tracking_uri=sqlite:///{work}/loop-mlflow.db", f"loop.output_dir={work}/loop-out"])
        marks: list[tuple[float, float]] = []

        def on_round(record, total, marks=marks):
            marks.append((time.perf_counter(), spent["student"]))

        start = time.perf_counter()
        run_experiment(cfg, on_round=on_round)
        total = time.perf_counter() - start
        per = [(t1 - t0, s1 - s0) for (t0, s0), (t1, s1) in zip(marks, marks[1:])]
        wall = sum(p[0] for p in per) / len(per)
        student = sum(p[1] for p in per) / len(per)
        out.append({"tracking": tracking, "round_s": wall, "student_s": student, "overhead_s": wall - student,
                    "overhead_pct": 100 * (wall - student) / wall,
                    "after_last_round_s": total - (marks[-1][0] - start)})
        print(f"  loop tracking={tracking}: {out[-1]}", flush=True)
    return out


def run_simulated(work: Path, short: int = 100, long: int = 500) -> list[dict]:
    """Rounds per second of the whole ``run_experiment`` call, setup and the last writes included.

    Two runs, ``short`` and ``long`` rounds; the steady rate is ``(long - short) / (time_long - time_short)``,
    which cancels what a run costs once (imports, building the env, the final plots).
    """
    from teachgym.config import load_config
    from teachgym.console import quiet_libraries
    from teachgym.loop import run_experiment

    quiet_libraries()
    out = []
    for tracking in (False, True):
        times = {}
        for rounds in (2, short, long):  # the first run imports and warms up what every later one reuses
            cfg = load_config(ROOT / "configs" / "arithmetic.yaml", [
                "student.name=simulated", "policy.name=missing-skill", f"loop.rounds={rounds}",
                f"tracking.enabled={str(tracking).lower()}", "loop.save_student=false",
                f"tracking.tracking_uri=sqlite:///{work}/sim-mlflow.db", f"loop.output_dir={work}/sim-out"])
            start = time.perf_counter()
            run_experiment(cfg)
            times[rounds] = time.perf_counter() - start
        out.append({"tracking": tracking, "rounds": long, "rounds_per_s": (long - short) / (times[long] - times[short]),
                    "whole_call_s": times[long], "whole_call_rounds_per_s": long / times[long]})
        print(f"  simulated tracking={tracking}: {out[-1]}", flush=True)
    return out


def run_eval(work: Path, items: int = 10_000, skills: int = 100) -> dict:
    import torch

    from teachgym.envs.dataset import DatasetEnv
    from teachgym.evaluation import evaluate
    from teachgym.students.hf import HFStudent

    torch.manual_seed(0)
    per_skill = items // skills
    path = make_pool_file(skills * (per_skill + 20), skills, work)
    env = DatasetEnv(str(path), eval_per_skill=per_skill, seed=1234)
    assert len(env.eval_set()) == items, len(env.eval_set())
    student = HFStudent(model="tiny", seed=0)
    spent = {"generate": 0.0, "loss": 0.0}
    for name in spent:
        original = getattr(student, name)

        def timed(*args, __original=original, __name=name, **kwargs):
            t = time.perf_counter()
            try:
                return __original(*args, **kwargs)
            finally:
                spent[__name] += time.perf_counter() - t

        setattr(student, name, timed)
    evaluate(student, env, None, 16, 256)  # warm-up (allocations, kernels)
    spent.update(generate=0.0, loss=0.0)
    start = time.perf_counter()
    evaluate(student, env, None, 16, 256)
    total = time.perf_counter() - start
    rest = total - spent["generate"] - spent["loss"]
    out = {"items": items, "skills": skills, "total_s": total, "generate_s": spent["generate"],
           "loss_s": spent["loss"], "rest_s": rest, "ms_per_item": 1000 * total / items,
           "generate_ms_per_item": 1000 * spent["generate"] / items}
    print(f"  eval: {out}", flush=True)
    return out


def render(results: dict, label: str) -> str:
    lines = [f"## {label}", ""]
    if "pools" in results:
        lines += ["| pool | rows per round | env ready | goal | a round | goal | first round | peak RSS | goal |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in results["pools"]:
            if "error" in p:
                lines.append(f"| {p['rows']:,} rows / {p['skills']:,} skills | {p['per_round']:,} | failed: "
                             f"{p['error'][-120:]!r} | | | | | | |")
                continue
            lines.append(
                f"| {p['rows']:,} rows / {p['skills']:,} skills | {p['per_round']:,} | {p['ready_s']:.2f} s | "
                f"{'≤ 10 s' if p['rows'] == 1_000_000 else '–'} | {p['round_s']:.3f} s | "
                f"{'≤ 1 s' if p['rows'] == 1_000_000 else '–'} | {p['first_round_s']:.3f} s | "
                f"{p['peak_rss_mb']:,.0f} MB | {'≤ 2 GB' if p['rows'] == 1_000_000 else '–'} |")
        lines.append("")
    if "loop" in results:
        lines += ["| default LM round | round | student (train + generate + loss) | the loop's own cost | goal |",
                  "|---|---|---|---|---|"]
        for r in results["loop"]:
            lines.append(f"| {'with MLflow' if r['tracking'] else 'no tracking'} | {r['round_s']:.2f} s | "
                         f"{r['student_s']:.2f} s | {r['overhead_s']:.3f} s = {r['overhead_pct']:.1f} % | ≤ 5 % |")
        lines.append("")
    if "simulated" in results:
        lines += ["| simulated student through run_experiment | rounds/s (steady) | goal | one whole call |",
                  "|---|---|---|---|"]
        for r in results["simulated"]:
            goal = "≥ 20" if r["tracking"] else "≥ 100"
            lines.append(f"| {'with MLflow' if r['tracking'] else 'no tracking'}, {r['rounds']} rounds | "
                         f"{r['rounds_per_s']:.1f} | {goal} | {r['whole_call_s']:.1f} s "
                         f"({r['whole_call_rounds_per_s']:.1f} rounds/s) |")
        lines.append("")
    if "eval" in results:
        e = results["eval"]
        lines += ["| eval, tiny LM | items | total | generate | loss | the rest | per 1,000 items |",
                  "|---|---|---|---|---|---|---|",
                  f"| {e['skills']} skills | {e['items']:,} | {e['total_s']:.1f} s | {e['generate_s']:.1f} s | "
                  f"{e['loss_s']:.1f} s | {e['rest_s']:.2f} s | {e['ms_per_item']:.2f} s |", ""]
    lines.append(f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} CPU cores "
                 f"(git {git_commit()}). `python benchmarks/scale.py`.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="pools,loop,simulated,eval")
    parser.add_argument("--big", action="store_true", help="also the 10M-row / 10,000-skill pool")
    parser.add_argument("--label", default="after", help="results go to benchmarks/results/scale_<label>.md/json")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "teachgym-scale"))
    parser.add_argument("--pool-case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if args.pool_case:
        rows, skills, per_round = (int(x) for x in args.pool_case.split(","))
        print(json.dumps(pool_case(rows, skills, per_round, work)))
        return
    parts = args.parts.split(",")
    results: dict = {}
    for part in parts:
        print(f"{part} ...", flush=True)
        with tempfile.TemporaryDirectory(dir=work) as tmp:  # a fresh store and output folder for each part
            runners = {"pools": lambda: run_pools(work, args.big), "loop": lambda: run_loop(Path(tmp)),
                       "simulated": lambda: run_simulated(Path(tmp)), "eval": lambda: run_eval(work)}
            results[part] = _in(tmp, runners[part])
    text = render(results, args.label)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"scale_{args.label}.json").write_text(json.dumps(results, indent=1))
    (RESULTS / f"scale_{args.label}.md").write_text(text)


def _in(directory: str, fn):
    """Run ``fn`` with ``directory`` as the working directory (mlflow.db, outputs)."""
    old = os.getcwd()
    os.chdir(directory)
    try:
        return fn()
    finally:
        os.chdir(old)


if __name__ == "__main__":
    main()
