"""The LLM data engine: a real local model, a real OpenAI-compatible server, and every check it makes."""

import json
import os
import subprocess
import sys

import pytest

from teachgym.config import SynthesisConfig, load_config
from teachgym.engine import EngineError, materialize
from teachgym.envs.dataset import DatasetEnv
from teachgym.envs.strings import StringsEnv
from teachgym.synthesis import LLMSynthesizer, SynthesisError, build_prompt, parse_example
from teachgym.types import Failure, Request, Synthesize

from conftest import TINY, free_port, tiny_config, transformers_serve


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    """A random-weight causal LM saved to a directory, as a user's local model would be (nothing downloaded)."""
    from teachgym.students.hf import HFStudent

    path = tmp_path_factory.mktemp("tiny_lm") / "model"
    HFStudent(seed=0, tiny={**TINY, "max_position_embeddings": 2048}).save(str(path))
    return str(path)


class Scripted:
    """A backend that replays fixed texts, to pin down each check of the filter (the real models are below)."""

    def __init__(self, texts, answers=()):
        self.texts, self.answers, self.calls = list(texts), list(answers), []

    def complete(self, prompts, n, max_new_tokens, temperature, top_p, seed):
        self.calls.append((list(prompts), n))
        if n == 1 and self.texts:
            out = [[self.texts.pop(0)] for _ in prompts]
            return out
        return [self.answers.pop(0) for _ in prompts]


def _cfg(**kw):
    return SynthesisConfig(**{"backend": "local", "model": "unused", **kw})


def test_prompt_carries_skill_level_examples_and_failures():
    env = StringsEnv(eval_per_skill=10, pool_per_skill=20)
    skill = env.skills[1]
    fail = Failure("reverse:abc=", "cba", "abc", ("reverse",))
    prompt = build_prompt(skill, 2, env.pool().select(range(20, 22)).to_list(), [fail])
    assert "Skill: reverse — write the input string backwards" in prompt and "Level: 2" in prompt
    assert "Q: reverse:" in prompt and "(the student answered: abc)" in prompt and prompt.endswith("Q:")
    assert parse_example(" reverse:abd=\nA: dba\n\nQ: more") == ("reverse:abd=", "dba")
    assert parse_example("Q: copy:ab=\nA: ab") == ("copy:ab=", "ab")
    for junk in ("", "no answer here", "\nA: x", "q\nA:   \n", "\x00\x01"):
        assert parse_example(junk) is None


def test_every_rejection_reason_is_counted_and_only_checked_rows_are_kept():
    env = StringsEnv(eval_per_skill=10, pool_per_skill=20)
    eval_prompt = env.eval_set().filter(lambda r: r["skills"] == ["reverse"])[0]["prompt"]
    texts = [
        " reverse:abcd=\nA: dcba",       # good
        " reverse:abcd=\nA: dcba",       # duplicate
        " reverse:bbca=\nA: bbca",       # wrong answer: the verifier rejects it
        f" {eval_prompt}\nA: x",         # an eval prompt
        "garbage without an answer",     # unparseable
        " reverse:hgf=\nA: fgh",         # good
    ]
    synth = LLMSynthesizer(_cfg(oversample=3, max_attempts=1), backend=Scripted(texts))
    data, report = materialize(Synthesize([Request("reverse", 2)]), env, 2, seed=0, synthesizer=synth)
    assert sorted(data["prompt"]) == ["reverse:abcd=", "reverse:hgf="] and set(data["source"]) == {"llm"}
    assert report.llm.rejected == {"duplicate": 1, "failed_verifier": 1, "eval_overlap": 1, "unparseable": 1}
    assert report.llm.generated == 6 and report.llm.kept == 2 and report.llm.shortfall == 0
    assert {r["reason"] for r in report.rejected_sample} == set(report.llm.rejected)
    # A question kept in an earlier round is a duplicate later in the experiment too.
    synth.backend = Scripted([" reverse:abcd=\nA: dcba"] * 3)
    data, report = materialize(Synthesize([Request("reverse", 1)]), env, 1, seed=1, synthesizer=synth)
    assert report.llm.rejected == {"duplicate": 3} and data["source"] == ["generator"]
    assert report.llm.shortfall == 1


