"""Neutral skill names (loop.skill_names: neutral): the teacher sees names drawn per seed, in a shuffled order,
without descriptions; its actions are renamed back; a teacher that reads only names scores as uniform."""

import re
from pathlib import Path

from teachgym.checks import make_observation
from teachgym.neutral import Renaming, neutral_names, neutral_view
from teachgym.policies.oracle import OraclePolicy
from teachgym.types import Examples, Failure, Mixture, Probe, Request, Skill, StepObservation, Synthesize

ROOT = Path(__file__).resolve().parents[1]
SKILLS = [Skill("n1", "noise: a hash of the prompt"), Skill("n2", "noise"), Skill("c1", "cipher", ("n1",)),
          Skill("c2", "cipher")]


def test_names_are_drawn_per_seed_distinct_and_say_nothing():
    a, b = neutral_names(["n1", "n2", "c1", "c2"], 0), neutral_names(["n1", "n2", "c1", "c2"], 1)
    assert a == neutral_names(["n1", "n2", "c1", "c2"], 0) and a != b
    assert len(set(a.values())) == 4 and all(re.fullmatch(r"[a-z]{4}", v) for v in a.values())
    orders = {tuple(Renaming(["n1", "n2", "c1", "c2"], seed).order) for seed in range(20)}
    assert len(orders) > 5  # the order the teacher sees is shuffled, seed by seed


def test_what_the_teacher_sees_is_renamed_and_what_it_does_is_renamed_back():
    r = Renaming([s.name for s in SKILLS], 3)
    obs = make_observation(SKILLS, accuracies=[0.1, 0.2, 0.3, 0.4])
    obs = obs.__class__(**{**obs.__dict__, "failures": (Failure("p", "g", "o", ("c1",)),),
                           "skill_graph": {"c1": ("n1",)}})
    seen = r.observation(obs)
    assert [s.name for s in seen.skills] == [r.to[s] for s in r.order]
    assert all(s.description == "" for s in seen.skills)  # descriptions carry structure too
    assert seen.skills[[s.name for s in seen.skills].index(r.to["c1"])].prerequisites == (r.to["n1"],)
    assert set(seen.profile) == set(r.to.values()) and seen.profile[r.to["c2"]] == obs.profile["c2"]
    assert seen.failures[0].skills == (r.to["c1"],) and seen.skill_graph == {r.to["c1"]: (r.to["n1"],)}
    assert not any(re.search(r"\b[nc]\d\b", repr(x)) for x in (seen.skills, seen.profile, seen.failures))
    back = r.back
    assert r.action(Mixture({r.to["c1"]: 1.0}), back).weights == {"c1": 1.0}
    assert r.action(Synthesize((Request(r.to["n2"], 5, None),)), back).requests[0].skill == "n2"
    rows = r.action(Examples([{"prompt": "a", "completion": "b", "skills": [r.to["c2"]]}]), back).rows
    assert rows[0]["skills"] == ["c2"]
    assert r.action(Probe(Mixture({r.to["n1"]: 1.0}), 8), back).mixture.weights == {"n1": 1.0}
    step = r.step(StepObservation(1, 0, 4, ("n1", "c1"), {"n1": 0.5, "c1": 0.5}))
    assert set(step.skills) == {r.to["n1"], r.to["c1"]} and set(step.prior) == set(step.skills)


class _Stepper:
    def __init__(self):
        self.seen = []

    def act(self, obs):
        self.seen.append([s.name for s in obs.skills])
        return Mixture({obs.skills[0].name: 1.0})

    def step(self, obs):
        return Mixture({obs.skills[0]: 1.0})

    def state_dict(self):
        return {"n": len(self.seen)}


def test_the_view_has_the_teachers_capabilities_and_the_oracle_keeps_the_real_names():
    inner = _Stepper()
    view = neutral_view(inner, SKILLS, 0)
    action = view.act(make_observation(SKILLS, [0.5] * 4))
    assert set(action.weights) <= {"n1", "n2", "c1", "c2"} and not set(inner.seen[0]) & {"n1", "n2", "c1", "c2"}
    assert hasattr(view, "step") and not hasattr(view, "probes") and view.state_dict() == {"n": 1}
    assert set(view.step(StepObservation(1, 0, 2, ("n1", "c1"), {"n1": 0.5, "c1": 0.5})).weights) <= {"n1", "c1"}
    oracle = OraclePolicy(noise=["n1", "n2"])
    assert neutral_view(oracle, SKILLS, 0) is oracle


def test_a_teacher_that_reads_only_names_scores_as_uniform_on_the_bench(tmp_path, monkeypatch):
    """The audit's ten-line teacher: skip skills named like noise (n<digit>). On the unlearnable twin it matched
    the oracle; under the bench's neutral names it trains what uniform trains."""
    from teachgym.bench import load_challenges, run_bench
    from teachgym.bench_report import normalised

    (tmp_path / "namereader.py").write_text(
        "import re\nfrom teachgym.types import Mixture\n\n\nclass SkipNoise:\n    def act(self, obs):\n"
        "        keep = [s.name for s in obs.skills if not re.match(r'n\\d', s.name)] or [s.name for s in obs.skills]\n"
        "        return Mixture({s: 1.0 for s in keep})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rows = run_bench(load_challenges(ROOT / "configs" / "bench", ["unlearnable"]), ["namereader:SkipNoise"], [0, 1],
                     simulated=True, results=tmp_path / "r", work=tmp_path / "w", sequential=True,
                     tracking=False)
    scores = {(r["policy"], r["seed"]): r["score"] for r in rows}
    assert scores[("oracle", 0)] > scores[("uniform", 0)] + 0.1  # the headroom the name would have given away
    norm = [r["normalised"] for r in normalised(rows) if r["policy"] == "namereader:SkipNoise"]
    assert norm == [0.0, 0.0]
