"""env.name=reasoning-gym: skills from each task's curriculum, eval items apart from training, the task's scorer."""

import socket

import pytest

pytest.importorskip("reasoning_gym")

from teachgym.checks import check_env  # noqa: E402
from teachgym.config import ComponentConfig, ConfigError, build_component  # noqa: E402
from teachgym.envs.reasoning import ReasoningGymEnv, ReasoningGymError, extract_answer  # noqa: E402


def make(**kwargs):
    return build_component("envs", "env", ComponentConfig(name="reasoning-gym", **kwargs))


@pytest.fixture(scope="module")
def env():
    return ReasoningGymEnv(["basic_arithmetic", "spell_backward"], levels=[0, 1, 2], eval_per_skill=40,
                           pool_per_skill=200)


def test_skills_are_task_and_level_with_the_levels_below_as_prerequisites(env):
    names = [s.name for s in env.skills]
    assert names == [f"{t}:{lv}" for t in ("basic_arithmetic", "spell_backward") for lv in (0, 1, 2)]
    by = {s.name: s for s in env.skills}
    assert by["spell_backward:0"].prerequisites == ()
    assert by["spell_backward:2"].prerequisites == ("spell_backward:1",)
    assert by["spell_backward:1"].levels == (1,)
    # The description carries the curriculum's values at that level (upper-bound: one word length each).
    assert "max_word_len=5, min_word_len=5" in by["spell_backward:1"].description
    lengths = {r["level"]: len(r["completion"]) for r in env.eval_set() if r["skills"] == ["spell_backward:2"]}
    assert lengths == {2: 7}


def test_passes_check_env(env):
    check_env(env, min_eval_per_skill=40)


def test_no_eval_question_is_ever_a_training_row_and_the_seeds_are_apart(env):
    ev = env.eval_set()
    eval_prompts = set(ev["prompt"])
    assert len(eval_prompts) == len(ev) == 6 * 40
    training = set(env.pool()["prompt"])
    for s in env.skills:
        for seed in range(5):
            training |= {r["prompt"] for r in env.generate(s.name, 300, seed=seed)}
    assert len(training) > 2000
    assert not eval_prompts & training
    # Beyond distinct questions: no training row comes from an eval item's random stream.
    for src in env._sources.values():
        assert src.eval.seed + len(src.eval) <= src.train.seed


def test_levels_as_sub_skills_groups_levels_under_their_task():
    env = ReasoningGymEnv(["chain_sum", "spell_backward"], levels={"chain_sum": [1, 2], "spell_backward": [0, 1, 2, 3]},
                          levels_as="sub-skills", eval_per_skill=20, pool_per_skill=50)
    assert [(s.name, s.levels) for s in env.skills] == [("chain_sum", (1, 2)), ("spell_backward", (0, 1, 2, 3))]
    rows = env.generate("chain_sum", 10, level=2, seed=0)
    assert {r["level"] for r in rows} == {2} and all(r["skills"] == ["chain_sum"] for r in rows)
    # The evaluation's skill-tree leaves are (task, level): the levels grouped under their task.
    from teachgym.evaluation import evaluate

    class Gold:  # answers every level-1 item right, nothing else
        def generate(self, prompts, max_new_tokens=16, batch_size=1):
            ev = env.eval_set()
            gold = {p: (c if lv == 1 else "?") for p, c, lv in zip(ev["prompt"], ev["completion"], ev["level"])}
            return [gold[p] for p in prompts]

        def loss(self, prompts, completions, batch_size=1):
            return [1.0] * len(prompts)

    result = evaluate(Gold(), env)
    assert set(result.subskills) == {"chain_sum", "spell_backward"}
    assert {lv: st.accuracy for lv, st in result.subskills["chain_sum"].items()} == {1: 1.0, 2: 0.0}
    assert result.subskills["spell_backward"][1].accuracy == 1.0
    assert result.subskills["spell_backward"][0].accuracy == 0.0


def test_verify_reads_the_answer_tag_and_a_malformed_answer_is_wrong(env):
    row = env.eval_set()[0]
    p, gold = row["prompt"], row["completion"]
    assert env.verify(p, gold) and env.verify(p, f" {gold}\n")
    assert env.verify(p, f"I think <answer>7</answer> no, <answer> {gold} </answer>")
    assert extract_answer("<answer>1</answer> then <answer>2</answer>") == "2"
    for junk in ["", "<answer></answer>", "\x00\udcff", "9" * 10_000, "<answer>", "NaN", "1/0"]:
        assert env.verify(p, junk) is False
    assert env.verify("a question nobody generated", gold) is False


def test_threshold_takes_the_tasks_partial_credit():
    strict = ReasoningGymEnv(["spell_backward"], levels=[2], eval_per_skill=10, pool_per_skill=0)
    lenient = ReasoningGymEnv(["spell_backward"], levels=[2], eval_per_skill=10, pool_per_skill=0, threshold=0.5)
    row = strict.eval_set()[0]
    half = row["completion"][:5] + "xx"  # 5 of 7 letters in place: score_answer gives 5/7
    assert not strict.verify(row["prompt"], half)
    assert lenient.verify(row["prompt"], half)
    assert not lenient.verify(row["prompt"], "zz")


