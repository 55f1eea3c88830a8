"""DataEnvGym's levels of state (open-ended / skill-list / skill-tree) on every env."""

import pytest

from teachgym.checks import CheckError, check_policy, make_observation
from teachgym.config import ConfigError, load_config
from teachgym.evaluation import evaluate
from teachgym.loop import run_experiment
from teachgym.registry import resolve
from teachgym.state import restrict
from teachgym.types import Failure, Mixture, Skill

RECORDER = '''
from teachgym.types import Mixture
SEEN = []
class Recorder:
    state_levels = ("open-ended", "skill-list", "skill-tree")
    def act(self, obs):
        SEEN.append(obs)
        return Mixture({s: 1.0 for s in obs.skill_names})
    def state_dict(self):
        return {}
    def load_state_dict(self, state):
        pass
'''


def _config(tmp_path, env, state, policy):
    return load_config({
        "env": env,
        "student": {"name": "simulated", "examples_to_learn": 300},
        "policy": {"name": policy},
        "loop": {"rounds": 3, "examples_per_round": 600, "state": state, "output_dir": str(tmp_path / "out")},
        "tracking": {"enabled": False},
    })


ENVS = [{"name": "arithmetic", "eval_per_skill": 20, "pool_per_skill": 50},
        {"name": "lego", "length": 3, "eval_per_skill": 20, "pool_per_skill": 50},
        {"name": "strings", "eval_per_skill": 20, "pool_per_skill": 50}]


@pytest.mark.parametrize("env", ENVS, ids=lambda e: e["name"])
@pytest.mark.parametrize("state", ["open-ended", "skill-list", "skill-tree"])
def test_every_env_offers_every_state(tmp_path, monkeypatch, env, state):
    (tmp_path / "recorder_mod.py").write_text(RECORDER)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    mod = importlib.import_module("recorder_mod")
    mod.SEEN.clear()
    result = run_experiment(_config(tmp_path, env, state, "recorder_mod:Recorder"))
    assert len(result.rounds) == 4 and len(mod.SEEN) == 3
    last = mod.SEEN[-1]
    assert last.state == state
    if state == "open-ended":
        assert last.profile == {} and last.skill_graph is None and last.subskills is None
        assert all(h.profile == {} for h in last.history) and last.failures
        assert all(f.skills for f in last.failures)
    else:
        assert set(last.profile) == set(last.skill_names)
    if state == "skill-tree":
        # Each skill's sub-skills are its levels, measured on the eval items of that level.
        for skill in last.skills:
            tree = last.subskills[skill.name]
            assert set(tree) == set(skill.levels)
            assert sum(st.n for st in tree.values()) == last.profile[skill.name].n
            hits = sum(st.accuracy * st.n for st in tree.values())
            assert hits == pytest.approx(last.profile[skill.name].accuracy * last.profile[skill.name].n)
            assert all(st.change is not None for st in tree.values())
    else:
        assert last.subskills is None
    # MLflow metrics (and the records) always carry the full profile, whatever the teacher saw.
    assert set(result.final.accuracies) == set(last.skill_names)


def test_a_policy_that_needs_the_profile_is_refused_in_open_ended(tmp_path):
    with pytest.raises(ConfigError, match=r"loop.state: policy 'exp3' works with the states \['skill-list', "
                                          r"'skill-tree'\], not 'open-ended'.*policies that can: \[.*missing-skill"):
        run_experiment(_config(tmp_path, ENVS[2], "open-ended", "exp3"))


def test_missing_skill_learns_from_failures_alone(tmp_path):
    result = run_experiment(_config(tmp_path, ENVS[0], "open-ended", "missing-skill"))
    assert result.final.mean_accuracy > result.rounds[0].mean_accuracy
    skills = [Skill("a"), Skill("b"), Skill("c")]
    obs = restrict(make_observation(skills, [0.5, 0.5, 0.5]), "open-ended", None)
    obs = obs.__class__(**{**obs.__dict__, "failures": (Failure("p", "g", "o", ("a",)),) * 3
                           + (Failure("p", "g", "o", ("c",)),)})
    assert obs.missing_rates() == {"a": 0.75, "b": 0.0, "c": 0.25}
    w = resolve("policies", "missing-skill")(floor=0.0).act(obs).weights
    assert w == pytest.approx({"a": 0.75, "b": 0.0, "c": 0.25})


def test_targeted_synthesis_targets_sub_skills_in_the_tree(tmp_path):
    result = run_experiment(_config(tmp_path, ENVS[2], "skill-tree", "targeted-synthesis"))
    for record in result.rounds[1:]:
        requests = record.action["requests"]
        assert requests and all(r["level"] is not None for r in requests)
        assert len(requests) <= 3
    # Off the tree, the same policy picks levels from the skill's accuracy (one request per skill).
    plain = run_experiment(_config(tmp_path, ENVS[2], "skill-list", "targeted-synthesis"))
    assert len({r["skill"] for r in plain.rounds[1].action["requests"]}) == len(plain.rounds[1].action["requests"])


def test_subskills_from_evaluate(small_env):
    from teachgym.students.simulated import SimulatedStudent

    result = evaluate(SimulatedStudent(env=small_env), small_env)
    assert set(result.subskills) == {s.name for s in small_env.skills}
    assert set(result.subskills["mul_2x1"]) <= {1, 2, 3}


def test_check_policy_holds_a_policy_to_the_states_it_claims():
    class Claims:
        state_levels = ("open-ended", "skill-list")

        def act(self, obs):
            best = min(obs.skill_names, key=lambda s: obs.profile[s].accuracy)  # reads the hidden profile
            return Mixture({best: 1.0})

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    with pytest.raises(CheckError, match="state open-ended, round 1: the policy failed on what this state shows"):
        check_policy(Claims)
    Claims.state_levels = ("skill-list",)
    check_policy(Claims)


def test_tree_ties_go_to_the_easiest_levels_across_skills():
    from teachgym.types import SkillStats

    skills = [Skill("a", levels=(1, 2)), Skill("b", levels=(1, 2)), Skill("c", levels=(1, 2))]
    obs = make_observation(skills, [0.0, 0.0, 0.5], examples_per_round=90)
    tree = {s.name: {lv: SkillStats(acc, 1.0, 10, 1 - acc) for lv, acc in ((1, 0.0), (2, 0.0))} for s in skills}
    tree["c"] = {1: SkillStats(0.9, 1.0, 10, 0.1), 2: SkillStats(0.2, 1.0, 10, 0.8)}
    action = resolve("policies", "targeted-synthesis")().act(restrict(obs, "skill-tree", tree))
    assert [(r.skill, r.level, r.n) for r in action.requests] == [("a", 1, 30), ("b", 1, 30), ("a", 2, 30)]
