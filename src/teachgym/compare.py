"""``teachgym compare``: read experiments back from the MLflow store and compare policies over seeds.

Each teachgym experiment is a parent run (tags ``teachgym.policy`` and ``teachgym.seed``) whose
metrics ``acc/mean``, ``acc/min`` and ``data/cumulative_examples`` are logged at ``step=round``.
This module turns those histories into learning curves and the numbers of
:mod:`teachgym.analysis`, per run, grouped by policy (mean ± 95% interval over seeds), and paired
with a baseline policy seed by seed (:func:`paired_rows`). Runs of a sweep also carry
``teachgym.setting`` (the swept keys other than the policy and the seed); only runs of the same
experiment and setting are grouped or paired.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from teachgym.analysis import (
    auc,
    examples_to_reach,
    format_ci,
    format_interval,
    mean_ci,
    paired_difference,
    plot_learning_curves,
    probability_of_improvement,
    probability_of_improvement_ci,
)
from teachgym.errors import TeachgymError
from teachgym.tracking import runs
from teachgym.tracking.schema import (
    ACC_MEAN,
    ACC_MIN,
    CUMULATIVE_EXAMPLES,
    TAG_POLICY,
    TAG_SEED,
    TAG_SETTING,
    TAG_SWEEP,
    TAG_SWEEP_NAME,
)


class CompareError(TeachgymError, ValueError):
    """Nothing to compare, or an experiment that does not exist."""


@dataclass
class RunCurve:
    """One experiment's learning curve, read from its parent run."""

    experiment: str
    run_id: str
    run_name: str
    policy: str
    seed: str
    status: str
    examples: list[float] = field(default_factory=list)
    acc_mean: list[float] = field(default_factory=list)
    acc_min: list[float] = field(default_factory=list)
    setting: str = ""  # a sweep's other swept keys, e.g. "student.learning_rate=0.001"
    start_time: int = 0

    @property
    def rounds(self) -> int:
        return len(self.examples) - 1


def load_runs(tracking_uri: str | None, experiments: Sequence[str] = (), include_unfinished: bool = False,
              sweep: str | None = None) -> list[RunCurve]:
    """Parent runs of the named experiments (default: every ``teachgym/...`` experiment), as curves.

    ``sweep`` keeps only the trials of that sweep (its id or name: tag ``teachgym.sweep``).

    Raises:
        CompareError: A named experiment does not exist (with near names), or none has a run.
    """
    client = runs.client(tracking_uri)
    chosen = runs.find_experiments(client, experiments, CompareError)
    curves = []
    for exp in chosen:
        for run in runs.parent_runs(client, [exp.experiment_id], finished_only=not include_unfinished):
            tags = run.data.tags
            if sweep is not None and sweep not in (tags.get(TAG_SWEEP), tags.get(TAG_SWEEP_NAME)):
                continue
            hist = {k: runs.series(client, run.info.run_id, k) for k in (ACC_MEAN, ACC_MIN, CUMULATIVE_EXAMPLES)}
            steps = sorted(set(hist[ACC_MEAN]) & set(hist[CUMULATIVE_EXAMPLES]))
            if not steps:
                continue
            curves.append(RunCurve(
                experiment=exp.name, run_id=run.info.run_id, run_name=run.info.run_name or "",
                policy=tags[TAG_POLICY], seed=tags.get(TAG_SEED, "?"), status=run.info.status,
                examples=[hist[CUMULATIVE_EXAMPLES][s] for s in steps],
                acc_mean=[hist[ACC_MEAN][s] for s in steps],
                acc_min=[hist[ACC_MIN].get(s, math.nan) for s in steps],
                setting=tags.get(TAG_SETTING, ""), start_time=run.info.start_time or 0,
            ))
    if not curves:
        where = ", ".join(e.name for e in chosen) or "no teachgym/ experiments"
        of = f" of sweep {sweep!r}" if sweep is not None else ""
        raise CompareError(f"no finished teachgym runs{of} in {where} ({client.tracking_uri})")
    return curves


