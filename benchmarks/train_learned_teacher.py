"""Train the `learned` teacher (stable-baselines3 PPO) against the simulated student, and compare it.

1. PPO learns in `teachgym.gym.TeachEnv` (student `simulated`, the default config's env, rounds and
   examples per round; reward = gain in mean accuracy each round, so the return is final minus
   initial mean accuracy), on training seeds 0, 1, 2, ...
2. The model is saved with what it was trained for (`policies/learned.py:save_teacher`).
3. Every built-in policy, the new one included (`policy.name=learned policy.path=...`), runs the real
   loop (`teachgym.loop.run_experiment`, simulated student) on held-out seeds (default 1000-1004),
   and the return is reported as mean ± 95% interval. Writes `benchmarks/results/learned_teacher.md`.

    python benchmarks/train_learned_teacher.py                       # train (~300k steps) and compare
    python benchmarks/train_learned_teacher.py --timesteps 20000 --out /tmp/t.zip --eval-seeds 1000
    python benchmarks/train_learned_teacher.py --skip-training       # compare the saved model only

Domain randomisation on a fitted simulator (`teachgym calibrate ... --out calibrated.yaml`): train on
the calibrated student with its parameters redrawn every episode around the fit, and compare there:

    python benchmarks/train_learned_teacher.py --student-config calibrated.yaml \
        --randomize difficulty=0.5 half_life=0.5 onset=0.3 gate=0.2 ceiling=0.05 --timesteps 150000 --out dr.zip

(the arguments of `benchmarks/results/learned_teacher_dr.zip`; docs/developing-teachers.md says which of
its steps can be repeated).

Needs `pip install 'teachgym[rl]'`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def train(args: argparse.Namespace, rounds: int, per_round: int) -> None:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from teachgym.gym import TeachEnv
    from teachgym.policies.learned import save_teacher

    torch.set_num_threads(1)  # a small MLP: threads cost more than they give
    kwargs = {"student": "simulated", "rounds": rounds, "examples_per_round": per_round, "reward": args.reward,
              "student_kwargs": args.student_kwargs, "randomize": args.spread}
    venv = make_vec_env(TeachEnv, n_envs=args.n_envs, seed=args.seed, env_kwargs=kwargs)
    model = PPO(
        "MlpPolicy", venv, n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=10, gamma=1.0,
        gae_lambda=0.95, learning_rate=args.learning_rate, ent_coef=0.0, seed=args.seed, device="cpu", verbose=0,
        policy_kwargs={"net_arch": [64, 64]},
    )
    start = time.perf_counter()
    done, chunk = 0, max(args.timesteps // 10, args.n_steps * args.n_envs)
    while done < args.timesteps:
        model.learn(chunk, reset_num_timesteps=False)
        done = model.num_timesteps
        ep = [e["r"] for e in model.ep_info_buffer]
        mean = sum(ep) / len(ep) if ep else float("nan")
        print(f"  {done:>8} steps  mean episode return (last {len(ep)}) {mean:.3f}  "
              f"{done / (time.perf_counter() - start):.0f} steps/s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    path = save_teacher(model, args.out, TeachEnv(**kwargs), timesteps=int(done), seed=args.seed,
                        train_seconds=round(wall, 1), algorithm="PPO", student="simulated",
                        student_kwargs=args.student_kwargs, randomize=args.spread)
    print(f"saved {path} ({done} steps in {wall:.0f} s)", file=sys.stderr)


def compare(args: argparse.Namespace) -> str:
    """Every built-in policy on the held-out seeds, as one sweep (the package's case runner: Ray, or --sequential)."""
    import hashlib

    from teachgym.analysis import format_ci, mean_ci
    from teachgym.console import Display
    from teachgym.registry import BUILTINS
    from teachgym.sweep import plan_sweep, run_sweep

    policies = [p for p in BUILTINS["policies"] if p != "llm-agent"]  # llm-agent needs an LLM of its own
    grid = {"policy": [{"name": p, "path": args.out} if p == "learned" else {"name": p} for p in policies],
            "loop.seed": [str(s) for s in args.eval_seeds]}
    # The model's bytes name the sweep: a retrained model is a new comparison, not a rerun of the old one.
    digest = hashlib.sha1(Path(args.out).read_bytes()).hexdigest()[:8]
    base = args.student_config or ROOT / "configs" / "arithmetic.yaml"
    plan = plan_sweep(base, ["student.name=simulated", "tracking.enabled=false", "loop.save_student=false",
                             f"loop.output_dir={args.work_dir}"], grid=grid, name=f"learned-teacher-{digest}")
    result = run_sweep(plan, sequential=args.sequential, on_event=Display())
    if result.interrupted is not None:
        raise result.interrupted
    if result.failed:
        raise SystemExit("\n".join(f"{r.trial.name} failed: {r.error}" for r in result.failed))
    rows = []
    for policy in policies:
        done = [r.row for r in result.finished if r.trial.policy == policy]
        gains = [r["acc_mean"][-1] - r["acc_mean"][0] for r in done]
        wall = sum(r["wall_s"] for r in done) / len(done)
        print(f"  {policy}: return {sum(gains) / len(gains):.3f} ({wall:.1f} s/run)", file=sys.stderr, flush=True)
        rows.append((policy, mean_ci(gains), mean_ci([r["acc_mean"][-1] for r in done]),
                     mean_ci([r["acc_min"][-1] for r in done]), wall))
    rows.sort(key=lambda r: -r[1][0])
    lines = [
        f"## Learned teacher vs hand-written policies — simulated student"
        f"{' (' + str(args.student_config) + ')' if args.student_config else ''}, held-out seeds {args.eval_seeds}",
        "",
        "Return = final minus initial mean accuracy (the sum of the gym env's `gain` rewards), each policy run "
        f"through the real loop (`{args.student_config or 'configs/arithmetic.yaml'}`, `student.name=simulated`); "
        "mean ± 95% t-interval.",
        "",
        "| policy | return | final acc/mean | weakest-skill acc | s/run |",
        "|---|---|---|---|---|",
        *[f"| {p} | {format_ci(*g)} | {format_ci(*f)} | {format_ci(*w)} | {s:.1f} |" for p, g, f, w, s in rows],
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=300_000, help="PPO environment steps (rounds)")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--n-steps", type=int, default=256, help="rollout length per env between updates")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--reward", default="gain", choices=["gain", "final", "weakest"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "learned_teacher.zip"))
    parser.add_argument("--eval-seeds", nargs="+", type=int, default=[1000, 1001, 1002, 1003, 1004])
    parser.add_argument("--skip-training", action="store_true", help="only compare the model at --out")
    parser.add_argument("--report", default=str(RESULTS / "learned_teacher.md"))
    parser.add_argument("--work-dir", default="outputs", help="where the comparison sweep keeps its trials")
    parser.add_argument("--sequential", action="store_true", help="compare one case at a time here, not on Ray")
    parser.add_argument("--student-config", help="a config whose student is `simulated` (`teachgym calibrate --out`): "
                        "train and compare on that student instead of the default simulated one")
    parser.add_argument("--randomize", nargs="*", default=[], metavar="PARAM=SPREAD",
                        help="domain randomisation: redraw these student parameters every episode, each times "
                        "exp(SPREAD * N(0, 1)) (teachgym.gym.randomize_params)")
    args = parser.parse_args()
    from teachgym.config import load_config
    from teachgym.console import quiet_libraries

    quiet_libraries()
    config = load_config(args.student_config or ROOT / "configs" / "arithmetic.yaml")
    args.student_kwargs = {}  # the default simulated student
    if args.student_config:
        if config.student.name != "simulated":
            raise SystemExit(f"--student-config {args.student_config}: its student is {config.student.name!r}, "
                             "not 'simulated' (write one with `teachgym calibrate ... --out calibrated.yaml`)")
        args.student_kwargs = config.student.kwargs
    try:
        args.spread = {k: float(v) for k, v in (item.split("=", 1) for item in args.randomize)}
    except ValueError:
        raise SystemExit(f"--randomize takes PARAM=SPREAD pairs, e.g. transfer=0.5, not {args.randomize}") from None
    loop = config.loop
    if not args.skip_training:
        print(f"training PPO for {args.timesteps} steps ({loop.rounds} rounds x {loop.examples_per_round} examples "
              "per episode, simulated student)", file=sys.stderr)
        train(args, loop.rounds, loop.examples_per_round)
    print("comparing on held-out seeds (real loop, simulated student)", file=sys.stderr)
    text = compare(args)
    print(text)
    out = Path(args.out).resolve()
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    Path(args.report).write_text(
        text + f"\nModel: `{shown}`; `python benchmarks/train_learned_teacher.py {' '.join(sys.argv[1:])}`.\n")
    print(f"wrote {args.report}", file=sys.stderr)


if __name__ == "__main__":
    main()
