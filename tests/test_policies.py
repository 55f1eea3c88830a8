import pytest

from teachgym import Request, Skill, Synthesize
from teachgym.checks import check_policy, make_observation
from teachgym.envs.arithmetic import ArithmeticEnv
from teachgym.policies.missing_skill import MissingSkillPolicy
from teachgym.policies.targeted_synthesis import TargetedSynthesisPolicy
from teachgym.policies.uniform import UniformPolicy
from teachgym.registry import BUILTINS, resolve

from conftest import policy_kwargs

SKILLS = [Skill("a"), Skill("b", levels=(1, 2, 3)), Skill("c"), Skill("d")]


@pytest.mark.parametrize("name", list(BUILTINS["policies"]))
def test_protocol_checker_on_every_builtin_policy(name, request):
    cls = resolve("policies", name)
    kwargs = policy_kwargs(name, request)
    # A learned teacher acts only on the skills it was trained on (the arithmetic env's).
    skills = ArithmeticEnv(eval_per_skill=1, pool_per_skill=0).skills if name == "learned" else None
    check_policy(lambda: cls(**kwargs), skills=skills, require_normalized=True)
    from teachgym.protocols import TeacherPolicy

    assert isinstance(cls(**kwargs), TeacherPolicy)


def test_uniform():
    obs = make_observation(SKILLS, [0.1, 0.9, 0.5, 0.0])
    assert UniformPolicy().act(obs).weights == {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}


def test_missing_skill_by_hand():
    # missing rates 0.9, 0.1, 0.5, 1.0 (sum 2.5); T=1, floor 0.05 (K=4 -> 0.8 left to share)
    obs = make_observation(SKILLS, [0.1, 0.9, 0.5, 0.0])
    w = MissingSkillPolicy(temperature=1.0, floor=0.05).act(obs).weights
    expected = {"a": 0.05 + 0.8 * 0.9 / 2.5, "b": 0.05 + 0.8 * 0.1 / 2.5, "c": 0.05 + 0.8 * 0.5 / 2.5, "d": 0.05 + 0.8}
    expected["d"] = 0.05 + 0.8 * 1.0 / 2.5
    assert w == pytest.approx(expected)
    assert sum(w.values()) == pytest.approx(1.0)
    # T=0.5 squares the rates: 0.81, 0.01, 0.25, 1.0 (sum 2.07); no floor
    w = MissingSkillPolicy(temperature=0.5, floor=0.0).act(obs).weights
    assert w == pytest.approx({"a": 0.81 / 2.07, "b": 0.01 / 2.07, "c": 0.25 / 2.07, "d": 1.0 / 2.07})


def test_missing_skill_edge_cases():
    obs = make_observation(SKILLS, [1.0, 1.0, 1.0, 1.0])
    assert MissingSkillPolicy().act(obs).weights == pytest.approx({s: 0.25 for s in "abcd"})
    with pytest.raises(ValueError, match="more than 1/K"):
        MissingSkillPolicy(floor=0.3).act(obs)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        MissingSkillPolicy(temperature=0)


def test_targeted_synthesis_by_hand():
    # missing 0.9, 0.4, 0.5, 1.0 -> top 3: d (1.0), a (0.9), c (0.5); budget 100 split 1.0:0.9:0.5 of 2.4
    # exact 41.67, 37.5, 20.83 -> floors 41, 37, 20 (98); remainders .67, .5, .83 -> c then d get +1
    obs = make_observation(SKILLS, [0.1, 0.6, 0.5, 0.0], examples_per_round=100)
    action = TargetedSynthesisPolicy(top_k=3).act(obs)
    assert action == Synthesize([Request("d", 42, 1), Request("a", 37, 1), Request("c", 21, 1)])
    # adaptive level: b has 3 levels and accuracy 0.6 -> levels[int(0.6 * 3)] = levels[1] = 2
    obs = make_observation(SKILLS, [0.95, 0.6, 0.99, 0.97], examples_per_round=10)
    action = TargetedSynthesisPolicy(top_k=1).act(obs)
    assert action.requests == (Request("b", 10, 2),)
    assert TargetedSynthesisPolicy(top_k=1, adaptive_level=False).act(obs).requests == (Request("b", 10, None),)


def test_targeted_synthesis_when_nothing_is_missed():
    obs = make_observation(SKILLS, [1.0] * 4, examples_per_round=10)
    assert [r.n for r in TargetedSynthesisPolicy().act(obs).requests] == [3, 3, 2, 2]