def run_rows(curves: Sequence[RunCurve], target: float) -> list[dict]:
    """One row per run."""
    rows = []
    for c in curves:
        reach = examples_to_reach(c.examples, c.acc_mean, target)
        rows.append({
            "experiment": c.experiment, "setting": c.setting, "policy": c.policy, "seed": c.seed, "run": c.run_name,
            "rounds": c.rounds,
            "examples": int(c.examples[-1]), "final_acc": c.acc_mean[-1], "weakest_acc": c.acc_min[-1],
            "auc": auc(c.examples, c.acc_mean) if c.examples[-1] > 0 else math.nan,
            "examples_to_target": reach,
        })
    return rows


def group_rows(curves: Sequence[RunCurve], target: float) -> list[dict]:
    """Rows grouped by (experiment, setting, policy): mean and 95% half-width over seeds, best final accuracy first."""
    per_run = run_rows(curves, target)
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in per_run:
        groups.setdefault((r["experiment"], r["setting"], r["policy"]), []).append(r)
    out = []
    for (experiment, setting, policy), rs in groups.items():
        reached = [r["examples_to_target"] for r in rs if r["examples_to_target"] is not None]
        out.append({
            "experiment": experiment, "setting": setting, "policy": policy, "seeds": sorted(r["seed"] for r in rs),
            "rounds": mean_ci([r["rounds"] for r in rs]), "examples": mean_ci([r["examples"] for r in rs]),
            "final_acc": mean_ci([r["final_acc"] for r in rs]), "weakest_acc": mean_ci([r["weakest_acc"] for r in rs]),
            "auc": mean_ci([r["auc"] for r in rs]),
            "examples_to_target": mean_ci(reached) if reached else (math.nan, math.nan),
            "reached": f"{len(reached)}/{len(rs)}",
        })
    return sorted(out, key=lambda g: (g["experiment"], g["setting"], -g["final_acc"][0]))


def _seed_key(seed: str) -> tuple[int, float | str]:
    try:
        return 0, float(seed)
    except ValueError:
        return 1, seed


