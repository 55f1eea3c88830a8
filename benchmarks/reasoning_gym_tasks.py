"""What the tiny student can learn of each reasoning-gym task, and how fast the package generates rows.

Each task runs alone (levels 0 and 1, ``uniform``, the tiny student of ``configs/reasoning_gym.yaml``,
the same budget for every task) through the one trial runner. Per skill (``task:level``) the table gives
the accuracy at round 0 and at the end, and the **most-common-answer baseline**: the eval accuracy of
always answering the pool's most frequent answer for that skill. A student that only learned the answer
format and the likeliest answer ends near that baseline; one that learned the task ends well above it.
The verdict is ``learns`` when the final accuracy is at least 0.2 above the baseline, ``most-common
answer`` when it is within 0.1 of it (or below), ``nothing`` when both are under 0.05, else ``a little``
-- within this budget: a task the student learns alongside related ones (``configs/reasoning_gym.yaml``)
can show ``nothing`` alone. It also measures rows per second of
the env's generator for each task and level (``generate``, questions checked against the eval set).

    python benchmarks/reasoning_gym_tasks.py [--tasks chain_sum ...] [--rounds 4] [--examples 6000]
    python benchmarks/reasoning_gym_tasks.py --scan     # every task at level 0: usable here or not, and why

``--scan`` builds the env for every task the package registers (level 0, 20 eval and 20 pool rows), runs
``check_env`` on it and measures the generator's rows per second, with a minute per task at most; it
writes ``reasoning_gym_scan.md``: which tasks the env takes, and for the others the reason it gives.

Rows are cached in ``benchmarks/results/reasoning_gym_tasks.jsonl`` under a key of everything that decides
them (the resolved config, a hash of the sources that decide the numbers, package versions, CPU; the commit
and whether the tree was dirty are recorded beside it); a row is reused only when its key matches, else the
case runs again and its row replaces the task's old one. Writes ``reasoning_gym_tasks.md``.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
from teachgym.benchmarking import REASONING_GYM_ROOTS, script_provenance, script_staleness  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CONFIG = ROOT / "configs" / "reasoning_gym.yaml"
#: Short-question, short-answer tasks (a byte-level 0.56M student reads every byte of the question).
TASKS = ["basic_arithmetic", "chain_sum", "spell_backward", "count_bits", "letter_counting", "gcd", "lcm",
         "products", "decimal_chain_sum", "complex_arithmetic", "simple_equations", "calendar_arithmetic"]


def case_config(task: str, args: argparse.Namespace) -> dict[str, Any]:
    """The resolved config of one task's case: the shipped config with one task, levels 0-1, uniform."""
    from teachgym.config import load_config

    cfg = load_config(CONFIG, [
        f"env.tasks=[{task}]", "env.levels=[0, 1]", "env.config={}", "env.checker=score", "policy.name=uniform",
        f"loop.rounds={args.rounds}", f"loop.examples_per_round={args.examples}", "loop.seed=0",
        "tracking.enabled=false", "loop.save_student=false",
    ])
    data = cfg.model_dump(mode="json")
    for key in [k for k in data["policy"] if k != "name"]:  # the shipped policy's options are not uniform's
        data["policy"].pop(key)
    return data


def provenance(config: dict[str, Any]) -> dict[str, Any]:
    """Everything that decides a case's numbers and its hash (the cache key), plus the commit it ran at
    (:func:`teachgym.benchmarking.script_provenance` from :data:`~teachgym.benchmarking.REASONING_GYM_ROOTS`)."""
    return script_provenance(config, ["reasoning-gym"], REASONING_GYM_ROOTS)


def most_common_baseline(env: Any) -> dict[str, float]:
    """Per skill: eval accuracy of always answering the pool's most frequent answer for that skill."""
    pool, ev = env.pool(), env.eval_set()
    common = {s: collections.Counter(c for c, sk in zip(pool["completion"], pool["skills"]) if sk[0] == s)
              .most_common(1)[0][0] for s in {sk[0] for sk in pool["skills"]}}
    out: dict[str, list[bool]] = collections.defaultdict(list)
    for p, sk in zip(ev["prompt"], ev["skills"]):
        out[sk[0]].append(env.verify(p, common[sk[0]]))
    return {s: sum(v) / len(v) for s, v in out.items()}


def generation_rate(env: Any, n: int = 2000) -> dict[str, float]:
    """Rows per second of ``env.generate`` for each skill (distinct questions, none an eval question)."""
    out = {}
    for s in env.skills:
        start = time.perf_counter()
        rows = env.generate(s.name, n, seed=1)
        out[s.name] = len(rows) / (time.perf_counter() - start)
    return out


def run_case(task: str, config: dict[str, Any], work: Path) -> dict[str, Any]:
    from teachgym.config import ComponentConfig, build_component
    from teachgym.runner import run_trial

    env = build_component("envs", "env", ComponentConfig(**config["env"]))
    baseline, rate = most_common_baseline(env), generation_rate(env)
    config = {**config, "loop": {**config["loop"], "output_dir": str(work / task)}}
    row = run_trial(config)
    if row["status"] != "finished":
        raise RuntimeError(f"{task}: {row['status']}: {row.get('error')}")
    return {"task": task, "final_acc": row["final_acc"], "acc_mean": row["acc_mean"], "baseline": baseline,
            "rows_per_s": rate, "wall_s": row["wall_s"], "examples": row["examples"][-1]}


def verdict(final: float, baseline: float) -> str:
    if final < 0.05 and baseline < 0.05:
        return "nothing"
    if final >= baseline + 0.2:
        return "learns"
    if final <= baseline + 0.1:
        return "most-common answer"
    return "a little"


