"""The learned teacher: a PPO model trained in teachgym.gym acts in the real loop exactly as in the gym."""

import numpy as np
import pytest

from teachgym.checks import make_observation
from teachgym.config import load_config
from teachgym.envs.arithmetic import ArithmeticEnv
from teachgym.gym import action_to_weights, vector_from_observation
from teachgym.loop import run_experiment
from teachgym.policies.learned import LearnedPolicy

from conftest import tiny_config

SKILLS = ArithmeticEnv(eval_per_skill=1, pool_per_skill=0).skills


def test_acts_as_the_model_does_in_the_gym(learned_teacher):
    policy = LearnedPolicy(learned_teacher)
    assert policy.meta["skills"] == [s.name for s in SKILLS] and policy.meta["timesteps"] == 64
    obs = make_observation(SKILLS, [0.9, 0.5, 0.1, 0.7, 0.2, 0.0], round=2, rounds_total=4, previous=[0.5] * 6)
    action, _ = policy.model.predict(vector_from_observation(obs), deterministic=True)
    expected = action_to_weights(action, "logits", policy.meta["logit_scale"])
    weights = policy.act(obs).weights
    assert list(weights.values()) == pytest.approx(expected.tolist())
    assert sum(weights.values()) == pytest.approx(1.0)
    # It responds to what it sees (a fixed mixture would be a stub).
    other = policy.act(make_observation(SKILLS, [0.0] * 6, round=1, rounds_total=4))
    assert not np.allclose(list(other.weights.values()), list(weights.values()))


def test_in_the_real_loop_by_name(tmp_path, learned_teacher):
    cfg = tiny_config(tmp_path, rounds=2, save_student=False)
    cfg["policy"] = {"name": "learned", "path": learned_teacher}
    result = run_experiment(load_config(cfg))
    assert [r.examples for r in result.rounds] == [0, 24, 48]
    assert result.rounds[1].action["type"] == "mixture"


def test_clear_errors(tmp_path, learned_teacher):
    with pytest.raises(FileNotFoundError, match="train_learned_teacher"):
        LearnedPolicy(str(tmp_path / "nope.zip"))
    policy = LearnedPolicy(learned_teacher)
    with pytest.raises(ValueError, match="trained on skills"):
        policy.act(make_observation(SKILLS[:3], [0.1, 0.2, 0.3]))
    from stable_baselines3 import PPO

    plain = PPO("MlpPolicy", "Pendulum-v1", n_steps=32, batch_size=32, device="cpu")
    plain.save(str(tmp_path / "plain.zip"))
    with pytest.raises(ValueError, match="not a teachgym teacher"):
        LearnedPolicy(str(tmp_path / "plain.zip"))
    with pytest.raises(ValueError, match="no algorithm"):
        LearnedPolicy(learned_teacher, algorithm="PPOO")


def test_the_training_script_with_domain_randomisation(tmp_path):
    """benchmarks/train_learned_teacher.py's train(): a fitted student, randomised every episode, kept in the file."""
    import argparse
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "train_learned_teacher.py"
    spec = importlib.util.spec_from_file_location("train_learned_teacher", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    fit = {"difficulty": {s.name: 3000.0 for s in SKILLS}, "transfer": 0.1, "half_life": 20_000.0}
    args = argparse.Namespace(
        n_envs=2, seed=0, reward="gain", n_steps=32, batch_size=32, learning_rate=3e-4, timesteps=64,
        out=str(tmp_path / "dr.zip"), student_kwargs=fit, spread={"difficulty": 0.5, "half_life": 0.5})
    script.train(args, rounds=4, per_round=2000)
    policy = LearnedPolicy(str(tmp_path / "dr.zip"))
    assert policy.meta["student_kwargs"] == fit and policy.meta["randomize"] == {"difficulty": 0.5, "half_life": 0.5}
    assert policy.meta["rounds"] == 4 and policy.meta["timesteps"] >= 64
    weights = policy.act(make_observation(SKILLS, [0.2] * 6, round=1, rounds_total=4)).weights
    assert sum(weights.values()) == pytest.approx(1.0)
