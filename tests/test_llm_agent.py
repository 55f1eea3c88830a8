"""The LLM-agent teacher: every kind of answer through the real parser and validator, in every state level;
a real random-weight local model and the same model behind `transformers serve`, whose junk must end in
counted retries and the fallback — never in training."""

from __future__ import annotations

import json
import math

import pytest

from teachgym.checks import check_policy, make_observation
from teachgym.config import load_config
from teachgym.loop import run_experiment
from teachgym.policies.llm_agent import AnswerError, LLMAgentPolicy, parse_answer
from teachgym.state import restrict
from teachgym.types import Mixture, Request, Skill, SkillStats, Synthesize

from conftest import TINY, tiny_config, transformers_serve

SKILLS = [Skill("a"), Skill("b", prerequisites=("a",), levels=(1, 2)), Skill("c"), Skill("d")]
GOOD_MIX = '{"mixture": {"a": 3, "b": 1}, "rationale": "a is weakest and b needs it"}'
GOOD_REQ = '{"requests": [{"skill": "b", "n": 40, "level": 2}, {"skill": "c", "n": 10}], "rationale": "b level 2"}'
#: (answer, the reason it is rejected, or None when it is used)
ANSWERS = [
    (GOOD_MIX, None),
    (GOOD_REQ, None),
    ('Here is my plan:\n```json\n{"mixture": {"c": 1, "d": 1}, "rationale": "balance"}\n```\nGood luck!', None),
    ('{"mixture": {"a": 1, "calculus": 2}, "rationale": "x"}', "invalid"),
    ('{"mixture": {"a": NaN, "b": 1}, "rationale": "x"}', "invalid"),
    ('{"mixture": {"a": -1, "b": 1}, "rationale": "x"}', "invalid"),
    ('{"requests": [{"skill": "b", "n": 5, "level": 7}], "rationale": "x"}', "invalid"),
    ("{}", "no_decision"),
    ('{"rationale": "I would rather not"}', "no_decision"),
    ("I think the student should practise addition.", "no_json"),
    ('{"mixture": ["a", "b"], "rationale": "x"}', "malformed"),
    ('{"mixture": {"a": "lots"}, "rationale": "x"}', "malformed"),
    ('{"requests": [{"skill": "a"}], "rationale": "x"}', "malformed"),
]


def observation(state: str, rnd: int = 1):
    obs = make_observation(SKILLS, [0.1, 0.5, 0.8, 0.3], round=rnd)
    tree = {s.name: {lv: SkillStats(accuracy=0.2 * lv, loss=1.0, n=5, missing_rate=1 - 0.2 * lv) for lv in s.levels}
            for s in SKILLS}
    return restrict(obs, state, tree)


@pytest.mark.parametrize(("answer", "reason"), ANSWERS)
def test_the_parser_and_validator_on_every_kind_of_answer(answer, reason):
    if reason is None:
        action, rationale = parse_answer(answer, SKILLS)
        assert rationale
        if isinstance(action, Mixture):
            assert math.isclose(sum(action.weights.values()), 1.0)
    else:
        with pytest.raises(AnswerError) as info:
            parse_answer(answer, SKILLS)
        assert info.value.reason == reason


def test_parsed_decisions_are_exactly_what_the_model_said():
    assert parse_answer(GOOD_MIX, SKILLS)[0] == Mixture({"a": 0.75, "b": 0.25})
    assert parse_answer(GOOD_REQ, SKILLS)[0] == Synthesize([Request("b", 40, 2), Request("c", 10, None)])


@pytest.mark.parametrize("state", ["open-ended", "skill-list", "skill-tree"])
def test_every_answer_in_every_state_ends_in_a_valid_action(state):
    """Each answer, then the same with retries: bad answers are sent back, then the fallback decides."""
    script = [a for a, _ in ANSWERS]
    policy = LLMAgentPolicy(backend="scripted", script=script, retries=0)
    obs = observation(state)
    reasons = []
    for answer, reason in ANSWERS:
        action = policy.act(obs)
        info = policy.explain()
        used = info["details"]["llm_agent"]
        assert used["answers"][0]["text"] == answer
        assert used["fallback"] == (reason is not None)
        assert info["metrics"]["teacher/llm/fallback"] == float(reason is not None)
        if reason is not None:
            assert action == Mixture({s.name: 0.25 for s in SKILLS})  # uniform, the default fallback
            reasons.append(used["answers"][0]["reason"])
    assert reasons == [r for _, r in ANSWERS if r is not None]
    prompt = policy.explain()["details"]["llm_agent"]["prompt"]
    if state == "open-ended":
        assert "| a |" not in prompt and "accuracy after the last round" not in prompt and "mistakes" in prompt
    else:
        assert "| a | 0.10 |" in prompt
    assert ("Per level (sub-skill)" in prompt) == (state == "skill-tree")


