"""The bench's pre-registered protocol: what is decided on calibration seeds, before any scoring run.

``teachgym bench --calibrate`` runs the anchors (``uniform``, ``oracle``) on the **calibration seeds** and writes
the protocol file (:data:`PROTOCOL`, committed): each challenge's score (``last-3``: the mean of the last three
rounds, robust to a student that oscillates; ``auc``: the mean over every round after round 0), its headroom
(oracle − uniform) with its interval, and whether it enters the aggregate (headroom ≥ the target with the interval
above 0). A leaderboard then reads the file and the **scoring seeds** alone score teachers: nothing on the scoring
seeds decides which challenges count or what a score is divided by.

The normaliser of a challenge is its headroom on the calibration seeds; the bootstrap of the IQM resamples those
seeds too (the whole pipeline: calibration pairs, then scoring pairs), as :func:`bootstrap_iqm` does.
:func:`improvement` is rliable's probability of improvement, with its stratified-bootstrap interval.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from teachgym.analysis import paired_difference
from teachgym.config import ConfigError

PROTOCOL = Path(__file__).with_name("challenges") / "protocol.yaml"
SCORES = ("last-3", "final", "auc")
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Protocol:
    """The pre-registered choices (the file's contents)."""

    calibration_seeds: tuple[int, ...] = (100, 101, 102, 103, 104)
    scoring_seeds: tuple[int, ...] = tuple(range(10))
    target: float = 0.15
    score: Mapping[str, str] = field(default_factory=dict)  # challenge -> "last-3" | "auc"
    #: kind ("simulated", "lm") -> challenge -> {uniform, oracle, headroom, low, high, seeds, in_aggregate}
    calibrated: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    #: kind -> the machine its calibration rows were made on (an LM's numbers are per machine; the twins' are not)
    machines: Mapping[str, str] = field(default_factory=dict)

    def score_of(self, challenge: str, declared: str) -> str:
        """The challenge's score as registered (``declared``, the challenge file's, until it is calibrated)."""
        return self.score.get(challenge, declared)

    def in_aggregate(self, kind: str) -> set[str] | None:
        """The challenges registered to enter the aggregate for ``kind``; None when ``kind`` is not calibrated."""
        found = self.calibrated.get(kind)
        return None if found is None else {c for c, v in found.items() if v.get("in_aggregate")}


def load_protocol(path: str | Path = PROTOCOL) -> Protocol:
    """The protocol in ``path`` (the defaults when there is no such file).

    Raises:
        ConfigError: A file that is not a protocol (the field is named).
    """
    path = Path(path)
    if not path.exists():
        return Protocol()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a protocol is a mapping of fields, not {type(data).__name__}")
    known = {"calibration_seeds", "scoring_seeds", "target", "score", "calibrated", "machines"}
    if unknown := sorted(set(data) - known):
        raise ConfigError(f"{path}: unknown protocol fields {unknown}; fields: {sorted(known)}")
    bad = {c: s for c, s in (data.get("score") or {}).items() if s not in SCORES}
    if bad:
        raise ConfigError(f"{path}: score must be one of {list(SCORES)}, not {bad}")
    seeds = set(data.get("calibration_seeds", ())) & set(data.get("scoring_seeds", ()))
    if seeds:
        raise ConfigError(f"{path}: seeds {sorted(seeds)} both calibrate and score; a seed that tunes never scores")
    return Protocol(**{k: tuple(v) if k.endswith("_seeds") else v for k, v in data.items()})


def score(curve: Sequence[float], how: str) -> float:
    """A run's score from its curve (the learnable skills' mean accuracy, round 0 first): ``last-3``, ``final`` or
    ``auc`` (see :class:`teachgym.config.BenchConfig`)."""
    if how == "auc":
        return float(np.mean(curve[1:])) if len(curve) > 1 else float(curve[0])
    if how == "final":
        return float(curve[-1])
    return float(np.mean(curve[-3:]))


def calibrate(rows: Sequence[Mapping[str, Any]], protocol: Protocol, kind: str) -> dict[str, dict[str, Any]]:
    """Per challenge, from the anchors' rows on the calibration seeds: uniform, oracle, the headroom with its
    paired t-interval, and whether it enters the aggregate (headroom ≥ target, interval above 0)."""
    out = {}
    for ch, (o, u, seeds) in anchor_gaps(rows, set(protocol.calibration_seeds)).items():
        if len(seeds) < 2:
            continue
        mean, low, high = paired_difference(o, u)
        out[ch] = {"uniform": round(float(np.mean(u)), 4), "oracle": round(float(np.mean(o)), 4),
                   "headroom": round(mean, 4), "low": round(low, 4), "high": round(high, 4), "seeds": seeds,
                   "in_aggregate": bool(mean >= protocol.target and low > 0)}
    return out


def write_protocol(protocol: Protocol, path: str | Path, note: str) -> None:
    """Write ``protocol`` to ``path`` with a header saying how it was made."""
    data = {"calibration_seeds": list(protocol.calibration_seeds), "scoring_seeds": list(protocol.scoring_seeds),
            "target": protocol.target, "score": dict(sorted(protocol.score.items())),
            "calibrated": {k: dict(v) for k, v in sorted(protocol.calibrated.items())},
            "machines": dict(sorted(protocol.machines.items()))}
    header = ("# teachgym bench's pre-registered protocol (teachgym.bench_protocol), written by\n"
              f"# `{note}` from the anchors' runs on the calibration seeds, before any scoring run.\n"
              "# A leaderboard reads it; the scoring seeds decide nothing in it.\n")
    Path(path).write_text(header + yaml.safe_dump(data, sort_keys=False, width=120, default_flow_style=None))


def iqm(values: Sequence[float]) -> float:
    """The interquartile mean: the mean of the middle 50% (scipy's trim_mean(x, 0.25))."""
    x = np.sort(np.asarray(values, dtype=float))
    cut = int(math.floor(0.25 * len(x)))
    return float(x[cut: len(x) - cut].mean()) if len(x) else float("nan")


def by_seed(rows: Sequence[Mapping[str, Any]], seeds: set[int] | None = None
            ) -> dict[str, dict[str, dict[int, float]]]:
    """``{challenge: {policy: {seed: score}}}`` over the finished rows (of ``seeds``, when given)."""
    out: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r.get("status") == "finished" and (seeds is None or r["seed"] in seeds):
            out[r["challenge"]][r["policy"]][int(r["seed"])] = float(r["score"])
    return out


def anchor_gaps(rows: Sequence[Mapping[str, Any]], seeds: set[int] | None = None
                ) -> dict[str, tuple[list[float], list[float], list[int]]]:
    """Per challenge (by name), the oracle's and uniform's scores on the seeds where both finished (of ``seeds``,
    when given), paired by seed, and those seeds: what a headroom is computed from."""
    out = {}
    for ch, by in sorted(by_seed(rows, seeds).items()):
        common = sorted(set(by.get("oracle", {})) & set(by.get("uniform", {})))
        if common:
            out[ch] = ([by["oracle"][s] for s in common], [by["uniform"][s] for s in common], common)
    return out


def bootstrap_iqm(rows: Sequence[Mapping[str, Any]], policy: str, challenges: Sequence[str], protocol: Protocol,
                  seed: int = 0) -> tuple[float, float, float]:
    """``policy``'s IQM of normalised scores over ``challenges`` on the scoring seeds, with a 95% interval from a
    bootstrap of the whole pipeline: each replicate resamples, per challenge, the calibration seeds (so the
    normaliser, oracle − uniform, moves) and the scoring seeds (the teacher paired with uniform)."""
    cal, sco = by_seed(rows, set(protocol.calibration_seeds)), by_seed(rows, set(protocol.scoring_seeds))
    parts = []
    for ch in sorted(challenges):
        cs = sorted(set(cal[ch]["oracle"]) & set(cal[ch]["uniform"]))
        ss = sorted(set(sco[ch][policy]) & set(sco[ch]["uniform"]))
        if len(cs) < 2 or not ss:
            continue
        room = np.array([cal[ch]["oracle"][s] - cal[ch]["uniform"][s] for s in cs])
        gain = np.array([sco[ch][policy][s] - sco[ch]["uniform"][s] for s in ss])
        parts.append((room, gain))
    if not parts:
        return math.nan, math.nan, math.nan
    point = iqm(np.concatenate([g / r.mean() for r, g in parts]))
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(BOOTSTRAP):
        draws = []
        for room, gain in parts:
            h = room[rng.integers(0, len(room), len(room))].mean()
            draws.append(gain[rng.integers(0, len(gain), len(gain))] / h if h > 0 else np.full(len(gain), np.nan))
        stats.append(iqm(np.concatenate(draws)))
    stats = np.asarray(stats)
    stats = stats[~np.isnan(stats)]
    if len(stats) == 0 or all(len(g) == 1 for _, g in parts):
        return point, math.nan, math.nan
    return point, float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def _p_greater(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) over every pair of runs, ties counting half (the Mann-Whitney U statistic over n·m)."""
    diff = x[:, None] - y[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def improvement(rows: Sequence[Mapping[str, Any]], x: str, y: str, challenges: Sequence[str], protocol: Protocol,
                seed: int = 0) -> tuple[float, float, float]:
    """rliable's probability of improvement of ``x`` over ``y``: the mean over ``challenges`` of P(a run of x scores
    above a run of y) on the scoring seeds, with a 95% stratified-bootstrap interval (seeds resampled per
    challenge). 0.5 means they cannot be told apart."""
    sco = by_seed(rows, set(protocol.scoring_seeds))
    pairs = [(np.array(list(sco[c][x].values())), np.array(list(sco[c][y].values()))) for c in sorted(challenges)
             if sco[c][x] and sco[c][y]]
    if not pairs:
        return math.nan, math.nan, math.nan
    point = float(np.mean([_p_greater(a, b) for a, b in pairs]))
    rng = np.random.default_rng(seed)
    stats = [np.mean([_p_greater(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))])
                      for a, b in pairs]) for _ in range(BOOTSTRAP)]
    return point, float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))