def test_self_consistency_for_an_env_without_a_verifier(tmp_path):
    rows = [{"prompt": f"capital of c{i}?", "completion": f"city{i}", "skills": ["geo"]} for i in range(20)]
    path = tmp_path / "geo.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = DatasetEnv(str(path), eval_per_skill=5)
    assert not env.verifies_new_prompts
    texts = [" capital of x?\nA: xx", " capital of y?\nA: yy", " capital of z?\nA: zz"]
    answers = [["xx", "other", "x2"],       # the proposal and one sample agree: kept
               ["a", "b", "c"],             # nobody agrees: rejected
               ["ww", "ww\nmore", "ww"]]    # three samples agree on 'ww' against the proposal: kept as 'ww'
    synth = LLMSynthesizer(_cfg(oversample=1, max_attempts=1, samples=3), backend=Scripted(texts, answers))
    data, report = materialize(Synthesize([Request("geo", 3)]), env, 3, seed=0, synthesizer=synth)
    kept = {r["prompt"]: r["completion"] for r in data.to_list() if r["source"] == "llm"}
    assert kept == {"capital of x?": "xx", "capital of z?": "ww"}
    assert report.llm.rejected == {"no_consensus": 1} and report.llm.shortfall == 1
    assert [r["source"] for r in data.to_list()].count("pool") == 1  # the shortfall came from the pool
    assert synth.backend.calls[1][1] == 3  # three sampled answers per question
    synth = LLMSynthesizer(_cfg(oversample=1, max_attempts=1, on_shortfall="error"), backend=Scripted(["junk"]))
    with pytest.raises(EngineError, match="kept 0 of 1 rows for 'geo'.*on_shortfall=error"):
        materialize(Synthesize([Request("geo", 1)]), env, 1, seed=0, synthesizer=synth)


def test_a_random_weight_local_model_writes_junk_that_is_counted_and_never_trained_on(tiny_lm_dir):
    env = StringsEnv(eval_per_skill=10, pool_per_skill=50)
    synth = LLMSynthesizer(_cfg(model=tiny_lm_dir, max_new_tokens=24, max_attempts=2))
    assert synth.backend.__class__.__name__ == "LocalLM"
    action = Synthesize([Request("reverse", 10, level=1), Request("count", 6)])
    data, report = materialize(action, env, 16, seed=0, synthesizer=synth,
                               failures=[Failure("reverse:abc=", "cba", "x", ("reverse",))])
    llm = report.llm
    assert llm.requested == 16 and llm.generated == 2 * (15 + 9)  # oversample 1.5, two attempts
    assert llm.kept == 0 and sum(llm.rejected.values()) == llm.generated
    assert llm.shortfall == 16 and llm.by_skill["reverse"] == {"requested": 10, "generated": 30, "kept": 0}
    assert "llm" not in data["source"] and len(data) == 16
    assert all(env.verify(r["prompt"], r["completion"]) for r in data.to_list())
    assert report.rejected_sample and all(r["source"] == "llm" for r in report.rejected_sample)


def test_the_loop_logs_the_llm_engine_every_round(tmp_path, tiny_lm_dir, mlflow_store):
    import mlflow

    cfg = tiny_config(tmp_path, rounds=1, examples_per_round=12)
    cfg["env"] = {"name": "strings", "eval_per_skill": 4, "pool_per_skill": 20}
    cfg["policy"] = {"name": "targeted-synthesis"}
    cfg["synthesis"] = {"backend": "local", "model": tiny_lm_dir, "max_new_tokens": 16, "max_attempts": 1}
    from teachgym.loop import run_experiment

    result = run_experiment(load_config(cfg))
    client = mlflow.MlflowClient(mlflow_store)
    parent = client.get_run(result.run_id).data.metrics
    assert parent["data/llm/requested"] == 12 and parent["data/llm/kept"] == 0
    assert parent["data/llm/generated"] == parent["data/llm/rejected/unparseable"] > 0
    assert parent["data/llm/shortfall"] == 12
    child = client.search_runs([client.get_run(result.run_id).info.experiment_id],
                               f"tags.mlflow.parentRunId = '{result.run_id}' and tags.mlflow.runName = 'round-01'")[0]
    decision = json.loads(open(client.download_artifacts(child.info.run_id, "decision.json")).read())
    assert decision["data"]["llm"]["kept"] == 0 and decision["data"]["rejected_sample"]
    assert decision["data"]["sources"] == {"generator": 12}


