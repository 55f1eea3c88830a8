"""The simulated student: the analytic model by hand, its noise, its determinism, and its place in the loop."""

import math

import numpy as np
import pytest

from teachgym.config import ComponentConfig, ConfigError, build_component, load_config
from teachgym.envs.arithmetic import ArithmeticEnv
from teachgym.evaluation import evaluate
from teachgym.loop import run_experiment
from teachgym.students.simulated import SimulatedStudent

from conftest import tiny_config

SKILLS = ["add_nocarry", "add_carry", "add_3d", "sub_noborrow", "sub_borrow", "mul_2x1"]


@pytest.fixture(scope="module")
def env():
    return ArithmeticEnv(eval_per_skill=100, pool_per_skill=50)


def vec(**counts):
    return np.array([counts.get(s, 0.0) for s in SKILLS])


def test_parameters_come_from_the_env(env):
    s = SimulatedStudent(env=env)
    assert s.skills == SKILLS
    # depth: add_nocarry 0; add_carry, sub_noborrow 1; add_3d, sub_borrow, mul_2x1 2
    assert s.difficulty.tolist() == [3000, 6000, 9000, 6000, 9000, 9000]
    i, j = SKILLS.index("add_carry"), SKILLS.index("add_nocarry")
    assert s.transfer[i, j] == s.transfer[j, i] == 0.2 and s.transfer[i, i] == 1.0
    assert s.transfer[SKILLS.index("mul_2x1"), j] == 0.0  # not directly related
    assert s.competence.tolist() == [0.0] * 6


def test_one_step_by_hand(env):
    s = SimulatedStudent(env=env, substeps=1, half_life=0, transfer=0.0)
    s.practice(vec(add_nocarry=3000))
    assert s.competence[0] == pytest.approx(0.97 * (1 - math.exp(-1)))
    assert s.competence[1:].tolist() == [0.0] * 5
    # Saturation: lots more practice approaches, never passes, the ceiling.
    s.practice(vec(add_nocarry=100_000))
    assert 0.969 < s.competence[0] <= 0.97


def test_prerequisites_gate_learning(env):
    s = SimulatedStudent(env=env, half_life=0, transfer=0.0)  # (with transfer, add_carry practice teaches add_nocarry)
    s.practice(vec(add_carry=50_000))  # add_nocarry is at 0: nothing can be learned
    assert s.competence[SKILLS.index("add_carry")] == 0.0
    s.practice(vec(add_nocarry=20_000))  # now mastered (> gate high 0.7)
    assert s.competence[0] > 0.7
    s.practice(vec(add_carry=6000))
    assert s.competence[SKILLS.index("add_carry")] == pytest.approx(0.97 * (1 - math.exp(-1)), rel=1e-6)


def test_transfer_reaches_related_skills_only(env):
    s = SimulatedStudent(env=env, half_life=0, initial={"add_nocarry": 0.9})
    before = s.competence.copy()
    s.practice(vec(sub_noborrow=3000))
    gain = s.competence - before
    assert gain[SKILLS.index("sub_noborrow")] > 0
    # add_nocarry is sub_noborrow's prerequisite: 0.2 of each example reaches it (600 examples of 3000 difficulty)
    expected = 0.9 + (0.97 - 0.9) * (1 - math.exp(-600 / 3000))
    assert s.competence[0] == pytest.approx(expected)
    assert gain[SKILLS.index("mul_2x1")] == 0 and gain[SKILLS.index("add_3d")] == 0


def test_unpractised_skills_decay(env):
    s = SimulatedStudent(env=env, half_life=10_000, initial={"add_nocarry": 0.9})
    s.practice(vec(mul_2x1=10_000))  # unrelated to add_nocarry, and gated itself
    assert s.competence[0] == pytest.approx(0.45)
    assert s.competence[SKILLS.index("mul_2x1")] == 0.0


def test_a_plateau_keeps_a_skill_flat_then_it_rises(tmp_path, env):
    s = SimulatedStudent(env=env, substeps=1, half_life=0, transfer=0.0, plateau={"add_nocarry": 3000},
                         prerequisites={k: [] for k in SKILLS})
    s.practice(vec(add_nocarry=1000, add_carry=1000))
    # the stage is 1 - e^(-1/3) = 0.28, under the gate's 0.3: nothing learned yet, unlike add_carry
    assert s.stage[0] == pytest.approx(1 - math.exp(-1 / 3))
    assert s.competence[0] == 0.0 and s.competence[1] > 0.1
    s.save_state(str(tmp_path))
    s.practice(vec(add_nocarry=5000))  # the stage now passes the gate's top: the skill learns at full rate
    assert s.stage[0] > 0.7 and s.competence[0] > 0.5
    t = SimulatedStudent(env=env, substeps=1, half_life=0, transfer=0.0, plateau={"add_nocarry": 3000},
                         prerequisites={k: [] for k in SKILLS})
    t.load_state(str(tmp_path))  # the stage is part of the round state
    t.practice(vec(add_nocarry=5000))
    assert t.competence.tolist() == s.competence.tolist()
    with pytest.raises(ValueError, match="plateau"):
        SimulatedStudent(env=env, plateau=-1.0)


