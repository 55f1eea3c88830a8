"""Teaching inside a GRPO round: the BatchSource, per-step teachers, online filtering, their metrics and checks."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from teachgym.config import ConfigError, load_config
from teachgym.steps import BatchSource
from teachgym.types import InvalidActionError, Mixture, PolicyError, RolloutStats, Skill, merge_rollouts

from conftest import TINY

SKILLS = (Skill("a"), Skill("b"), Skill("c"))


def stats(groups: int, p: float, zero: float = 0.0, adv: float = 0.5) -> RolloutStats:
    return RolloutStats(pass_rate=p, learnability=p * (1 - p), mean_abs_advantage=adv, zero_variance_share=zero,
                        completion_length=3.0, groups=groups, completions=4 * groups)


def reservoir(n: int = 5) -> dict[str, list[dict]]:
    return {s.name: [{"prompt": f"{s.name}{i}", "skills": [s.name]} for i in range(n)] for s in SKILLS}


def test_merge_rollouts_weights_by_groups_and_completions():
    merged = merge_rollouts([{"a": stats(1, 1.0, zero=1.0, adv=0.0)},
                             {"a": stats(3, 0.5, adv=1.0), "b": stats(2, 0.0)}])
    a = merged["a"]
    assert a.groups == 4 and a.completions == 16
    assert a.pass_rate == pytest.approx((1.0 * 4 + 0.5 * 12) / 16)
    assert a.zero_variance_share == pytest.approx(0.25) and a.learnability == pytest.approx(3 * 0.25 / 4)
    assert a.mean_abs_advantage == pytest.approx(12 / 16)
    assert merged["b"].groups == 2 and merge_rollouts([]) == {}


def test_a_source_without_a_teacher_draws_the_prior_and_cycles_each_skill():
    source = BatchSource(reservoir(3), {"a": 3, "b": 1, "c": 0}, SKILLS, round=1, seed=0)
    assert not source.stepping and source.prior == {"a": 0.75, "b": 0.25, "c": 0.0}
    rows = source.refill(400)
    counts = Counter(r["skills"][0] for r in rows)
    assert counts["c"] == 0 and 0.68 < counts["a"] / 400 < 0.82
    # a skill's 3 rows come round again, each pass in a new order, every row once per pass
    a = [r["prompt"] for r in rows if r["skills"] == ["a"]]
    assert all(sorted(a[i : i + 3]) == ["a0", "a1", "a2"] for i in range(0, len(a) - 2, 3))
    # the same seed draws the same prompts
    again = BatchSource(reservoir(3), {"a": 3, "b": 1, "c": 0}, SKILLS, round=1, seed=0)
    assert again.refill(400) == rows


def test_a_stepping_teacher_sees_each_batch_and_picks_the_next():
    seen = []

    def teacher(obs):
        seen.append(obs)
        return Mixture({"c": 1.0}) if obs.step else Mixture({"a": 1.0, "b": 1.0})

    source = BatchSource(reservoir(), {"a": 1, "b": 1, "c": 1}, SKILLS, round=2, seed=1, teacher=teacher)
    source.steps_total = 2
    first = source.batch(4)
    assert {r["skills"][0] for r in first} <= {"a", "b"}
    source.observe({"a": stats(2, 1.0, zero=1.0), "b": stats(2, 0.5)}, prompts=4, completions=16, kept=first)
    second = source.batch(4)
    assert {r["skills"][0] for r in second} == {"c"} and source.refill(3)[0]["skills"] == ["c"]  # refills follow it
    source.observe({"c": stats(4, 0.25)}, prompts=6, completions=24, kept=second, dropped=2, filled=1)
    assert [o.step for o in seen] == [0, 1] and seen[0].last == {} and seen[1].round == 2
    assert seen[1].last["b"].pass_rate == 0.5 and seen[1].prompts == 4 and seen[1].completions == 16
    assert seen[1].steps_total == 2 and seen[1].prior == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    # the log: one entry per batch, the decision and the filter's counts; the round's summary
    assert source.log[0]["teacher/step_weight/a"] == 0.5 and source.log[1]["teacher/step_weight/c"] == 1.0
    assert source.log[0]["teacher/step_zero_variance_share"] == 0.5 and source.log[1]["filter/dropped_groups"] == 2
    summary = source.summary(filtering=True)
    assert summary["teacher/steps"] == 2 and summary["teacher/step_mean_weight/c"] == 0.5
    assert summary["teacher/step_change"] == pytest.approx(1.0)  # {a: .5, b: .5} -> {c: 1}: total variation 1
    assert summary["teacher/step_prior_distance"] == pytest.approx(0.5 * (abs(0.25 - 1 / 3) * 2 + abs(0.5 - 1 / 3)))
    assert summary["filter/generated_prompts"] == 10 and summary["filter/filled_groups"] == 1
    assert summary["filter/extra_generation"] == pytest.approx(10 / 8 - 1)
    assert len(source.trained) == 8


@pytest.mark.parametrize("answer, error, match", [
    (Mixture({"zzz": 1.0}), InvalidActionError, "zzz"),
    ({"a": 1.0}, InvalidActionError, "must return a Mixture"),
    (ZeroDivisionError("boom"), PolicyError, r"raised ZeroDivisionError in step\(\) at round 1, step 0: boom"),
])
def test_a_step_that_returns_garbage_is_caught_before_generation(answer, error, match):
    def teacher(obs):
        if isinstance(answer, Exception):
            raise answer
        return answer

    source = BatchSource(reservoir(), {"a": 1}, SKILLS, round=1, seed=0, teacher=teacher, name="mine")
    with pytest.raises(error, match=match):
        source.batch(4)


def _grpo_config(tmp_path, policy="dump", **loop):
    return {"env": {"name": "arithmetic", "eval_per_skill": 4, "pool_per_skill": 20},
            "student": {"name": "grpo", "tiny": TINY, "num_generations": 2, "batch_size": 8,
                        "max_completion_length": 4, "learning_rate": 1e-2},
            "policy": {"name": policy},
            "loop": {"rounds": 2, "examples_per_round": 16, "output_dir": str(tmp_path), "save_student": False,
                     **loop},
            "tracking": {"enabled": False}}


@pytest.mark.parametrize("change, match", [
    ({"policy": {"name": "uniform"}, "loop": {"teach_every": "step"}}, r"needs a policy with step\(observation\)"),
    ({"student": {"name": "hf", "tiny": TINY}, "loop": {"teach_every": "step"}}, "draws its prompts batch by batch"),
    ({"loop": {"teach_every": "sometimes"}}, "teach_every"),
])
def test_a_setup_that_cannot_step_is_refused_before_round_0(tmp_path, change, match):
    from teachgym.loop import run_experiment

    cfg = _grpo_config(tmp_path)
    for section, values in change.items():
        cfg[section] = {**cfg[section], **values} if section != "student" else values
    with pytest.raises(ConfigError, match=match):
        run_experiment(load_config(cfg))


def test_the_simulated_student_says_it_cannot_step(tmp_path):
    from teachgym.loop import run_experiment

    cfg = _grpo_config(tmp_path, teach_every="step")
    cfg["student"] = {"name": "simulated"}
    with pytest.raises(ConfigError, match="'simulated' trains on whole rounds"):
        run_experiment(load_config(cfg))


def test_per_step_teaching_and_filtering_in_the_loop_with_mlflow(tmp_path, mlflow_store):
    """dump steps inside each round and the student filters: the budget holds, every trained group has signal
    unless it filled a short batch, the decisions are on the parent (summary) and in the round's run (series)."""
    import mlflow

    from teachgym.loop import run_experiment

    cfg = _grpo_config(tmp_path, teach_every="step")
    cfg["student"] = {**cfg["student"], "filter_groups": True, "filter_oversample": 1.5, "filter_max_draws": 3}
    cfg["tracking"] = {"enabled": True, "plots": False, "log_predictions": False}
    result = run_experiment(load_config(cfg))
    last = result.rounds[-1]
    m = last.metrics
    assert last.examples == 32  # the budget is the round's: 16 prompts trained a round
    assert m["rl/trained_prompts"] == 16 and m["rl/prompts"] >= 16 * 1.5 and m["rl/completions"] == 2 * m["rl/prompts"]
    assert m["filter/generated_prompts"] == m["rl/prompts"]
    assert m["filter/extra_generation"] == pytest.approx(m["rl/prompts"] / 16 - 1)
    assert m["teacher/steps"] == 16 * 2 // 8  # one decision per generation batch (8 completions = 4 prompts)
    means = [v for k, v in m.items() if k.startswith("teacher/step_mean_weight/")]
    assert len(means) == len(last.accuracies) and math.isclose(sum(means), 1.0)
    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.metrics["teacher/steps"] == 4
    exp = run.info.experiment_id
    child = client.search_runs([exp], f"tags.mlflow.parentRunId = '{result.run_id}' and tags.mlflow.runName = "
                                      f"'round-02'")[0]
    series = client.get_metric_history(child.info.run_id, "filter/dropped_groups")
    assert sorted(x.step for x in series) == [0, 1, 2, 3]
    weights = [k for k in child.data.metrics if k.startswith("teacher/step_weight/")]
    assert weights and all(len(client.get_metric_history(child.info.run_id, k)) == 4 for k in weights)


