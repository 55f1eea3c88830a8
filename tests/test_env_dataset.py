"""Bring-your-own-data env, on small files written in every supported format."""

import json
import random

import pytest

from teachgym.checks import check_env
from teachgym.config import load_config
from teachgym.envs.dataset import DatasetEnv, DatasetEnvError
from teachgym.loop import run_experiment


def _rows(n=120, seed=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        kind = ("add", "mul", "both")[i % 3]
        q = f"{a}*{b}+{a}=" if kind == "both" else f"{a}+{b}=" if kind == "add" else f"{a}*{b}="
        ans = a * b + a if kind == "both" else a + b if kind == "add" else a * b
        skills = ["add", "mul"] if kind == "both" else [kind]
        out.append({"question": q, "answer": str(ans), "tags": skills, "difficulty": 1 + (a > 50)})
    return out


def _write(tmp_path, fmt, rows):
    from datasets import Dataset, DatasetDict

    if fmt == "jsonl":
        path = tmp_path / "data.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "csv":  # CSV has no lists: several skills are one '|'-separated string
        path = tmp_path / "data.csv"
        Dataset.from_list([{**r, "tags": "|".join(r["tags"])} for r in rows]).to_csv(str(path), index=False)
    elif fmt == "parquet":
        path = tmp_path / "data.parquet"
        Dataset.from_list(rows).to_parquet(str(path))
    elif fmt == "disk":
        path = tmp_path / "saved"
        Dataset.from_list(rows).save_to_disk(str(path))
    else:  # a DatasetDict saved to disk: the env takes its split
        path = tmp_path / "saved_dict"
        DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(rows[:3])}).save_to_disk(str(path))
    return path


KW = {"prompt_column": "question", "completion_column": "answer", "skills_column": "tags",
      "difficulty_column": "difficulty", "eval_per_skill": 15}


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "disk", "disk-dict"])
def test_every_format_loads_to_the_same_env(tmp_path, fmt):
    rows = _rows()
    env = DatasetEnv(str(_write(tmp_path, fmt, rows)), skill_separator="|" if fmt == "csv" else None,
                     checker="numeric", **KW)
    check_env(env, min_eval_per_skill=15)
    assert [s.name for s in env.skills] == ["add", "mul"]
    assert all(s.levels == (1, 2) for s in env.skills)
    ev, pool = env.eval_set(), env.pool()
    assert {p for p in ev["prompt"]}.isdisjoint(pool["prompt"])
    assert len(ev) + len(pool) <= len(rows)
    for s in ("add", "mul"):  # held out per skill: at least eval_per_skill rows need each skill
        assert sum(s in sk for sk in ev["skills"]) >= 15
    assert ["add", "mul"] in ev["skills"] or ["add", "mul"] in pool["skills"]  # multi-skill rows survive
    reference = DatasetEnv(str(_write(tmp_path, "jsonl", rows)), checker="numeric", **KW)
    assert ev["prompt"] == reference.eval_set()["prompt"]  # same rows, same seed, same split whatever the format


def test_split_is_seeded(tmp_path):
    path = str(_write(tmp_path, "jsonl", _rows()))
    a, b, c = (DatasetEnv(path, seed=s, **KW) for s in (1, 1, 2))
    assert a.eval_set()["prompt"] == b.eval_set()["prompt"] != c.eval_set()["prompt"]


def test_clear_errors(tmp_path):
    path = str(_write(tmp_path, "jsonl", _rows()))
    with pytest.raises(DatasetEnvError, match=r"env.prompt_column: column 'questoin'.*did you mean 'question'"):
        DatasetEnv(path, **{**KW, "prompt_column": "questoin"})
    with pytest.raises(DatasetEnvError, match="env.skills_column: column 'skills'"):
        DatasetEnv(path, prompt_column="question", completion_column="answer")
    with pytest.raises(DatasetEnvError, match=r"too few rows to evaluate: \{'add': 80, 'mul': 80\}"):
        DatasetEnv(path, **{**KW, "eval_per_skill": 80})
    rows = _rows()
    rows[3]["tags"], rows[7]["tags"] = [], None
    bad = tmp_path / "empty.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetEnvError, match=r"2 row\(s\) have no skill in 'tags' \(rows \[3, 7\]\)"):
        DatasetEnv(str(bad), **KW)
    rows = _rows()
    rows[5]["difficulty"] = "hard"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetEnvError, match=r"must hold integers.*rows \[5\]"):
        DatasetEnv(str(bad), **KW)
    with pytest.raises(DatasetEnvError, match="did you mean 'numeric'"):
        DatasetEnv(path, **KW, checker="numerc")
    with pytest.raises(DatasetEnvError, match="does not exist"):
        DatasetEnv(str(tmp_path / "nope.jsonl"), **KW)
    with pytest.raises(DatasetEnvError, match="cannot tell the format"):
        (tmp_path / "data.txt").write_text("x")
        DatasetEnv(str(tmp_path / "data.txt"), **KW)
    with pytest.raises(DatasetEnvError, match=r"env.skills: \['geo'\] not found"):
        DatasetEnv(path, **KW, skills=["add", "geo"])
    with pytest.raises(NotImplementedError, match="synthesis"):
        DatasetEnv(path, **KW).generate("add", 3)


