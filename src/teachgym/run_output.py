"""What ``teachgym run`` prints: a line per round, and a closing summary a person reads.

The closing summary is the per-skill table (round 0 → the last round, and the teacher's share of the training
rows per skill), where the run is in MLflow, and a command that works when pasted (the ``teachgym`` that ran,
by its absolute path, and the store by an absolute URI).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from teachgym.tracking.schema import DATA_EXAMPLES

SHOWN_WEIGHTS = 8  # a round line names this many of a mixture's weights, then "+N more"
SHOWN_SKILLS = 30  # the closing table shows every skill up to this many, else the weakest and strongest


def describe_action(action: dict | None) -> str:
    """A teacher's action in a few words: every weight of a mixture (or the largest, then "+N more")."""
    if action is None:
        return "-"
    if action["type"] == "mixture":
        ranked = sorted(action["weights"].items(), key=lambda kv: -kv[1])
        shown = ranked if len(ranked) <= SHOWN_WEIGHTS else ranked[: SHOWN_WEIGHTS - 1]
        more = f" +{len(ranked) - len(shown)} more" if len(shown) < len(ranked) else ""
        return "mixture " + " ".join(f"{k}={v:.2f}" for k, v in shown) + more
    if action["type"] == "synthesize":
        return "synthesize " + " ".join(
            f"{r['skill']}x{r['n']}" + (f"@L{r['level']}" if r["level"] is not None else "") for r in action["requests"]
        )
    return f"examples ({action['n_rows']} rows)"


class RoundLines:
    """``on_round`` of ``teachgym run``: one line per finished round."""

    def __init__(self) -> None:
        self.first: float | None = None

    def __call__(self, record: Any, rounds_total: int) -> None:
        name, acc = record.weakest
        if record.round == 0 or self.first is None:
            self.first = record.mean_accuracy
        delta = f" ({record.mean_accuracy - self.first:+.3f} vs round 0)" if record.round > 0 else ""
        loss = f" loss {record.train_loss:.3f}" if record.train_loss is not None else ""
        print(
            f"round {record.round:>2}/{rounds_total}  acc/mean {record.mean_accuracy:.3f}{delta}  "
            f"weakest {name} {acc:.2f}  teacher: {describe_action(record.action)}{loss}  [{record.seconds:.1f}s]",
            flush=True,
        )


def program() -> list[str]:
    """The words that run this teachgym, pasteable anywhere: the script's absolute path (``.venv/bin/teachgym``
    is not on the PATH after ``make run``), or ``<python> -m teachgym``."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "teachgym" and os.path.isfile(argv0):
        return [os.path.abspath(argv0)]
    beside = Path(sys.executable).with_name("teachgym")  # the environment's own script
    if beside.is_file():
        return [str(beside)]
    return [sys.executable, "-m", "teachgym"]


def absolute_uri(uri: str) -> str:
    """A tracking URI that names the same store from any folder: a relative SQLite or file path made absolute."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + os.path.abspath(uri[len("sqlite:///"):])
    if uri.startswith("file:") and not uri.startswith("file:/"):
        return "file:" + os.path.abspath(uri[len("file:"):])
    if "://" not in uri and not uri.startswith("file:"):
        return os.path.abspath(uri)  # a plain folder
    return uri


def resume_hint(args: argparse.Namespace, run: Any) -> str:
    """The command that continues this experiment."""
    target = run.run_id or os.path.basename(run.output_dir)
    return shlex.join([*program(), "run", args.config, *args.overrides, "--resume", target])


def skill_table(records: Sequence[Any]) -> list[str]:
    """Per skill: accuracy at round 0 and at the last round, the change, and the teacher's share of the rows it
    trained on over all rounds; the weakest skills first."""
    first, last = records[0], records[-1]
    rows = {s: sum(r.metrics.get(DATA_EXAMPLES + s, 0.0) for r in records[1:]) for s in last.accuracies}
    total = sum(rows.values())
    skills = sorted(last.accuracies, key=lambda s: (last.accuracies[s], s))
    hidden = 0
    if len(skills) > SHOWN_SKILLS:  # the weakest (what to work on) and a few of the strongest
        hidden = len(skills) - SHOWN_SKILLS
        skills = skills[: SHOWN_SKILLS - 5] + skills[-5:]
    width = max([len(s) for s in skills] + [5])
    head = f"  {'skill':<{width}}  round 0  round {last.round:<2}  change  rows"
    lines = [head]
    for i, s in enumerate(skills):
        if hidden and i == SHOWN_SKILLS - 5:
            lines.append(f"  ... {hidden} more skills (all of them: the run's metrics in MLflow)")
        a0, a1 = first.accuracies.get(s, float("nan")), last.accuracies[s]
        share = f"{rows[s] / total:4.0%}" if total else "   -"
        lines.append(f"  {s:<{width}}  {a0:7.3f}  {a1:8.3f}  {a1 - a0:+.3f}  {share}")
    lines.append(f"  {'mean':<{width}}  {first.mean_accuracy:7.3f}  {last.mean_accuracy:8.3f}  "
                 f"{last.mean_accuracy - first.mean_accuracy:+.3f}  {int(total)} rows")
    return lines


def print_done(result: Any, saved: bool, seconds: float) -> None:
    """The closing summary: the first and last acc/mean, the per-skill table, where the student and the MLflow
    run are, and the command that browses it."""
    first, last = result.rounds[0], result.final
    where = f"; student saved under {result.output_dir}" if saved else ""
    print(f"\ndone in {seconds:.0f}s: acc/mean {first.mean_accuracy:.3f} -> {last.mean_accuracy:.3f} over "
          f"{last.examples} examples{where}", flush=True)
    if len(result.rounds) > 1:
        print("\n".join(skill_table(result.rounds)), flush=True)
    if result.run_id:
        print(f"MLflow: run {result.run_id} in {result.tracking_uri}\n"
              f"browse with: {shlex.join([*program(), 'ui', '--tracking-uri', absolute_uri(result.tracking_uri)])}",
              flush=True)
