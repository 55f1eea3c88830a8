"""teachgym.gym: the Gymnasium checker, episodes, rewards, actions, and the same class with the LM student."""

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import teachgym.gym  # noqa: F401  (registers the ids)
from teachgym.checks import make_observation
from teachgym.envs.arithmetic import ArithmeticEnv
from teachgym.gym import LOSS_CAP, TeachEnv, action_to_weights, randomize_params, vector_from_observation

from conftest import TINY

SMALL = {"eval_per_skill": 30, "pool_per_skill": 60}


def test_gymnasium_env_checker_passes_without_warnings():
    env = gymnasium.make("teachgym/Arithmetic-v0", student="simulated", env_kwargs=SMALL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught if "gymnasium" in str(w.filename)] == []


@pytest.mark.parametrize("kind", ["logits", "weights"])
def test_checker_passes_for_both_action_encodings_and_rewards(kind):
    for reward in ("gain", "final", "weakest"):
        env = TeachEnv(student="simulated", env_kwargs=SMALL, action=kind, reward=reward)
        check_env(env, skip_render_check=True)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        obs, reward_value, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and np.isfinite(reward_value)


def test_an_episode_is_an_experiment():
    env = gymnasium.make("teachgym/Arithmetic-v0", student="simulated", rounds=5, examples_per_round=4000)
    obs, info = env.reset(seed=0)
    prev = obs
    k = 6
    assert env.observation_space.shape == (3 * k + 1,) and env.action_space.shape == (k,)
    assert obs[-1] == 0.0 and info["mean_accuracy"] == 0.0
    rewards = []
    for r in range(1, 6):
        obs, reward, terminated, truncated, info = env.step(np.zeros(k, dtype=np.float32))
        rewards.append(reward)
        assert obs[-1] == pytest.approx(r / 5) and terminated == (r == 5) and not truncated
        assert info["mixture"] == pytest.approx({s: 1 / 6 for s in info["accuracy"]})
        assert obs[:k] == pytest.approx(list(info["accuracy"].values()))
        assert obs[2 * k:3 * k] == pytest.approx(obs[:k] - prev[:k], abs=1e-6)  # change since last round
        prev = obs
    # gain rewards telescope: the return is final minus initial mean accuracy
    assert sum(rewards) == pytest.approx(info["mean_accuracy"])
    assert info["mean_accuracy"] > 0.15  # 20,000 examples, uniform
    with pytest.raises(RuntimeError, match="episode is over"):
        env.unwrapped.step(np.zeros(k))


def test_reset_seed_reproduces_an_episode_and_other_seeds_differ():
    env = TeachEnv(student="simulated")
    actions = np.random.default_rng(0).uniform(-1, 1, (8, 6)).astype(np.float32)

    def episode(seed):
        out = [env.reset(seed=seed)[0]]
        out += [env.step(a)[0] for a in actions]
        return np.array(out)

    assert np.array_equal(episode(3), episode(3))
    assert not np.array_equal(episode(3), episode(4))


def test_randomize_params_draws_around_the_fit_and_keeps_the_bounds():
    params = {"difficulty": {"a": 1000.0, "b": 4000.0}, "transfer": 0.9, "gate": [0.2, 0.3], "ceiling": 0.95,
              "onset": 0.0, "half_life": 50_000.0, "substeps": 4}
    rng = np.random.default_rng(0)
    draws = [randomize_params(params, {"difficulty": 0.5, "transfer": 1.0, "gate": 1.0, "ceiling": 1.0,
                                       "onset": 1.0}, rng) for _ in range(400)]
    ratio = np.log([d["difficulty"]["a"] / 1000.0 for d in draws])
    assert abs(ratio.mean()) < 0.1 and 0.4 < ratio.std() < 0.6  # log-normal with the given spread
    a = np.array([d["difficulty"]["a"] for d in draws])
    b = np.array([d["difficulty"]["b"] for d in draws])
    assert abs(np.corrcoef(np.log(a), np.log(b))[0, 1]) < 0.2  # one factor per skill, not one shared
    assert all(0 <= d["transfer"] <= 1 and 0 < d["ceiling"] <= 1 for d in draws)
    assert any(d["transfer"] == 1.0 for d in draws)  # clipped, not rejected
    assert all(0 <= d["gate"][0] < d["gate"][1] <= 1 for d in draws)
    assert all(d["onset"] == 0.0 and d["half_life"] == 50_000.0 and d["substeps"] == 4 for d in draws)
    assert params["transfer"] == 0.9  # the fit itself is not touched
    with pytest.raises(ValueError, match="does not set 'forgetting'"):
        randomize_params(params, {"forgetting": 0.5}, rng)
    with pytest.raises(ValueError, match="spread must be >= 0"):
        randomize_params(params, {"transfer": -1.0}, rng)


