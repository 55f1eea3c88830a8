"""Before round 0: questions and answers that cannot fit the student stop the run by name (teachgym.fit); evaluation
batches are sized by tokens; an empty training set is a clear error."""

import pytest

from teachgym.cli import main
from teachgym.config import ComponentConfig, build_component
from teachgym.fit import FitError, check_fit, problems
from teachgym.students._hf_parts import token_batches

from conftest import TINY


def test_each_limit_is_named_with_the_setting_to_change():
    limits = {"context": (64, "student.tiny.max_position_embeddings"), "train": (40, "student.max_length"),
              "completion": (8, "student.max_completion_length")}
    found = problems({"ok": (10, 4), "long": (60, 12)}, limits, max_new_tokens=10)
    assert len(found) == 4 and all(f.startswith("long: ") for f in found)
    assert "gold answers run to 12 tokens, but loop.max_new_tokens=10" in found[0] and found[0].endswith("=12")
    assert "student.max_completion_length=8 cuts every rollout" in found[1]
    assert "70 positions, more than the student's 64 (student.tiny.max_position_embeddings)" in found[2]
    assert "run to 73 tokens, longer than student.max_length=40" in found[3]
    assert problems({"ok": (10, 4)}, limits, max_new_tokens=10) == []


def _student(env, **tiny):
    return build_component("students", "student", ComponentConfig(name="hf", model="tiny", tiny={**TINY, **tiny}),
                           seed=0, env=env)


def test_the_check_measures_the_envs_eval_set_in_the_students_tokens():
    env = build_component("envs", "env", ComponentConfig(name="arithmetic", eval_per_skill=4, pool_per_skill=10))
    student = _student(env)
    check_fit(env, student, max_new_tokens=16)  # the default fits
    with pytest.raises(FitError, match=r"add_3d: gold answers run to 4 tokens, but loop.max_new_tokens=3"):
        check_fit(env, student, max_new_tokens=3)  # "0629": four bytes, no BOS counted
    small = _student(env, max_position_embeddings=16)
    with pytest.raises(FitError, match=r"more than the student's 16 \(student.tiny.max_position_embeddings\)"):
        check_fit(env, small, max_new_tokens=16)


def test_a_run_that_cannot_fit_stops_before_round_0_by_name(capsys, tmp_path):
    args = ["run", "configs/arithmetic.yaml", "env.eval_per_skill=4", "env.pool_per_skill=20",
            f"student.tiny={TINY}".replace("'", '"'), "loop.max_new_tokens=2", f"loop.output_dir={tmp_path / 'out'}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "do not fit the student" in err and "set loop.max_new_tokens=4" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # no run folder: it stopped before anything was created


def test_evaluation_batches_shrink_for_long_rows_and_keep_the_row_batches_for_short_ones():
    assert list(token_batches([8] * 600, 256, 32768, 16)) == [(0, 256), (256, 512), (512, 600)]
    spans = list(token_batches([5, 5, 100, 5, 5, 3000, 5], 256, 300, 16))
    assert spans == [(0, 2), (2, 4), (4, 5), (5, 6), (6, 7)]  # a row too long for any batch is one alone
    assert [i for s, e in spans for i in range(s, e)] == list(range(7))


def test_generate_and_loss_are_the_same_in_token_sized_batches():
    env = build_component("envs", "env", ComponentConfig(name="arithmetic", eval_per_skill=6, pool_per_skill=10))
    student = _student(env)
    prompts = list(env.eval_set()["prompt"])
    golds = list(env.eval_set()["completion"])
    answers, losses = student.generate(prompts, max_new_tokens=4), student.loss(prompts, golds)
    student.options.eval_batch_tokens = 40  # a handful of rows per batch
    assert student.generate(prompts, max_new_tokens=4) == answers
    assert student.loss(prompts, golds) == pytest.approx(losses, abs=1e-5)


def test_an_empty_training_set_is_a_clear_error():
    from teachgym.config import LoopConfig
    from teachgym.engine import EngineError
    from teachgym.steps import train_round

    with pytest.raises(EngineError, match="round 3: no rows to train on"):
        train_round(None, None, [], None, LoopConfig(), None, 3, 0, set(), "uniform")


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    import pathlib

    monkeypatch.chdir(pathlib.Path(__file__).parent.parent)
