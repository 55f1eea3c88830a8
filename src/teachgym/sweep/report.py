"""Reporting a sweep: the comparison tables and plot, and the ``sweep-<name>`` MLflow run that holds them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from teachgym.compare import group_rows, paired_rows, plot, render, render_paired
from teachgym.sweep.plan import SWEEP_FILE, SweepPlan, TrialResult, write_json
from teachgym.tracking.sweep_run import SweepRun


def summarize(plan: SweepPlan, results: Sequence[TrialResult], target: float = 0.5) -> dict[str, Any]:
    """The final tables: every finished trial grouped by policy (and setting), and paired with the baseline."""
    curves = [r.curve(plan.experiments[r.trial.key]) for r in results if r.status == "finished"]
    counts = {s: sum(r.status == s for r in results) for s in ("finished", "failed", "interrupted")}
    counts["not started"] = len(plan.trials) - len(results)
    head = (f"## Sweep {plan.name}\n\n{plan.describe()}\n\n"
            + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ".\n")
    if not curves:
        return {"markdown": head, "curves": [], "grouped_rows": [], "paired_rows": []}
    grouped_rows = group_rows(curves, target)
    grouped = render(grouped_rows, "markdown", target, grouped=True)
    baseline = plan.options.baseline
    paired, rows = "", []
    if baseline and baseline in {c.policy for c in curves} and len({c.policy for c in curves}) > 1:
        rows = paired_rows(curves, baseline)
        paired = render_paired(rows)
    md = head  # the paired table first: it is what tells two teachers apart
    if paired:
        md += (f"\n### Paired with {baseline}, seed by seed (mean difference [95% t-interval], wins, "
               f"P(improvement) [bootstrap 95%], data-efficiency ratio)\n\n" + paired)
    md += "\n### Every policy (mean ± 95% t-interval over seeds)\n\n" + grouped
    failures = [r for r in results if r.status == "failed"]
    if failures:
        md += "\n### Failed trials\n\n" + "".join(f"- {r.trial.name}: {r.error}\n" for r in failures)
    return {"markdown": md, "curves": curves, "grouped_rows": grouped_rows, "paired_rows": rows}


def write_summary(plan: SweepPlan, summary: Mapping[str, Any], curves_png: bool = True) -> None:
    d = plan.directory
    (d / "summary.md").write_text(summary["markdown"])
    if summary["curves"]:
        (d / "summary.csv").write_text(render(summary["grouped_rows"], "csv", 0.5, grouped=True))
        if curves_png:
            plot(summary["curves"], str(d / "curves.png"))
    if summary["paired_rows"]:
        (d / "paired.csv").write_text(render_paired(summary["paired_rows"], "csv"))


class SweepReport:
    """What the sweep's own MLflow run (:class:`teachgym.tracking.sweep_run.SweepRun`) gets from a plan and its
    trials: the grid as params, progress counts, and the final comparison."""

    def __init__(self, uri: str, plan: SweepPlan, meta: dict[str, Any]) -> None:
        self.plan = plan
        self.run = SweepRun(uri, plan.name, meta, lambda m: write_json(plan.directory / SWEEP_FILE, m))

    @property
    def run_id(self) -> str | None:
        """The sweep run's id (None before :meth:`start`)."""
        return self.run.run_id

    def start(self, done: int, todo: int) -> None:
        plan = self.plan
        params = {"sweep.trials": len(plan.trials), "sweep.config": plan.source,
                  "sweep.cpus_per_trial": plan.options.cpus_per_trial,
                  "sweep.gpus_per_trial": plan.options.gpus_per_trial,
                  "sweep.baseline": plan.options.baseline or ""}
        params.update({f"sweep.grid.{k}": ",".join(v)[:6000] for k, v in plan.grid.items()})
        params.update({f"sweep.fixed.{o.partition('=')[0]}": o.partition("=")[2][:6000] for o in plan.fixed})
        self.run.start(next(iter(plan.experiments.values())), params, [t.key for t in plan.trials], done, todo)

    def progress(self, results: Mapping[str, TrialResult], total: int) -> None:
        counts = {s: sum(r.status == s for r in results.values()) for s in ("finished", "failed", "interrupted")}
        self.run.metrics({"sweep/finished": counts["finished"], "sweep/failed": counts["failed"],
                          "sweep/pending": total - len(results)})

    def finish(self, summary: Mapping[str, Any], status: str) -> None:
        d = self.plan.directory
        paired = {}
        for row in summary.get("paired_rows", []):
            suffix = "/" + re.sub(r"[^A-Za-z0-9_./ -]", "_", row["setting"]) if row["setting"] else ""
            paired[f"paired/d_final/{row['policy']}{suffix}"] = row["d_final"][0]
        files = [d / name for name in ("summary.md", "summary.csv", "paired.csv", "curves.png")]
        self.run.finish(files, summary["markdown"], paired, status)

    def end(self, status: str) -> None:
        self.run.end(status)
