"""Reporting a sweep: the comparison tables and plot, and the ``sweep-<name>`` MLflow run that holds them."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from teachgym.sweep.plan import SWEEP_FILE, SweepPlan, TrialResult, write_json
from teachgym.tracking.schema import TAG_KIND, TAG_SWEEP, TAG_SWEEP_NAME


def summarize(plan: SweepPlan, results: Sequence[TrialResult], target: float = 0.5) -> dict[str, Any]:
    """The final tables: every finished trial grouped by policy (and setting), and paired with the baseline."""
    from teachgym.compare import group_rows, paired_rows, render, render_paired

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
    from teachgym.compare import plot, render, render_paired

    d = plan.directory
    (d / "summary.md").write_text(summary["markdown"])
    if summary["curves"]:
        (d / "summary.csv").write_text(render(summary["grouped_rows"], "csv", 0.5, grouped=True))
        if curves_png:
            plot(summary["curves"], str(d / "curves.png"))
    if summary["paired_rows"]:
        (d / "paired.csv").write_text(render_paired(summary["paired_rows"], "csv"))


class SweepRun:
    """The ``sweep-<name>`` MLflow run: the grid as params, progress metrics, and the final comparison."""

    def __init__(self, uri: str, plan: SweepPlan, meta: dict[str, Any]) -> None:
        import mlflow

        self.client = mlflow.MlflowClient(uri)
        self.plan, self.meta = plan, meta
        self.run_id: str | None = None
        self.step = 0

    def start(self, done: int, todo: int) -> None:
        from mlflow.exceptions import MlflowException

        from teachgym.tracking.store import ensure_experiment

        plan, client = self.plan, self.client
        if self.meta.get("run_id"):
            try:
                run = client.get_run(self.meta["run_id"])
                self.run_id = run.info.run_id
                client.update_run(self.run_id, status="RUNNING")
                hist = client.get_metric_history(self.run_id, "sweep/finished")
                self.step = max((m.step for m in hist), default=-1) + 1
            except MlflowException:  # another store this time
                self.run_id = None
        if self.run_id is None:
            exp = ensure_experiment(client, next(iter(plan.experiments.values())))
            run = client.create_run(exp, run_name=f"sweep-{plan.name}", tags={
                TAG_KIND: "sweep", TAG_SWEEP: self.meta["id"], TAG_SWEEP_NAME: plan.name,
                "mlflow.note.content": f"Sweep {plan.name}: the trials are the runs with tag teachgym.sweep = "
                f"'{self.meta['id']}'. The comparison appears here when it ends."})
            self.run_id = run.info.run_id
            self.meta["run_id"] = self.run_id
            write_json(plan.directory / SWEEP_FILE, self.meta)
            params = {"sweep.trials": len(plan.trials), "sweep.config": plan.source,
                      "sweep.cpus_per_trial": plan.options.cpus_per_trial,
                      "sweep.gpus_per_trial": plan.options.gpus_per_trial,
                      "sweep.baseline": plan.options.baseline or ""}
            params.update({f"sweep.grid.{k}": ",".join(v)[:6000] for k, v in plan.grid.items()})
            params.update({f"sweep.fixed.{o.partition('=')[0]}": o.partition("=")[2][:6000] for o in plan.fixed})
            from mlflow.entities import Param

            client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])
            client.log_text(self.run_id, "\n".join(t.key for t in plan.trials) + "\n", "trials.txt")
        self._metrics({"sweep/finished": done, "sweep/failed": 0, "sweep/pending": todo})

    def _metrics(self, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with contextlib.suppress(Exception):  # progress is best effort: a trial's own logging is what matters
            self.client.log_batch(self.run_id, [Metric(k, float(v), now, self.step) for k, v in values.items()])
            self.step += 1

    def progress(self, results: Mapping[str, TrialResult], total: int) -> None:
        counts = {s: sum(r.status == s for r in results.values()) for s in ("finished", "failed", "interrupted")}
        self._metrics({"sweep/finished": counts["finished"], "sweep/failed": counts["failed"],
                       "sweep/pending": total - len(results)})

    def finish(self, summary: Mapping[str, Any], status: str) -> None:
        d = self.plan.directory
        with contextlib.suppress(Exception):
            for name in ("summary.md", "summary.csv", "paired.csv", "curves.png"):
                if (d / name).exists():
                    self.client.log_artifact(self.run_id, str(d / name))
            self.client.set_tag(self.run_id, "mlflow.note.content", summary["markdown"]
                                + f"\n\nTrials: runs with tag `teachgym.sweep = '{self.meta['id']}'`.\n")
            for row in summary.get("paired_rows", []):
                suffix = "/" + re.sub(r"[^A-Za-z0-9_./ -]", "_", row["setting"]) if row["setting"] else ""
                self.client.log_metric(self.run_id, f"paired/d_final/{row['policy']}{suffix}", row["d_final"][0])
        self.end(status)

    def end(self, status: str) -> None:
        with contextlib.suppress(Exception):
            self.client.set_terminated(self.run_id, status)