def test_checker_math_also_accepts_equal_values():
    pytest.importorskip("math_verify")
    plain = ReasoningGymEnv(["basic_arithmetic"], levels=[0], eval_per_skill=10, pool_per_skill=0)
    maths = ReasoningGymEnv(["basic_arithmetic"], levels=[0], eval_per_skill=10, pool_per_skill=0, checker="math")
    row = next(r for r in plain.eval_set() if r["completion"].lstrip("-").isdigit())
    boxed = f"so the result is \\boxed{{{row['completion']}}}"
    assert not plain.verify(row["prompt"], boxed)
    assert maths.verify(row["prompt"], boxed)
    assert not maths.verify(row["prompt"], f"\\boxed{{{int(row['completion']) + 1}}}")


@pytest.mark.parametrize("kwargs, message", [
    ({"tasks": ["chain_summ"]}, "unknown reasoning-gym task 'chain_summ'; did you mean 'chain_sum'"),
    ({"tasks": ["chain_sum"], "levels": [11]}, "task 'chain_sum' has levels 0-10, not [11]"),
    ({"tasks": ["gsm_symbolic"], "levels": [1]}, "has levels 0 only (it has no curriculum)"),
    ({"tasks": ["chain_sum"], "levels": {"chian_sum": [0]}}, "env.levels names tasks that are not in env.tasks"),
    ({"tasks": ["chain_sum"], "config": {"chain_sum": {"allow_negatoin": True}}},
     "unknown fields 'allow_negatoin' (did you mean 'allow_negation'?)"),
    ({"tasks": ["chain_sum"], "config": {"chain_sum": {"min_terms": 3}}}, "set by the curriculum level"),
    ({"tasks": ["composite"]}, "task 'composite' level 0: cannot build its dataset"),
    ({"tasks": ["coin_flip"], "levels": [0]}, "'coin_flip' level 0 has only 8 distinct questions"),
    ({"tasks": ["graph_color"], "levels": [0], "eval_per_skill": 5}, "its own score_answer rejects"),
    ({"tasks": ["codeio"], "levels": [0], "eval_per_skill": 5}, "makes a different question from the same seed"),
    ({"tasks": ["chain_sum"], "threshold": 0}, "env.threshold must be in (0, 1]"),
    ({"tasks": ["chain_sum"], "levels_as": "tree"}, "env.levels_as must be one of"),
    ({"tasks": []}, "env.tasks is empty"),
])
def test_bad_options_name_what_is_valid(kwargs, message):
    with pytest.raises(ConfigError) as e:
        make(**{"eval_per_skill": 10, "pool_per_skill": 0, **kwargs})
    assert message in str(e.value)


def test_the_configured_tasks_need_no_network(monkeypatch):
    import pathlib

    import yaml

    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    path = pathlib.Path(__file__).parent.parent / "configs" / "reasoning_gym.yaml"
    cfg = yaml.safe_load(path.read_text())["env"]
    env = ReasoningGymEnv(**{**{k: v for k, v in cfg.items() if k != "name"}, "eval_per_skill": 20,
                             "pool_per_skill": 20})
    for s in env.skills:
        assert len(env.generate(s.name, 20, seed=0)) == 20


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _client():
    import os

    from mlflow.tracking import MlflowClient

    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def test_a_run_logs_each_task_and_level_as_a_skill(tmp_path):
    from teachgym.config import load_config
    from teachgym.loop import run_experiment

    from conftest import TINY

    cfg = load_config(ROOT / "configs" / "reasoning_gym.yaml", [
        "env.eval_per_skill=8", "env.pool_per_skill=50", f"student.tiny={TINY}", "loop.rounds=1",
        "loop.examples_per_round=64", f"loop.output_dir={tmp_path}", "loop.save_student=false",
        "policy.name=targeted-synthesis",  # the generator, by skill and level
    ])
    result = run_experiment(cfg)
    assert set(result.final.accuracies) == {"spell_backward:0", "spell_backward:1", "gcd:0", "gcd:1"}
    run = _client().get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert {"acc/spell_backward:1", "loss/gcd:1", "data/examples/gcd:0"} <= set(run.data.metrics)


def test_the_skill_tree_shows_levels_under_their_task_and_synthesis_asks_for_a_level(tmp_path):
    from teachgym.config import load_config
    from teachgym.loop import run_experiment

    from conftest import TINY

    cfg = load_config(ROOT / "configs" / "reasoning_gym.yaml", [
        "env.levels_as=sub-skills", "env.eval_per_skill=6", "env.pool_per_skill=0", f"student.tiny={TINY}",
        "loop.rounds=1", "loop.examples_per_round=40", "loop.state=skill-tree", f"loop.output_dir={tmp_path}",
        "loop.save_student=false", "policy.name=targeted-synthesis", "tracking.enabled=false",
    ])
    result = run_experiment(cfg)
    assert set(result.final.accuracies) == {"spell_backward", "gcd"}
    action = result.final.action
    assert action["type"] == "synthesize"
    # Ties at round 0 go to the easiest level first: the level-0 leaves, then the level-1 ones, in task order.
    assert [(r["skill"], r["level"]) for r in action["requests"]] == [
        ("spell_backward", 0), ("gcd", 0), ("spell_backward", 1)]
    assert sum(r["n"] for r in action["requests"]) == 40
    assert result.final.metrics["data/examples/spell_backward"] > 0


