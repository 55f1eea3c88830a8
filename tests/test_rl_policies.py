"""The RL teachers (learnability, sec, dump) against values computed by hand on short, fixed sequences."""

import dataclasses
import math

import pytest

from teachgym import Skill
from teachgym.checks import make_observation
from teachgym.policies.dump import DUMPPolicy
from teachgym.policies.learnability import LearnabilityPolicy
from teachgym.policies.sec import SECPolicy
from teachgym.types import RolloutStats

ABC = [Skill("a"), Skill("b"), Skill("c")]


def stats(learnability=0.0, abs_adv=0.0, completions=8, p=0.5):
    return RolloutStats(pass_rate=p, learnability=learnability, mean_abs_advantage=abs_adv, zero_variance_share=0.0,
                        completion_length=3.0, groups=completions // 4, completions=completions)


def obs(round, rollouts, accs=(0.0, 0.0, 0.0)):
    return dataclasses.replace(make_observation(ABC, list(accs), round=round), rollouts=rollouts)


def softmax(xs, t):
    e = [math.exp(x / t) for x in xs]
    return [x / sum(e) for x in e]


def test_learnability_by_hand():
    policy = LearnabilityPolicy(floor=0.1)
    # round 1: no rollouts yet -> p from the greedy accuracies: L = 0.5*0.5, 0.9*0.1, 0 -> 0.25, 0.09, 0
    w = policy.act(obs(1, {}, accs=(0.5, 0.9, 1.0))).weights
    assert w == pytest.approx({"a": 0.1 + 0.7 * 0.25 / 0.34, "b": 0.1 + 0.7 * 0.09 / 0.34, "c": 0.1})
    # round 2: rollouts for a and c; b keeps its accuracy-based value; c's 0.2 overrides its accuracy
    w = policy.act(obs(2, {"a": stats(learnability=0.1), "c": stats(learnability=0.2)}, accs=(0.5, 0.9, 1.0))).weights
    total = 0.1 + 0.09 + 0.2
    assert w == pytest.approx({"a": 0.1 + 0.7 * 0.1 / total, "b": 0.1 + 0.7 * 0.09 / total,
                               "c": 0.1 + 0.7 * 0.2 / total})
    # round 3: only b rolled out; a and c keep their last measured learnability
    w = policy.act(obs(3, {"b": stats(learnability=0.05)}, accs=(0.5, 0.9, 1.0))).weights
    total = 0.1 + 0.05 + 0.2
    assert w == pytest.approx({"a": 0.1 + 0.7 * 0.1 / total, "b": 0.1 + 0.7 * 0.05 / total,
                               "c": 0.1 + 0.7 * 0.2 / total})
    # nothing learnable anywhere -> uniform
    assert LearnabilityPolicy(floor=0.0).act(obs(1, {}, accs=(0.0, 1.0, 1.0))).weights == pytest.approx(
        {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    with pytest.raises(ValueError, match="1/K"):
        LearnabilityPolicy(floor=0.5).act(obs(1, {}))


def test_sec_by_hand():
    policy = SECPolicy(alpha=0.5, temperature=1.0)
    assert policy.act(obs(1, {})).weights == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    # TD(0): Q_a = 0.5*0.8 = 0.4, Q_b = 0.5*0.2 = 0.1, Q_c stays 0
    w = policy.act(obs(2, {"a": stats(abs_adv=0.8), "b": stats(abs_adv=0.2)})).weights
    assert list(w.values()) == pytest.approx(softmax([0.4, 0.1, 0.0], 1.0))
    # Q_a = 0.5*0.0 + 0.5*0.4 = 0.2, Q_c = 0.5*0.6 = 0.3, Q_b keeps 0.1
    w = policy.act(obs(3, {"a": stats(abs_adv=0.0), "c": stats(abs_adv=0.6)})).weights
    assert list(w.values()) == pytest.approx(softmax([0.2, 0.1, 0.3], 1.0))
    assert policy.q == pytest.approx({"a": 0.2, "b": 0.1, "c": 0.3})
    # the same observation again is not folded in twice
    policy.act(obs(3, {"a": stats(abs_adv=0.0), "c": stats(abs_adv=0.6)}))
    assert policy.q == pytest.approx({"a": 0.2, "b": 0.1, "c": 0.3})
    # a lower temperature is greedier
    cold = SECPolicy(alpha=0.5, temperature=0.1)
    cold.load_state_dict(policy.state_dict())
    assert list(cold.act(obs(4, {})).weights.values()) == pytest.approx(softmax([0.2, 0.1, 0.3], 0.1))


def test_dump_by_hand():
    policy = DUMPPolicy(window=10, exploration=1.0, temperature=0.1)
    # nothing drawn: N = 0, every bonus sqrt(2 ln 1 / 1) = 0 -> uniform
    assert policy.act(obs(1, {})).weights == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    # a: 8 completions at mean |A| 0.5; b: 4 at 0.9; c none. N = 12
    w = policy.act(obs(2, {"a": stats(abs_adv=0.5, completions=8), "b": stats(abs_adv=0.9, completions=4)})).weights
    bonus = lambda n: math.sqrt(2 * math.log(13) / (n + 1))  # noqa: E731
    scores = [0.5 + bonus(8), 0.9 + bonus(4), 0.0 + bonus(0)]
    assert list(w.values()) == pytest.approx(softmax(scores, 0.1))
    # a again: 8 more at 0.1 -> window 10 = the 8 new at 0.1 + 2 of the old at 0.5 -> 0.18; n_a = 16, N = 20
    w = policy.act(obs(3, {"a": stats(abs_adv=0.1, completions=8)})).weights
    assert policy.window_mean("a") == pytest.approx((8 * 0.1 + 2 * 0.5) / 10)
    bonus = lambda n: math.sqrt(2 * math.log(21) / (n + 1))  # noqa: E731
    scores = [0.18 + bonus(16), 0.9 + bonus(4), bonus(0)]
    assert list(w.values()) == pytest.approx(softmax(scores, 0.1))
    # 12 more at 0.3: the older chunks fall out of the window entirely
    policy.act(obs(4, {"a": stats(abs_adv=0.3, completions=12)}))
    assert policy.window_mean("a") == pytest.approx(0.3)
    assert len(policy.chunks["a"]) == 1 and policy.n["a"] == 28


@pytest.mark.parametrize("make", [lambda: LearnabilityPolicy(), lambda: SECPolicy(), lambda: DUMPPolicy()])
def test_rl_teachers_resume_from_their_state(make):
    import json

    episode = [obs(1, {}), obs(2, {"a": stats(0.2, 0.7, 16)}),
               obs(3, {"b": stats(0.1, 0.4, 8), "c": stats(0.0, 0.0, 8)}), obs(4, {"a": stats(0.24, 0.9, 16)})]
    full = make()
    actions = [full.act(o).weights for o in episode]
    half = make()
    for o in episode[:2]:
        half.act(o)
    restored = make()
    restored.load_state_dict(json.loads(json.dumps(half.state_dict())))  # what --resume saves: JSON
    assert [restored.act(o).weights for o in episode[2:]] == [pytest.approx(a) for a in actions[2:]]


def test_rl_teachers_run_with_an_sft_student():
    # no rollouts ever: sec and dump stay uniform, learnability follows the greedy accuracies
    for policy in (SECPolicy(), DUMPPolicy()):
        for r in (1, 2, 3):
            assert policy.act(obs(r, {}, accs=(0.2, 0.5, 0.9))).weights == pytest.approx(
                {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    w = LearnabilityPolicy(floor=0.0).act(obs(2, {}, accs=(0.2, 0.5, 0.9))).weights
    assert w["b"] > w["a"] > w["c"]
