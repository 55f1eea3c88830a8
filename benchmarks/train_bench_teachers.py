"""Train the `learned` teacher of each bench challenge on its simulated twin (stable-baselines3 PPO).

The `learned` policy acts with a model trained for one env's skills (`policies/learned.py`), so the
bench needs one model per challenge. This script trains it where a teacher developer would: in
`teachgym.gym.TeachEnv` on the challenge's **simulated twin** (the `bench.simulated` student, the
challenge's env, rounds and rows per round), never on the LM. The reward is the challenge's score on
its learnable skills, so the return of an episode is the score. The network sees what every teacher
sees (per-skill accuracy, loss and change, and the budget used), with the skills **shuffled every
episode**: the twin holds the challenge's hidden structure, and in a fixed order the network would
learn it by position (which input is noise, which rule comes first) — knowing what only the oracle is
told. Training seeds start at 100; the bench evaluates on seeds 0-4.

Each model goes to `benchmarks/results/bench/learned/<challenge>.zip`, where `teachgym bench` finds it
(the model's bytes are in every `learned` case's key, so a retrained model reruns its rows). The
table of what was trained, with the command, goes to `benchmarks/results/bench/learned/train.md`.

    python benchmarks/train_bench_teachers.py                          # every challenge
    python benchmarks/train_bench_teachers.py unlearnable --timesteps 20000

Needs `pip install 'teachgym[rl]'`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def score_env(challenge: Any) -> Any:
    """The challenge's twin as a ``TeachEnv`` whose reward sums to the challenge's score."""
    import gymnasium
    import numpy as np

    from teachgym.gym import TeachEnv

    cfg = challenge.config
    twin = challenge.bench.simulated
    env = TeachEnv(env=cfg.env.name, env_kwargs=cfg.env.kwargs, student=twin.name, student_kwargs=twin.kwargs,
                   rounds=cfg.loop.rounds, examples_per_round=cfg.loop.examples_per_round, reward="gain")
    learnable = challenge.learnable
    auc = challenge.bench.score == "auc"

    class ScoreReward(gymnasium.Wrapper):
        """final: the gain of the learnable mean each round; auc: the learnable mean / rounds each round."""

        def reset(self, **kw: Any) -> Any:
            obs, info = self.env.reset(**kw)
            self._last = float(np.mean([info["accuracy"][s] for s in learnable]))
            return obs, info

        def step(self, action: Any) -> Any:
            obs, _, terminated, truncated, info = self.env.step(action)
            now = float(np.mean([info["accuracy"][s] for s in learnable]))
            reward = now / cfg.loop.rounds if auc else now - self._last
            self._last = now
            return obs, reward, terminated, truncated, info

    return ScoreReward(env)


def shuffled(env: Any) -> Any:
    """``env`` showing the skills in a new random order every episode (observation blocks and action alike).

    Without it the network sees each skill at a fixed input position, and the twin's structure (which
    position is noise, which is a prerequisite) is learnable from position alone: the teacher would know
    what only the oracle is told. Shuffled, it must tell the skills apart by how they behave.
    """
    import gymnasium
    import numpy as np

    class Shuffled(gymnasium.Wrapper):
        def reset(self, **kw: Any) -> Any:
            obs, info = self.env.reset(**kw)
            k = len(self.env.unwrapped.skills)
            self.pos = self.env.unwrapped.np_random.permutation(k)  # env skill i shows at pos[i]
            return self.show(obs), info

        def show(self, obs: Any) -> Any:
            k, out = len(self.pos), obs.copy()
            for b in range(3):  # the accuracy, loss and change blocks; the budget fraction stays last
                out[b * k + self.pos] = obs[b * k: (b + 1) * k]
            return out

        def step(self, action: Any) -> Any:
            obs, reward, terminated, truncated, info = self.env.step(np.asarray(action)[self.pos])
            return self.show(obs), reward, terminated, truncated, info

    return Shuffled(env)


def train(challenge: Any, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from teachgym.bench import LEARNED, learned_path
    from teachgym.policies.learned import save_teacher

    torch.set_num_threads(1)  # a small MLP: threads cost more than they give
    make = (lambda: score_env(challenge)) if args.fixed_order else (lambda: shuffled(score_env(challenge)))
    venv = make_vec_env(make, n_envs=args.n_envs, seed=args.seed)
    model = PPO("MlpPolicy", venv, n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=10, gamma=1.0,
                gae_lambda=0.95, learning_rate=args.learning_rate, ent_coef=0.0, seed=args.seed, device="cpu",
                verbose=0, policy_kwargs={"net_arch": [64, 64]})
    start = time.perf_counter()
    first = None
    while model.num_timesteps < args.timesteps:
        model.learn(args.n_steps * args.n_envs * 4, reset_num_timesteps=False)
        ep = [e["r"] for e in model.ep_info_buffer]
        mean = sum(ep) / len(ep) if ep else float("nan")
        first = mean if first is None else first
        print(f"  {challenge.name}: {model.num_timesteps:>7} steps  episode score (last {len(ep)}) {mean:.3f}",
              file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    out = LEARNED / Path(learned_path(challenge)).name  # where `teachgym bench` looks for it
    out.parent.mkdir(parents=True, exist_ok=True)
    path = save_teacher(model, out, score_env(challenge), timesteps=int(model.num_timesteps),
                        seed=args.seed, train_seconds=round(wall, 1), algorithm="PPO", student="simulated twin",
                        reward=f"challenge score ({challenge.bench.score})", shuffled=not args.fixed_order)
    return {"challenge": challenge.name, "steps": int(model.num_timesteps), "first": first, "last": mean,
            "wall": wall, "path": path}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("challenges", nargs="*", help="challenge names (default: all in --dir)")
    parser.add_argument("--dir", default=str(ROOT / "configs" / "bench"))
    parser.add_argument("--timesteps", type=int, default=60_000, help="PPO environment steps (rounds) per challenge")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--n-steps", type=int, default=128, help="rollout length per env between updates")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=100, help="first training seed (the bench evaluates on 0-4)")
    parser.add_argument("--fixed-order", action="store_true",
                        help="show the skills in the env's order every episode: the network can then learn the "
                        "twin's hidden structure by position (a learned oracle, not a fair teacher)")
    args = parser.parse_args()
    from teachgym.bench import LEARNED, load_challenges
    from teachgym.console import quiet_libraries

    quiet_libraries()
    done = [train(ch, args) for ch in load_challenges(args.dir, args.challenges or None)]
    table = LEARNED / "train.md"
    old = {}
    if table.exists():  # keep the rows of challenges not retrained now
        for line in table.read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if line.startswith("| ") and len(cells) == 6 and cells[0] not in ("challenge", "---"):
                old[cells[0]] = line
    for d in done:
        old[d["challenge"]] = (f"| {d['challenge']} | {d['steps']} | {d['first']:.3f} | {d['last']:.3f} | "
                               f"{d['wall']:.0f} | `{' '.join(sys.argv[1:]) or '(all, defaults)'}` |")
    lines = ["## `learned` on the bench: PPO teachers trained on each challenge's simulated twin", "",
             "Episode score = the challenge's score on the twin (mean of the last episodes of the first and of the "
             "last PPO chunk). `python benchmarks/train_bench_teachers.py ARGS`; the models are the `.zip` files "
             "beside this table.", "",
             "| challenge | PPO steps | episode score, start | episode score, end | train s | args |",
             "|---|---:|---:|---:|---:|---|", *[old[k] for k in sorted(old)], ""]
    table.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
