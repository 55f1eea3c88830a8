"""Each catalogue policy's update rule against values computed by hand on short, fixed sequences."""

import math

import numpy as np
import pytest

from teachgym import HistoryEntry, Skill
from teachgym.checks import make_observation
from teachgym.policies.exp3 import Exp3Policy
from teachgym.policies.learning_progress import LearningProgressPolicy
from teachgym.policies.random import RandomPolicy
from teachgym.policies.skill_it import SkillItPolicy
from teachgym.policies.tscl import TSCLPolicy, slope


def episode(skills, accs, losses=None):
    """Observations for rounds 1..len(accs) as the loop builds them (history ends with the profile)."""
    out, history = [], []
    for r, acc in enumerate(accs, start=1):
        o = make_observation(skills, acc, round=r, rounds_total=len(accs), losses=losses[r - 1] if losses else None)
        history.append(HistoryEntry(r - 1, o.profile, None))
        out.append(make_observation(skills, acc, round=r, rounds_total=len(accs),
                                    losses=losses[r - 1] if losses else None, history=tuple(history)))
    return out


AB = [Skill("a"), Skill("b", prerequisites=("a",))]
ABC = [Skill("a"), Skill("b"), Skill("c")]


def test_random_is_a_seeded_dirichlet():
    obs = episode(ABC, [[0, 0, 0]] * 3)
    policy = RandomPolicy(alpha=0.5, seed=4)
    ref = np.random.Generator(np.random.PCG64(4))
    for o in obs:
        w = policy.act(o).weights
        assert list(w.values()) == pytest.approx(list(ref.dirichlet([0.5] * 3)))
    assert RandomPolicy(seed=5).act(obs[0]).weights != RandomPolicy(seed=4).act(obs[0]).weights


def test_skill_it_by_hand():
    # eval losses of a, b after rounds 0, 1, 2; the observation is for round 3
    losses = [[2.0, 4.0], [1.0, 3.0], [0.5, 2.0]]
    obs = episode(AB, [[0, 0]] * 3, losses)[-1]
    # window 2, normalised by round 0: S_a = 1/2 + 0.5/2 = 0.75, S_b = 3/4 + 2/4 = 1.25
    # env graph (a is a prerequisite of b): A = [[1, 1], [0, 1]] -> scores eta*(0.75+1.25)=1.0, eta*1.25=0.625
    w = SkillItPolicy(eta=0.5, window=2, graph="env").act(obs).weights
    z = math.exp(1.0) + math.exp(0.625)
    assert w == pytest.approx({"a": math.exp(1.0) / z, "b": math.exp(0.625) / z})
    # identity graph: scores 0.375 and 0.625
    w = SkillItPolicy(eta=0.5, window=2, graph="identity").act(obs).weights
    z = math.exp(0.375) + math.exp(0.625)
    assert w == pytest.approx({"a": math.exp(0.375) / z, "b": math.exp(0.625) / z})
    # target mask on b only: S_a = 0, scores 0.625 and 0.625 -> equal
    assert SkillItPolicy(eta=0.5, window=2, targets=["b"]).act(obs).weights == pytest.approx({"a": 0.5, "b": 0.5})
    # unnormalised, window 3, prior 3:1: S_a = 3.5, S_b = 9 -> scores 0.5*12.5, 0.5*9
    w = SkillItPolicy(eta=0.5, window=3, normalize=False, prior={"a": 3, "b": 1}).act(obs).weights
    z = 3 * math.exp(6.25) + math.exp(4.5)
    assert w == pytest.approx({"a": 3 * math.exp(6.25) / z, "b": math.exp(4.5) / z})


def test_skill_it_graph_file(tmp_path):
    import json

    path = tmp_path / "graph.json"
    path.write_text(json.dumps({"skills": ["b", "a"], "matrix": [[1.0, 0.0], [2.0, 1.0]]}))  # A[a][b] = 2
    obs = episode(AB, [[0, 0]] * 3, [[2.0, 4.0], [1.0, 3.0], [0.5, 2.0]])[-1]
    w = SkillItPolicy(eta=0.5, window=2, graph=str(path)).act(obs).weights
    z = math.exp(0.5 * (0.75 + 2 * 1.25)) + math.exp(0.625)
    assert w["a"] == pytest.approx(math.exp(1.625) / z)
    with pytest.raises(ValueError, match="unknown skills"):
        SkillItPolicy(targets=["zz"]).act(obs)