def test_checkers(tmp_path, monkeypatch):
    rows = [{"prompt": f"q{i}", "completion": f"The answer is {i}.", "skills": ["s"]} for i in range(30)]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    exact = DatasetEnv(str(path), eval_per_skill=5)
    assert exact.verify("q1", " The answer is 1. ") and not exact.verify("q1", "the answer is 1.")
    assert DatasetEnv(str(path), eval_per_skill=5, case_sensitive=False).verify("q1", "THE ANSWER IS 1.")
    assert not exact.verify("unknown prompt", "The answer is 1.")  # no gold: cannot be checked
    rx = DatasetEnv(str(path), eval_per_skill=5, checker="regex", pattern=r"answer is (\d+)")
    assert rx.verify("q7", "I think the answer is 7, really") and not rx.verify("q7", "answer is 77")
    assert not rx.verify("q7", "7")
    with pytest.raises(DatasetEnvError, match="needs a pattern"):
        DatasetEnv(str(path), eval_per_skill=5, checker="regex")
    nums = tmp_path / "nums.jsonl"
    nums.write_text("".join(json.dumps({"prompt": f"n{i}", "completion": str(i / 4), "skills": "s"}) + "\n"
                            for i in range(30)))
    num = DatasetEnv(str(nums), eval_per_skill=5, checker="numeric")
    assert num.verify("n2", "0.50") and num.verify("n4", "1") and not num.verify("n4", "1.1")
    assert not num.verify("n4", "one")
    checks = "def last_word(output, gold):\n    return output.split()[-1] == gold.split()[-1]\n"
    (tmp_path / "my_checks.py").write_text(checks)
    monkeypatch.syspath_prepend(str(tmp_path))
    custom = DatasetEnv(str(path), eval_per_skill=5, checker="my_checks:last_word")
    assert custom.verify("q3", "so: 3.") and not custom.verify("q3", "3")
    with pytest.raises(DatasetEnvError, match="did you mean last_word"):
        DatasetEnv(str(path), eval_per_skill=5, checker="my_checks:last_wrd")


def test_the_loop_runs_on_your_data(tmp_path):
    path = _write(tmp_path, "parquet", _rows(240))
    cfg = load_config({
        "env": {"name": "dataset", "path": str(path), **KW},
        "student": {"name": "simulated", "examples_to_learn": 200},
        "policy": {"name": "missing-skill"},
        "loop": {"rounds": 3, "examples_per_round": 200, "output_dir": str(tmp_path / "out")},
        "tracking": {"enabled": False},
    })
    result = run_experiment(cfg)
    assert len(result.rounds) == 4
    assert result.final.mean_accuracy > result.rounds[0].mean_accuracy
    assert set(result.final.accuracies) == {"add", "mul"}


def test_zero_based_difficulties_stay_levels(tmp_path):
    from teachgym.engine import materialize
    from teachgym.types import Mixture

    rows = [{"prompt": f"p{i}", "completion": "x", "skills": "s", "difficulty": i % 2} for i in range(40)]
    path = tmp_path / "zero.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = DatasetEnv(str(path), eval_per_skill=10, difficulty_column="difficulty")
    assert env.skills[0].levels == (0, 1)
    data, _ = materialize(Mixture({"s": 1.0}), env, 30, seed=0)
    assert set(data["level"]) == {0, 1}


