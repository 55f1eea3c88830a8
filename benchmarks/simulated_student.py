"""How fast is the simulated student? Rounds per second at each level of the stack.

- model: `SimulatedStudent.practice` + `measure` (one round: train on a mixture, measure the profile)
- gym (raw): `TeachEnv.step` with the fast path
- gym (make): the same through `gymnasium.make` (with its order-enforcing and checker wrappers)
- loop: one whole `run_experiment` call (8 rounds) with `student.name=simulated`, tracking off (the loop's
  fast path: rows per skill, answers without text; every round's state saved), after a warm-up call
- loop + MLflow: the same, logging to a sqlite store

Prints a markdown table and writes it to benchmarks/results/simulated_student.md.

    python benchmarks/simulated_student.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def rate(fn, n: int) -> float:
    start = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - start)


def main() -> None:
    import gymnasium

    import teachgym.gym  # noqa: F401
    from teachgym.config import load_config
    from teachgym.console import quiet_libraries
    from teachgym.envs.arithmetic import ArithmeticEnv
    from teachgym.gym import TeachEnv
    from teachgym.loop import run_experiment
    from teachgym.students.simulated import SimulatedStudent

    quiet_libraries()
    rows = []
    student = SimulatedStudent(env=ArithmeticEnv(), seed=0)
    counts = np.full(6, 8000 / 6)

    def model(n):
        for i in range(n):
            if i % 8 == 0:
                student.reset(i)
            student.practice(counts)
            student.measure()

    for _ in range(3):
        rows.append(("model: practice + measure", rate(model, 50_000)))

    def gym_loop(env):
        def run(n):
            env.reset(seed=0)
            a = np.zeros(6, dtype=np.float32)
            for _ in range(n):
                _, _, term, _, _ = env.step(a)
                if term:
                    env.reset()
        return run

    raw = TeachEnv(student="simulated")
    made = gymnasium.make("teachgym/Arithmetic-v0", student="simulated")
    rows.append(("gym: TeachEnv.step (raw)", rate(gym_loop(raw), 20_000)))
    rows.append(("gym: gymnasium.make(...).step", rate(gym_loop(made), 20_000)))

    with tempfile.TemporaryDirectory() as tmp:
        warm_up = load_config(ROOT / "configs" / "arithmetic.yaml", [  # imports (datasets, MLflow) are not rounds
            "student.name=simulated", "loop.rounds=1", f"tracking.tracking_uri=sqlite:///{tmp}/warm.db",
            "loop.save_student=false", f"loop.output_dir={tmp}/warm"])
        run_experiment(warm_up)
        for label, tracking in (("loop: run_experiment, no tracking", False), ("loop: run_experiment + MLflow", True)):
            cfg = load_config(ROOT / "configs" / "arithmetic.yaml", [
                "student.name=simulated", "policy.name=uniform", f"tracking.enabled={str(tracking).lower()}",
                f"tracking.tracking_uri=sqlite:///{tmp}/mlflow.db", "loop.save_student=false",
                f"loop.output_dir={tmp}/out"])
            start = time.perf_counter()
            result = run_experiment(cfg)
            rows.append((label, (len(result.rounds) - 1) / (time.perf_counter() - start)))

    table = ["| level | rounds per second | µs per round |", "|---|---|---|"]
    table += [f"| {label} | {r:,.1f} | {1e6 / r:,.0f} |" for label, r in rows]
    text = "\n".join(table)
    note = (f"\n\nOne round = 8,000 examples over the 6 arithmetic skills (configs/arithmetic.yaml). "
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPU cores (shared machine; the model rows "
            "are three repeats). `python benchmarks/simulated_student.py`.\n")
    print(text + note)
    out = ROOT / "benchmarks" / "results" / "simulated_student.md"
    out.write_text(text + note)


if __name__ == "__main__":
    main()