def test_exp3_by_hand():
    obs = episode(AB, [[0, 0]] * 3, [[9.0, 9.0], [2.0, 1.0], [1.0, 1.0]])
    p = Exp3Policy(alpha=0.9)
    # t = 1: no reward yet; eps_1 = min(1/2, sqrt(ln 2 / 2)) = 0.5 -> pi = 0.5, 0.5
    assert p.act(obs[0]).weights == pytest.approx({"a": 0.5, "b": 0.5})
    # t = 2: R = 0.1 * (2/0.5, 1/0.5) = (0.4, 0.2); eps_2 = sqrt(ln 2 / 4); logits eps_1 * R = (0.2, 0.1)
    eps2 = math.sqrt(math.log(2) / 4)
    soft_a = math.exp(0.2) / (math.exp(0.2) + math.exp(0.1))
    pi_a = (1 - 2 * eps2) * soft_a + eps2
    w = p.act(obs[1]).weights
    assert w == pytest.approx({"a": pi_a, "b": 1 - pi_a})
    # t = 3: R_a = 0.9*0.4 + 0.1*1/pi_a, R_b = 0.9*0.2 + 0.1*1/(1-pi_a); logits eps_2 * R
    r_a, r_b = 0.36 + 0.1 / pi_a, 0.18 + 0.1 / (1 - pi_a)
    eps3 = math.sqrt(math.log(2) / 6)
    soft_a = 1 / (1 + math.exp(eps2 * (r_b - r_a)))
    assert p.act(obs[2]).weights["a"] == pytest.approx((1 - 2 * eps3) * soft_a + eps3)


def test_tscl_online_epsilon_greedy_and_boltzmann_by_hand():
    obs = episode(ABC, [[0, 0, 0], [0.2, 0.5, 0.1], [0.3, 0.4, 0.1]])
    p = TSCLPolicy(teacher="online", alpha=0.1, epsilon=0.1)
    assert p.act(obs[0]).weights == pytest.approx({s: 1 / 3 for s in "abc"})  # all Q = 0: a three-way tie
    # Q = 0.1 * (0.2, 0.5, 0.1) = (0.02, 0.05, 0.01) -> b
    assert p.act(obs[1]).weights == pytest.approx({"a": 0.1 / 3, "b": 0.1 / 3 + 0.9, "c": 0.1 / 3})
    # r = (0.1, -0.1, 0): Q = (0.01 + 0.018, -0.01 + 0.045, 0.009) -> |Q| = (0.028, 0.035, 0.009) -> b
    assert p.q == pytest.approx({"a": 0.02, "b": 0.05, "c": 0.01})
    assert p.act(obs[2]).weights["b"] == pytest.approx(0.1 / 3 + 0.9)
    assert p.q == pytest.approx({"a": 0.028, "b": 0.035, "c": 0.009})

    b = TSCLPolicy(teacher="online", alpha=1.0, exploration="boltzmann", temperature=0.1)
    b.act(obs[0])
    w = b.act(obs[1]).weights  # Q = r = (0.2, 0.5, 0.1); w ∝ exp(|Q| / 0.1)
    z = math.exp(2) + math.exp(5) + math.exp(1)
    assert w == pytest.approx({"a": math.exp(2) / z, "b": math.exp(5) / z, "c": math.exp(1) / z})


def test_tscl_window_and_sampling_teachers():
    assert slope([0.0, 0.2, 0.6]) == pytest.approx(0.3) and slope([0.2, 0.6]) == pytest.approx(0.4)
    obs = episode(ABC, [[0, 0, 0], [0.0, 0.2, 0.1], [0.0, 0.6, 0.1], [0.5, 0.6, 0.1]])
    p = TSCLPolicy(teacher="window", window=3, epsilon=0.0)
    # round 3: windows a (0, 0, 0), b (0, 0.2, 0.6) slope 0.3, c (0, 0.1, 0.1) slope 0.05 -> b
    assert p.act(obs[2]).weights == pytest.approx({"a": 0.0, "b": 1.0, "c": 0.0})
    # round 4 with window 2: a (0, 0.5) slope 0.5 beats b (0.6, 0.6) -> a
    assert TSCLPolicy(teacher="window", window=2, epsilon=0.0).act(obs[3]).weights["a"] == 1.0
    # sampling with a one-reward buffer is greedy on the latest reward; forgetting counts (|Q|)
    forget = episode(ABC, [[0, 0, 0], [0.5, 0.1, 0.0], [0.5, 0.1, 0.0], [0.1, 0.2, 0.0]])
    s = TSCLPolicy(teacher="sampling", window=1, epsilon=0.0, seed=1)
    picks = [max(w, key=w.get) for w in (s.act(o).weights for o in forget[1:])]
    assert picks == ["a", "a", "a"]  # +0.5, then a 3-way tie at 0 (first), then -0.4 beats +0.1
    with pytest.raises(ValueError, match="teacher must be"):
        TSCLPolicy(teacher="bandit")


