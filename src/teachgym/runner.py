"""The one runner: one experiment as a trial that always comes back with a result (sweeps, benchmark scripts).

:func:`run_trial` runs :func:`teachgym.loop.run_experiment` to its end, resuming it if an earlier attempt
stopped, and returns a row (finished, failed or interrupted) instead of raising, so that one bad trial
never stops a sweep. ``teachgym run`` calls the loop itself, for its own messages and exit codes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from teachgym.config import ExperimentConfig
from teachgym.console import quiet_libraries
from teachgym.interrupts import Interrupted
from teachgym.loop import PolicyError, run_experiment
from teachgym.resume import RUN_FILE
from teachgym.types import ROUND_PREFIXES

RESULT_FILE = "result.json"


def _unfinished(out: Path) -> bool:
    """Whether an earlier attempt of the trial left an experiment that did not finish (then it is resumed)."""
    for file in out.glob(f"*/{RUN_FILE}"):
        try:
            if json.loads(file.read_text()).get("status") != "FINISHED":
                return True
        except (OSError, ValueError):
            continue
    return False


def _finished_row(result: Any) -> dict[str, Any]:
    """A finished trial's curve, as a row of plain data."""
    return {
        "status": "finished",
        "run_id": result.run_id,
        "output_dir": result.output_dir,
        "examples": [r.examples for r in result.rounds],
        "acc_mean": [r.mean_accuracy for r in result.rounds],
        "acc_min": [r.weakest[1] for r in result.rounds],
        "final_acc": result.final.accuracies,
        "acc": [r.accuracies for r in result.rounds],
        # an RL student's round totals (rollouts spent, zero-variance share) and a per-step teacher's summaries
        "totals": [{k: v for k, v in r.metrics.items() if k.startswith(ROUND_PREFIXES) and k.count("/") == 1}
                   for r in result.rounds],
    }


def run_trial(
    config: ExperimentConfig | Mapping[str, Any],
    report: Callable[[int, int, float], None] | None = None,
    cwd: str | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run one experiment to its end, resuming it if an earlier attempt stopped; the one case runner.

    A finished trial (``result.json`` in its ``loop.output_dir``) is not run again. The trial's own
    errors are returned, not raised, so that one bad trial never stops a sweep.

    Args:
        config: The trial's config (its ``loop.output_dir`` is the trial's own folder).
        report: Called after each round with ``(round, rounds, acc/mean)`` (live display).
        cwd: Run in this directory when it exists here (a Ray worker starts elsewhere on another node);
            it is also put on ``sys.path``, like ``teachgym run`` does, for policies given by import path.
        threads: torch intra-op threads (the CPUs reserved for the trial).

    Returns:
        ``status`` (finished, failed or interrupted), ``error`` and ``traceback`` for the others, and
        for a finished trial its curve: ``examples``, ``acc_mean``, ``acc_min``, ``final_acc``, ``acc`` (every
        round's accuracy per skill), ``totals`` (every round's ``rl/…``, ``filter/…`` and ``teacher/…`` totals), plus
        ``run_id``, ``wall_s`` and ``skipped`` (finished by an earlier attempt).
    """
    import traceback

    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
    quiet_libraries()
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    if not isinstance(config, ExperimentConfig):
        config = ExperimentConfig.model_validate(config)
    out = Path(config.loop.output_dir)
    done = out / RESULT_FILE
    if done.exists():
        return {**json.loads(done.read_text()), "skipped": True}
    resume = _unfinished(out)
    start = time.perf_counter()
    try:
        result = run_experiment(
            config, on_round=(lambda rec, total: report(rec.round, total, rec.mean_accuracy)) if report else None,
            resume=resume,
        )
    except Interrupted as e:
        return {"status": "interrupted", "error": f"stopped by {e.signame}", "signal": e.signum,
                "wall_s": time.perf_counter() - start}
    except KeyboardInterrupt:
        return {"status": "interrupted", "error": "stopped (KeyboardInterrupt)", "wall_s": time.perf_counter() - start}
    except Exception as e:  # noqa: BLE001 - a trial's failure is reported by the sweep, never raised into it
        cause = e.__cause__ if isinstance(e, PolicyError) and e.__cause__ else e
        return {"status": "failed", "error": f"{type(e).__name__}: {e}", "wall_s": time.perf_counter() - start,
                "traceback": "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))}
    row = {**_finished_row(result), "wall_s": time.perf_counter() - start, "resumed": resume}
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(row))
    os.replace(tmp, done)
    return {**row, "skipped": False}


