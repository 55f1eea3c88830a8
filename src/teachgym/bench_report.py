"""The bench's leaderboard: headroom, normalised scores, IQM with a stratified bootstrap, performance profiles.

From the rows :func:`teachgym.bench.run_bench` returns (one per challenge, policy and seed):

* **headroom** per challenge: oracle − uniform on the challenge score, paired by seed, with the 95%
  t-interval; the target is ≥ 0.15 with the interval above 0.
* **normalised score** of a policy on a challenge, seed by seed: ``(T_s − U_s) / H`` with ``U_s`` uniform's
  score on the same seed and ``H`` the challenge's mean headroom: 0 is uniform, 1 is the oracle.
* **aggregate**: the interquartile mean (IQM) of a policy's normalised scores over every (challenge,
  seed), with a 95% interval from a stratified bootstrap (seeds resampled within each challenge), as
  rliable (Agarwal et al., NeurIPS 2021) computes it; here in numpy, 2,000 resamples, seeded (rliable 1.2.0
  installs, but its ``arch`` 7.2 dependency fails to import with current pandas).
* **performance profile**: the share of a policy's (challenge, seed) runs whose normalised score
  exceeds τ, for τ from −1 to 1.5.
* **rank agreement** between two leaderboards (the simulated twins and the LM): Kendall's τ of the
  policies' IQMs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from teachgym.analysis import format_interval, paired_difference
from teachgym.bench import budget
from teachgym.bench_protocol import Protocol, anchor_gaps, bootstrap_iqm, by_seed, improvement, iqm

BOOTSTRAP = 2000
TARGET = 0.15


def _paired(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[list[float], list[float]]:
    seeds = sorted(set(a) & set(b))
    return [a[s] for s in seeds], [b[s] for s in seeds]


def _versus_uniform(by_policy: Mapping[str, Mapping[int, float]], policy: str) -> tuple[float, float, float, int]:
    """``policy``'s mean difference from uniform paired by seed, its 95% t-interval and the number of pairs.

    Uniform itself: 0 with no interval; one pair: the difference with no interval; none: all NaN.
    """
    t, u = _paired(by_policy[policy], by_policy.get("uniform", {}))
    if policy == "uniform" or not t:
        return (0.0 if policy == "uniform" else math.nan), math.nan, math.nan, len(t)
    mean, low, high = paired_difference(t, u)
    return mean, low, high, len(t)


def _split(rows: Sequence[Mapping[str, Any]], protocol: Protocol | None
           ) -> tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]:
    """The rows that calibrate and the rows that score (without a protocol: all of them, both)."""
    if protocol is None:
        return rows, rows
    return ([r for r in rows if r["seed"] in protocol.calibration_seeds],
            [r for r in rows if r["seed"] in protocol.scoring_seeds])


def track(policy: str) -> str:
    """Which leaderboard a teacher is ranked in: ``general`` (no per-challenge training, the round's budget),
    ``trained per challenge`` (``learned``: a model per challenge, trained on its twin) or ``extra compute``
    (``+filter``: online filtering spends more rollouts than the budget; ``+x<k>``: k times the budget, the
    compute-matched uniform)."""
    if policy.split("@")[0].split("+")[0] == "learned":
        return "trained per challenge"
    return "extra compute" if "+filter" in policy or budget(policy)[1] != 1.0 else "general"


def headroom(rows: Sequence[Mapping[str, Any]], protocol: Protocol | None = None, kind: str = ""
             ) -> list[dict[str, Any]]:
    """Per challenge: uniform's and the oracle's mean score, and oracle − uniform paired by seed [95% CI], on the
    protocol's calibration seeds; ``met`` (in the aggregate) as the protocol registered it for ``kind``, else
    decided here (headroom ≥ target, interval above 0)."""
    cal, _ = _split(rows, protocol)
    registered = protocol.in_aggregate(kind) if protocol is not None else None
    out = []
    for ch, (o, u, _) in anchor_gaps(cal).items():  # by name: the same report whatever order the rows came in
        # One seed has no interval: the target is then judged on the difference alone (the report says so).
        mean, low, high = paired_difference(o, u)
        above = low > 0 if len(o) > 1 else True
        met = ch in registered if registered is not None else bool(mean >= TARGET and above)
        out.append({"challenge": ch, "seeds": len(o), "uniform": float(np.mean(u)), "oracle": float(np.mean(o)),
                    "headroom": mean, "low": low, "high": high, "met": met, "registered": registered is not None})
    return out


def normalised(rows: Sequence[Mapping[str, Any]], protocol: Protocol | None = None, kind: str = ""
               ) -> list[dict[str, Any]]:
    """Every finished (challenge, policy, scoring seed) row with its normalised score (None where uniform is
    missing), divided by the headroom on the calibration seeds."""
    scores = by_seed(_split(rows, protocol)[1])
    room = {h["challenge"]: h["headroom"] for h in headroom(rows, protocol, kind)}
    out = []
    for ch, by_policy in scores.items():
        uniform = by_policy.get("uniform", {})
        for policy, seeds in by_policy.items():
            for seed, value in sorted(seeds.items()):
                norm = None
                if seed in uniform and room.get(ch, 0) > 0:
                    norm = (value - uniform[seed]) / room[ch]
                out.append({"challenge": ch, "policy": policy, "seed": seed, "score": value, "normalised": norm})
    return out


def without_headroom(rows: Sequence[Mapping[str, Any]], protocol: Protocol | None = None, kind: str = ""
                     ) -> dict[str, dict[str, dict[str, float]]]:
    """``{challenge: {policy: mean score, paired difference from uniform [95% CI], n}}`` where oracle ≤ uniform.

    There a normalised score would divide by zero or flip its sign, so these challenges have no column
    in the leaderboard; their rows are reported as they are.
    """
    scores = by_seed(_split(rows, protocol)[1])
    out: dict[str, dict[str, dict[str, float]]] = {}
    for h in headroom(rows, protocol, kind):
        if h["headroom"] > 0:
            continue
        by_policy = scores.get(h["challenge"], {})
        per = {}
        for policy, seeds in sorted(by_policy.items()):
            mean, low, high, n = _versus_uniform(by_policy, policy)
            per[policy] = {"score": float(np.mean(list(seeds.values()))), "mean": mean, "low": low, "high": high,
                           "n": n}
        out[h["challenge"]] = per
    return out


def stratified_iqm(by_challenge: Mapping[str, Sequence[float]], seed: int = 0) -> tuple[float, float, float]:
    """IQM over every run, and its 95% stratified-bootstrap interval (seeds resampled within each challenge)."""
    groups = [np.asarray(by_challenge[ch], dtype=float) for ch in sorted(by_challenge) if len(by_challenge[ch])]
    point = iqm(np.concatenate(groups)) if groups else float("nan")
    if not groups:
        return point, point, point
    if all(len(g) == 1 for g in groups):  # one seed per challenge: every resample is the same; no interval
        return point, math.nan, math.nan
    rng = np.random.default_rng(seed)
    stats = [iqm(np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])) for _ in range(BOOTSTRAP)]
    return point, float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def leaderboard(rows: Sequence[Mapping[str, Any]], protocol: Protocol | None = None, kind: str = ""
                ) -> list[dict[str, Any]]:
    """One row per policy (anchors included), best IQM first: the aggregate and each challenge's paired mean.

    The IQM counts only the challenges whose headroom meets the target: where the oracle is barely
    above uniform, (T − U) / headroom divides by noise. Every challenge keeps its own column.
    """
    norm = [r for r in normalised(rows, protocol, kind) if r["normalised"] is not None]
    rooms = headroom(rows, protocol, kind)
    room = {h["challenge"]: h["headroom"] for h in rooms}
    met = {h["challenge"] for h in rooms if h["met"]}
    scores = by_seed(_split(rows, protocol)[1])
    out = []
    for policy in sorted({r["policy"] for r in norm}):
        mine = [r for r in norm if r["policy"] == policy]
        by_ch: dict[str, list[float]] = defaultdict(list)
        for r in mine:
            by_ch[r["challenge"]].append(r["normalised"])
        in_iqm = sorted(set(by_ch) & met)
        point, low, high = (stratified_iqm({ch: by_ch[ch] for ch in in_iqm}) if protocol is None else
                            bootstrap_iqm(rows, policy, in_iqm, protocol))
        per = {}
        for ch in sorted(by_ch):
            mean, lo, hi, n = _versus_uniform(scores[ch], policy)
            per[ch] = {"mean": mean / room[ch], "low": lo / room[ch], "high": hi / room[ch], "n": n}
        loses = [ch for ch, v in per.items() if v["high"] < 0]
        out.append({"policy": policy, "iqm": point, "low": low, "high": high, "challenges": per,
                    "loses_to_uniform": loses, "in_iqm": in_iqm, "track": track(policy)})
    return sorted(out, key=lambda r: (-r["iqm"] if not math.isnan(r["iqm"]) else math.inf, r["policy"]))


def profile(rows: Sequence[Mapping[str, Any]], taus: Sequence[float] | None = None, protocol: Protocol | None = None,
            kind: str = "") -> dict[str, list[float]]:
    """Per policy: the share of its (challenge, seed) runs with normalised score > τ, for each τ (on the
    challenges whose headroom meets the target, as the IQM)."""
    taus = list(np.linspace(-1.0, 1.5, 26)) if taus is None else list(taus)
    met = {h["challenge"] for h in headroom(rows, protocol, kind) if h["met"]}
    norm = [r for r in normalised(rows, protocol, kind) if r["normalised"] is not None and r["challenge"] in met]
    out = {}
    for policy in sorted({r["policy"] for r in norm}):
        values = np.array([r["normalised"] for r in norm if r["policy"] == policy])
        out[policy] = [float((values > t).mean()) for t in taus]
    return {"tau": taus, **out}


def rank_agreement(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Kendall's τ between two leaderboards' IQMs, over the policies both have (anchors excluded)."""
    from scipy.stats import kendalltau

    x = {r["policy"]: r["iqm"] for r in a}
    y = {r["policy"]: r["iqm"] for r in b}
    common = sorted(p for p in set(x) & set(y) if p not in ("uniform", "oracle"))
    if len(common) < 3:
        return {"policies": common, "tau": None, "p": None}
    tau, p = kendalltau([x[c] for c in common], [y[c] for c in common])
    return {"policies": common, "tau": float(tau), "p": float(p)}


def markdown(rows: Sequence[Mapping[str, Any]], descriptions: Mapping[str, str], footer: str,
             other: Sequence[Mapping[str, Any]] | None = None, other_name: str = "", notice: str = "",
             protocol: Protocol | None = None, kind: str = "") -> str:
    """The report: ``notice`` (which rows are stale: :func:`teachgym.bench_command.stale_notice`), headroom table,
    leaderboard by track, which leading teachers can be told apart, the failed cases, the rank agreement, the
    footer (read facts). With ``protocol``, the headroom and the aggregate's challenges are the calibration seeds'
    and teachers are scored on the scoring seeds alone."""
    sco = _split(rows, protocol)[1]
    if len({r["seed"] for r in sco if r.get("status") == "finished"}) == 1:
        notice += ("\n\n" if notice else "") + (
            "**One seed: scores without intervals.** An interval needs at least two seeds (a paired t-interval "
            "over seeds, a bootstrap that resamples seeds), so nothing here says whether two teachers can be "
            "told apart; run more seeds for that.")
    rooms = headroom(rows, protocol, kind)
    board = leaderboard(rows, protocol, kind)
    lines = [*([notice, ""] if notice else []), *_headroom_lines(rooms, descriptions, protocol, kind),
             *_board_lines(board, rooms, protocol)]
    if protocol is not None:
        lines += _apart_lines(rows, board, rooms, protocol)
    raw = without_headroom(rows, protocol, kind)
    for ch, per in raw.items():
        lines += ["", f"**{ch}**: the oracle does not beat uniform on this student, so there is no normalised score; "
                  "each teacher's mean score and its paired difference from uniform [95% t-interval]:", "",
                  "| policy | score | − uniform [95% CI] |", "|---|---:|---|"]
        for policy, v in sorted(per.items(), key=lambda kv: (-kv[1]["score"], kv[0])):
            diff = f"{v['mean']:+.3f}" if math.isnan(v["low"]) else format_interval(v["mean"], v["low"], v["high"])
            lines.append(f"| {policy} | {v['score']:.3f} | {diff} (n={v['n']}) |")
    losing = [(r["policy"], ch) for r in board for ch in r["loses_to_uniform"]]
    losing += [(p, ch) for ch, per in raw.items() for p, v in sorted(per.items()) if v["high"] < 0]
    if losing:
        lines += ["", "Clearly below uniform (the whole interval under 0): "
                  + ", ".join(f"{p} on {c}" for p, c in losing) + "."]
    failed = [r for r in rows if r.get("status") != "finished"]
    if failed:
        lines += ["", "Failed cases (not in the table): " + "; ".join(
            f"{r['policy']} on {r['challenge']} seed {r['seed']}: {str(r.get('error', ''))[:120]}" for r in failed)]
    lines += _cost_lines(sco)
    if other is not None:
        agree = rank_agreement(board, leaderboard(other, protocol, "lm" if kind == "simulated" else "simulated"))
        tau = "n/a (fewer than 3 policies in both)" if agree["tau"] is None else \
            f"{agree['tau']:+.2f} (p = {agree['p']:.3f}, {len(agree['policies'])} policies)"
        lines += ["", f"Rank agreement with the {other_name} leaderboard (Kendall's τ of the IQMs): {tau}."]
    return "\n".join(lines) + "\n\n" + footer + "\n"


def _headroom_lines(rooms: Sequence[Mapping[str, Any]], descriptions: Mapping[str, str], protocol: Protocol | None,
                    kind: str) -> list[str]:
    where = ("on the calibration seeds " + ", ".join(map(str, protocol.calibration_seeds))
             if protocol is not None else "paired by seed")
    registered = protocol is not None and protocol.in_aggregate(kind) is not None
    on = f" on {protocol.machines[kind]}" if registered and kind in protocol.machines else ""
    said = (f"the aggregate's challenges as the protocol registered them{on}" if registered else
            "target ≥ 0.15, interval above 0" + (" (not registered: run `teachgym bench --calibrate`)"
                                                 if protocol is not None else ""))
    lines = [f"### Headroom: oracle − uniform, {where} ({said})", "",
             "| challenge | what it tests | uniform | oracle | oracle − uniform [95% CI] | in the aggregate |",
             "|---|---|---:|---:|---|---|"]
    for h in rooms:
        lines.append(f"| {h['challenge']} | {descriptions.get(h['challenge'], '')} | {h['uniform']:.3f} | "
                     f"{h['oracle']:.3f} | {format_interval(h['headroom'], h['low'], h['high'])} (n={h['seeds']}) | "
                     f"{'yes' if h['met'] else 'no'} |")
    return lines


def _board_lines(board: Sequence[Mapping[str, Any]], rooms: Sequence[Mapping[str, Any]], protocol: Protocol | None
                 ) -> list[str]:
    challenges = [h["challenge"] for h in rooms if h["headroom"] > 0]
    met = {h["challenge"] for h in rooms if h["met"]}
    how = ("a bootstrap of the whole pipeline (calibration seeds for the normaliser, scoring seeds for the "
           "teacher, resampled per challenge)" if protocol is not None else "a stratified bootstrap")
    lines = ["", "### Leaderboard: normalised score, 0 = uniform, 1 = oracle", "",
             f"IQM over every (challenge, scoring seed) of the challenges in the aggregate, with a 95% interval from "
             f"{how}; per challenge the mean paired difference from uniform over the headroom [95% t-interval] "
             "(columns marked * are not in the aggregate). Teachers are ranked within their track: *general* (no "
             "training or tuning per challenge, the round's budget), *trained per challenge* (`learned`, judged "
             "under neutral names in a shuffled order), *extra compute* (`+filter`: more rollouts than the "
             "budget; compare it with `uniform+filter` and with `uniform+x<k>`, uniform on as many rollouts).", "",
             "| policy | track | IQM [95% CI] | " + " | ".join(c + ("" if c in met else " *") for c in challenges)
             + " |", "|---|---|---|" + "---|" * len(challenges)]
    order = {"general": 0, "trained per challenge": 1, "extra compute": 2}
    for r in sorted(board, key=lambda r: order[r["track"]]):  # stable: best IQM first within a track
        cells = []
        for ch in challenges:
            v = r["challenges"].get(ch)
            cells.append("" if v is None else f"{v['mean']:+.2f}" if math.isnan(v["low"])
                         else format_interval(v["mean"], v["low"], v["high"], digits=2))
        aggregate = "n/a (no challenge in the aggregate)" if math.isnan(r["iqm"]) else \
            format_interval(r["iqm"], r["low"], r["high"], digits=2)
        lines.append(f"| {r['policy']} | {r['track']} | {aggregate} | " + " | ".join(cells) + " |")
    partial = [(r["policy"], r["in_iqm"]) for r in board if r["policy"] not in ("uniform", "oracle")
               and 0 < len(r["in_iqm"]) < len(met)]
    if partial:  # a teacher run on some challenges only: its IQM is not over the same challenges as the others
        lines += ["", f"IQM over fewer of the {len(met)} challenges in the aggregate (no rows on the others yet): "
                  + "; ".join(f"{p} ({', '.join(chs)})" for p, chs in partial) + "."]
    short = [f"{r['policy']} on {ch} ({n})" for r in board for ch, n in _short(r, protocol)]
    if short:  # the protocol asks for its scoring seeds: a teacher short of them is reported, and said to be
        lines += ["", f"On fewer than the protocol's {len(protocol.scoring_seeds)} scoring seeds (the rest not "
                  "run yet): " + "; ".join(short) + "."]
    return lines


LEADERS = 4  # the leading general teachers whose pairwise probability of improvement the report gives


def _apart_lines(rows: Sequence[Mapping[str, Any]], board: Sequence[Mapping[str, Any]],
                 rooms: Sequence[Mapping[str, Any]], protocol: Protocol) -> list[str]:
    """rliable's probability of improvement between the leading general teachers, and which cannot be told apart."""
    met = sorted(h["challenge"] for h in rooms if h["met"])
    leaders = [r["policy"] for r in board if r["track"] == "general" and r["policy"] not in ("uniform", "oracle")
               and not math.isnan(r["iqm"])][:LEADERS]
    if len(leaders) < 2 or not met:
        return []
    lines = ["", "### Can the leaders be told apart?", "",
             "Probability of improvement (rliable): the chance that a run of the first teacher scores above a run "
             "of the second on the same challenge, averaged over the challenges in the aggregate, on the scoring "
             "seeds [95% stratified-bootstrap interval]; an interval that holds 0.5 cannot tell them apart.", "",
             "| teacher | than | P(improvement) [95% CI] | told apart |", "|---|---|---|---|"]
    for i, x in enumerate(leaders):
        for y in leaders[i + 1:]:
            p, lo, hi = improvement(rows, x, y, met, protocol)
            apart = "yes" if lo > 0.5 or hi < 0.5 else "no"
            lines.append(f"| {x} | {y} | {format_interval(p, lo, hi, digits=2, signed=False)} | {apart} |")
    return lines


def _cost_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """What one more teacher costs, from the cases' own times (the anchors and built-ins are cached)."""
    walls: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r.get("status") == "finished" and r.get("wall_s") is not None:
            walls[r["challenge"]].append(float(r["wall_s"]))
    if not walls:
        return []
    seeds = len({r["seed"] for r in rows if r.get("policy") == "uniform"}) or 1
    per = {ch: float(np.median(v)) for ch, v in sorted(walls.items())}  # a teacher that probes is an outlier
    total = sum(per.values()) * seeds
    return ["", "Median time of a case: " + ", ".join(f"{ch} {t:.1f} s" for ch, t in per.items())
            + f". One more teacher on all of them, {seeds} seed{'s' if seeds != 1 else ''}, one case at a time: "
            + "about " + (f"{total / 60:.0f} min" if total >= 120 else f"{total:.0f} s")
            + " on the machine of the rows."]


def plot_profile(rows: Sequence[Mapping[str, Any]], path: str, protocol: Protocol | None = None, kind: str = ""
                 ) -> None:
    """The performance profiles as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prof = profile(rows, None, protocol, kind)
    taus = prof.pop("tau")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for policy, share in prof.items():
        style = {"uniform": "k--", "oracle": "k-"}.get(policy, "-")
        ax.plot(taus, share, style, label=policy, linewidth=2 if policy in ("uniform", "oracle") else 1)
    ax.set_xlabel("normalised score τ (0 = uniform, 1 = oracle)")
    ax.set_ylabel("share of (challenge, seed) runs with score > τ")
    if prof:  # no policy with a normalised score (no challenge meets the target): no legend to draw
        ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


README_BEGIN = "<!-- bench leaderboard: generated by `python benchmarks/bench_readme.py`; do not edit -->"
README_END = "<!-- end of bench leaderboard -->"


def readme_block(boards: Mapping[str, Sequence[Mapping[str, Any]] | None], notice: str = "",
                 protocols: Mapping[str, Protocol | None] | None = None) -> str:
    """The README's leaderboard: each policy's IQM [95% CI] per student kind, and each kind's headroom.

    Args:
        boards: ``{"simulated": rows, "lm": rows}`` as :func:`teachgym.bench_command.reported_rows` reads them
            (``None``: that report does not exist yet).
        notice: What the rows' staleness is (:func:`teachgym.bench_command.stale_notice`; '' when current).
        protocols: Per kind, the protocol its rows were scored under (None: rows made before it).
    """
    kinds = [k for k, rows in boards.items() if rows]
    names = {"simulated": "simulated twins", "lm": "LM student"}
    protocols = protocols or {}  # per kind: rows made before the protocol have none
    ranked = {k: leaderboard(boards[k] or [], protocols.get(k), k) for k in kinds}  # the bootstrap is the costly part
    rooms = {k: headroom(boards[k] or [], protocols.get(k), k) for k in kinds}  # by challenge name
    tables = {k: {r["policy"]: r for r in ranked[k]} for k in kinds}
    met = {k: sum(h["met"] for h in rooms[k]) for k in kinds}
    lines = [README_BEGIN, "", *([notice, ""] if notice else []),
             "| policy | " + " | ".join(f"{names.get(k, k)}: IQM [95% CI]" for k in kinds) + " |",
             "|---|" + "---|" * len(kinds)]
    order = [r["policy"] for r in ranked[kinds[0]]] if kinds else []
    order += sorted({p for k in kinds for p in tables[k]} - set(order))
    for policy in order:
        cells = []
        for k in kinds:
            r = tables[k].get(policy)
            cells.append("—" if r is None or math.isnan(r["iqm"]) else
                         format_interval(r["iqm"], r["low"], r["high"], digits=2)
                         + ("" if len(r["in_iqm"]) == met[k] else f" ({len(r['in_iqm'])} of {met[k]})")
                         + (" †" if _short(r, protocols.get(k)) else ""))
        label = policy if track(policy) == "general" else f"{policy} ({track(policy)})"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for k in kinds:
        listed = ", ".join(f"{h['challenge']} {h['headroom']:+.2f}" + ("" if h["met"] else " (missed)")
                           for h in rooms[k])
        lines.append(f"* {names.get(k, k)}: {met[k]} challenge(s) meet the headroom target "
                     f"(oracle − uniform: {listed}); `benchmarks/results/bench/{k}.md` has every column.")
    if any(len(r["in_iqm"]) < met[k] for k in kinds for r in ranked[k] if not math.isnan(r["iqm"])):
        lines.append("* (k of n): that IQM is over the k challenges with rows for that teacher, of the n that meet "
                     "the target.")
    if any(_short(r, protocols.get(k)) for k in kinds for r in ranked[k]):
        lines.append("* †: on fewer than the protocol's scoring seeds on some challenge (its report says which).")
    return "\n".join([*lines, "", README_END])


def _short(row: Mapping[str, Any], protocol: Protocol | None) -> list[tuple[str, int]]:
    """The challenges (with their seed counts) where a teacher's leaderboard row has fewer than the protocol's
    scoring seeds; empty for the anchors and for rows scored without a protocol."""
    if protocol is None or row["policy"] in ("uniform", "oracle"):
        return []
    return [(ch, v["n"]) for ch, v in sorted(row["challenges"].items()) if v["n"] < len(protocol.scoring_seeds)]
