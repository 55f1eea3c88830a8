"""``teachgym compare``: read experiments back from the MLflow store and compare policies over seeds.

Each teachgym experiment is a parent run (tags ``teachgym.policy`` and ``teachgym.seed``) whose
metrics ``acc/mean``, ``acc/min`` and ``data/cumulative_examples`` are logged at ``step=round``.
This module turns those histories into learning curves and the numbers of
:mod:`teachgym.analysis`, per run and grouped by policy (mean ± 95% interval over seeds).
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from teachgym.analysis import auc, examples_to_reach, format_ci, mean_ci


class CompareError(ValueError):
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

    @property
    def rounds(self) -> int:
        return len(self.examples) - 1


def load_runs(tracking_uri: str | None, experiments: Sequence[str] = (), include_unfinished: bool = False
              ) -> list[RunCurve]:
    """Parent runs of the named experiments (default: every ``teachgym/...`` experiment), as curves.

    Raises:
        CompareError: A named experiment does not exist (with near names), or none has a run.
    """
    import mlflow

    from teachgym.tracking import resolve_tracking_uri

    client = mlflow.MlflowClient(resolve_tracking_uri(tracking_uri))
    every = {e.name: e for e in client.search_experiments()}
    if experiments:
        chosen = []
        for name in experiments:
            if name not in every:
                near = difflib.get_close_matches(name, list(every), n=3, cutoff=0.5)
                hint = f"; did you mean {', '.join(map(repr, near))}?" if near else f"; there are {sorted(every)}"
                raise CompareError(f"no experiment {name!r} in {client.tracking_uri}{hint}")
            chosen.append(every[name])
    else:
        chosen = [e for n, e in every.items() if n.startswith("teachgym/")]
    curves = []
    for exp in chosen:
        for run in client.search_runs([exp.experiment_id], max_results=50_000, order_by=["attributes.start_time"]):
            tags = run.data.tags
            if "mlflow.parentRunId" in tags or "teachgym.policy" not in tags:
                continue  # round / probe runs, and runs teachgym did not make
            if run.info.status != "FINISHED" and not include_unfinished:
                continue
            hist = {k: {m.step: m.value for m in client.get_metric_history(run.info.run_id, k)}
                    for k in ("acc/mean", "acc/min", "data/cumulative_examples")}
            steps = sorted(set(hist["acc/mean"]) & set(hist["data/cumulative_examples"]))
            if not steps:
                continue
            curves.append(RunCurve(
                experiment=exp.name, run_id=run.info.run_id, run_name=run.info.run_name or "",
                policy=tags["teachgym.policy"], seed=tags.get("teachgym.seed", "?"), status=run.info.status,
                examples=[hist["data/cumulative_examples"][s] for s in steps],
                acc_mean=[hist["acc/mean"][s] for s in steps],
                acc_min=[hist["acc/min"].get(s, math.nan) for s in steps],
            ))
    if not curves:
        where = ", ".join(e.name for e in chosen) or "no teachgym/ experiments"
        raise CompareError(f"no finished teachgym runs in {where} ({client.tracking_uri})")
    return curves


def run_rows(curves: Sequence[RunCurve], target: float) -> list[dict]:
    """One row per run."""
    rows = []
    for c in curves:
        reach = examples_to_reach(c.examples, c.acc_mean, target)
        rows.append({
            "experiment": c.experiment, "policy": c.policy, "seed": c.seed, "run": c.run_name, "rounds": c.rounds,
            "examples": int(c.examples[-1]), "final_acc": c.acc_mean[-1], "weakest_acc": c.acc_min[-1],
            "auc": auc(c.examples, c.acc_mean) if c.examples[-1] > 0 else math.nan,
            "examples_to_target": reach,
        })
    return rows


def group_rows(curves: Sequence[RunCurve], target: float) -> list[dict]:
    """Rows grouped by (experiment, policy): mean and 95% half-width over seeds, best final accuracy first."""
    per_run = run_rows(curves, target)
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in per_run:
        groups.setdefault((r["experiment"], r["policy"]), []).append(r)
    out = []
    for (experiment, policy), rs in groups.items():
        reached = [r["examples_to_target"] for r in rs if r["examples_to_target"] is not None]
        out.append({
            "experiment": experiment, "policy": policy, "seeds": sorted(r["seed"] for r in rs),
            "rounds": mean_ci([r["rounds"] for r in rs]), "examples": mean_ci([r["examples"] for r in rs]),
            "final_acc": mean_ci([r["final_acc"] for r in rs]), "weakest_acc": mean_ci([r["weakest_acc"] for r in rs]),
            "auc": mean_ci([r["auc"] for r in rs]),
            "examples_to_target": mean_ci(reached) if reached else (math.nan, math.nan),
            "reached": f"{len(reached)}/{len(rs)}",
        })
    return sorted(out, key=lambda g: (g["experiment"], -g["final_acc"][0]))


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

    if multi:
        head = ["experiment", *head]
    body = [([r["experiment"]] if multi else []) + cells(r) for r in rows]
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
    from teachgym.analysis import plot_learning_curves

    multi = len({c.experiment for c in curves}) > 1
    groups: dict[str, list] = {}
    for c in curves:
        label = f"{c.experiment}: {c.policy}" if multi else c.policy
        groups.setdefault(label, []).append((c.examples, c.acc_mean))
    title = "teachgym compare — " + ", ".join(sorted({c.experiment for c in curves}))
    plot_learning_curves(groups, path, title)