def test_a_bad_answer_is_sent_back_with_the_error_then_a_good_one_is_used():
    policy = LLMAgentPolicy(backend="scripted", script=['{"mixture": {"calculus": 1}}', "{}", GOOD_MIX], retries=2)
    seen = []
    real = policy.backend.complete

    def record(prompts, *args):
        seen.append(prompts[0])
        return real(prompts, *args)

    policy.backend.complete = record
    action = policy.act(observation("skill-list"))
    assert action == Mixture({"a": 0.75, "b": 0.25})
    info = policy.explain()
    assert info["metrics"] == {"teacher/llm/retries": 2.0, "teacher/llm/fallback": 0.0}
    assert "unknown skill" in seen[1] and "calculus" in seen[1] and "That answer cannot be used" in seen[1]
    assert 'neither "mixture" nor "requests"' in seen[2]


def test_check_policy_passes_and_the_state_restores_the_prompts():
    script = [GOOD_MIX, '{"mixture": {"c": 1, "d": 2}, "rationale": "c and d"}', "nonsense", GOOD_REQ]

    def make():
        return LLMAgentPolicy(backend="scripted", script=script, retries=1)

    check_policy(make)
    first = make()
    for r in range(1, 4):
        first.act(observation("skill-list", r))
    restored = make()
    restored.load_state_dict(json.loads(json.dumps(first.state_dict())))
    obs = observation("skill-list", 4)
    assert restored.build_prompt(obs) == first.build_prompt(obs)
    assert "round 3:" in first.build_prompt(obs) and "rationale: c and d" in first.build_prompt(obs)
    assert restored.act(obs) == first.act(obs)


def test_a_changed_prompt_template_is_used(tmp_path):
    template = tmp_path / "prompt.txt"
    template.write_text("Round $round. Skills:\n$skills\nAnswer JSON.")
    policy = LLMAgentPolicy(backend="scripted", script=[GOOD_MIX], prompt=str(template))
    assert policy.build_prompt(observation("skill-list")).startswith("Round 1. Skills:\n- a:")


def test_config_errors_name_the_field(tmp_path):
    from teachgym.config import ConfigError

    cfg = tiny_config(tmp_path, rounds=1)
    cfg["policy"] = {"name": "llm-agent", "backend": "local"}
    with pytest.raises(ConfigError, match="policy.model: backend 'local' needs a model"):
        run_experiment(load_config(cfg))
    cfg["policy"] = {"name": "llm-agent", "backend": "local", "model": str(tmp_path / "missing")}
    with pytest.raises(ConfigError, match="policy.model: .* is not a local directory"):
        run_experiment(load_config(cfg))
    cfg["policy"] = {"name": "llm-agent", "backend": "scripted", "script": str(tmp_path / "none.json")}
    with pytest.raises(ConfigError, match="policy.script: cannot read"):
        run_experiment(load_config(cfg))
    cfg["policy"] = {"name": "llm-agent", "backend": "scripted", "script": [GOOD_MIX], "retires": 2}
    with pytest.raises(ConfigError, match="policy.retires.*did you mean 'policy.retries'"):
        run_experiment(load_config(cfg))


@pytest.fixture(scope="module")
def random_lm(tmp_path_factory):
    """A random-weight causal LM saved to a directory (nothing downloaded); long enough for the prompt."""
    from teachgym.students.hf import HFStudent

    path = tmp_path_factory.mktemp("agent_lm") / "model"
    HFStudent(seed=0, tiny={**TINY, "max_position_embeddings": 4096}).save(str(path))
    return str(path)


def _decisions(client, run_id):
    exp = client.get_run(run_id).info.experiment_id
    out = {}
    for run in client.search_runs([exp], f"tags.mlflow.parentRunId = '{run_id}'"):
        if run.info.run_name != "round-00":
            path = client.download_artifacts(run.info.run_id, "decision.json")
            out[run.info.run_name] = json.loads(open(path).read())
    return out