def test_the_filter_keeps_only_groups_with_signal_and_joins_the_batches():
    """Directly on the trainer's hook: kept groups have reward variance (or fill a short batch), and the joined
    batch is padded as TRL pads it."""
    import torch

    from teachgym.students._rollouts import join as _join
    from teachgym.students._rollouts import take as _take

    a = {"prompt_ids": torch.tensor([[5, 6], [5, 6]]), "prompt_mask": torch.ones(2, 2, dtype=torch.long),
         "completion_ids": torch.tensor([[1, 2, 3], [1, 0, 0]]),
         "completion_mask": torch.tensor([[1, 1, 1], [1, 0, 0]]),
         "advantages": torch.tensor([1.0, -1.0]), "num_items_in_batch": torch.tensor(4)}
    b = {"prompt_ids": torch.tensor([[7, 8, 9], [7, 8, 9]]), "prompt_mask": torch.ones(2, 3, dtype=torch.long),
         "completion_ids": torch.tensor([[4], [4]]), "completion_mask": torch.tensor([[1], [1]]),
         "advantages": torch.tensor([0.5, -0.5]), "num_items_in_batch": torch.tensor(2)}
    joined = _join([_take(a, 0, 2), _take(b, 0, 2)], pad_id=0)
    assert joined["prompt_ids"].tolist() == [[0, 5, 6], [0, 5, 6], [7, 8, 9], [7, 8, 9]]  # left-padded
    assert joined["prompt_mask"].tolist()[0] == [0, 1, 1]
    assert joined["completion_ids"].tolist()[2] == [4, 0, 0] and joined["completion_mask"].tolist()[2] == [1, 0, 0]
    assert int(joined["num_items_in_batch"]) == 6 and joined["advantages"].tolist() == [1.0, -1.0, 0.5, -0.5]
    with pytest.raises(RuntimeError, match="cannot split"):
        _take({**a, "num_images": [1, 1]}, 0, 2)


