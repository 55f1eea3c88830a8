"""The LLM-agent teacher: how its answers parse and validate, and one real run you can read in MLflow.

1. **A random-weight model** (the tiny Llama, saved to a directory, as `backend: local`): `--answers`
   answers to real prompts (arithmetic skills, the three state levels), counted by what the parser and
   validator made of them.
2. **The scripted answers** in `examples/llm_agent/script.json`, through the same parser and validator.
3. **A real run** of `configs/arithmetic.yaml` (the tiny LM student, 8 rounds × 8,000 examples) with
   `policy.name=llm-agent policy.backend=scripted policy.script=examples/llm_agent/script.json`, as a
   `teachgym run` subprocess; the per-round decisions, rationales, retries and accuracy are read back
   from MLflow.

    python benchmarks/llm_agent.py                 # ~3 min on 2 CPU cores
    python benchmarks/llm_agent.py --skip-run      # only 1 and 2

Prints markdown and writes it to benchmarks/results/llm_agent.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "llm_agent" / "script.json"


def _table(counts: Counter, total: int) -> list[str]:
    rows = ["| outcome | answers | share |", "|---|---|---|"]
    for reason, n in counts.most_common():
        rows.append(f"| {reason} | {n} | {n / total:.0%} |")
    return rows


def random_model_rates(tmp: str, answers: int) -> list[str]:
    from teachgym.checks import make_observation
    from teachgym.envs.arithmetic import ArithmeticEnv
    from teachgym.policies.llm_agent import LLMAgentPolicy
    from teachgym.state import restrict
    from teachgym.students.hf import HFStudent

    path = f"{tmp}/random_lm"
    HFStudent(seed=0, tiny={"max_position_embeddings": 4096}).save(path)  # the default tiny size, random weights
    policy = LLMAgentPolicy(backend="local", model=path, retries=0, temperature=1.0, max_new_tokens=96, seed=0)
    skills = list(ArithmeticEnv(eval_per_skill=1, pool_per_skill=0).skills)
    counts: Counter[str] = Counter()
    start = time.perf_counter()
    for i in range(answers):
        obs = make_observation(skills, [((i * 7 + k * 3) % 10) / 10 for k in range(len(skills))], round=1 + i % 8)
        state = ("open-ended", "skill-list", "skill-tree")[i % 3]
        policy.act(restrict(obs, state, None if state != "skill-tree" else {}))
        (ans,) = policy.explain()["details"]["llm_agent"]["answers"]
        counts["used" if ans["ok"] else ans["reason"]] += 1
    secs = (time.perf_counter() - start) / answers
    return [*_table(counts, answers), "", f"{answers} answers, {secs:.2f} s each (96 new tokens at most, CPU)."]


def script_rates() -> list[str]:
    from teachgym.envs.arithmetic import ArithmeticEnv
    from teachgym.policies.llm_agent import AnswerError, parse_answer

    skills = list(ArithmeticEnv(eval_per_skill=1, pool_per_skill=0).skills)
    counts: Counter[str] = Counter()
    script = json.loads(SCRIPT.read_text())
    for text in script:
        try:
            parse_answer(text, skills)
            counts["used"] += 1
        except AnswerError as e:
            counts[e.reason] += 1
    return _table(counts, len(script))


def real_run(tmp: str) -> list[str]:
    import mlflow

    uri = f"sqlite:///{tmp}/mlflow.db"
    cmd = [sys.executable, "-m", "teachgym.cli", "run", str(ROOT / "configs" / "arithmetic.yaml"),
           "policy.name=llm-agent", "policy.backend=scripted", f"policy.script={SCRIPT}",
           f"tracking.tracking_uri={uri}", f"loop.output_dir={tmp}/out"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("teachgym/arithmetic").experiment_id
    (parent,) = client.search_runs([exp], "tags.mlflow.runName = 'llm-agent-s0'")
    pid = parent.info.run_id
    acc = {m.step: m.value for m in client.get_metric_history(pid, "acc/mean")}
    weakest = {m.step: m.value for m in client.get_metric_history(pid, "acc/min")}
    rows = ["| round | decision | retries | fallback | rationale | acc/mean after | acc/min after |",
            "|---|---|---|---|---|---|---|",
            f"| 0 | (untrained) | | | | {acc[0]:.3f} | {weakest[0]:.3f} |"]
    rejected: list[str] = []
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{pid}'", order_by=["attributes.start_time ASC"])
    for run in children:
        r = int(run.data.tags["teachgym.round"])
        if r == 0:
            continue
        decision = json.loads(Path(client.download_artifacts(run.info.run_id, "decision.json", tmp)).read_text())
        agent = decision["teacher"]["llm_agent"]
        action = decision["action"]
        if action["type"] == "mixture":
            what = "mixture " + ", ".join(f"{k} {v:.2f}" for k, v in action["weights"].items() if v)
        else:
            what = "requests " + ", ".join(f"{q['skill']}×{q['n']} L{q['level']}" for q in action["requests"])
        rows.append(f"| {r} | {what} | {agent['retries']} | {'yes' if agent['fallback'] else 'no'} | "
                    f"{agent['rationale']} | {acc[r]:.3f} | {weakest[r]:.3f} |")
        rejected += [f"round {r}: {a['reason']}: {a['error']}" for a in agent["answers"] if not a["ok"]]
    rows += ["", f"Whole command: {wall:.0f} s. Rejected answers (each sent back with the error; the next answer "
             f"was used): {'; '.join(rejected) or 'none'}."]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=20, help="answers asked of the random-weight model")
    parser.add_argument("--skip-run", action="store_true", help="skip the real run of configs/arithmetic.yaml")
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    with tempfile.TemporaryDirectory() as tmp:
        parts = [
            "# The LLM-agent teacher", "",
            f"Generated by `python benchmarks/llm_agent.py` on {os.cpu_count()} CPU cores.",
            "", "## 1. A random-weight local model: what its answers became", "",
            *random_model_rates(tmp, args.answers), "",
            "## 2. The scripted answers (`examples/llm_agent/script.json`)", "", *script_rates(), "",
        ]
        if not args.skip_run:
            parts += ["## 3. `configs/arithmetic.yaml` with the scripted agent (tiny LM student, seed 0)", "",
                      *real_run(tmp), ""]
    text = "\n".join(parts)
    print(text)
    (ROOT / "benchmarks" / "results" / "llm_agent.md").write_text(text)


if __name__ == "__main__":
    main()
