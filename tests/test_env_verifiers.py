"""env.name=verifiers: a verifiers 0.4 taskset (defined here and in examples/) as an env, scored by its rewards."""

import asyncio
import importlib
import pickle
import sys
import textwrap
from pathlib import Path

import pytest

vf = pytest.importorskip("verifiers.v1")

from teachgym.checks import check_env  # noqa: E402
from teachgym.envs.verifiers import VerifiersEnv, VerifiersEnvError  # noqa: E402

from conftest import TINY  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "verifiers_env"


@pytest.fixture(autouse=True)
def example_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))


def taskset_module(tmp_path, monkeypatch, name, body, infinite=False):
    """A taskset package written for one test: arithmetic tasks with a skill field and the given Task body."""
    src = textwrap.dedent('''
        import asyncio
        import verifiers.v1 as vf
        __all__ = ["T"]

        class D(vf.TaskData):
            answer: str
            skill: str

        class Task(vf.Task[D]):
        {body}

        class T(vf.Taskset[Task]):
            INFINITE = {infinite}
            def load(self):
                i = 0
                while self.INFINITE or i < 120:
                    yield Task(D(prompt=f"{{i}}+1=", answer=str(i + 1), skill="ab"[i % 2]))
                    i += 1
    ''').format(body=textwrap.indent(textwrap.dedent(body), "    "), infinite=infinite)
    (tmp_path / f"{name}.py").write_text(src)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return name


CORRECT = '''
@vf.reward
async def correct(self, task, trace) -> float:
    return float(trace.last_reply.strip() == task.answer)
'''


def env(**kw):
    kw = {"taskset": "arithmetic_taskset", "taskset_args": {"n": 600}, "level_field": "digits",
          "eval_per_skill": 20, **kw}
    return VerifiersEnv(**kw)


def test_the_tasks_become_skills_levels_eval_items_and_a_pool_kept_apart():
    e = env()
    check_env(e, min_eval_per_skill=20)
    assert [s.name for s in e.skills] == ["add", "sub", "mul"]
    assert all(s.levels == (1, 2) for s in e.skills)
    ev, pool = e.eval_set(), e.pool()
    assert len(ev) == 60 and not set(ev["prompt"]) & set(pool["prompt"])
    tasks = {t.data.prompt_text: t.data for t in vf.load_taskset(
        vf.taskset_config_type("arithmetic_taskset").model_validate({"id": "arithmetic_taskset", "n": 600}))}
    for row in [*ev, *pool.select(range(50))]:  # each row is its task's prompt, answer, skill and level
        data = tasks[row["prompt"]]
        assert (row["completion"], row["skills"], row["level"]) == (data.answer, [data.skill], data.digits)
    assert e.name == "verifiers:arithmetic_taskset" and e.supports_generation is False
    from teachgym.registry import names, resolve

    assert "verifiers" in names("envs") and resolve("envs", "verifiers") is VerifiersEnv  # teachgym's entry point


def test_verify_is_the_tasks_weighted_rewards_against_the_threshold():
    e = env()
    prompt, gold = e.eval_set()[0]["prompt"], e.eval_set()[0]["completion"]
    wrong = str(int(gold) + 1)
    # correct (weight 1) + bare (weight 0.2): the right bare answer 1.2, right with extra text 1.0, wrong 0.2.
    assert e.rewards([prompt] * 3, [gold, f"{gold} ok", wrong]) == pytest.approx([1.2, 1.0, 0.2])
    assert e.verify_batch([prompt] * 3, [gold, f"{gold} ok", wrong]) == [True, True, False]
    assert e.verify(prompt, gold) and not e.verify(prompt, wrong)
    assert not e.verify("a prompt nobody loaded", gold)
    strict = env(threshold=1.1)
    assert strict.verify(prompt, gold) and not strict.verify(prompt, f"{gold} ok")


def test_a_batch_is_scored_concurrently_on_one_loop_from_any_caller(tmp_path, monkeypatch):
    name = taskset_module(tmp_path, monkeypatch, "vf_slow", '''
        live, most = [0], [0]
        @vf.reward
        async def correct(self, task, trace) -> float:
            Task.live[0] += 1
            Task.most[0] = max(Task.most[0], Task.live[0])
            await asyncio.sleep(0.01)
            Task.live[0] -= 1
            return float(trace.last_reply.strip() == task.answer)
    ''')
    e = VerifiersEnv(name, eval_per_skill=10, max_concurrency=8)
    task = sys.modules[name].Task
    task.most[0] = 0
    prompts, golds = e.eval_set()["prompt"], e.eval_set()["completion"]
    assert e.verify_batch(prompts, golds) == [True] * 20
    assert task.most[0] == 8  # 20 scorings, 8 at a time: never one after another, never over the limit

    async def inside_a_running_loop():  # e.g. a TRL async reward function, or a notebook
        return e.verify(prompts[0], golds[0])

    assert asyncio.run(inside_a_running_loop())
    copy = pickle.loads(pickle.dumps(e))  # the loop's thread is not pickled; the copy starts its own
    assert copy.verify(prompts[0], golds[0]) and not copy.verify(prompts[0], "0")


