"""The synthetic envs beyond arithmetic: LEGO (Skill-it) and character-level strings."""

import re

import pytest

from teachgym.checks import check_env
from teachgym.envs.lego import LegoEnv
from teachgym.envs.lego import solve as lego_solve
from teachgym.envs.strings import StringsEnv
from teachgym.envs.strings import solve as strings_solve
from teachgym.registry import resolve


@pytest.mark.parametrize("name", ["lego", "strings"])
def test_builtin_envs_pass_check_env(name):
    env = resolve("envs", name)()
    check_env(env, min_eval_per_skill=100)
    assert env.verifies_new_prompts and env.supports_generation


def test_lego_chain_semantics_and_prerequisites():
    env = LegoEnv(length=4, eval_per_skill=20, pool_per_skill=10)
    assert [s.name for s in env.skills] == ["hop1", "hop2", "hop3", "hop4"]
    assert [s.prerequisites for s in env.skills] == [(), ("hop1",), ("hop2",), ("hop3",)]
    assert lego_solve("a=+1,b=-a,c=-b;c=") == "+1"
    assert lego_solve("c=-b,a=-1,b=+a;c=") == "+1"
    assert lego_solve("a=+1,b=-a;b=") == "-1"
    for bad in ("a=+b,b=-a;a=", "a=+1,a=-1;a=", "a=+1;z=", "hello", "a=+1,b=*a;b="):
        assert lego_solve(bad) is None, bad
    for k in range(1, 5):
        for level in (1, 2):
            for row in env.generate(f"hop{k}", 30, level=level, seed=k):
                clauses, query = row["prompt"][:-1].split(";")
                parsed = [re.match(r"(\w)=([+-])(\w)", c).groups() for c in clauses.split(",")]
                parent = {v: p for v, _, p in parsed}
                depth, var = 1, query  # hop k asks for the variable k-1 assignments below the root
                while parent[var] != "1":
                    var, depth = parent[var], depth + 1
                assert depth == k
                if level == 1:  # in chain order; level 2 shuffles
                    assert parsed[0][2] == "1"
                assert env.verify(row["prompt"], row["completion"])
                assert not env.verify(row["prompt"], "+1" if row["completion"] == "-1" else "-1")
    assert env.verify("a=+1;a=", "1")  # a bare 1 is +1
    shuffled = env.generate("hop4", 50, level=2, seed=0)
    assert any(r["prompt"].split(",")[0][2:] != "+1" and r["prompt"].split(",")[0][2:] != "-1" for r in shuffled)


def test_lego_levels_option_draws_only_the_chosen_ordering():
    ordered = LegoEnv(length=3, eval_per_skill=20, pool_per_skill=10, levels=[1])
    assert all(s.levels == (1,) for s in ordered.skills)
    for prompt in list(ordered.eval_set()["prompt"]) + list(ordered.pool()["prompt"]):
        assert prompt.split(",")[0][2:] in ("+1", "-1"), prompt  # chain order: the root comes first
    with pytest.raises(ValueError, match="skill 'hop2' has levels \\[1\\]"):
        ordered.generate("hop2", 5, level=2)
    for bad in ([], [3], [1, 1]):
        with pytest.raises(ValueError, match="levels must be"):
            LegoEnv(length=3, levels=bad)


def test_strings_skills_levels_and_verifier():
    env = StringsEnv(lengths=(2, 4), eval_per_skill=20, pool_per_skill=10)
    assert {s.name: s.prerequisites for s in env.skills} == {
        "copy": (), "reverse": ("copy",), "sort": ("copy",), "dedupe": ("copy",), "count": ()}
    assert strings_solve("reverse:abc=") == "cba" and strings_solve("sort:cab=") == "abc"
    assert strings_solve("dedupe:abba=") == "ab" and strings_solve("count b:abba=") == "2"
    assert strings_solve("copy:abc") is None and strings_solve("shout:abc=") is None
    for s in env.skills:
        assert s.levels == (1, 2)
        for level, n in ((1, 2), (2, 4)):
            for row in env.generate(s.name, 20, level=level, seed=0):
                assert len(row["prompt"].split(":", 1)[1][:-1]) == n and row["level"] == level
                assert set(row["prompt"].split(":", 1)[1][:-1]) <= set("abcdefgh")
    assert env.verify("count a:aaa=", " 3 ") and not env.verify("count a:aaa=", "4")
    with pytest.raises(ValueError, match="increasing"):
        StringsEnv(lengths=(4, 2))
    with pytest.raises(ValueError, match="alphabet"):
        StringsEnv(alphabet="a:")
    with pytest.raises(ValueError, match="unknown strings skills"):
        StringsEnv(skills=["revrse"])


def test_a_skill_subset_keeps_the_same_eval_items():
    full = StringsEnv(eval_per_skill=30, pool_per_skill=0)
    sub = StringsEnv(eval_per_skill=30, pool_per_skill=0, skills=["sort", "count"])
    rows = [r for r in full.eval_set().to_list() if r["skills"][0] in ("sort", "count")]
    assert sub.eval_set().to_list() == rows
    lego = LegoEnv(eval_per_skill=30).eval_set()["prompt"]
    assert lego == LegoEnv(eval_per_skill=30, pool_seed=9).eval_set()["prompt"]


@pytest.mark.parametrize("path", ["configs/lego.yaml", "configs/strings.yaml"])
def test_shipped_configs_run_end_to_end_at_unit_size(path, tmp_path):
    from teachgym.config import load_config
    from teachgym.loop import run_experiment

    from conftest import TINY

    cfg = load_config(path, ["loop.rounds=1", "loop.examples_per_round=32", "env.eval_per_skill=4",
                             "env.pool_per_skill=20", f"student.tiny={TINY}", "tracking.enabled=false",
                             f"loop.output_dir={tmp_path}"])
    result = run_experiment(cfg)
    assert len(result.rounds) == 2 and result.final.examples == 32
