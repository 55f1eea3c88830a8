"""A teacher without the loop (``teachgym.teacher``): the same policy, driven by per-skill statistics alone."""

from __future__ import annotations

import math

import pytest

from teachgym.config import ConfigError, load_config
from teachgym.loop import run_experiment
from teachgym.registry import RegistryError, names
from teachgym.teacher import Teacher, TeacherError, teacher
from teachgym.types import Mixture

from helpers_policies import Watched

SKILLS = ["s1", "s2", "s3", "s4"]
NEEDS_THE_LOOP = {"aioli"}  # asks for training probes
NEEDS_A_FILE_OR_SERVER = {"learned", "llm-agent"}  # a trained model / an LLM


def _stats(k: int) -> dict:
    """Round k's statistics: s1 learnt, s2 climbing, s3 flat at chance, s4 unlearnable; rollouts included."""
    acc = {"s1": 0.9, "s2": min(0.9, 0.1 + 0.2 * k), "s3": 0.3, "s4": 0.0}
    return {s: {"accuracy": a, "n": 50, "loss": 2.0 - a, "learnability": a * (1 - a), "groups": 8,
                "completions": 32} for s, a in acc.items()}


@pytest.mark.parametrize("name", sorted(set(names("policies")) - NEEDS_THE_LOOP - NEEDS_A_FILE_OR_SERVER))
def test_every_builtin_teaches_from_statistics_and_resumes_from_its_state(name):
    t = teacher(name, SKILLS, seed=3, rounds=6)
    assert t.weights == {s: 0.25 for s in SKILLS}  # before any statistics
    for k in range(3):
        w = t.update(_stats(k))
        assert list(w) == SKILLS and math.isclose(sum(w.values()), 1.0) and min(w.values()) >= 0
    again = teacher(name, SKILLS, seed=3, rounds=6)
    again.load_state_dict(t.state_dict())
    assert again.update(_stats(3)) == t.update(_stats(3))  # the same decision after a restart


def test_the_same_policy_decides_the_same_in_the_loop_and_outside_it(tmp_path):
    """learning-progress in ``teachgym run`` (simulated student), then its profiles fed to a fresh teacher."""
    Watched.seen.clear()
    cfg = load_config({"env": {"name": "arithmetic", "eval_per_skill": 20, "pool_per_skill": 50},
                       "student": {"name": "simulated", "examples_to_learn": 300},
                       "policy": {"name": "helpers_policies:Watched", "policy": "learning-progress"},
                       "loop": {"rounds": 4, "examples_per_round": 600, "output_dir": str(tmp_path / "out")},
                       "tracking": {"enabled": False}})
    run_experiment(cfg)
    assert len(Watched.seen) == 4
    skills = list(Watched.seen[0][0])
    outside = teacher("learning-progress", skills, rounds=4, examples_per_round=600)
    for profile, _, action in Watched.seen:
        total = sum(action.weights.values())
        assert outside.update(profile) == pytest.approx({s: action.weights.get(s, 0.0) / total for s in skills})
    assert len({tuple(a.weights.values()) for _, _, a in Watched.seen}) > 1  # it moved: the check can fail


def test_learnability_follows_the_rollout_statistics():
    t = teacher("learnability", SKILLS)
    w = t.update({s: {"pass_rate": p, "learnability": p * (1 - p), "groups": 8} for s, p in
                  zip(SKILLS, [1.0, 0.5, 0.1, 0.0], strict=True)})
    assert w["s2"] > w["s3"] > w["s1"] and w["s4"] == pytest.approx(w["s1"])  # p(1-p): 0.25 > 0.09 > 0 = 0


def test_a_skill_not_measured_yet_shows_no_evidence_and_keeps_its_last_statistics():
    t = teacher("missing-skill", SKILLS)
    t.update({"s1": {"accuracy": 0.9, "n": 8}})
    first = t.history[-1].profile
    assert [first[s].n for s in SKILLS] == [8, 0, 0, 0] and first["s2"].accuracy == 0.0
    t.update({"s2": {"accuracy": 0.5, "n": 8}})
    assert t.history[-1].profile["s1"] == first["s1"] and t.history[-1].profile["s2"].change == 0.5


def test_a_user_policy_object_and_synthesize_actions():
    class Half:
        def act(self, obs):
            from teachgym.types import Request, Synthesize

            return Synthesize([Request(obs.skill_names[0], 30), Request(obs.skill_names[1], 10)])

    t = teacher(Half(), ["a", "b", "c"])
    assert t.update({s: {"accuracy": 0.5} for s in "abc"}) == {"a": 0.75, "b": 0.25, "c": 0.0}


@pytest.mark.parametrize("stats,match", [
    ({"zz": {"accuracy": 0.5}}, r"unknown skills \['zz'\]"),
    ({s: {"acc": 0.5} for s in SKILLS}, r"s1: unknown statistics \['acc'\]"),
    ({s: {"accuracy": 1.5} for s in SKILLS}, r"s1: needs 'accuracy' or 'pass_rate' in \[0, 1\]"),
    ({s: {"accuracy": float("nan")} for s in SKILLS}, r"s1.accuracy is nan"),
    ([0.5, 0.5], "a mapping of skill -> statistics"),
])
def test_statistics_it_cannot_read_are_named(stats, match):
    with pytest.raises(TeacherError, match=match):
        teacher("uniform", SKILLS).update(stats)


def test_policies_that_need_the_loop_or_return_garbage_are_refused():
    with pytest.raises(TeacherError, match="aioli.*training probes"):
        teacher("aioli", SKILLS)
    with pytest.raises(RegistryError, match="learnability"):
        teacher("learnabilty", SKILLS)
    with pytest.raises(ConfigError, match="flor"):
        teacher("learnability", SKILLS, flor=0.1)

    class Garbage:
        def act(self, obs):
            return Mixture({"nope": 1.0})

    with pytest.raises(TeacherError, match=r"'Garbage' returned an invalid action at update 1.*unknown skills"):
        Teacher(Garbage(), SKILLS).update({s: {"accuracy": 0.5} for s in SKILLS})

    class Raises:
        def act(self, obs):
            raise KeyError("boom")

    with pytest.raises(TeacherError, match="'Raises' raised KeyError in act"):
        Teacher(Raises(), SKILLS).update({s: {"accuracy": 0.5} for s in SKILLS})
    with pytest.raises(TeacherError, match="skill-it.*'loss'"):  # skill-it reads the eval loss
        teacher("skill-it", SKILLS).update({s: {"accuracy": 0.5} for s in SKILLS})