def test_learning_progress_by_hand():
    obs = episode(ABC, [[0.4, 0.0, 0.2]])
    p = LearningProgressPolicy(ema_alpha=0.5, theta=0.1)
    w = p.act(obs[0]).weights
    # fast = 0.5 x = (0.2, 0, 0.1); slow = 0.5 fast = (0.1, 0, 0.05)
    f = lambda x: x * 0.9 / (x + 0.1 * (1 - 2 * x))  # noqa: E731
    lp_a, lp_c = abs(f(0.2) - f(0.1)), abs(f(0.1) - f(0.05))
    assert p.progress() == pytest.approx({"a": lp_a, "b": 0.0, "c": lp_c})
    # b has no progress -> 0; a and c are z-scored: two values -> z = +1, -1
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert lp_a > lp_c
    assert w == pytest.approx({"a": sig(1) / (sig(1) + sig(-1)), "b": 0.0, "c": sig(-1) / (sig(1) + sig(-1))})
    # nobody progresses -> uniform
    assert LearningProgressPolicy().act(episode(ABC, [[0, 0, 0]])[0]).weights == pytest.approx(
        {s: 1 / 3 for s in "abc"})


def test_aioli_probes_and_update_by_hand():
    import dataclasses

    from teachgym import ProbeResult
    from teachgym.policies.aioli import AioliPolicy

    obs = episode(AB, [[0, 0]], [[2.0, 3.0]])[0]
    obs = dataclasses.replace(obs, examples_per_round=100)
    p = AioliPolicy(eta=1.0, probe_fraction=0.2, seed=0)
    plan = p.probes(obs)
    # 0.2 * 100 = 20 rows over 2 skills x 1 sweep -> two one-skill probes of 10 rows, in a seeded order
    assert sorted((list(pr.mixture.weights), pr.n) for pr in plan) == [(["a"], 10), (["b"], 10)]
    # probe on a: losses (2.0, 3.0) -> (1.8, 2.9); probe on b: (1.8, 2.9) -> (1.75, 2.5); scale B/n = 10
    # A[:, a] = (0.2, 0.1) * 10 = (2, 1); A[:, b] = (0.05, 0.4) * 10 = (0.5, 4); column sums 3 and 4.5
    probes = (
        ProbeResult({"a": 1.0}, 10, {"a": 2.0, "b": 3.0}, {"a": 1.8, "b": 2.9}),
        ProbeResult({"b": 1.0}, 10, {"a": 1.8, "b": 2.9}, {"a": 1.75, "b": 2.5}),
    )
    w = p.act(dataclasses.replace(obs, probes=probes)).weights
    z = math.exp(3.0) + math.exp(4.5)
    assert w == pytest.approx({"a": math.exp(3.0) / z, "b": math.exp(4.5) / z})
    assert [x for row in p.a for x in row] == pytest.approx([2.0, 0.5, 1.0, 4.0])

    # EMA gamma = 0.5 and the multiplicative form: a second round whose probes show A' = [[0, 0], [0, 2]]
    q = AioliPolicy(eta=1.0, probe_fraction=0.2, ema=0.5, multiplicative=True)
    first = q.act(dataclasses.replace(obs, probes=probes)).weights
    second_probes = (
        ProbeResult({"a": 1.0}, 10, {"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 1.0}),
        ProbeResult({"b": 1.0}, 10, {"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 0.8}),
    )
    w = q.act(dataclasses.replace(obs, probes=second_probes)).weights
    # A = 0.5 * [[2, .5], [1, 4]] + 0.5 * [[0, 0], [0, 2]] = [[1, .25], [.5, 3]]; column sums 1.5, 3.25
    za = first["a"] * math.exp(1.5)
    zb = first["b"] * math.exp(3.25)
    assert w == pytest.approx({"a": za / (za + zb), "b": zb / (za + zb)})


def test_aioli_refuses_a_budget_too_small_to_probe():
    from teachgym.policies.aioli import AioliPolicy

    obs = episode(ABC, [[0, 0, 0]])[0]  # examples_per_round = 100
    with pytest.raises(ValueError, match="less than one row per probe"):
        AioliPolicy(probe_fraction=0.02).probes(obs)
