"""The learned teacher: a PPO model trained in teachgym.gym acts in the real loop exactly as in the gym."""

import numpy as np
import pytest

from teachgym.config import load_config
from teachgym.envs.arithmetic import ArithmeticEnv
from teachgym.gym import action_to_weights, vector_from_observation
from teachgym.loop import run_experiment
from teachgym.policies.learned import LearnedPolicy
from teachgym.protocols import make_observation

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