def test_config_errors_name_the_field(tiny_lm_dir, tmp_path):
    cfg = tiny_config(tmp_path)
    with pytest.raises(Exception, match=r"synthesis.backnd: unknown key; did you mean 'synthesis.backend'"):
        load_config({**cfg, "synthesis": {"backnd": "local", "model": tiny_lm_dir}})
    with pytest.raises(SynthesisError, match="not a local directory"):
        LLMSynthesizer(_cfg(model=str(tmp_path / "missing")))
    with pytest.raises(SynthesisError, match="needs the endpoint's base URL"):
        LLMSynthesizer(SynthesisConfig(backend="openai", model="m"))
    port = free_port()  # nothing listens there
    dead = LLMSynthesizer(SynthesisConfig(backend="openai", model="m", url=f"http://127.0.0.1:{port}/v1"))
    with pytest.raises(SynthesisError, match=f"cannot reach the synthesis endpoint http://127.0.0.1:{port}/v1"):
        dead.backend.complete(["Q:"], 1, 4, 1.0, 1.0, 0)


def test_openai_compatible_endpoint_served_by_transformers_serve(tiny_lm_dir):
    server, url = transformers_serve(tiny_lm_dir)
    exe = os.path.join(os.path.dirname(sys.executable), "transformers")
    with server:
        cfg = SynthesisConfig(backend="openai", model=tiny_lm_dir, url=url,
                              api_key_env="TEACHGYM_TEST_KEY", max_new_tokens=12, max_attempts=1, oversample=1)
        os.environ["TEACHGYM_TEST_KEY"] = "sk-local"  # sent as a bearer token; the local server ignores it
        try:
            synth = LLMSynthesizer(cfg)
            assert synth.backend.key == "sk-local"
            texts = synth.backend.complete(["Q: copy:ab=\nA:"], 2, 12, 1.0, 1.0, seed=0)
            assert len(texts) == 1 and len(texts[0]) == 2 and all(isinstance(t, str) for t in texts[0])
            env = StringsEnv(eval_per_skill=10, pool_per_skill=30)
            data, report = materialize(Synthesize([Request("sort", 4)]), env, 4, seed=0, synthesizer=synth)
        finally:
            del os.environ["TEACHGYM_TEST_KEY"]
    assert report.llm.generated == 4 and report.llm.kept == 0 and report.llm.backend_calls == 4
    assert sum(report.llm.rejected.values()) == 4 and "llm" not in data["source"]
    bad = subprocess.run([exe, "serve", "--help"], capture_output=True, text=True)
    assert bad.returncode == 0  # the CLI the README points users at exists in this install


def test_an_endpoint_that_refuses_the_key_says_which_variable_to_check():
    """The openai client's HTTP errors become SynthesisErrors that say what to do (here: a 401)."""
    import http.server
    import threading

    class Refuses(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            body = b'{"error": {"message": "invalid api key"}}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        synth = LLMSynthesizer(SynthesisConfig(backend="openai", model="m", api_key_env="TEACHGYM_TEST_KEY",
                                               url=f"http://127.0.0.1:{server.server_port}/v1"))
        with pytest.raises(SynthesisError, match=r"answered HTTP 401 \(is \$TEACHGYM_TEST_KEY set to a valid key\?\)"
                                                 r".*invalid api key"):
            synth.backend.complete(["Q:"], 1, 4, 1.0, 1.0, 0)
    finally:
        server.shutdown()
        server.server_close()
