import pytest

from teachgym.checks import CheckError, check_env
from teachgym.envs.arithmetic import SKILLS, ArithmeticEnv, solve


@pytest.fixture(scope="module")
def env():
    return ArithmeticEnv()


def test_check_env_passes_on_the_default(env):
    check_env(env, min_eval_per_skill=100)
    with pytest.raises(CheckError, match="eval"):  # and it can fail: 100 items per skill are not 101
        check_env(env, min_eval_per_skill=101)


def test_six_skills_with_prerequisites(env):
    assert len(env.skills) >= 6
    graph = {s.name: s.prerequisites for s in env.skills}
    assert graph["add_carry"] == ("add_nocarry",)
    assert graph["mul_2x1"] == ("add_carry",)
    assert sum(1 for p in graph.values() if p) >= 4


def test_eval_set_is_fixed_held_out_and_100_per_skill(env):
    ev = env.eval_set()
    for s in env.skills:
        assert sum(1 for sk in ev["skills"] if s.name in sk) >= 100
    again = ArithmeticEnv(pool_seed=5)
    assert again.eval_set()["prompt"] == ev["prompt"]  # fixed, whatever the pool seed
    eval_prompts = set(ev["prompt"])
    assert not eval_prompts & set(env.pool()["prompt"])
    for s in env.skills:
        for seed in range(5):
            rows = env.generate(s.name, 300, seed=seed)
            assert not eval_prompts & {r["prompt"] for r in rows}


def test_generators_respect_skill_definitions(env):
    assert env.generate("add_3d", 1, seed=0)[0]["prompt"][3] == "+"  # padded: three digits per operand
    assert len(env.generate("add_3d", 1, seed=0)[0]["completion"]) == 4
    plain = ArithmeticEnv(eval_per_skill=2, pool_per_skill=0, format="plain")
    assert all(r["prompt"] == f"{int(r['prompt'][:-1].split('-')[0])}-{int(r['prompt'][:-1].split('-')[1])}="
               for r in plain.generate("sub_borrow", 20, seed=0))
    for r in env.generate("add_nocarry", 200, seed=1):
        a, b = map(int, r["prompt"][:-1].split("+"))
        assert all(int(x) + int(y) < 10 for x, y in zip(str(a)[::-1], str(b)[::-1]))
        assert int(r["completion"]) == a + b
    for r in env.generate("add_carry", 200, seed=1):
        a, b = map(int, r["prompt"][:-1].split("+"))
        assert a % 10 + b % 10 >= 10
    for r in env.generate("sub_borrow", 200, level=2, seed=1):
        a, b = map(int, r["prompt"][:-1].split("-"))
        assert a > b and a % 10 < b % 10 and b >= 10
    for r in env.generate("mul_2x1", 100, level=1, seed=1):
        assert r["level"] == 1 and int(r["prompt"].split("*")[1][:-1]) in (2, 3)


def test_verify_and_solve(env):
    assert solve("47+38=") == 85 and solve("90-7=") == 83 and solve("12*3=") == 36
    assert solve("hello") is None
    assert env.verify("47+38=", "85") and env.verify("47+38=", " 85 ") and env.verify("047+038=", "0085")
    assert not env.verify("47+38=", "84") and not env.verify("47+38=", "") and not env.verify("x", "1")


def test_skill_subset_drops_missing_prerequisites():
    env = ArithmeticEnv(skills=["add_carry", "mul_2x1"], eval_per_skill=5, pool_per_skill=10)
    assert [s.prerequisites for s in env.skills] == [(), ("add_carry",)]
    with pytest.raises(ValueError, match="unknown arithmetic skills"):
        ArithmeticEnv(skills=["division"])


def test_check_env_catches_a_leaky_env():
    class Leaky(ArithmeticEnv):
        def generate(self, skill, n, level=None, seed=0):
            return [{**r, "source": "generator"} for r in self.eval_set().to_list() if skill in r["skills"]][:n]

    with pytest.raises(CheckError, match="eval prompt"):
        check_env(Leaky(eval_per_skill=5, pool_per_skill=10))


def test_names_match_module_skills():
    assert [s.name for s in ArithmeticEnv(eval_per_skill=2, pool_per_skill=0).skills] == [s.name for s in SKILLS]
