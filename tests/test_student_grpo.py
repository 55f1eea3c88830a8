"""The GRPO student: TRL's GRPOTrainer on the env's verifier, its rollout statistics, and the warm start."""

from __future__ import annotations

import math
import os

import pytest

from teachgym.envs.arithmetic import ArithmeticEnv
from teachgym.students._rollouts import Rollouts as _Rollouts
from teachgym.students._rollouts import split_groups as _split_groups
from teachgym.students.grpo import GRPOStudent

from conftest import TINY


class CoinEnv(ArithmeticEnv):
    """Arithmetic, but an answer 'passes' by a fixed function of its text: a random tiny model gets mixed rewards."""

    def verify(self, prompt: str, output: str) -> bool:
        return sum(map(ord, output)) % 2 == 0


def rows(env, n):
    pool = env.pool()
    return pool.select(range(0, len(pool), len(pool) // n)).select(range(n))


def test_rollout_stats_agree_with_the_trainers_advantages():
    env = CoinEnv(eval_per_skill=10, pool_per_skill=20)
    student = GRPOStudent(env=env, model="tiny", tiny=TINY, num_generations=4, batch_size=8, max_completion_length=4,
                          scale_rewards="none", learning_rate=1e-3, examples_per_round=12)
    data = rows(env, 12)
    report = student.train(data)
    per_skill = {}
    for labels in data["skills"]:
        for s in labels:
            per_skill[s] = per_skill.get(s, 0) + 1
    assert report.metrics["rl/prompts"] == 12 and report.metrics["rl/completions"] == 48
    assert report.steps == 48 // 8
    assert {s: st.groups for s, st in report.rollouts.items()} == per_skill
    for st in report.rollouts.values():
        assert st.completions == 4 * st.groups
        assert 0 <= st.pass_rate <= 1 and 0 <= st.zero_variance_share <= 1 and 0 < st.completion_length <= 4
        # Binary rewards, unscaled advantages r - mean: a group with pass rate p has mean |A| = 2 p (1 - p),
        # so the trainer's advantages and our verdicts agree only if they are aligned row by row.
        assert st.mean_abs_advantage == pytest.approx(2 * st.learnability, abs=1e-5)
    assert any(st.learnability > 0 for st in report.rollouts.values())  # the coin env does give a signal


def test_rollouts_by_hand():
    r = _Rollouts(num_generations=2)
    inputs = [{"prompt": "a", "skills": ["x"]}] * 2 + [{"prompt": "b", "skills": ["x", "y"]}] * 2
    r.add(_split_groups(inputs, [1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 1.5, 1.5], [0.7, -0.7, 0.0, 0.0], [3, 5, 2, 2], 2))
    st = r.stats()
    assert r.prompts == 2 and r.completions == 4 and r.zero_variance == 1
    assert st["x"].pass_rate == 0.75 and st["x"].learnability == pytest.approx((0.25 + 0) / 2)
    assert st["x"].mean_abs_advantage == pytest.approx(1.4 / 4) and st["x"].zero_variance_share == 0.5
    assert st["x"].completion_length == 3.0 and st["x"].groups == 2 and st["x"].completions == 4
    assert st["y"].pass_rate == 1.0 and st["y"].zero_variance_share == 1.0 and st["y"].groups == 1
    with pytest.raises(RuntimeError, match="mixes prompts"):
        _split_groups([{"prompt": "a"}, {"prompt": "b"}], [0, 0], [0, 0], [0, 0], [1, 1], 2)


def test_grpo_learns_from_an_extra_reward_and_keeps_its_reference():
    import torch

    env = ArithmeticEnv(eval_per_skill=10, pool_per_skill=20)
    student = GRPOStudent(env=env, model="tiny", tiny=TINY, num_generations=4, batch_size=16, max_completion_length=4,
                          learning_rate=2e-2, beta=0.05, rewards={"helpers_policies:digit_share": 1.0}, seed=1)
    start = {k: v.clone() for k, v in student.model.state_dict().items()}
    data = rows(env, 16)
    digits = [student.tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]

    def digit_mass():
        enc = student.tokenizer(list(data["prompt"]), return_tensors="pt", padding=True, padding_side="left")
        with torch.no_grad():
            probs = student.model(**enc).logits[:, -1].softmax(-1)
        return float(probs[:, digits].sum(-1).mean())

    before = digit_mass()
    for _ in range(3):
        report = student.train(data)
    assert report.metrics["rl/prompts"] == 16
    assert digit_mass() > 2 * before  # the reward pays for digits: the first token moves to digits
    # the KL reference is the student as the stage began, untouched by training (and no reload by name)
    ref = student.reference.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in start.items())
    assert any(not torch.equal(student.model.state_dict()[k], v) for k, v in start.items())
    assert "forward" not in student.model.__dict__ and "forward" not in student.reference.__dict__


def test_the_batch_layout_is_checked_before_anything_runs(tmp_path):
    from teachgym.config import ConfigError, load_config
    from teachgym.loop import run_experiment

    env = ArithmeticEnv(eval_per_skill=10, pool_per_skill=20)
    with pytest.raises(ValueError, match="multiple of num_generations"):
        GRPOStudent(env=env, tiny=TINY, num_generations=3, batch_size=8)
    with pytest.raises(ValueError, match="at least 2"):
        GRPOStudent(env=env, tiny=TINY, num_generations=1, batch_size=8)
    cfg = load_config({"env": {"name": "arithmetic", "eval_per_skill": 10, "pool_per_skill": 20},
                       "student": {"name": "grpo", "tiny": TINY, "num_generations": 8, "batch_size": 64},
                       "policy": {"name": "uniform"},
                       "loop": {"rounds": 1, "examples_per_round": 100, "output_dir": str(tmp_path)},
                       "tracking": {"enabled": False}})
    with pytest.raises(ConfigError, match=r"examples_per_round \(100\) must be a multiple of .* = 8 prompts.*=96"):
        run_experiment(cfg)
    with pytest.raises(ValueError, match="cannot import"):
        GRPOStudent(env=env, tiny=TINY, rewards={"no_such_module:f": 1.0})


def test_a_grpo_experiment_from_a_shared_warm_start(tmp_path, mlflow_store):
    """Warm start once, two seeds start from it; rollouts reach the teacher and MLflow; a checkpoint loads."""
    import mlflow

    from teachgym.config import load_config
    from teachgym.loop import run_experiment
    from teachgym.students.hf import resolve_model

    from helpers_policies import RolloutRecorder

    base = {
        "env": {"name": "arithmetic", "eval_per_skill": 10, "pool_per_skill": 40},
        "warm_start": {"student": {"name": "hf", "model": "tiny", "tiny": TINY, "learning_rate": 1e-2},
                       "rounds": 1, "examples_per_round": 64},
        "student": {"name": "grpo", "num_generations": 2, "batch_size": 8, "max_completion_length": 4},
        "policy": {"name": "helpers_policies:RolloutRecorder"},
        "loop": {"rounds": 2, "examples_per_round": 8, "output_dir": str(tmp_path / "out")},
        "tracking": {"checkpoints": "best", "plots": False},
    }
    RolloutRecorder.seen.clear()
    first = run_experiment(load_config(base))
    second = run_experiment(load_config(base, ["loop.seed=1"]))
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("teachgym/arithmetic")
    stages = client.search_runs([exp.experiment_id], "tags.`teachgym.stage` = 'warm-start'")
    assert len(stages) == 1 and stages[0].info.status == "FINISHED"  # trained once, for both seeds
    parents = [client.get_run(r.run_id) for r in (first, second)]
    model = parents[0].data.tags["teachgym.warm_start_model"]
    assert parents[1].data.tags["teachgym.warm_start_model"] == model and os.path.isdir(model)
    assert parents[0].data.tags["teachgym.warm_start_run"] == stages[0].info.run_id
    # the same starting weights: round 0 is the warm start's last round, for every seed
    warm_acc = client.get_metric_history(stages[0].info.run_id, "acc/mean")[-1].value
    assert first.rounds[0].mean_accuracy == second.rounds[0].mean_accuracy == pytest.approx(warm_acc)

    # the teacher sees round r-1's rollouts at round r, and the history keeps them
    seen = [s for s in RolloutRecorder.seen[:2]]
    assert seen[0][1] == {} and seen[1][1] and set(seen[1][1]) <= {s for s in first.rounds[0].accuracies}
    assert sum(st.groups for st in seen[1][1].values()) >= 8 and seen[1][2][-1] == seen[1][1]
    metrics = client.get_run(first.run_id).data.metrics
    for skill, st in seen[1][1].items():
        hist = {m.step: m.value for m in client.get_metric_history(first.run_id, f"rl/pass_rate/{skill}")}
        assert hist[1] == pytest.approx(st.pass_rate)
    assert metrics["rl/prompts"] == 8 and metrics["rl/completions"] == 16

    # an MLflow student checkpoint is a valid start
    best = parents[0].data.tags["teachgym.best_model_id"]
    path = resolve_model(f"models:/{best}")
    assert os.path.exists(os.path.join(path, "config.json"))
    env = ArithmeticEnv(eval_per_skill=10, pool_per_skill=40)
    again = GRPOStudent(env=env, model=f"models:/{best}", num_generations=2, batch_size=8)
    assert math.isfinite(again.loss(["1+1="], ["2"])[0])
    # and so is the output folder a run wrote
    assert resolve_model(first.output_dir) == os.path.join(first.output_dir, "student")


@pytest.mark.parametrize("policy", ["exp3", "tscl", "aioli", "targeted-synthesis", "learning-progress", "random",
                                    "learnability", "sec", "dump"])
def test_every_teacher_works_with_the_grpo_student(policy, tmp_path):
    """Mixtures, synthesis requests and aioli's probes (whose sizes do not fill a GRPO batch) all train."""
    from teachgym.config import load_config
    from teachgym.loop import run_experiment

    cfg = load_config({"env": {"name": "arithmetic", "eval_per_skill": 4, "pool_per_skill": 20},
                       "student": {"name": "grpo", "tiny": TINY, "num_generations": 2, "batch_size": 8,
                                   "max_completion_length": 4},
                       "policy": {"name": policy, **({"probe_fraction": 0.5} if policy == "aioli" else {})},
                       "loop": {"rounds": 2, "examples_per_round": 16, "output_dir": str(tmp_path),
                                "save_student": False},
                       "tracking": {"enabled": False}})
    result = run_experiment(cfg)
    last = result.rounds[-1]
    assert last.examples == 32  # probes included: they come out of the round's budget
    assert last.metrics["rl/completions"] == 2 * last.metrics["rl/prompts"]
    assert any(k.startswith("rl/pass_rate/") for k in last.metrics)


def test_the_warm_start_key_and_its_folder(tmp_path):
    from teachgym.config import load_config
    from teachgym.sweep import plan_sweep
    from teachgym.warm_start import stage_config

    cfg = {"env": {"name": "arithmetic"}, "student": {"name": "grpo"}, "policy": {"name": "sec"},
           "warm_start": {"rounds": 2}, "loop": {"output_dir": str(tmp_path)}}
    key, stage = stage_config(load_config(cfg))
    # the teacher, seed and student options of the experiment do not change the warm start; its own fields do
    assert stage_config(load_config(cfg, ["policy.name=dump", "loop.seed=3", "student.beta=0.1"]))[0] == key
    assert stage_config(load_config(cfg, ["warm_start.seed=1"]))[0] != key
    assert stage_config(load_config(cfg, ["env.pool_per_skill=10"]))[0] != key
    assert stage.loop.rounds == 2 and stage.policy.name == "uniform" and stage.student.name == "hf"
    assert stage.tracking.run_name == f"warm-start-{key}" and stage.tracking.tags["teachgym.stage"] == "warm-start"
    assert stage.loop.output_dir == str(tmp_path / "warm-start" / key / "run")
    # a sweep's trials share one warm start in the sweep's folder
    plan = plan_sweep(cfg, ["policy.name=sec,dump", "loop.seed=0:2"], name="w")
    dirs = {c.warm_start.dir for c in plan.configs.values()}
    assert dirs == {str(plan.directory / "warm-start")}


def test_use_vllm_without_vllm_is_a_config_error(tmp_path):
    import importlib.util

    from teachgym.config import ComponentConfig, ConfigError, build_component

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed")
    env = ArithmeticEnv(eval_per_skill=10, pool_per_skill=20)
    with pytest.raises(ConfigError, match=r"pip install 'teachgym\[vllm\]'"):
        build_component("students", "student", ComponentConfig(name="grpo", use_vllm=True), env=env)


@pytest.mark.parametrize("policy, teach_every, filtering", [("sec", "round", False), ("dump", "round", False),
                                                          ("dump", "step", True), ("learnability", "step", False),
                                                          ("sec", "step", False)])
def test_a_grpo_experiment_resumes_exactly(policy, teach_every, filtering, tmp_path, monkeypatch):
    """SIGTERM mid-round 2, then --resume: the same curves, rollouts and teacher decisions as a straight run, and
    per step the same step decisions (their round summaries are metrics) and filtered groups."""
    from test_resume import _StopInRound

    from teachgym.config import load_config
    from teachgym.interrupts import Interrupted
    from teachgym.loop import run_experiment

    def cfg(name):
        return load_config({
            "env": {"name": "arithmetic", "eval_per_skill": 4, "pool_per_skill": 20},
            "student": {"name": "grpo", "tiny": TINY, "num_generations": 2, "batch_size": 8,
                        "max_completion_length": 4, "beta": 0.1, "learning_rate": 1e-2, "filter_groups": filtering},
            "policy": {"name": policy},
            "loop": {"rounds": 3, "examples_per_round": 16, "output_dir": str(tmp_path / name), "save_student": False,
                     "teach_every": teach_every},
            "tracking": {"enabled": False}})

    reference = run_experiment(cfg("reference"))
    with monkeypatch.context() as m:
        _StopInRound(m, 2)
        with pytest.raises(Interrupted):
            run_experiment(cfg("resumed"))
    resumed = run_experiment(cfg("resumed"), resume=True)
    assert [r.action for r in resumed.rounds] == [r.action for r in reference.rounds]
    assert [r.metrics for r in resumed.rounds] == [r.metrics for r in reference.rounds]
    if teach_every == "step":
        assert reference.rounds[-1].metrics["teacher/steps"] == 4
    if filtering:
        assert reference.rounds[-1].metrics["rl/prompts"] >= 16
