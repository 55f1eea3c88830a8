"""The bench's pre-registered protocol: calibration seeds decide, scoring seeds score (teachgym.bench_protocol)."""

import math

import numpy as np
import pytest

from teachgym.bench_protocol import (
    Protocol,
    bootstrap_iqm,
    calibrate,
    improvement,
    load_protocol,
    score,
    write_protocol,
)
from teachgym.bench_report import leaderboard, normalised, track
from teachgym.config import ConfigError

P = Protocol(calibration_seeds=(100, 101, 102), scoring_seeds=(0, 1, 2, 3), target=0.15)


def _rows(table):
    """``{challenge: {policy: {seed: score}}}`` as finished bench rows."""
    return [{"challenge": c, "policy": p, "seed": s, "score": v, "status": "finished"}
            for c, by in table.items() for p, seeds in by.items() for s, v in seeds.items()]


def test_scores_are_robust_to_a_student_that_oscillates():
    curve = [0.0, 0.48, 0.09, 0.42, 0.09]  # the oracle on LM unlearnable, seed 3, round by round
    assert score(curve, "final") == 0.09 and score(curve, "last-3") == pytest.approx(0.2)
    assert score(curve, "auc") == pytest.approx(np.mean(curve[1:]))


def test_the_protocol_file_is_checked_and_round_trips(tmp_path):
    path = tmp_path / "protocol.yaml"
    registered = {"simulated": {"a": {"headroom": 0.2, "in_aggregate": True}}}
    write_protocol(Protocol(score={"a": "auc"}, calibrated=registered, machines={"lm": "Some CPU, 2 cores"}), path,
                   "teachgym bench --calibrate")
    back = load_protocol(path)
    assert back.score == {"a": "auc"} and back.in_aggregate("simulated") == {"a"} and back.in_aggregate("lm") is None
    assert back.machines == {"lm": "Some CPU, 2 cores"}  # an LM calibration's numbers are its machine's
    assert back.calibration_seeds == (100, 101, 102, 103, 104) and back.scoring_seeds == tuple(range(10))
    path.write_text("calibration_seeds: [0, 1]\nscoring_seeds: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"seeds \[1\] both calibrate and score"):
        load_protocol(path)
    path.write_text("scoring_seed: [1]\n")
    with pytest.raises(ConfigError, match="unknown protocol fields \\['scoring_seed'\\]"):
        load_protocol(path)
    path.write_text("machines:\n  lm: a CPU: 2 cores\n")  # a colon in a plain value: not YAML
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_protocol(path)
    assert load_protocol(tmp_path / "none.yaml") == Protocol()


def test_calibration_decides_from_the_calibration_seeds_alone():
    rows = _rows({"x": {"uniform": {100: 0.2, 101: 0.3, 102: 0.25, 0: 0.9}, "oracle": {100: 0.5, 101: 0.55, 102: 0.5}},
                  "y": {"uniform": {100: 0.2, 101: 0.3, 102: 0.25}, "oracle": {100: 0.25, 101: 0.32, 102: 0.3}}})
    found = calibrate(rows, P, "simulated")
    assert found["x"]["headroom"] == pytest.approx(0.2667, abs=1e-4) and found["x"]["in_aggregate"]
    assert found["y"]["headroom"] == pytest.approx(0.04, abs=1e-4) and not found["y"]["in_aggregate"]
    assert found["x"]["uniform"] == 0.25  # the scoring seed's 0.9 is not in it


def test_the_aggregate_is_the_registered_one_and_teachers_score_on_the_scoring_seeds():
    cal = {100: 0.2, 101: 0.3, 102: 0.25}
    table = {"x": {"uniform": {**cal, 0: 0.2, 1: 0.3, 2: 0.2, 3: 0.3}, "oracle": {s: v + 0.3 for s, v in cal.items()},
                   "t": {0: 0.35, 1: 0.45, 2: 0.35, 3: 0.45}},
             "y": {"uniform": {**cal, 0: 0.2, 1: 0.2, 2: 0.2, 3: 0.2}, "oracle": {s: v + 0.3 for s, v in cal.items()},
                   "t": {0: 0.2, 1: 0.2, 2: 0.2, 3: 0.2}}}
    rows = _rows(table)
    registered = Protocol(calibration_seeds=P.calibration_seeds, scoring_seeds=P.scoring_seeds,
                          calibrated={"simulated": {"x": {"in_aggregate": True}, "y": {"in_aggregate": False}}})
    board = {r["policy"]: r for r in leaderboard(rows, registered, "simulated")}
    assert board["t"]["in_iqm"] == ["x"]  # y is out because the protocol says so, whatever its headroom
    assert board["t"]["iqm"] == pytest.approx(0.15 / 0.3)  # the gain over the calibration headroom
    assert {r["seed"] for r in normalised(rows, registered, "simulated")} == {0, 1, 2, 3}


def test_the_bootstrap_resamples_the_normaliser_too():
    gains = {0: 0.1, 1: 0.12, 2: 0.08, 3: 0.1}
    steady = {100: 0.2, 101: 0.2, 102: 0.2}
    shaky = {100: 0.05, 101: 0.2, 102: 0.35}  # the same mean headroom, from noisier calibration pairs
    out = {}
    for name, room in (("steady", steady), ("shaky", shaky)):
        rows = _rows({"x": {"uniform": {**{s: 0.0 for s in room}, **{s: 0.3 for s in gains}},
                            "oracle": room, "t": {s: 0.3 + g for s, g in gains.items()}}})
        out[name] = bootstrap_iqm(rows, "t", ["x"], P)
    assert out["steady"][0] == pytest.approx(out["shaky"][0]) == pytest.approx(0.5)
    width = {k: v[2] - v[1] for k, v in out.items()}
    assert width["shaky"] > 2 * width["steady"]  # a normaliser held fixed would give the same interval


def test_probability_of_improvement_by_hand_and_when_teachers_cannot_be_told_apart():
    rows = _rows({"x": {"a": {0: 0.5, 1: 0.6, 2: 0.7, 3: 0.8}, "b": {0: 0.1, 1: 0.2, 2: 0.3, 3: 0.4},
                        "c": {0: 0.45, 1: 0.65, 2: 0.7, 3: 0.75}}})
    p, lo, hi = improvement(rows, "a", "b", ["x"], P)
    assert p == 1.0 and lo == 1.0
    p, lo, hi = improvement(rows, "a", "c", ["x"], P)
    assert p == pytest.approx(8.5 / 16) and lo < 0.5 < hi  # 8 pairs above, one tie: cannot be told apart
    assert math.isnan(improvement(rows, "a", "z", ["x"], P)[0])


def test_tracks_keep_per_challenge_training_and_extra_compute_apart():
    assert track("learnability") == track("dump@step") == track("my.mod:T") == "general"
    assert track("learned") == "trained per challenge"
    assert track("uniform+filter") == track("dump@step+filter") == "extra compute"


def test_a_teacher_on_fewer_than_the_scoring_seeds_is_said_to_be():
    from teachgym.bench_report import markdown

    cal = {100: 0.2, 101: 0.3, 102: 0.25}
    table = {"x": {"uniform": {**cal, 0: 0.2, 1: 0.3, 2: 0.2, 3: 0.3}, "oracle": {s: v + 0.3 for s, v in cal.items()},
                   "t": {0: 0.35, 1: 0.45}, "u": {0: 0.3, 1: 0.3, 2: 0.3, 3: 0.3}}}
    registered = Protocol(calibration_seeds=P.calibration_seeds, scoring_seeds=P.scoring_seeds,
                          calibrated={"simulated": {"x": {"in_aggregate": True}}})
    text = markdown(_rows(table), {}, "footer", protocol=registered, kind="simulated")
    assert "On fewer than the protocol's 4 scoring seeds (the rest not run yet): t on x (2)." in text
    assert "u on x" not in text
    from teachgym.bench_report import readme_block

    block = readme_block({"simulated": _rows(table)}, protocols={"simulated": registered})
    lines = {line.split(" | ")[0]: line for line in block.splitlines() if line.startswith("| ")}
    assert lines["| t"].endswith("† |") and not lines["| u"].endswith("† |") and "* †: on fewer" in block