def markdown(rows: list[dict], command: str) -> str:
    env = rows[0]["provenance"]["packages"]
    notice = script_staleness([r["provenance"] for r in rows], ["reasoning-gym"], REASONING_GYM_ROOTS,
                              "python benchmarks/reasoning_gym_tasks.py")
    lines = [
        "# reasoning-gym: what the tiny student learns, task by task",
        "",
        *([notice, ""] if notice else []),
        f"Generated by `{command}` from `reasoning_gym_tasks.jsonl`. Each task alone, levels 0 and 1, "
        f"`uniform`, {rows[0]['examples']:,} training rows ({rows[0]['examples'] // 2:,} per skill), seed 0, "
        f"the student of `configs/reasoning_gym.yaml`; commit {rows[0]['provenance']['commit']}"
        f"{' (dirty tree)' if rows[0]['provenance']['dirty'] else ''}; "
        + ", ".join(f"{k} {v}" for k, v in env.items()) + ".",
        "",
        "Verdict: `learns` (final accuracy at least 0.2 above the most-common-answer baseline), `a little`, "
        "`most-common answer` (within 0.1 of that baseline: the student learned the format and the likeliest "
        "answer), `nothing` (both under 0.05). Generator rows/s: `env.generate` of 2,000 rows, distinct "
        "questions, none an eval question (a level with few distinct questions is slow: draws repeat).",
        "",
        "| skill | final accuracy | most-common-answer baseline | verdict | generator rows/s | task wall time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        for skill, acc in r["final_acc"].items():
            base = r["baseline"].get(skill, 0.0)
            lines.append(f"| `{skill}` | {acc:.2f} | {base:.2f} | {verdict(acc, base)} | "
                         f"{r['rows_per_s'][skill]:,.0f} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def scan(limit_s: int = 60) -> str:
    """Every registered task at level 0 through the env and ``check_env``: usable or not, and why."""
    import signal
    import warnings

    from teachgym.checks import check_env
    from teachgym.envs.reasoning import ReasoningGymEnv, task_names

    class TimeUp(BaseException):  # not an Exception: the env wraps the package's errors, not this one
        pass

    def time_up(*_: Any) -> None:
        raise TimeUp

    warnings.filterwarnings("ignore")
    signal.signal(signal.SIGALRM, time_up)
    rows = []
    for task in task_names():
        signal.alarm(limit_s)
        start = time.perf_counter()
        try:
            env = ReasoningGymEnv([task], levels=[0], eval_per_skill=20, pool_per_skill=20)
            check_env(env, min_eval_per_skill=20)
            rate = generation_rate(env, 500)[env.skills[0].name]
            rows.append((task, "usable", f"{rate:,.0f}", ""))
        except TimeUp:
            rows.append((task, "too slow", "", f"20 eval items took over {limit_s} s"))
        except Exception as e:  # noqa: BLE001 - the reason is the report
            rows.append((task, type(e).__name__, "", str(e).replace("|", "/").replace("\n", " ")[:160]))
        finally:
            signal.alarm(0)
        print(f"{task}: {rows[-1][1]} ({time.perf_counter() - start:.1f} s)", flush=True)
    facts = provenance({"scan": "level 0, eval_per_skill 20, pool_per_skill 20"})
    usable = sum(r[1] == "usable" for r in rows)
    lines = [
        "# reasoning-gym: every task at level 0 through `env.name=reasoning-gym` and `check_env`",
        "",
        f"Generated by `python benchmarks/reasoning_gym_tasks.py --scan`; commit {facts['commit']}"
        f"{' (dirty tree)' if facts['dirty'] else ''}; "
        + ", ".join(f"{k} {v}" for k, v in facts["packages"].items()) + f". {usable} of {len(rows)} usable.",
        "",
        "`CheckError: verify() accepts junk` means the task's own `score_answer` gives full marks to the gold "
        "answer with `9x` appended (a lenient scorer: the env can still run it, but check what it accepts).",
        "",
        "| task | result | generator rows/s (level 0) | why not |",
        "|---|---|---|---|",
        *[f"| `{t}` | {r} | {rate} | {why} |" for t, r, rate, why in rows],
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", default=TASKS)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--examples", type=int, default=6000, help="training rows per round")
    parser.add_argument("--results", type=Path, default=RESULTS / "reasoning_gym_tasks.jsonl")
    parser.add_argument("--scan", action="store_true", help="every task at level 0: usable or not, and why")
    args = parser.parse_args()
    if args.scan:
        text = scan()
        (RESULTS / "reasoning_gym_scan.md").write_text(text)
        print(text)
        return
    cached = [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.exists() else []
    by_key = {r["provenance"]["key"]: r for r in cached}
    by_task = {r["task"]: r for r in cached}  # what the file keeps: one row per task, its newest
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for task in args.tasks:
            facts = provenance(case_config(task, args))
            if facts["key"] in by_key:
                print(f"{task}: cached ({facts['key']})")
                rows.append(by_key[facts["key"]])
                continue
            print(f"{task}: running", flush=True)
            row = {**run_case(task, facts["config"], Path(work)), "provenance": facts}
            rows.append(row)
            by_key[facts["key"]] = by_task[task] = row
            args.results.write_text("".join(json.dumps(r) + "\n" for r in by_task.values()))
    args.results.write_text("".join(json.dumps(r) + "\n" for r in by_task.values()))  # also when all were cached
    command = "python benchmarks/reasoning_gym_tasks.py"
    if args.tasks != TASKS:
        command += " --tasks " + " ".join(args.tasks)
    text = markdown(rows, command)
    (RESULTS / "reasoning_gym_tasks.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
