import pytest

from teachgym import Examples, InvalidActionError, Mixture, Request, Synthesize
from teachgym.engine import EngineError, largest_remainder, materialize
from teachgym.envs.arithmetic import ArithmeticEnv


def test_largest_remainder_by_hand():
    assert largest_remainder({"a": 0.5, "b": 0.3, "c": 0.2}, 10) == {"a": 5, "b": 3, "c": 2}
    # exact shares 3.33.., 3.33.., 3.33..: floors 3,3,3, the one left goes to the first in order
    assert largest_remainder({"a": 1, "b": 1, "c": 1}, 10) == {"a": 4, "b": 3, "c": 3}
    # 7 * (0.55, 0.45) = 3.85, 3.15 -> 3, 3, remainder to a
    assert largest_remainder({"a": 0.55, "b": 0.45}, 7) == {"a": 4, "b": 3}


def test_mixture_samples_the_pool_in_exact_proportions(small_env):
    weights = {"add_nocarry": 0.5, "sub_borrow": 0.3, "mul_2x1": 0.2}
    data, report = materialize(Mixture(weights), small_env, budget=100, seed=1)
    assert len(data) == 100
    assert report.examples == {"add_nocarry": 50, "add_carry": 0, "add_3d": 0, "sub_noborrow": 0,
                               "sub_borrow": 30, "mul_2x1": 20}
    assert report.sources == {"pool": 100}
    assert set(data.column_names) == {"prompt", "completion", "skills", "level", "source"}
    assert not set(data["prompt"]) & set(small_env.eval_set()["prompt"])
    again, _ = materialize(Mixture(weights), small_env, budget=100, seed=1)
    assert again["prompt"] == data["prompt"]  # reproducible by seed


def test_mixture_beyond_pool_size_reuses_the_pool(small_env):
    data, report = materialize(Mixture({"add_3d": 1.0}), small_env, budget=100, seed=0)  # pool has 40 rows
    assert report.examples["add_3d"] == 100 and len(set(data["prompt"])) == 40


def test_mixture_without_pool_uses_the_generator():
    env = ArithmeticEnv(eval_per_skill=5, pool_per_skill=0)
    data, report = materialize(Mixture({"add_carry": 1, "sub_noborrow": 1}), env, budget=30, seed=0)
    assert report.sources == {"generator": 30} and report.examples["add_carry"] == 15
    assert len(set(data["prompt"])) == 30  # synthesised rows are de-duplicated


def test_synthesize_is_scaled_to_the_budget(small_env):
    action = Synthesize([Request("add_carry", 3, level=1), Request("mul_2x1", 1)])
    data, report = materialize(action, small_env, budget=40, seed=0)
    assert report.requested == {"add_carry": 30, "mul_2x1": 10}
    assert report.examples["add_carry"] == 30 and report.sources == {"generator": 40}
    assert all(lv == 1 for lv, sk in zip(data["level"], data["skills"]) if sk == ["add_carry"])


class _BadGenerator(ArithmeticEnv):
    """Every third generated row has a wrong answer, and one is an eval prompt."""

    def generate(self, skill, n, level=None, seed=0):
        rows = super().generate(skill, n, level, seed)
        for i, r in enumerate(rows):
            if i % 3 == 1:
                r["completion"] = r["completion"] + "1"
        if len(rows) > 3:
            ev = self.eval_set()[0]
            rows[-1] = {**ev, "source": "generator"}
        return rows


def test_rows_failing_the_verifier_or_leaking_eval_are_dropped_and_counted():
    env = _BadGenerator(eval_per_skill=5, pool_per_skill=0)
    data, report = materialize(Synthesize([Request("add_carry", 30)]), env, budget=30, seed=0)
    assert len(data) == 30
    assert report.dropped["failed_verifier"] >= 10 and report.dropped["eval_overlap"] >= 1
    assert all(env.verify(p, c) for p, c in zip(data["prompt"], data["completion"]))
    assert {r["reason"] for r in report.rejected_sample} == {"failed_verifier", "eval_overlap"}


def test_generator_that_never_passes_raises():
    class AlwaysWrong(ArithmeticEnv):
        def generate(self, skill, n, level=None, seed=0):
            return [{**r, "completion": "x"} for r in super().generate(skill, n, level, seed)]

    with pytest.raises(EngineError, match="no usable rows for 'add_3d'"):
        materialize(Synthesize([Request("add_3d", 10)]), AlwaysWrong(eval_per_skill=5, pool_per_skill=0), 10, 0)


def test_teacher_examples_are_verified_and_cycled(small_env):
    rows = [
        {"prompt": "12+34=", "completion": "46", "skills": ["add_nocarry"]},
        {"prompt": "19+19=", "completion": "38", "skills": ["add_carry"], "level": 2},
        {"prompt": "19+19=", "completion": "39", "skills": ["add_carry"]},  # wrong
    ]
    data, report = materialize(Examples(rows), small_env, budget=5, seed=0)
    assert report.dropped == {"failed_verifier": 1}
    assert sorted(data["prompt"]) == ["12+34=", "12+34=", "12+34=", "19+19=", "19+19="]
    assert set(data["source"]) == {"teacher"}


def test_teacher_examples_all_garbage_is_an_invalid_action(small_env):
    with pytest.raises(InvalidActionError, match="none of the teacher's 1 rows passed"):
        materialize(Examples([{"prompt": "2+2=", "completion": "5", "skills": ["add_nocarry"]}]), small_env, 5, 0)


def test_invalid_action_is_rejected_before_building(small_env):
    with pytest.raises(InvalidActionError, match="unknown skills"):
        materialize(Mixture({"division": 1.0}), small_env, 10, 0)


def test_request_larger_than_the_item_space_repeats_distinct_rows():
    env = ArithmeticEnv(eval_per_skill=5, pool_per_skill=0)
    # mul_2x1 level 1 is 10..99 times 2 or 3: 180 prompts, a few of them held out for eval.
    data, report = materialize(Synthesize([Request("mul_2x1", 1000, level=1)]), env, budget=1000, seed=0)
    distinct = len(set(data["prompt"]))
    assert len(data) == 1000 and 170 <= distinct <= 180
    assert report.repeated == {"mul_2x1": 1000 - distinct}
    assert not set(data["prompt"]) & set(env.eval_set()["prompt"])
