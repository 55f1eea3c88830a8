"""Rollouts to a registered target: how many rollouts a teacher needs to bring a GRPO student where uniform does.

The field states its gains this way: AdaRFT reaches the PPO baseline's accuracy in about half the steps,
learnability sampling (LILO) in about a third, SPEED-RL 2-6x faster in wall-clock time with its screening counted.
Measured here under the bench's protocol (``teachgym.bench_protocol``: what is decided on calibration seeds never
scores):

- **Task.** ``configs/arithmetic_grpo.yaml`` run as a challenge (GRPO on 8 arithmetic skills after an SFT warm
  start), whose uniform curve climbs well above its start on every seed. The bench's ``ladder-rl`` cannot host
  the measure: uniform does not climb there (its mean final score equals its start), so "the rollouts uniform
  needs" does not exist.
- **Registered on the calibration seeds** (``--calibrate``, written to ``protocol.yaml`` here before any scoring
  run): the target, :data:`SHARE` of the way from uniform's start to its final score (mean of the last three
  rounds) on its mean curve, so that uniform's own mean curve crosses it inside its budget; and the compute match,
  ``uniform+filter``'s rollouts over uniform's, which names the compute-matched uniform ``uniform+x<k>`` (k times
  the round's budget, :func:`teachgym.bench.budget`).
- **Scored on the scoring seeds**: per variant, its mean curve over the seeds against its mean cumulative
  rollouts (every completion generated: dropped groups and screening included); the rollouts at which that curve
  first reaches the target (linear between rounds), as a share of uniform's on the same seeds, with a 95%
  interval from a paired bootstrap over seeds (never reaching it within the budget counts as infinite); the final
  score and its paired difference from uniform and, for ``+filter``, from the compute-matched uniform.

Cases run through :func:`teachgym.bench.run_bench` (rows keyed like the bench's, reused only under the same key)
into ``benchmarks/results/rollouts/lm.jsonl``; the report names stale rows.

    python benchmarks/rollouts_to_target.py --calibrate   # uniform, uniform+filter on seeds 100-104; register
    python benchmarks/rollouts_to_target.py               # the scoring cases (hours on 2 cores); report
    python benchmarks/rollouts_to_target.py --cached --seeds 0-4  # report the current rows of those seeds
    python benchmarks/rollouts_to_target.py --report-only # the report from the stored rows the last report named
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "rollouts"
REGISTERED = RESULTS / "protocol.yaml"
REPORT_TITLE = "## Rollouts to a registered target\n\n"
SHARE = 0.9  # of uniform's gain: the target uniform's mean curve reaches inside its budget
TEACHERS = ["learnability", "uniform+filter", "dump", "sec"]  # with the compute-matched uniform after filtering
#: What the field reports, as a share of the baseline's steps (SPEED-RL: wall-clock, screening included).
FIELD = [("AdaRFT", "0.5", "steps to the PPO baseline's final accuracy"),
         ("LILO (learnability)", "0.33", "steps to the baseline's accuracy"),
         ("SPEED-RL", "0.17-0.5", "wall-clock time, screening included")]
BOOTSTRAP = 2000


def challenge() -> Any:
    """``configs/arithmetic_grpo.yaml`` as the challenge ``arithmetic-grpo``."""
    from teachgym.bench import config_challenge

    return config_challenge(ROOT / "configs" / "arithmetic_grpo.yaml", "arithmetic-grpo",
                            "configs/arithmetic_grpo.yaml (GRPO on 8 arithmetic skills)")


def rows_for(policies: list[str], seeds: list[int], run: bool) -> list[dict[str, Any]]:
    """The finished rows of the current keys for ``policies`` (uniform always) on ``seeds``, running the missing
    ones first when ``run``."""
    from teachgym.bench import run_bench

    rows = run_bench([challenge()], policies, seeds, simulated=False, results=RESULTS,
                     work=ROOT / "outputs" / "rollouts", sequential=True, tracking=False, run=run,
                     anchors=("uniform",))
    return [r for r in rows if r["status"] == "finished" and r["seed"] in seeds]


def mean_curve(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The mean cumulative rollouts and the mean score, round by round, over ``rows``."""
    from teachgym.benchmarking import rollouts_spent

    return (np.mean([rollouts_spent(r) for r in rows], axis=0), np.mean([r["curve"] for r in rows], axis=0))


def reach(rollouts: np.ndarray, curve: np.ndarray, target: float) -> float:
    """The rollouts at which ``curve`` first reaches ``target``, linear between rounds (inf: never)."""
    if curve[0] >= target:
        return 0.0
    for k in range(1, len(curve)):
        if curve[k] >= target:  # the round before was below it
            part = (target - curve[k - 1]) / (curve[k] - curve[k - 1])
            return float(rollouts[k - 1] + part * (rollouts[k] - rollouts[k - 1]))
    return math.inf


