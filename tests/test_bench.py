"""``teachgym bench``: the bench env, the oracle, the leaderboard's statistics by hand, and the simulated twins
end to end (seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from teachgym.bench import load_challenges, missing_learned, parse_seeds, run_bench
from teachgym.bench_report import headroom, iqm, leaderboard, normalised, rank_agreement, stratified_iqm
from teachgym.checks import make_observation
from teachgym.config import ConfigError
from teachgym.envs.bench import BenchEnv
from teachgym.policies.oracle import OraclePolicy
from teachgym.types import Skill

ROOT = Path(__file__).resolve().parents[1]
TEACHGYM = str(Path(sys.executable).with_name("teachgym"))


def test_the_bench_env_solves_every_rule_and_hides_the_noise():
    env = BenchEnv({"c": {"rule": "cipher"}, "r": {"rule": "reverse"}, "s": {"rule": "shift", "shift": 2},
                    "cr": {"rule": "compose", "of": ["c", "r"]}, "n": {"rule": "noise"}},
                   eval_per_skill=20, pool_per_skill=50)
    assert env.solve("r:abc=") == "cba" and env.solve("s:abh=") == "cdb"
    c = env.solve("c:abc=")
    assert env.solve("cr:abc=") == c[::-1]  # compose: c, then r
    assert env.verify("n:abc=", env.solve("n:abc=")) and env.solve("n:abc=") != env.solve("n:abd=")
    assert {s.name: s.prerequisites for s in env.skills}["cr"] == ("c", "r")
    assert len({s.description for s in env.skills}) == 1  # a teacher cannot tell noise from a rule by its text
    pool = env.pool()
    assert not set(pool["prompt"]) & set(env.eval_set()["prompt"])
    assert all(env.verify(p, a) for p, a in zip(pool["prompt"], pool["completion"]))


def test_envs_of_one_declaration_share_their_drawn_rows_and_others_do_not():
    skills = {"c": {"rule": "cipher"}, "r": {"rule": "reverse"}}
    a, b = BenchEnv(skills, pool_per_skill=30), BenchEnv(dict(skills), pool_per_skill=30)
    assert a.pool() is b.pool() and a.eval_set() is b.eval_set()  # drawn once: every case of a bench builds it
    other = BenchEnv({**skills, "r": {"rule": "reverse", "length": 4}}, pool_per_skill=30)
    assert other.pool() is not a.pool()
    assert {len(p) for p in other.pool()["prompt"] if p.startswith("r:")} == {len("r:abcd=")}
    assert BenchEnv(skills, pool_per_skill=40).pool() is not a.pool()  # the sizes are in the key too
    assert len(BenchEnv(skills, pool_per_skill=40).pool()) == 80


@pytest.mark.parametrize("skills,match", [
    ({"a": {"rule": "sort"}}, "rule"),
    ({"a": {"rule": "compose", "of": ["b"]}}, "of"),
    ({"a": {"rule": "compose", "of": ["n", "n"]}, "n": {"rule": "noise"}}, "noise skill"),
    ({"a": {"rule": "copy", "prerequisites": ["b"]}, "b": {"rule": "copy", "prerequisites": ["a"]}}, "cycle"),
    ({"a": {"rule": "copy", "lenght": 3}}, "unknown field"),
])
def test_a_bad_skill_declaration_names_the_field(skills, match):
    with pytest.raises(ValueError, match=match):
        BenchEnv(skills)


def test_the_oracle_trains_the_unmastered_frontier_and_never_noise():
    skills = [Skill("a"), Skill("b", prerequisites=("a",)), Skill("n"), Skill("m")]
    oracle = OraclePolicy(noise=["n"], mastery=0.9)
    first = oracle.act(make_observation(skills, [0.2, 0.0, 0.0, 0.95])).weights
    assert first == {"a": 1.0}  # b waits for a; n is noise; m is mastered
    later = OraclePolicy(noise=["n"], mastery=0.9, replay=0.2).act(make_observation(skills, [0.95, 0.3, 0.0, 0.95]))
    assert later.weights == pytest.approx({"b": 0.8, "a": 0.1, "m": 0.1})
    with pytest.raises(ValueError, match="not skills"):
        OraclePolicy(noise=["zz"]).act(make_observation(skills, [0, 0, 0, 0]))


def _rows(scores: dict[str, dict[str, list[float]]]) -> list[dict]:
    return [{"challenge": ch, "policy": p, "seed": s, "status": "finished", "score": v}
            for ch, by in scores.items() for p, vs in by.items() for s, v in enumerate(vs)]


def test_the_leaderboard_statistics_by_hand():
    rows = _rows({"x": {"uniform": [0.2, 0.3, 0.4], "oracle": [0.6, 0.7, 0.8], "t": [0.4, 0.5, 0.6]},
                  "y": {"uniform": [0.5, 0.5, 0.5], "oracle": [0.7, 0.75, 0.8], "t": [0.45, 0.5, 0.55]}})
    room = {h["challenge"]: h for h in headroom(rows)}
    assert room["x"]["headroom"] == pytest.approx(0.4) and room["x"]["met"]
    assert room["y"]["headroom"] == pytest.approx(0.25)
    norm = {(r["challenge"], r["policy"], r["seed"]): r["normalised"] for r in normalised(rows)}
    assert norm[("x", "t", 0)] == pytest.approx(0.5) and norm[("y", "t", 0)] == pytest.approx(-0.05 / 0.25)
    assert iqm([1, 2, 3, 4, 100, -100, 5, 6]) == pytest.approx(np.mean([2, 3, 4, 5]))
    board = {r["policy"]: r for r in leaderboard(rows)}
    assert board["oracle"]["iqm"] == pytest.approx(1.0, abs=0.25) and board["uniform"]["iqm"] == 0
    point, low, high = stratified_iqm({"x": [0.5, 0.5, 0.5], "y": [-0.2, 0.0, 0.2]})
    assert low <= point <= high and point == pytest.approx(iqm([0.5, 0.5, 0.5, -0.2, 0.0, 0.2]))
    agree = rank_agreement([{"policy": p, "iqm": v} for p, v in zip("abcd", [1, 2, 3, 4])],
                           [{"policy": p, "iqm": v} for p, v in zip("abcd", [1, 2, 4, 3])])
    assert agree["tau"] == pytest.approx(2 / 3)


def test_a_teacher_with_rows_on_some_challenges_says_its_iqm_covers_fewer():
    from teachgym.bench_report import markdown, readme_block

    rows = _rows({"x": {"uniform": [0.2, 0.3, 0.4], "oracle": [0.6, 0.7, 0.8], "t": [0.4, 0.5, 0.6]},
                  "y": {"uniform": [0.1, 0.1, 0.2], "oracle": [0.6, 0.7, 0.7]}})
    board = {r["policy"]: r for r in leaderboard(rows)}
    assert board["t"]["in_iqm"] == ["x"] and board["oracle"]["in_iqm"] == ["x", "y"]
    assert "fewer of the 2 challenges in the aggregate (no rows on the others yet): t (x)." in \
        markdown(rows, {}, "footer")
    block = readme_block({"lm": rows})
    assert "| t | +0.50 [+0.50, +0.50] (1 of 2) |" in block and "| oracle | +0.98 [+0.97, +1.06] |" in block


def test_a_challenge_without_headroom_reports_raw_differences_not_normalised_ones():
    from teachgym.bench_report import markdown, without_headroom

    rows = _rows({"x": {"uniform": [0.2, 0.3, 0.4], "oracle": [0.6, 0.7, 0.8], "t": [0.4, 0.5, 0.6]},
                  "z": {"uniform": [0.9, 0.95, 1.0], "oracle": [0.9, 0.9, 0.95], "t": [0.7, 0.8, 0.8]}})
    assert "z" not in leaderboard(rows)[0]["challenges"]  # no division by a headroom at or under 0
    raw = without_headroom(rows)
    assert list(raw) == ["z"] and raw["z"]["t"]["mean"] == pytest.approx(-0.55 / 3)
    assert raw["z"]["t"]["high"] < 0 and raw["z"]["uniform"]["mean"] == 0
    text = markdown(rows, {}, "footer")
    assert "**z**: the oracle does not beat uniform" in text and "| t | 0.767 | -0.183 [" in text
    assert "Clearly below uniform (the whole interval under 0): t on z." in text


def test_challenges_load_and_a_wrong_name_suggests_the_near_one():
    names = [c.name for c in load_challenges(ROOT / "configs" / "bench")]
    assert "unlearnable" in names
    with pytest.raises(ConfigError, match="did you mean"):
        load_challenges(ROOT / "configs" / "bench", ["unlearnabel"])
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4] and parse_seeds("3,1") == [3, 1]
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds("a-b")


def test_simulated_twins_run_cache_and_rank_a_user_teacher(tmp_path, monkeypatch):
    """Uniform, the oracle and a teacher by import path on one challenge's twin; a second call reuses every case."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    challenges = load_challenges(ROOT / "configs" / "bench", ["unlearnable"])
    args = dict(challenges=challenges, policies=["helpers_policies:WeakestFirst"], seeds=[0, 1], simulated=True,
                results=tmp_path / "res", work=tmp_path / "work", sequential=True, tracking=False)
    rows = run_bench(**args)
    assert sorted({r["policy"] for r in rows}) == ["helpers_policies:WeakestFirst", "oracle", "uniform"]
    assert all(r["status"] == "finished" and 0 <= r["score"] <= 1 for r in rows)
    assert len({r["provenance"]["key"] for r in rows}) == 3  # one key per (challenge, policy)
    room = headroom(rows)[0]
    assert room["oracle"] > room["uniform"]  # the oracle skips the noise skills
    stored = (tmp_path / "res" / "simulated.jsonl").read_text().splitlines()
    assert len(stored) == 6
    import teachgym.sweep

    def no_run(*a, **k):
        raise AssertionError("a case with a stored row of the same key ran again")

    monkeypatch.setattr(teachgym.sweep, "run_sweep", no_run)
    again = run_bench(**args)
    assert [r["score"] for r in again] == [r["score"] for r in rows]
    monkeypatch.undo()
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    moved = run_bench(**{**args, "seeds": [0, 2]})  # only seed 2 is new: it runs, seed 0 is reused
    assert [r["seed"] for r in moved] == [0, 2, 0, 2, 0, 2]
    assert len((tmp_path / "res" / "simulated.jsonl").read_text().splitlines()) == 9