def test_a_random_weight_local_model_ends_in_counted_retries_and_the_fallback(tmp_path, random_lm, mlflow_store):
    import mlflow

    cfg = tiny_config(tmp_path, rounds=2)
    cfg["policy"] = {"name": "llm-agent", "backend": "local", "model": random_lm, "retries": 1,
                     "max_new_tokens": 48, "temperature": 0.8}
    result = run_experiment(load_config(cfg))
    client = mlflow.MlflowClient(mlflow_store)
    metrics = {m.step: m.value for m in client.get_metric_history(result.run_id, "teacher/llm/fallback")}
    retries = {m.step: m.value for m in client.get_metric_history(result.run_id, "teacher/llm/retries")}
    assert metrics == {1: 1.0, 2: 1.0} and retries == {1: 1.0, 2: 1.0}
    decisions = _decisions(client, result.run_id)
    for name in ("round-01", "round-02"):
        agent = decisions[name]["teacher"]["llm_agent"]
        assert agent["fallback"] and len(agent["answers"]) == 2 and not any(a["ok"] for a in agent["answers"])
        assert "The student's accuracy after the last round" in agent["prompt"]
    # What was trained on is exactly what the fallback (uniform) decided: the same run as uniform's.
    cfg["policy"] = {"name": "uniform"}
    cfg["tracking"]["run_name"] = "uniform"
    uniform = run_experiment(load_config(cfg))
    assert [r.accuracies for r in result.rounds] == [r.accuracies for r in uniform.rounds]
    assert [r.action for r in result.rounds] == [r.action for r in uniform.rounds]


def test_the_same_model_behind_transformers_serve(random_lm):
    server, url = transformers_serve(random_lm)
    with server:
        policy = LLMAgentPolicy(backend="openai", url=url, model=random_lm,
                                api="completions", retries=1, max_new_tokens=24, temperature=1.0)
        action = policy.act(observation("skill-tree"))
    info = policy.explain()
    agent = info["details"]["llm_agent"]
    assert len(agent["answers"]) == 2 and all(isinstance(a["text"], str) for a in agent["answers"])
    assert agent["fallback"] and info["metrics"]["teacher/llm/fallback"] == 1.0
    assert action == Mixture({s.name: 0.25 for s in SKILLS})


def test_a_scripted_agent_drives_the_loop_and_resumes_with_the_same_prompts(tmp_path, monkeypatch):
    from test_resume import _StopInRound

    from teachgym.interrupts import Interrupted

    script = ['{"mixture": {"add_nocarry": 4, "add_carry": 1}, "rationale": "basics first"}', "not json",
              '{"requests": [{"skill": "mul_2x1", "n": 10, "level": 1}], "rationale": "multiply"}',
              '{"mixture": {"sub_borrow": 1, "add_3d": 1}, "rationale": "the rest"}']
    cfg = {"env": {"name": "arithmetic", "eval_per_skill": 20, "pool_per_skill": 100},
           "student": {"name": "simulated"}, "loop": {"rounds": 4, "examples_per_round": 2000,
                                                      "output_dir": str(tmp_path / "out"), "state": "skill-tree"},
           "policy": {"name": "llm-agent", "backend": "scripted", "script": script, "retries": 1},
           "tracking": {"enabled": False}}
    ref = run_experiment(load_config({**cfg, "tracking": {"enabled": False, "run_name": "ref"}}))
    assert ref.rounds[1].action["type"] == "mixture" and ref.rounds[2].action["type"] == "synthesize"
    with monkeypatch.context() as m:
        _StopInRound(m, 3)
        with pytest.raises(Interrupted):
            run_experiment(load_config(cfg))
    resumed = run_experiment(load_config(cfg), resume=True)
    assert [r.action for r in resumed.rounds] == [r.action for r in ref.rounds]
    assert [r.accuracies for r in resumed.rounds] == [r.accuracies for r in ref.rounds]


def test_an_endpoint_that_refuses_the_json_schema_is_asked_again_without_it():
    from teachgym.synthesis import SynthesisError

    policy = LLMAgentPolicy(backend="scripted", script=[GOOD_MIX])
    policy.backend.extra_body = {"response_format": {"type": "json_schema"}}
    real, calls = policy.backend.complete, []

    def strict(prompts, *args):
        calls.append(dict(policy.backend.extra_body))
        if "response_format" in policy.backend.extra_body:
            raise SynthesisError("http://x/v1/chat/completions answered HTTP 400: response_format not supported")
        return real(prompts, *args)

    policy.backend.complete = strict
    assert policy.act(observation("skill-list")) == Mixture({"a": 0.75, "b": 0.25})
    assert calls == [{"response_format": {"type": "json_schema"}}, {}]


def test_an_openai_chat_backend_asks_for_schema_constrained_json():
    policy = LLMAgentPolicy(backend="openai", url="http://127.0.0.1:9/v1", model="m", api="chat")
    schema = policy.backend.extra_body["response_format"]["json_schema"]["schema"]
    assert set(schema["properties"]) == {"mixture", "requests", "rationale"}
    plain = LLMAgentPolicy(backend="openai", url="http://127.0.0.1:9/v1", model="m", api="chat", constrained=False)
    assert "response_format" not in plain.backend.extra_body