def test_a_grpo_round_with_a_filter_trains_only_groups_with_signal():
    from teachgym.envs.arithmetic import ArithmeticEnv
    from teachgym.students.grpo import GRPOStudent

    class CoinEnv(ArithmeticEnv):
        def verify(self, prompt: str, output: str) -> bool:
            return sum(map(ord, output)) % 2 == 0

    env = CoinEnv(eval_per_skill=4, pool_per_skill=30)
    student = GRPOStudent(env=env, tiny=TINY, num_generations=4, batch_size=8, max_completion_length=4,
                          filter_groups=True, filter_max_draws=6, examples_per_round=8)
    pool = env.pool()
    data = pool.select(range(8))
    source = BatchSource({s.name: [r for r in pool.to_list() if s.name in r["skills"]] for s in env.skills},
                         {s.name: 1.0 for s in env.skills}, env.skills, round=1, seed=0)
    trained = []
    real = source.observe

    def observe(stats, prompts, completions, kept, dropped=0, filled=0):
        trained.append((len(kept), dropped, filled, prompts))
        real(stats, prompts, completions, kept, dropped, filled)

    source.observe = observe
    report = student.train_batches(data, source)
    assert report.steps == 8 * 4 // 8 and [t[0] for t in trained] == [2] * 4  # each step: 2 prompts kept
    assert report.metrics["rl/trained_prompts"] == 8
    assert report.metrics["rl/prompts"] == sum(t[3] for t in trained) >= 8
    # a dropped group had no variance: the kept ones did, unless they filled a short batch
    zero = report.metrics["rl/zero_variance_share"] * report.metrics["rl/prompts"]
    assert sum(t[1] for t in trained) == pytest.approx(zero)
    with pytest.raises(ValueError, match="filter_band"):
        GRPOStudent(env=env, tiny=TINY, num_generations=4, batch_size=8, filter_band=[0.8, 0.2])
    with pytest.raises(ValueError, match="filter_oversample"):
        GRPOStudent(env=env, tiny=TINY, num_generations=4, batch_size=8, filter_oversample=0.5)


def test_the_gym_refuses_a_filtering_student():
    gymnasium = pytest.importorskip("gymnasium")
    import teachgym.gym  # noqa: F401 - registers the envs

    env = gymnasium.make("teachgym/Arithmetic-v0", student="grpo", env_kwargs={"eval_per_skill": 2},
                         student_kwargs={"tiny": TINY, "num_generations": 2, "batch_size": 4, "filter_groups": True},
                         rounds=1, examples_per_round=4)
    with pytest.raises(ConfigError, match="filter_groups needs teachgym run"):
        env.reset(seed=0)


class _ForgetsItsSteps:
    """Counts its steps but leaves the count out of its state: --resume could not reproduce it."""

    def __init__(self) -> None:
        self.rounds, self.steps = 0, 0

    def act(self, observation):
        self.rounds += 1
        return Mixture({s.name: 1.0 for s in observation.skills})

    def step(self, observation):
        self.steps += 1
        return Mixture({observation.skills[0]: float(self.steps), observation.skills[1]: 1.0})

    def state_dict(self):
        return {"rounds": self.rounds}

    def load_state_dict(self, state):
        self.rounds = state["rounds"]


class _StepsBadly(_ForgetsItsSteps):
    def step(self, observation):
        return {"a": 1.0}


def test_the_policy_checker_runs_the_steps_of_a_per_step_policy():
    from teachgym.checks import CheckError, check_policy

    with pytest.raises(CheckError, match=r"what step\(\) learns must be in state_dict\(\)"):
        check_policy(_ForgetsItsSteps)
    with pytest.raises(CheckError, match=r"step\(\) must return a Mixture, not dict"):
        check_policy(_StepsBadly)