def test_eval_is_noisy_like_a_finite_eval_set(env):
    s = SimulatedStudent(env=env, initial=0.5)
    accs = []
    for seed in range(200):
        s.reset(seed)
        accs.append(s.measure())
    accs = np.array(accs)
    assert set(np.unique(accs * 100).round(6)) <= set(range(101))  # k/100: 100 items per skill
    assert accs.mean() == pytest.approx(0.5, abs=0.01)
    assert accs.std() == pytest.approx(0.05, abs=0.01)  # binomial: sqrt(0.25 / 100)


def test_measure_matches_the_loops_evaluate(env):
    s = SimulatedStudent(env=env, initial=0.6, seed=3)
    s.practice(vec(add_nocarry=500, sub_noborrow=800))
    result = evaluate(s, env, None, 16, 256, 5)
    assert [result.profile[k].accuracy for k in SKILLS] == pytest.approx(s.measure().tolist())
    assert [result.profile[k].loss for k in SKILLS] == pytest.approx(s.expected_loss().tolist())
    assert all(0 < result.profile[k].accuracy < 1 for k in SKILLS)


def test_deterministic_under_a_seed(env):
    def run(seed):
        s = SimulatedStudent(env=env, seed=seed)
        out = []
        for _ in range(5):
            s.practice(vec(add_nocarry=1000, add_carry=1000, sub_noborrow=1000))
            out.append(s.measure().tolist())
        return out

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_overrides_and_clear_errors(env):
    s = SimulatedStudent(env=env, difficulty={"mul_2x1": 500}, prerequisites={"mul_2x1": []})
    s.practice(vec(mul_2x1=500))
    assert s.competence[SKILLS.index("mul_2x1")] > 0.5  # no longer gated, and easy
    with pytest.raises(ValueError, match="unknown skill.*'mul'"):
        SimulatedStudent(env=env, difficulty={"mul": 1.0})
    with pytest.raises(ValueError, match="cycle"):
        SimulatedStudent(env=env, prerequisites={"add_nocarry": ["mul_2x1"]})
    with pytest.raises(ValueError, match="needs an env or a list of skills"):
        SimulatedStudent()
    with pytest.raises(ConfigError, match=r"student\.half_lif.*half_life"):
        build_component("students", "student", ComponentConfig(name="simulated", half_lif=3), env=env)


def test_without_an_env_the_fast_api_works():
    s = SimulatedStudent(skills=["x", "y"], prerequisites={"y": ["x"]}, eval_per_skill=40)
    s.practice({"x": 10_000, "y": 10_000})
    acc = s.measure()
    assert acc.shape == (2,) and acc[0] > 0.8


def test_in_the_loop_with_mlflow(tmp_path, mlflow_store):
    import mlflow

    cfg = tiny_config(tmp_path, rounds=3, examples_per_round=2000)
    cfg["student"] = {"name": "simulated", "examples_to_learn": 300}
    cfg["env"] = {"name": "arithmetic", "eval_per_skill": 50, "pool_per_skill": 300}
    result = run_experiment(load_config(cfg))
    means = [r.mean_accuracy for r in result.rounds]
    assert means[0] == 0.0 and means[-1] > 0.3
    again = run_experiment(load_config(cfg))
    assert [r.accuracies for r in again.rounds] == [r.accuracies for r in result.rounds]
    client = mlflow.MlflowClient(mlflow_store)
    history = client.get_metric_history(result.run_id, "acc/mean")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(means)


@pytest.mark.parametrize("policy", ["missing-skill", "targeted-synthesis"])  # a Mixture and a Synthesize teacher
def test_the_fast_path_gives_the_full_paths_results(tmp_path, monkeypatch, policy):
    """Rows per skill instead of text rows, and answers without generate/verify/loss: the same rounds."""
    from teachgym import engine, loop

    cfg = tiny_config(tmp_path, rounds=4, examples_per_round=1500)
    cfg["student"] = {"name": "simulated", "examples_to_learn": 300}
    cfg["env"] = {"name": "arithmetic", "eval_per_skill": 30, "pool_per_skill": 200}
    cfg["policy"] = {"name": policy}
    cfg["tracking"] = {"enabled": False}
    calls = []
    original = engine.materialize

    def spy(*args, **kwargs):
        data, report = original(*args, **kwargs)
        calls.append(type(data).__name__)
        return data, report

    monkeypatch.setattr(loop, "materialize", spy)  # what the loop calls
    fast = run_experiment(load_config(cfg))
    assert set(calls) == {"SkillCounts"}
    calls.clear()
    monkeypatch.setattr(ArithmeticEnv, "fills_requests", False)  # the env no longer offers it: the full path
    full = run_experiment(load_config(cfg))
    assert set(calls) == {"Dataset"}
    assert fast.final.mean_accuracy > 0.2
    for a, b in zip(fast.rounds, full.rounds, strict=True):
        assert a.accuracies == b.accuracies and a.action == b.action and a.examples == b.examples
        # What the fast path cannot know without rows: how many were dropped or repeated to fill a request.
        unknown = ("data/dropped/", "data/repeated")
        known = {k: v for k, v in a.metrics.items() if not k.startswith(unknown)}
        assert known == pytest.approx({k: v for k, v in b.metrics.items() if not k.startswith(unknown)})