def _train_tiny_teacher(challenge, path: Path, seed: int, monkeypatch) -> None:
    """A PPO teacher trained for a few steps on the challenge's twin, in benchmarks/train_bench_teachers.py's env."""
    import importlib

    from stable_baselines3 import PPO

    from teachgym.policies.learned import save_teacher

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    env = importlib.import_module("train_bench_teachers").score_env(challenge)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=seed, device="cpu")
    model.learn(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_teacher(model, path, env)


def test_learned_runs_where_its_challenge_has_a_model_and_a_new_model_reruns(tmp_path, monkeypatch):
    """The bench's `learned` row uses the challenge's model (its bytes in the key); no model: skipped, named."""
    pytest.importorskip("stable_baselines3")
    models = tmp_path / "models"  # a learned folder (teachgym bench --learned) with one trained teacher
    challenges = load_challenges(ROOT / "configs" / "bench", ["mastered", "unlearnable"])
    model = models / "unlearnable.zip"
    _train_tiny_teacher(challenges[1], model, seed=0, monkeypatch=monkeypatch)
    assert missing_learned(challenges, models) == ["mastered"]
    args = dict(challenges=challenges, policies=["learned"], seeds=[0], simulated=True, results=tmp_path / "res",
                work=tmp_path / "work", learned=models, sequential=True, tracking=False)
    rows = run_bench(**args)
    learned = [r for r in rows if r["policy"] == "learned"]
    assert [(r["challenge"], r["status"]) for r in learned] == [("unlearnable", "finished")]
    assert {r["policy"] for r in rows if r["challenge"] == "mastered"} == {"uniform", "oracle"}
    # another model: another key, so the case runs again
    _train_tiny_teacher(challenges[1], model, seed=1, monkeypatch=monkeypatch)
    again = [r for r in run_bench(**args) if r["policy"] == "learned"]
    assert again[0]["provenance"]["key"] != learned[0]["provenance"]["key"]
    stored = [json.loads(x) for x in (tmp_path / "res" / "simulated.jsonl").read_text().splitlines()]
    assert sum(r["policy"] == "learned" for r in stored) == 2


def test_the_cli_lists_challenges_and_prints_json_rows(tmp_path):
    empty = tmp_path / "empty"  # no committed rows to reuse: every case here runs
    empty.mkdir()
    listed = subprocess.run([TEACHGYM, "bench", "--list"], cwd=ROOT, capture_output=True, text=True)
    assert listed.returncode == 0 and "unlearnable" in listed.stdout
    two = subprocess.run([TEACHGYM, "bench", "--list", "--challenges", "mastered,wide"], cwd=ROOT, capture_output=True,
                         text=True)
    assert [line.split()[0] for line in two.stdout.splitlines()] == ["mastered", "wide"]
    done = subprocess.run([TEACHGYM, "bench", "uniform", "--simulated", "--challenges", "unlearnable", "--seeds",
                           "0-1", "--no-mlflow", "--format", "json", "--results", str(tmp_path / "r"), "--work",
                           str(tmp_path / "w"), "--reference", str(empty)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)
    assert {(r["policy"], r["seed"]) for r in rows} == {("uniform", 0), ("uniform", 1), ("oracle", 0), ("oracle", 1)}
    assert all({"challenge", "policy", "seed", "score", "normalised"} <= set(r) for r in rows)
    assert (tmp_path / "r" / "simulated.md").read_text().startswith("## teachgym bench: simulated")
    assert (tmp_path / "r" / "simulated_profile.png").stat().st_size > 5000
    # --cached runs nothing: mastered has no rows, so only unlearnable's cases are reported
    cached = subprocess.run([TEACHGYM, "bench", "--cached", "--simulated", "--challenges", "unlearnable,mastered",
                             "--no-mlflow", "--results", str(tmp_path / "r"), "--work", str(tmp_path / "w2"),
                             "--reference", str(empty)],
                            cwd=ROOT, capture_output=True, text=True)
    assert cached.returncode == 0, cached.stderr[-2000:]
    assert not (tmp_path / "w2").exists()
    report = (tmp_path / "r" / "simulated.md").read_text()
    assert "| unlearnable |" in report and "| mastered |" not in report and "--cached" in report
    index = json.loads((tmp_path / "r" / "simulated.json").read_text())
    assert len(index["cases"]) == 4 + 2 * 5  # and the anchors on the protocol's five calibration seeds
    bad = subprocess.run([TEACHGYM, "bench", "--challenges", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "no challenge 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def test_every_shipped_challenge_declares_a_structure_that_fits_its_env():
    for ch in load_challenges(ROOT / "configs" / "bench"):
        from teachgym.config import build_component

        env = build_component("envs", "env", ch.config.env, seed=0)
        names = {s.name for s in env.skills}
        assert set(ch.bench.noise) <= names, ch.name
        assert ch.learnable and ch.bench.simulated.name == "simulated", ch.name
        difficulty = ch.bench.simulated.kwargs.get("difficulty", {})
        assert set(difficulty) <= names, ch.name  # the twin's structure names the env's skills
    assert len(load_challenges(ROOT / "configs" / "bench")) >= 6


def test_a_compute_matched_uniform_runs_k_times_the_budget_in_whole_generation_batches():
    """``uniform+x2.3`` is uniform on 2.3x the round's prompts, rounded to whole GRPO generation batches (8 prompts
    here), ranked with the extra-compute variants; a plain name is untouched."""
    from teachgym.bench import budget, case_config, variant
    from teachgym.bench_report import track

    assert budget("uniform+x2.3") == ("uniform", 2.3) and budget("uniform+filter") == ("uniform+filter", 1.0)
    assert variant("dump+filter+x2") == ("dump", False, True)
    ladder = load_challenges(ROOT / "configs" / "bench", ["ladder-rl"])[0]
    base = ladder.config.loop.examples_per_round
    case = case_config(ladder, "uniform+x2.3", simulated=False)
    assert case["policy"] == {"name": "uniform"} and "filter_groups" not in case["student"]
    unit = ladder.config.student.batch_size // ladder.config.student.num_generations
    assert case["loop"]["examples_per_round"] % unit == 0
    assert abs(case["loop"]["examples_per_round"] - 2.3 * base) <= unit / 2
    assert track("uniform+x2.3") == track("uniform+filter") == "extra compute" and track("uniform") == "general"


def test_per_step_variants_configure_their_cases_and_run_only_where_the_student_draws_batches(tmp_path):
    """``dump@step`` sets loop.teach_every, ``+filter`` the student's filtering; both skip the twins and SFT
    challenges; ``uniform@step`` is refused with the reason; the default list holds the per-step built-ins."""
    from teachgym.bench import (
        batchwise,
        case_config,
        default_policies,
        sweep_name,
        variant,
    )

    assert variant("dump@step+filter") == ("dump", True, True) and variant("my.mod:T@step") == ("my.mod:T", True, False)
    assert variant("uniform+filter") == ("uniform", False, True) and variant("sec") == ("sec", False, False)
    ladder, prereq = load_challenges(ROOT / "configs" / "bench", ["ladder-rl", "prerequisites"])
    assert batchwise(ladder) and not batchwise(prereq)
    case = case_config(ladder, "dump@step+filter", simulated=False)
    assert case["loop"]["teach_every"] == "step" and case["student"]["filter_groups"] is True
    assert case["policy"] == {"name": "dump"}
    plain = case_config(ladder, "dump", simulated=False)
    assert "filter_groups" not in plain["student"] and plain["loop"]["teach_every"] == "round"
    rows = run_bench([ladder], ["dump@step", "uniform+filter"], [0], simulated=True, results=tmp_path / "res",
                     work=tmp_path / "work", sequential=True, tracking=False)
    assert {r["policy"] for r in rows} == {"uniform", "oracle"}  # the twin rolls nothing out: variants skipped
    assert {"dump@step", "sec@step", "learnability@step"} <= set(default_policies())
    assert not any(p.startswith(("uniform@", "exp3@")) for p in default_policies())
    from teachgym.sweep import plan_sweep

    name = sweep_name(ladder, "my.mod:T@step+filter", "abc")  # a sweep name takes no ':', '@' or '+'
    assert name == "bench-ladder-rl-my.mod.T.step.filter-abc"
    assert plan_sweep(ROOT / "configs" / "bench" / "ladder-rl.yaml", name=name).directory.name.endswith(name)
    from teachgym.bench_command import bench_command

    with pytest.raises(ConfigError, match="has no step"):
        bench_command(["uniform@step"], ["ladder-rl"], "0", True, "table", str(ROOT / "configs" / "bench"),
                      str(tmp_path / "r"), str(tmp_path / "w"), True, False, "teachgym bench uniform@step")


def test_a_report_names_its_stale_rows_and_the_modules_that_changed():
    """A row is stale when its key is not its case's current key; the notice names the modules whose source
    changed since (from the source index of the row's code hash)."""
    from teachgym.bench import case
    from teachgym.bench_command import stale_notice, staleness
    from teachgym.bench_report import readme_block

    ch = load_challenges(ROOT / "configs" / "bench", ["unlearnable"])[0]
    _, prov = case(ch, "learnability", True, Path("."))
    now = prov.pop("sources")
    rows = [{"challenge": "unlearnable", "policy": "learnability", "seed": s, "status": "finished", "score": 0.5,
             "provenance": dict(prov)} for s in range(3)]
    assert staleness(rows, [ch], True, {prov["code"]: now})["stale"] == 0
    older = {**now, "teachgym.policies._common": "0" * 16, "teachgym.gone": "1" * 16}
    rows[0]["provenance"] = {**prov, "key": "old", "code": "oldcode"}
    rows[1]["provenance"] = {**prov, "key": "older", "code": "unindexed"}
    found = staleness(rows, [ch], True, {prov["code"]: now, "oldcode": older})
    assert found == {"stale": 2, "total": 3, "modules": ["teachgym.gone", "teachgym.policies._common"], "unknown": 1}
    notice = stale_notice(found)
    assert notice.startswith("**Stale: 2 of 3 rows are not the current code's numbers.**")
    assert "`teachgym.gone`, `teachgym.policies._common` changed since" in notice and "1 row(s) predate" in notice
    board = [{"challenge": "c", "policy": p, "seed": s, "score": v + s / 10, "status": "finished",
              "provenance": {"code": "x"}} for p, v in (("uniform", 0.1), ("oracle", 0.6)) for s in range(3)]
    assert notice in readme_block({"simulated": board}, notice) and "Stale" not in readme_block({"simulated": board})


def test_another_machines_rows_are_current_for_it_and_reported_as_its_own_never_mixed(tmp_path):
    """An LM row's key covers the machine: a run here never reuses another machine's rows, a stale check counts them
    current for the machine that made them, and ``--cached`` reports them under that machine's name when this one has
    fewer of the cases (a report never mixes machines)."""
    from teachgym.bench import HARDWARE, case, hardware_of, machines
    from teachgym.bench_command import bench_command, staleness
    from teachgym.bench_protocol import load_protocol
    from teachgym.provenance import machine

    ch = load_challenges(ROOT / "configs" / "bench", ["prerequisites"])[0]
    here = tuple(machine()[k] for k in HARDWARE)
    there = ("Other CPU 9000", 64, "none")
    seeds = [*load_protocol().calibration_seeds, *load_protocol().scoring_seeds]
    rows, index = [], {}
    for policy, level in (("uniform", 0.1), ("oracle", 0.5), ("skill-it", 0.3)):
        _, prov = case(ch, policy, False, Path("."), hardware=there)
        _, mine = case(ch, policy, False, Path("."))
        assert prov["key"] != mine["key"] and prov["code"] == mine["code"]  # the machine alone moves the key
        index[prov["code"]] = prov.pop("sources")
        curve = [0.0, level, level]
        rows += [{"challenge": ch.name, "policy": policy, "seed": s, "status": "finished", "student": "lm",
                  "score": level + s / 1000, "curve": [c + s / 1000 for c in curve], "provenance": prov}
                 for s in seeds]
    assert {hardware_of(r) for r in rows} == {there}
    assert staleness(rows, [ch], False, index) == {"stale": 0, "total": len(rows), "modules": [], "unknown": 0}
    ref, out = tmp_path / "ref", tmp_path / "out"
    ref.mkdir()
    (ref / "lm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (ref / "lm.sources.json").write_text(json.dumps(index))
    assert machines(out, "lm", ref) == [there]
    assert run_bench([ch], ["skill-it"], [0], False, out, tmp_path / "w", run=False, reference=ref) == []
    argv = (["skill-it"], ["prerequisites"], None, False, "table", str(ROOT / "configs" / "bench"), str(out),
            str(tmp_path / "w"), True, False, "teachgym bench --cached")
    assert bench_command(*argv, cached=True, reference=str(ref)) == 0
    report = (out / "lm.md").read_text()
    assert f"**Made on another machine: {there[0]}, 64 cores, GPU none** (this one: {here[0]}" in report
    assert "| skill-it | general |" in report and "Stale" not in report
    assert f"Machine: {there[0]}, 64 cores" in report


def test_calibration_registers_the_machine_its_lm_rows_were_made_on(tmp_path, capsys):
    """``teachgym bench --calibrate`` decides from the anchors' calibration rows (reused here: nothing runs) and
    writes the machine they were made on beside the headroom, which the report then names."""
    from teachgym.bench import case
    from teachgym.bench_command import bench_command
    from teachgym.bench_protocol import load_protocol
    from teachgym.provenance import machine

    ch = load_challenges(ROOT / "configs" / "bench", ["prerequisites"])[0]
    rows, index = [], {}
    for policy, level in (("uniform", 0.1), ("oracle", 0.5)):
        _, prov = case(ch, policy, False, Path("."))
        index[prov["code"]] = prov.pop("sources")
        rows += [{"challenge": ch.name, "policy": policy, "seed": s, "status": "finished", "student": "lm",
                  "score": level + s / 1000, "curve": [0.0, level + s / 1000], "provenance": prov}
                 for s in load_protocol().calibration_seeds]
    out = tmp_path / "out"
    out.mkdir()
    (out / "lm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "lm.sources.json").write_text(json.dumps(index))
    argv = ([], ["prerequisites"], None, False, "table", str(ROOT / "configs" / "bench"), str(out),
            str(tmp_path / "w"), True, False, "teachgym bench --calibrate")
    assert bench_command(*argv, protocol=str(tmp_path / "p.yaml"), calibrate=True) == 0
    registered = load_protocol(tmp_path / "p.yaml")
    found = machine()
    assert registered.machines == {"lm": f"{found['cpu']}, {found['cores']} cores, GPU {found['gpu']}"}
    assert registered.in_aggregate("lm") == {"prerequisites"} and not (tmp_path / "w").exists()  # nothing ran


def test_ctrl_c_stops_the_bench_with_a_line_not_a_traceback(tmp_path):
    """Ctrl-C while cases run: the finished cases are kept, and the bench says where and how to go on (exit 130)."""
    import signal
    import time

    args = [TEACHGYM, "bench", "uniform", "--simulated", "--no-mlflow", "--challenges", "unlearnable", "--seeds",
            "0-3000", "--results", str(tmp_path / "r"), "--work", str(tmp_path / "w")]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "w").glob("*/trials/*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # the first case has started: the signal lands in the sweep, not in the imports
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "bench stopped (SIGINT)" in err and "run the same command again" in err, err
    assert str(tmp_path / "r" / "simulated.jsonl") in err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_bench_writes_in_the_working_folder_and_cached_never_writes_an_empty_report(tmp_path):
    """Run from another folder with the defaults: the rows and reports land in ./outputs/bench/results, the committed
    leaderboard is read, never written; --cached with no rows of its cases writes nothing; one seed says why the
    report has no intervals; no plotting warning."""
    committed = _snapshot(ROOT / "benchmarks" / "results" / "bench")
    status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    bench = [TEACHGYM, "bench", "--simulated", "--no-mlflow"]  # the challenges ship with teachgym: any folder works
    done = subprocess.run([*bench, "uniform", "--challenges", "unlearnable", "--seeds", "0"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Warning" not in done.stderr and "legend" not in done.stderr, done.stderr
    report = (tmp_path / "outputs" / "bench" / "results" / "simulated.md").read_text()
    assert "**One seed: scores without intervals.**" in report
    room = next(line for line in report.splitlines() if line.startswith("| unlearnable |"))
    assert "(n=5)" in room  # the headroom is the calibration seeds' (the protocol's), whatever --seeds is
    mine = next(line for line in report.splitlines() if line.startswith("| uniform | general |"))
    assert "[" not in mine  # one scoring seed: a score, no interval
    (tmp_path / "none").mkdir()  # a reference without rows (the committed one may hold current ones)
    cached = subprocess.run([*bench, "--cached", "--challenges", "mastered", "--reference", str(tmp_path / "none")],
                            cwd=tmp_path, capture_output=True, text=True)
    assert cached.returncode == 1 and "no report written" in cached.stderr, cached.stderr
    assert (tmp_path / "outputs" / "bench" / "results" / "simulated.md").read_text() == report
    assert _snapshot(ROOT / "benchmarks" / "results" / "bench") == committed
    assert subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout == status


def test_a_report_without_a_teacher_to_draw_has_no_legend_warning(tmp_path):
    import warnings

    from teachgym.bench_report import plot_profile

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_profile([], str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_the_key_covers_every_module_a_case_imports_and_its_bench_section(tmp_path, monkeypatch):
    """The audit's key holes: policies/_common.py (and warm_start, resume, rounds, checks) were in no key; a
    plugin's helper module neither; nor the bench: section. Each now changes the key, so the case reruns."""
    from teachgym import provenance
    from teachgym.bench import case

    ch = load_challenges(ROOT / "configs" / "bench", ["unlearnable"])[0]
    key = {p: case(ch, p, True, Path("."))[1] for p in ("learnability", "uniform", "skill-it")}
    for p in ("learnability", "skill-it"):
        assert "teachgym.policies._common" in key[p]["sources"]
    assert {"teachgym.warm_start", "teachgym.resume", "teachgym.rounds", "teachgym.checks"} <= set(
        key["uniform"]["sources"])
    common = str(ROOT / "policies" / "_common.py")
    real = provenance._hashed
    monkeypatch.setattr(provenance, "_hashed", lambda stamp: "edited" if stamp[0] == common else real(stamp))
    after = {p: case(ch, p, True, Path("."))[1]["key"] for p in key}
    assert after["learnability"] != key["learnability"]["key"] and after["skill-it"] != key["skill-it"]["key"]
    assert after["uniform"] == key["uniform"]["key"]  # uniform does not import it
    monkeypatch.undo()
    # the bench: section (score type, noise list) is in the key
    data = ch.config.model_dump(mode="json")
    data["bench"]["score"] = "auc" if data["bench"]["score"] == "final" else "final"
    from teachgym.bench import Challenge
    from teachgym.config import load_config

    changed = Challenge(ch.name, ch.path, load_config(data))
    assert case(changed, "uniform", True, Path("."))[1]["key"] != key["uniform"]["key"]


def test_editing_a_plugins_helper_module_reruns_its_cases(tmp_path, monkeypatch):
    (tmp_path / "myhelper.py").write_text("SHARE = 1.0\n")
    (tmp_path / "mypolicy.py").write_text(
        "from myhelper import SHARE\nfrom teachgym.types import Mixture\n\n\n"
        "class Even:\n    def act(self, obs):\n        return Mixture({s.name: SHARE for s in obs.skills})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ch = load_challenges(ROOT / "configs" / "bench", ["unlearnable"])
    args = dict(challenges=ch, policies=["mypolicy:Even"], seeds=[0], simulated=True, results=tmp_path / "res",
                work=tmp_path / "work", sequential=True, tracking=False, anchors=())
    first = run_bench(**args)
    assert "myhelper" in json.loads((tmp_path / "res" / "simulated.sources.json").read_text())[
        first[0]["provenance"]["code"]]
    (tmp_path / "myhelper.py").write_text("SHARE = 2.0  # edited\n")
    second = run_bench(**args)
    assert second[0]["provenance"]["key"] != first[0]["provenance"]["key"]
    assert len((tmp_path / "res" / "simulated.jsonl").read_text().splitlines()) == 2  # it ran again


@pytest.mark.slow
def test_the_committed_simulated_leaderboard_is_what_a_run_from_nothing_makes(tmp_path):
    """CI reruns every simulated case from nothing (no cached row) and fails when the committed leaderboard differs:
    its rows must be the current code's, and they reproduce bit for bit."""
    from teachgym.bench import LEADERBOARD

    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([TEACHGYM, "bench", "--simulated", "--no-mlflow", "--results", str(tmp_path / "r"),
                           "--reference", str(empty), "--work", str(tmp_path / "w")], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads((tmp_path / "r" / "simulated.json").read_text())
    committed = json.loads((LEADERBOARD / "simulated.json").read_text())
    assert sorted(map(tuple, fresh["cases"])) == sorted(map(tuple, committed["cases"])), \
        "the committed simulated rows are not the current keys': regenerate them (docs/bench.md)"
    assert fresh["leaderboard"] == committed["leaderboard"]
    assert fresh["without_headroom"] == committed["without_headroom"]