def paired_rows(curves: Sequence[RunCurve], baseline: str, confidence: float = 0.95) -> list[dict]:
    """Every policy against ``baseline``, seed by seed, within each (experiment, setting).

    A seed fixes the eval set, the initial weights and the data seed, so the two runs of a seed
    differ only by the teacher; each statistic uses only the seeds both policies ran (the newest run
    of a policy and seed counts). Per policy: the mean paired difference of final acc/mean,
    weakest-skill accuracy and AUC with a ``confidence`` t-interval, wins (seeds where the final
    acc/mean is higher), the probability of improvement P(policy > baseline) on final acc/mean
    (rliable's definition, with a bootstrap interval), and the data-efficiency ratio: examples to
    first reach the baseline's final acc/mean of the same seed ÷ the baseline's budget (mean and
    t-interval over the seeds that reached it).

    Raises:
        CompareError: No run of ``baseline`` (the policies that ran are listed).
    """
    newest: dict[tuple[str, str, str, str], RunCurve] = {}
    for c in sorted(curves, key=lambda c: c.start_time):
        newest[(c.experiment, c.setting, c.policy, c.seed)] = c
    policies = sorted({c.policy for c in curves})
    if baseline not in policies:
        near = difflib.get_close_matches(baseline, policies, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(map(repr, near))}? " if near else ""
        raise CompareError(f"no runs of the baseline policy {baseline!r}; {hint}policies with runs: {policies}")
    out = []
    for experiment, setting in sorted({(c.experiment, c.setting) for c in curves}):
        base = {k[3]: c for k, c in newest.items() if k[:3] == (experiment, setting, baseline)}
        for policy in sorted({k[2] for k in newest if k[:2] == (experiment, setting)} - {baseline}):
            mine = {k[3]: c for k, c in newest.items() if k[:3] == (experiment, setting, policy)}
            seeds = sorted(set(mine) & set(base), key=_seed_key)
            if not seeds:
                continue
            xs, ys = [mine[s] for s in seeds], [base[s] for s in seeds]

            def diff(metric, xs=xs, ys=ys):
                return paired_difference([metric(c) for c in xs], [metric(c) for c in ys], confidence)

            finals_x, finals_y = [c.acc_mean[-1] for c in xs], [c.acc_mean[-1] for c in ys]
            ratios = []
            for x, y in zip(xs, ys, strict=True):
                n = examples_to_reach(x.examples, x.acc_mean, y.acc_mean[-1])
                if n is not None and y.examples[-1] > 0:
                    ratios.append(n / y.examples[-1])
            out.append({
                "experiment": experiment, "setting": setting, "policy": policy, "baseline": baseline, "seeds": seeds,
                "d_final": diff(lambda c: c.acc_mean[-1]), "d_weakest": diff(lambda c: c.acc_min[-1]),
                "d_auc": diff(lambda c: auc(c.examples, c.acc_mean) if c.examples[-1] > 0 else math.nan),
                "wins": sum(x > y for x, y in zip(finals_x, finals_y, strict=True)),
                "ties": sum(x == y for x, y in zip(finals_x, finals_y, strict=True)),
                "poi": probability_of_improvement(finals_x, finals_y),
                "poi_ci": probability_of_improvement_ci(finals_x, finals_y, confidence),
                "ratio": mean_ci(ratios, confidence) if ratios else (math.nan, math.nan),
                "reached": len(ratios),
            })
    return sorted(out, key=lambda r: (r["experiment"], r["setting"], -r["d_final"][0]))


def render_paired(rows: list[dict], fmt: str = "markdown") -> str:
    """The paired table (see :func:`paired_rows`) as markdown or CSV."""
    multi = len({(r["experiment"], r["setting"]) for r in rows}) > 1
    if fmt == "csv":
        head = ["experiment", "setting", "policy", "baseline", "seeds", "d_final", "d_final_low", "d_final_high",
                "d_weakest", "d_weakest_low", "d_weakest_high", "d_auc", "d_auc_low", "d_auc_high", "wins", "ties",
                "n", "poi", "poi_low", "poi_high", "ratio", "ratio_ci", "ratio_reached"]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(head)
        for r in rows:
            writer.writerow([r["experiment"], r["setting"], r["policy"], r["baseline"], " ".join(r["seeds"]),
                             *(f"{v:.12g}" for k in ("d_final", "d_weakest", "d_auc") for v in r[k]), r["wins"],
                             r["ties"], len(r["seeds"]), f"{r['poi']:.12g}", *(f"{v:.12g}" for v in r["poi_ci"]),
                             *(f"{v:.12g}" for v in r["ratio"]), r["reached"]])
        return buf.getvalue()
    baseline = rows[0]["baseline"] if rows else "baseline"
    head = ["policy", "seeds", f"Δ final acc/mean vs {baseline}", "Δ weakest-skill acc", "Δ AUC", "wins",
            f"P(> {baseline})", "data-efficiency ratio"]
    if multi:
        head = ["experiment", "setting", *head]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lo, hi = r["poi_ci"]
        poi = f"{r['poi']:.2f}" + ("" if math.isnan(lo) else f" [{lo:.2f}, {hi:.2f}]")
        m, h = r["ratio"]
        ratio = "—" if math.isnan(m) else format_ci(m, h, digits=2) + f" ({r['reached']}/{len(r['seeds'])} reached)"
        ties = f" ({r['ties']} tied)" if r["ties"] else ""
        cells = [r["policy"], str(len(r["seeds"])), format_interval(*r["d_final"]), format_interval(*r["d_weakest"]),
                 format_interval(*r["d_auc"]), f"{r['wins']}/{len(r['seeds'])}{ties}", poi, ratio]
        lines.append("| " + " | ".join(([r["experiment"], r["setting"] or "—"] if multi else []) + cells) + " |")
    return "\n".join(lines) + "\n"