def calibrate(rows: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """What the calibration seeds register: uniform's start, final and the target between them; the compute
    match of ``uniform+filter``."""
    from teachgym.bench_protocol import score
    from teachgym.benchmarking import rollouts_spent

    uniform = [r for r in rows if r["policy"] == "uniform"]
    filtered = [r for r in rows if r["policy"] == "uniform+filter"]
    if len(uniform) < 2 or len(filtered) < 2:
        raise SystemExit(f"calibration needs uniform and uniform+filter on the seeds {seeds}; run --calibrate")
    start = float(np.mean([r["curve"][0] for r in uniform]))
    final = float(np.mean([score(r["curve"], "last-3") for r in uniform]))
    match = np.mean([spent[-1] for spent in map(rollouts_spent, filtered)]) / \
        np.mean([spent[-1] for spent in map(rollouts_spent, uniform)])
    target = start + SHARE * (final - start)
    return {"calibration_seeds": seeds, "start": round(start, 4), "final": round(final, 4),
            "target": round(target, 4), "share": SHARE, "uniform_reach": round(reach(*mean_curve(uniform), target)),
            "match": round(float(match), 1), "matched_uniform": f"uniform+x{round(float(match), 1)}"}


def _ratio(mine: dict[int, dict[str, Any]], uniform: dict[int, dict[str, Any]], seeds: list[int],
           target: float) -> float:
    """Rollouts to ``target`` of ``mine``'s mean curve over ``seeds`` (repeats allowed) over uniform's."""
    theirs = reach(*mean_curve([uniform[s] for s in seeds]), target)
    return reach(*mean_curve([mine[s] for s in seeds]), target) / theirs if math.isfinite(theirs) else math.nan


def variants(registered: dict[str, Any]) -> list[str]:
    """The scored variants besides uniform, in the order they run: the compute-matched uniform after filtering."""
    at = TEACHERS.index("uniform+filter") + 1
    return [*TEACHERS[:at], registered["matched_uniform"], *TEACHERS[at:]]


def summary(rows: list[dict[str, Any]], registered: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per variant (uniform first): seeds, final score, paired differences, rollouts to the target as a
    share of uniform's with its bootstrap interval, rollouts and wall time."""
    from teachgym.analysis import mean_ci, paired_difference
    from teachgym.bench_protocol import score
    from teachgym.benchmarking import rollouts_spent

    uniform = {r["seed"]: r for r in rows if r["policy"] == "uniform"}
    matched = {r["seed"]: r for r in rows if r["policy"] == registered["matched_uniform"]}
    rng = np.random.default_rng(0)
    out = []
    for policy in ["uniform", *variants(registered)]:
        mine = {r["seed"]: r for r in rows if r["policy"] == policy and r["seed"] in uniform}
        seeds = sorted(mine)
        if len(seeds) < 2:
            continue
        last = {s: score(r["curve"], "last-3") for s, r in mine.items()}
        base = {s: score(uniform[s]["curve"], "last-3") for s in seeds}
        draws = np.array([_ratio(mine, uniform, list(rng.choice(seeds, len(seeds))), registered["target"])
                          for _ in range(BOOTSTRAP)])
        vs_matched = [s for s in seeds if s in matched]
        out.append({
            "variant": policy, "seeds": len(seeds), "score": mean_ci(list(last.values())),
            "diff": paired_difference([last[s] for s in seeds], [base[s] for s in seeds]) if policy != "uniform"
            else (0.0, 0.0, 0.0),
            "diff_matched": paired_difference([last[s] for s in vs_matched],
                                              [score(matched[s]["curve"], "last-3") for s in vs_matched])
            if "+filter" in policy and len(vs_matched) > 1 else None,
            "ratio": _ratio(mine, uniform, seeds, registered["target"]),
            "ratio_ci": (float(np.quantile(draws, 0.025, method="nearest")),
                         float(np.quantile(draws, 0.975, method="nearest"))),
            "reached": float(np.mean(np.isfinite(draws))),
            "rollouts": float(np.mean([rollouts_spent(r)[-1] for r in mine.values()])),
            "wall_s": float(np.mean([r["wall_s"] for r in mine.values()])),
        })
    return out


def _x(value: float) -> str:
    return "never" if math.isinf(value) else ("–" if math.isnan(value) else f"{value:.2f}")


def markdown(lines: list[dict[str, Any]], registered: dict[str, Any], notice: str = "") -> str:
    """The report: what was registered, the table, and the field's figures beside it."""
    out = [notice, ""] if notice else []
    out += [f"Registered on the calibration seeds {', '.join(map(str, registered['calibration_seeds']))} "
            f"(`protocol.yaml` here): uniform starts at {registered['start']:.3f} and ends at "
            f"{registered['final']:.3f} (mean of the last three rounds); the target is {registered['share']:.0%} "
            f"of that gain, **{registered['target']:.3f}**; uniform+filter spends {registered['match']}x uniform's "
            f"rollouts, so the compute-matched uniform is `{registered['matched_uniform']}`.", "",
            "Scored on the seeds below, paired with uniform by seed. *to target*: rollouts (every completion "
            "generated, dropped groups and screening included) at which the variant's mean curve first reaches the "
            "target, as a share of uniform's on the same seeds [95% paired bootstrap over seeds; never = not within "
            "the budget]; *reached*: the share of bootstrap draws that reach it; *score*: mean of the last three "
            "rounds (± 95% t half-width); *Δ*: paired difference [95% t-interval]; *wall s*: a case's mean wall "
            "time as measured (other work sharing the machine inflates it: not a speed comparison).", "",
            "| variant | seeds | to target (× uniform) [95% CI] | reached | score | Δ vs uniform | "
            "Δ vs compute-matched uniform | rollouts | wall s |",
            "|---|---:|---|---:|---|---|---|---:|---:|"]
    from teachgym.analysis import format_ci

    for r in lines:
        diff = "0" if r["variant"] == "uniform" else "{:+.3f} [{:+.3f}, {:+.3f}]".format(*r["diff"])
        matched = "–" if r["diff_matched"] is None else "{:+.3f} [{:+.3f}, {:+.3f}]".format(*r["diff_matched"])
        low, high = r["ratio_ci"]
        out.append(f"| {r['variant']} | {r['seeds']} | {_x(r['ratio'])} [{_x(low)}, {_x(high)}] | "
                   f"{r['reached']:.0%} | {format_ci(*r['score'])} | {diff} | {matched} | {r['rollouts']:,.0f} | "
                   f"{r['wall_s']:.0f} |")
    out += ["", "The field's figures, as a share of the baseline (their tasks, models and baselines, not these):", "",
            "| method | share of the baseline | of what |", "|---|---|---|"]
    out += [f"| {name} | {share} | {what} |" for name, share, what in FIELD]
    return "\n".join(out) + "\n"


def reported() -> list[dict[str, Any]]:
    """The rows the committed report was made of (``rollouts.json`` names their cases)."""
    cases = {tuple(c) for c in json.loads((RESULTS / "rollouts.json").read_text())["cases"]}
    rows = [json.loads(x) for x in (RESULTS / "lm.jsonl").read_text().splitlines()]
    return [r for r in rows if (r["provenance"]["key"], r["seed"]) in cases]


def notice(rows: list[dict[str, Any]]) -> str:
    """Which rows are stale (their keys are not their cases' current keys on their machine) and why."""
    from teachgym.bench_command import report_staleness

    return report_staleness(rows, [challenge()], False, RESULTS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibrate", action="store_true", help="run the calibration cases and register the target")
    parser.add_argument("--report-only", action="store_true", help="run nothing; report the rows the report names")
    parser.add_argument("--cached", action="store_true", help="run nothing; report the current keys' rows")
    parser.add_argument("--seeds", help="the scoring seeds to run or report, e.g. 0-4 (default: the protocol's)")
    parser.add_argument("--policies", nargs="+", help="run only these variants (default: all of them); uniform always")
    args = parser.parse_args()
    from teachgym.bench import parse_seeds
    from teachgym.bench_protocol import load_protocol
    from teachgym.console import quiet_libraries

    quiet_libraries()
    protocol = load_protocol()
    if args.calibrate:
        seeds = list(protocol.calibration_seeds)
        registered = calibrate(rows_for(["uniform+filter"], seeds, run=True), seeds)
        RESULTS.mkdir(parents=True, exist_ok=True)
        REGISTERED.write_text("# Registered by `python benchmarks/rollouts_to_target.py --calibrate` from the "
                              "calibration seeds, before any scoring run.\n" + yaml.safe_dump(registered))
        print(yaml.safe_dump(registered))
        return 0
    if not REGISTERED.exists():
        raise SystemExit(f"no {REGISTERED.relative_to(ROOT)}: run --calibrate first (calibration seeds only)")
    registered = yaml.safe_load(REGISTERED.read_text())
    seeds = parse_seeds(args.seeds) if args.seeds else list(protocol.scoring_seeds)
    if not set(seeds) <= set(protocol.scoring_seeds):
        raise SystemExit(f"--seeds {args.seeds}: only the protocol's scoring seeds score, "
                         f"{list(protocol.scoring_seeds)}")
    wanted = args.policies or variants(registered)
    if unknown := sorted(set(wanted) - set(variants(registered))):
        raise SystemExit(f"--policies: {unknown} are not variants of this benchmark: {variants(registered)}")
    if args.report_only:
        rows = reported()
    else:  # run the chosen variants (unless --cached); report every variant's current rows
        if not args.cached:
            rows_for(wanted, seeds, run=True)
        rows = rows_for(variants(registered), seeds, run=False)
    (RESULTS / "rollouts.json").write_text(json.dumps({"cases": [[r["provenance"]["key"], r["seed"]] for r in rows]},
                                                      indent=0) + "\n")
    text = markdown(summary(rows, registered), registered, notice(rows))
    (RESULTS / "rollouts.md").write_text(REPORT_TITLE + text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