def test_domain_randomisation_gives_every_episode_another_student():
    fit = {"difficulty": {s.name: 4000.0 for s in ArithmeticEnv.ALL_SKILLS}, "transfer": 0.1}
    plain = TeachEnv(student="simulated", student_kwargs=fit, rounds=3, examples_per_round=3000)
    dr = TeachEnv(student="simulated", student_kwargs=fit, rounds=3, examples_per_round=3000,
                  randomize={"difficulty": 0.7})
    action = np.zeros(6, dtype=np.float32)

    def episode(env, seed):
        env.reset(seed=seed)
        difficulty = env.student.difficulty.copy()
        return difficulty, [env.step(action)[4]["mean_accuracy"] for _ in range(3)]

    assert all(np.array_equal(episode(plain, s)[0], np.full(6, 4000.0)) for s in range(3))
    drawn = [episode(dr, s)[0] for s in range(3)]
    assert len({tuple(d) for d in drawn}) == 3 and all(len(set(d)) == 6 for d in drawn)
    assert all(0.1 < np.exp(np.log(d / 4000.0).mean()) < 10 for d in drawn)
    assert episode(dr, 7)[1] == episode(dr, 7)[1]  # reset(seed) still reproduces the episode
    with pytest.raises(ValueError, match="randomize.difficulty"):
        TeachEnv(student="simulated", randomize={"difficulty": 0.5})  # nothing to randomise around


def test_reward_options():
    actions = np.random.default_rng(1).uniform(-1, 1, (4, 6))

    def rewards(kind):
        env = TeachEnv(student="simulated", rounds=4, reward=kind)
        env.reset(seed=0)
        steps = [env.step(a) for a in actions]
        return [s[1] for s in steps], steps[-1][4]

    final, info = rewards("final")
    assert final[:3] == [0.0, 0.0, 0.0] and final[3] == pytest.approx(info["mean_accuracy"])
    weakest, info = rewards("weakest")
    assert sum(weakest) == pytest.approx(min(info["accuracy"].values()))
    with pytest.raises(ValueError, match="reward must be"):
        TeachEnv(reward="best")


def test_action_encodings_by_hand():
    w = action_to_weights(np.array([1.0, 0.0, -1.0]), "logits", 3.0)
    e = np.exp([3.0, 0.0, -3.0])
    assert w == pytest.approx(e / e.sum())
    assert action_to_weights(np.array([5.0, -5.0]), "logits", 1.0) == pytest.approx(
        action_to_weights(np.array([1.0, -1.0]), "logits", 1.0))  # clipped to the Box
    assert action_to_weights(np.array([0.0, 0.0, 0.0]), "weights", 3.0) == pytest.approx([1 / 3] * 3)
    assert action_to_weights(np.array([0.2, 0.6, 0.0]), "weights", 3.0) == pytest.approx([0.25, 0.75, 0.0])
    with pytest.raises(ValueError, match="non-finite"):
        action_to_weights(np.array([np.nan, 0.0]), "logits", 3.0)


def test_vector_from_a_loop_observation_by_hand():
    skills = ArithmeticEnv(eval_per_skill=1, pool_per_skill=0).skills[:3]
    obs = make_observation(skills, [0.5, 0.2, 0.0], losses=[1.0, 50.0, float("nan")], round=3, rounds_total=4,
                           previous=[0.1, 0.2, 0.3])
    v = vector_from_observation(obs)
    budget = obs.budget_used / (obs.budget_used + obs.budget_left)
    assert v.dtype == np.float32
    assert v.tolist() == pytest.approx([0.5, 0.2, 0.0, 1.0, LOSS_CAP, LOSS_CAP, 0.4, 0.0, -0.3, budget])
    assert budget == pytest.approx(2 / 4)  # rounds 1 and 2 of 4 spent: the gym env's fraction at its round 3


def test_the_same_class_with_the_lm_student():
    env = TeachEnv(
        student="hf", student_kwargs={"model": "tiny", "tiny": TINY, "batch_size": 8, "learning_rate": 3e-3},
        env_kwargs={"eval_per_skill": 4, "pool_per_skill": 20}, rounds=2, examples_per_round=16,
    )
    assert not env.fast
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, _, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and not terminated
    assert 0.0 < obs[6] < LOSS_CAP  # a real teacher-forced loss
    assert info["examples"] == 16


@pytest.mark.slow
def test_gymnasium_env_checker_with_the_lm_student():
    env = TeachEnv(
        student="hf", student_kwargs={"model": "tiny", "tiny": TINY, "batch_size": 8},
        env_kwargs={"eval_per_skill": 4, "pool_per_skill": 20}, rounds=3, examples_per_round=16,
    )
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["mean_accuracy"] >= 0.0