def _reference_split(rows, skills_key, eval_per_skill, seed):
    """The split as the row-by-row DatasetEnv made it before issue 14 (its code, on Python rows)."""
    order = list(dict.fromkeys(s for r in rows for s in r[skills_key]))
    rng = random.Random(seed)
    held = set()
    for s in order:
        have = sum(1 for i in held if s in rows[i][skills_key])
        candidates = [i for i, r in enumerate(rows) if s in r[skills_key] and i not in held]
        rng.shuffle(candidates)
        held.update(candidates[: max(0, eval_per_skill - have)])
    eval_prompts = {rows[i]["question"] for i in held}
    pool = [r["question"] for i, r in enumerate(rows) if i not in held and r["question"] not in eval_prompts]
    return [rows[i]["question"] for i in sorted(held)], pool, order


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "disk"])
@pytest.mark.parametrize("seed", [0, 7])
def test_the_arrow_split_is_the_row_by_row_split(tmp_path, fmt, seed):
    """Existing data keeps exactly its eval split and pool: multi-skill rows, repeated labels and
    duplicate prompts (one held out, its twin must leave the pool) included."""
    rows = _rows(300, seed=seed)
    rows[10]["tags"] = ["mul", " add ", "mul"]  # repeated and padded labels count once
    rows[11] = dict(rows[12])  # a duplicate prompt
    rows[40] = {**rows[41], "answer": "0"}  # the same prompt with another gold
    env = DatasetEnv(str(_write(tmp_path, fmt, rows)), skill_separator="|" if fmt == "csv" else None,
                     seed=seed, checker="numeric", **{**KW, "eval_per_skill": 40})
    clean = [{**r, "tags": list(dict.fromkeys(t.strip() for t in r["tags"]))} for r in rows]
    eval_prompts, pool_prompts, order = _reference_split(clean, "tags", 40, seed)
    assert [s.name for s in env.skills] == order
    assert env.eval_set()["prompt"] == eval_prompts
    assert env.pool()["prompt"] == pool_prompts
    assert env.eval_set()["skills"][:5] == [r["tags"] for r in clean if r["question"] in eval_prompts][:5]
    assert set(env.pool()["level"]) == {1, 2} and set(env.pool()["source"]) == {"pool"}
    assert env.verify(rows[40]["question"], "0") and env.verify(rows[40]["question"], rows[41]["answer"])
    assert env.verify(rows[100]["question"], rows[100]["answer"]) and not env.verify("never seen", "1")


MATH = [  # (gold, equivalent answers, wrong answers)
    ("\\frac{1}{2}", ["0.5", "1/2", "\\boxed{\\frac{1}{2}}", "The answer is $\\frac{2}{4}$."], ["0.25", "2", "1/3"]),
    ("42", ["\\boxed{42}", "so the total is 42", "42.0"], ["41", "\\boxed{24}"]),
    ("\\{1, 2\\}", ["\\{2, 1\\}"], ["\\{1, 3\\}"]),
    ("x^2 + 2x + 1", ["(x+1)^2"], ["(x-1)^2"]),
    ("\\sqrt{2}", ["2^{1/2}"], ["1.5"]),
]


def _math_env(tmp_path):
    rows = [{"prompt": f"m{i}", "completion": gold, "skills": "algebra"} for i, (gold, _, _) in enumerate(MATH)]
    rows += [{"prompt": f"pad{i}", "completion": str(i), "skills": "algebra"} for i in range(20)]
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return DatasetEnv(str(path), eval_per_skill=2, checker="math", seed=0)


def _verdicts(env):
    return [[env.verify(f"m{i}", a) for a in good] + [not env.verify(f"m{i}", a) for a in bad]
            for i, (_, good, bad) in enumerate(MATH)]


def test_math_checker_accepts_equivalent_answers_and_rejects_wrong_ones(tmp_path):
    env = _math_env(tmp_path)
    assert _verdicts(env) == [[True] * (len(g) + len(b)) for _, g, b in MATH]
    for malformed in ("", "\\frac{", "}}}{{{", "NaN", "x" * 2000):  # simply wrong, never an exception
        assert env.verify("m0", malformed) is False


def test_math_checker_works_from_any_thread(tmp_path):
    """math-verify's own timeout (signal.alarm) raises off the main thread; the checker sends such checks to
    a worker process, so a thread gets the same verdicts (a data engine or a tracker thread, a Ray worker)."""
    import threading

    from teachgym.envs import _math

    env = _math_env(tmp_path)
    with pytest.raises(ValueError, match="threaded"):  # what math-verify alone does in a thread
        result = []
        t = threading.Thread(target=lambda: result.append(_math_raw_in_thread()))
        t.start()
        t.join()
        raise result[0]
    out = []
    t = threading.Thread(target=lambda: out.append(_verdicts(env)))
    t.start()
    t.join(timeout=120)
    assert out == [[[True] * (len(g) + len(b)) for _, g, b in MATH]]
    assert _math._WORKER._pool is not None  # the thread's checks ran in the worker process
    _math._WORKER.reset()


def _math_raw_in_thread():
    import math_verify

    try:
        math_verify.parse("1/2")
    except ValueError as e:
        return e
    return None
