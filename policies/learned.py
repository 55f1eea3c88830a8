"""A teacher learned with reinforcement learning in :mod:`teachgym.gym`, used as an ordinary policy.

Train one with ``python benchmarks/train_learned_teacher.py`` (stable-baselines3 PPO against the
simulated student), then run it in the real loop::

    teachgym run configs/arithmetic.yaml policy.name=learned policy.path=benchmarks/results/learned_teacher.zip

Each round the policy turns the loop's :class:`~teachgym.types.Observation` into exactly the vector
the gym env gave it in training (:func:`teachgym.gym.vector_from_observation`: per-skill accuracy,
loss and change, and the budget fraction used), predicts an action, and returns the mixture the gym
env would have trained on. The model file carries what it was trained for (skills in order,
action encoding), and a mismatch with the loop's env is an error, not a silent reordering.

Needs ``pip install 'teachgym[rl]'`` (stable-baselines3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from teachgym.gym import action_to_weights, vector_from_observation
from teachgym.types import Mixture, Observation

META_KEY = "teachgym_meta"  # attribute saved inside the stable-baselines3 zip


def _sb3() -> Any:
    try:
        import stable_baselines3
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("policy 'learned' needs stable-baselines3: pip install 'teachgym[rl]'") from e
    return stable_baselines3


class LearnedPolicy:
    """Acts with a stable-baselines3 model trained in ``teachgym.gym``.

    Args:
        path: The ``.zip`` written by the model's ``save()`` (``benchmarks/train_learned_teacher.py``).
        algorithm: The stable-baselines3 class that trained it (``PPO``, ``A2C``, ``SAC``, ...).
        deterministic: Use the policy's mean action (True) or sample from it (False, seeded).
        seed: Seeds sampling when ``deterministic`` is False.
        match: ``names``: the env's skills must be the ones it was trained on, by name and order (an error
            otherwise); ``positions``: the skills it is shown, in the order shown, stand for the trained ones by
            position (as many of them) — how the bench runs it under neutral names, in a shuffled order.
    """

    def __init__(self, path: str, algorithm: str = "PPO", deterministic: bool = True, seed: int = 0,
                 match: str = "names") -> None:
        if match not in ("names", "positions"):
            raise ValueError(f"match must be 'names' or 'positions', not {match!r}")
        self.match = match
        sb3 = _sb3()
        if not Path(path).exists():
            raise FileNotFoundError(f"no learned teacher at {path!r} (train one: benchmarks/train_learned_teacher.py)")
        if not hasattr(sb3, algorithm):
            raise ValueError(f"stable-baselines3 has no algorithm {algorithm!r}")
        self.model = getattr(sb3, algorithm).load(path, device="cpu")
        meta = getattr(self.model, META_KEY, None)
        if not isinstance(meta, dict) or "skills" not in meta:
            raise ValueError(f"{path} is not a teachgym teacher: it has no {META_KEY!r} (skills, action encoding)")
        self.meta = meta
        self.path, self.deterministic, self.seed = path, deterministic, seed
        if not deterministic:
            self.model.set_random_seed(seed)

    def act(self, observation: Observation) -> Mixture:
        skills = [s.name for s in observation.skills]
        trained = list(self.meta["skills"])
        if (skills != trained) if self.match == "names" else (len(skills) != len(trained)):
            raise ValueError(
                f"this teacher ({self.path}) was trained on skills {trained}; the env has {skills}"
                + (" (by position: as many skills are needed)" if self.match == "positions" else "")
            )
        action, _ = self.model.predict(vector_from_observation(observation), deterministic=self.deterministic)
        weights = action_to_weights(action, self.meta["action"], self.meta["logit_scale"])
        return Mixture(dict(zip(skills, weights.tolist())))

    def state_dict(self) -> dict[str, Any]:
        # The network is fixed; it is identified by its file, not copied into the experiment state.
        return {"path": str(self.path)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def save_teacher(model: Any, path: str | Path, env: Any, **info: Any) -> Path:
    """Save a stable-baselines3 model trained in a :class:`teachgym.gym.TeachEnv`, with what it was trained for.

    Args:
        model: The trained model (``model.save`` is used; the metadata rides inside the zip).
        path: Output file (``.zip`` is added by stable-baselines3 when missing).
        env: The (unwrapped) ``TeachEnv`` it was trained in: skills, action encoding, rounds, reward.
        **info: Anything else worth keeping with the model (timesteps, seed, returns).

    Returns:
        The path of the written file.
    """
    env = getattr(env, "unwrapped", env)
    setattr(model, META_KEY, {
        "skills": list(env.skills),
        "action": env.action_kind,
        "logit_scale": float(env.logit_scale),
        "env": getattr(env.teach_env, "name", type(env.teach_env).__name__),
        "rounds": env.rounds,
        "examples_per_round": env.examples_per_round,
        "reward": env.reward_kind,
        **info,
    })
    model.save(str(path))
    path = Path(path)
    return path if path.suffix == ".zip" else path.with_name(path.name + ".zip")