def test_a_reward_that_raises_on_an_output_scores_it_zero_and_warns_once(tmp_path, monkeypatch):
    name = taskset_module(tmp_path, monkeypatch, "vf_picky", '''
        @vf.reward
        async def correct(self, task, trace) -> float:
            if trace.last_reply == "boom":
                raise RuntimeError("cannot parse")
            return float(trace.last_reply.strip() == task.answer)
    ''')
    e = VerifiersEnv(name, eval_per_skill=10)
    p = e.eval_set()[0]["prompt"]
    with pytest.warns(UserWarning, match="cannot parse"):
        assert e.verify_batch([p, p, p], ["boom", "boom", e.eval_set()[0]["completion"]]) == [False, False, True]
    assert e.scoring_errors == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"taskset": "arithmetic_tasket"}, "no verifiers taskset 'arithmetic_tasket' is installed; did you mean "
                                       "'arithmetic_taskset'"),
    ({"skill_field": "skil"}, "env.skill_field: the tasks (ArithmeticData) have no field 'skil'; did you mean "
                              "'skill'?"),
    ({"level_field": "digit"}, "env.level_field: the tasks (ArithmeticData) have no field 'digit'"),
    ({"answer_field": "answr"}, "env.answer_field: the tasks (ArithmeticData) have no field 'answr'"),
    ({"taskset_args": {"n": "many"}}, "env.taskset_args.n: Input should be a valid integer"),
    ({"threshold": 1.5}, "env.answer_field: the reference answer"),  # no reply can reach it: caught now
    ({"skill_field": "digits"}, "env.skill_field: task 0 has digits=1; it must be a skill name"),
    ({"max_concurrency": 0}, "env.max_concurrency must be >= 1"),
])
def test_bad_input_is_named_before_round_0(kwargs, message):
    with pytest.raises(VerifiersEnvError) as info:
        env(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_broken_taskset_is_named_before_round_0(tmp_path, monkeypatch):
    raising = taskset_module(tmp_path, monkeypatch, "vf_raising", '''
        @vf.reward
        async def correct(self, task, trace) -> float:
            raise KeyError("gold")
    ''')
    with pytest.raises(VerifiersEnvError, match="scoring a reference answer of 'vf_raising'.*KeyError"):
        VerifiersEnv(raising, eval_per_skill=10)
    endless = taskset_module(tmp_path, monkeypatch, "vf_endless", CORRECT, infinite=True)
    with pytest.raises(VerifiersEnvError, match="env.limit: taskset 'vf_endless' never ends"):
        VerifiersEnv(endless, eval_per_skill=10)
    assert len(VerifiersEnv(endless, limit=100, eval_per_skill=10).eval_set()) == 20
    (tmp_path / "vf_not_a_taskset.py").write_text("__all__ = ['x']\nx = 1\n")
    with pytest.raises(VerifiersEnvError, match="'vf_not_a_taskset' is not a verifiers taskset"):
        VerifiersEnv("vf_not_a_taskset")


def test_the_fenced_private_name_is_where_it_was_checked():
    from importlib.metadata import version

    from verifiers.v1.state import state_cls  # noqa: F401 - the name the fence uses; fails loudly if moved

    from teachgym.envs import _verifiers_private

    assert version("verifiers") == _verifiers_private.CHECKED_AGAINST, "re-check envs/_verifiers_private.py"
    assert issubclass(_verifiers_private.state_class(vf.Task), vf.State)


def _client():
    import os

    from mlflow.tracking import MlflowClient

    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def test_teachgym_run_trains_an_sft_student_on_a_taskset_with_per_skill_metrics(tmp_path, capsys):
    from teachgym.cli import main

    code = main(["run", str(EXAMPLE / "sft.yaml"), "env.taskset_args.n=600", "env.eval_per_skill=10",
                 f"student.tiny={TINY}", "loop.rounds=1", "loop.examples_per_round=64",
                 f"loop.output_dir={tmp_path}", "loop.save_student=false"])
    assert code == 0, capsys.readouterr().err
    client = _client()
    experiment = client.get_experiment_by_name("teachgym/verifiers:arithmetic_taskset")
    metrics = {m for r in client.search_runs([experiment.experiment_id]) for m in r.data.metrics}
    assert {"acc/add", "acc/sub", "acc/mul", "loss/mul", "data/examples/add"} <= metrics


def test_teachgym_run_trains_a_grpo_student_rewarded_by_the_tasks_rewards(tmp_path, capsys):
    from teachgym.cli import main

    code = main(["run", str(EXAMPLE / "grpo.yaml"), "env.taskset_args.n=600", "env.eval_per_skill=6",
                 f"warm_start.student.tiny={TINY}", "warm_start.rounds=1", "warm_start.examples_per_round=32",
                 "loop.rounds=1", "loop.examples_per_round=8", "student.batch_size=16", "student.num_generations=4",
                 f"loop.output_dir={tmp_path}", "loop.save_student=false"])
    assert code == 0, capsys.readouterr().err
    client = _client()
    experiment = client.get_experiment_by_name("teachgym/verifiers:arithmetic_taskset")
    metrics = {k: v for r in client.search_runs([experiment.experiment_id]) for k, v in r.data.metrics.items()}
    assert metrics["rl/completions"] == 8 * 4  # 8 prompts, 4 completions each, every one scored by the rewards
    rates = {k.rsplit("/", 1)[1] for k in metrics if k.startswith("rl/pass_rate/")}
    assert rates and rates <= {"add", "sub", "mul"}
    assert {"acc/add", "acc/sub", "acc/mul"} <= set(metrics)


def test_a_bad_taskset_in_a_config_is_one_line_from_the_cli(tmp_path, capsys):
    from teachgym.cli import main

    code = main(["run", str(EXAMPLE / "sft.yaml"), "env.skill_field=kind", f"loop.output_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "env.skill_field: the tasks (ArithmeticData) have no field 'kind'" in err