def test_a_grpo_round_is_rewarded_by_the_tasks_scorer(tmp_path):
    from teachgym.config import load_config
    from teachgym.loop import run_experiment

    from conftest import TINY

    cfg = load_config(ROOT / "configs" / "reasoning_gym_grpo.yaml", [
        "env.eval_per_skill=4", "env.pool_per_skill=20", f"warm_start.student.tiny={TINY}", "warm_start.rounds=1",
        "warm_start.examples_per_round=32", "loop.rounds=1", "loop.examples_per_round=8", "student.batch_size=16",
        "student.num_generations=4", f"loop.output_dir={tmp_path}", "loop.save_student=false",
    ])
    result = run_experiment(cfg)
    m = result.final.metrics
    assert m["rl/completions"] == 8 * 4  # 8 prompts, 4 completions each, every one scored
    rates = {k.rsplit("/", 1)[1]: v for k, v in m.items() if k.startswith("rl/pass_rate/")}
    assert rates and set(rates) <= set(result.final.accuracies) and all(0 <= v <= 1 for v in rates.values())


def test_a_skill_name_mlflow_cannot_store_is_refused_before_any_run(tmp_path):
    import json

    from teachgym.config import load_config
    from teachgym.loop import run_experiment

    rows = [{"prompt": f"{i}?", "completion": str(i), "skills": ["math@easy" if i % 2 else "b"]} for i in range(60)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config({
        "env": {"name": "dataset", "path": str(tmp_path / "rows.jsonl"), "eval_per_skill": 5},
        "student": {"name": "simulated"}, "policy": {"name": "uniform"},
        "loop": {"rounds": 1, "examples_per_round": 10, "output_dir": str(tmp_path / "out")},
        "tracking": {"enabled": True},
    })
    with pytest.raises(ConfigError, match=r"MLflow cannot store metrics named after the skills \['math@easy'\]"):
        run_experiment(cfg)
    assert _client().search_runs([e.experiment_id for e in _client().search_experiments()]) == []


@pytest.mark.slow
def test_the_shipped_config_learns(tmp_path):
    """`teachgym run configs/reasoning_gym.yaml` as shipped: every skill well above round 0 (the README's curve)."""
    from teachgym.config import load_config
    from teachgym.loop import run_experiment

    overrides = [f"loop.output_dir={tmp_path}", "loop.save_student=false"]
    cfg = load_config(ROOT / "configs" / "reasoning_gym.yaml", overrides)
    result = run_experiment(cfg)
    first, last = result.rounds[0], result.final
    assert first.mean_accuracy == 0.0
    assert last.mean_accuracy >= 0.4, last.accuracies
    assert min(last.accuracies.values()) >= 0.2, last.accuracies


def test_eval_content_never_reaches_training_through_another_skill():
    """chain_sum asks "0 - 4 =", basic_arithmetic "Calculate 0 - 4.": other prompts, the same numbers and answer.
    An eval item whose content another skill's pool trains on is skipped, counted and said; no training row
    (pool or generator, any skill) has another skill's eval content."""
    from teachgym.envs._content import ContentOverlapWarning, owners, taken_elsewhere

    with pytest.warns(ContentOverlapWarning, match=r"eval questions of basic_arithmetic:0 skipped"):
        env = ReasoningGymEnv(["basic_arithmetic", "chain_sum"], levels={"basic_arithmetic": [0], "chain_sum": [0]},
                              eval_per_skill=4, pool_per_skill=300)
    assert env.eval_dropped["basic_arithmetic:0"]["chain_sum:0"] > 0
    evals = owners(env.eval_set())
    rows = [*env.pool(), *env.generate("basic_arithmetic:0", 2000, seed=1), *env.generate("chain_sum:0", 100, seed=1)]
    assert len(rows) > 2000 and not [r for r in rows if taken_elsewhere(r, evals)]
    # and the guard is what keeps them out: the task's own training items do carry that content
    src = env._sources[("basic_arithmetic", 0)]
    raw = [env._row(src, "train", i) for i in range(3000)]
    assert [r for r in raw if taken_elsewhere(r, evals)]


def test_two_skills_that_test_the_same_content_are_refused_by_name():
    with pytest.raises(ReasoningGymError, match=r"chain_sum' level 0 has only \d+ distinct questions.*content of "
                       r"training rows of basic_arithmetic:0 \(the skills test the same thing: drop one\)"):
        ReasoningGymEnv(["basic_arithmetic", "chain_sum"], levels={"basic_arithmetic": [0], "chain_sum": [0]},
                        eval_per_skill=50, pool_per_skill=2000)