def render(rows: list[dict], fmt: str, target: float, grouped: bool) -> str:
    """A markdown table or CSV text."""
    multi = len({r["experiment"] for r in rows}) > 1
    if grouped:
        head = ["policy", "seeds", "rounds", "examples", "final acc/mean", "weakest-skill acc", "AUC",
                f"examples to {target:g}", "reached"]

        def cells(g: dict) -> list[str]:
            if fmt == "csv":
                def pair(k):
                    return [f"{g[k][0]:.12g}", "" if math.isnan(g[k][1]) else f"{g[k][1]:.12g}"]
                return [g["policy"], " ".join(g["seeds"]), *pair("rounds"), *pair("examples"), *pair("final_acc"),
                        *pair("weakest_acc"), *pair("auc"), *pair("examples_to_target"), g["reached"]]
            m, h = g["examples_to_target"]
            tgt = "—" if math.isnan(m) else f"{m:,.0f}" + ("" if math.isnan(h) else f" ± {h:,.0f}")
            return [g["policy"], ",".join(g["seeds"]), f"{g['rounds'][0]:g}", f"{g['examples'][0]:,.0f}",
                    format_ci(*g["final_acc"]), format_ci(*g["weakest_acc"]), format_ci(*g["auc"]), tgt, g["reached"]]

        if fmt == "csv":
            head = ["policy", "seeds", "rounds", "rounds_ci", "examples", "examples_ci", "final_acc", "final_acc_ci",
                    "weakest_acc", "weakest_acc_ci", "auc", "auc_ci", "examples_to_target", "examples_to_target_ci",
                    "reached"]
    else:
        head = ["policy", "seed", "run", "rounds", "examples", "final acc/mean", "weakest-skill acc", "AUC",
                f"examples to {target:g}"]
        if fmt == "csv":
            head = ["policy", "seed", "run", "rounds", "examples", "final_acc", "weakest_acc", "auc",
                    "examples_to_target"]

        def cells(r: dict) -> list[str]:
            reach = r["examples_to_target"]
            if fmt == "csv":
                return [r["policy"], r["seed"], r["run"], str(r["rounds"]), str(r["examples"]),
                        f"{r['final_acc']:.12g}", f"{r['weakest_acc']:.12g}", f"{r['auc']:.12g}",
                        "" if reach is None else f"{reach:.0f}"]
            return [r["policy"], r["seed"], r["run"], str(r["rounds"]), f"{r['examples']:,}", f"{r['final_acc']:.3f}",
                    f"{r['weakest_acc']:.3f}", f"{r['auc']:.3f}", "—" if reach is None else f"{reach:,.0f}"]

    settings = any(r.get("setting") for r in rows)
    if settings:
        head = ["setting", *head]
    if multi:
        head = ["experiment", *head]
    body = [([r["experiment"]] if multi else []) + ([r.get("setting") or "—"] if settings else []) + cells(r)
            for r in rows]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(head)
        writer.writerows(body)
        return buf.getvalue()
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def plot(curves: Sequence[RunCurve], path: str) -> None:
    """Learning curves by policy (mean and 95% band over seeds), one line per (experiment, policy)."""
    multi = len({c.experiment for c in curves}) > 1
    settings = len({c.setting for c in curves}) > 1
    groups: dict[str, list] = {}
    for c in curves:
        label = (f"{c.experiment}: " if multi else "") + c.policy + (f" [{c.setting}]" if settings else "")
        groups.setdefault(label, []).append((c.examples, c.acc_mean))
    title = "teachgym compare — " + ", ".join(sorted({c.experiment for c in curves}))
    plot_learning_curves(groups, path, title)
