"""Campaigns: a grid of ordinary experiments (policies × seeds × settings) run as Ray tasks.

Three layers: :mod:`~teachgym.sweep.plan` (the grid, checked before anything runs),
:mod:`~teachgym.sweep.run` (the trials, on Ray or one by one) and :mod:`~teachgym.sweep.report`
(the comparison and the sweep's own MLflow run). The terminal display is :class:`teachgym.console.Display`.

``teachgym sweep CONFIG policy.name=uniform,skill-it loop.seed=0:5`` expands comma lists and integer
ranges (or the config's ``sweep:`` section) into a grid. Every trial is one ordinary experiment, run
by :func:`teachgym.runner.run_trial` through :func:`teachgym.loop.run_experiment`: the same loop, the same MLflow
schema, the same overrides. :func:`~teachgym.runner.run_trial` is the one case runner: the CLI, the sweep and the
benchmark scripts all run their experiments through it.

Why plain Ray tasks and not Ray Tune: a trial here is a whole experiment that already saves its
state every round, logs itself to MLflow and resumes itself (:mod:`teachgym.resume`). Tune would
wrap each in a second layer of trial folders, checkpoints, result loggers and restore logic, and a
fixed grid with no search algorithm or early stopping is all it would be asked to do. A task per
trial, declaring its CPUs and GPUs, lets Ray's scheduler place trials on this machine or a cluster;
``max_concurrent`` keeps at most that many tasks in flight (Ray's "limit pending tasks" pattern with
``ray.wait``). Ray is an optional extra (``pip install 'teachgym[sweep]'``); ``sequential=True`` runs
the same trials one after another in this process without it.

What a sweep keeps, in ``<loop.output_dir>/sweep-<name>/``:

* ``sweep.json``: its id, the base config and its MLflow run; a rerun with another base config is refused;
* ``trials.jsonl``: one line per trial that ended (finished, failed or interrupted), with its curve;
* ``trials/<trial>/``: each trial's own ``loop.output_dir`` (round states, so an interrupted trial
  resumes exactly where it stopped), and ``result.json`` once it finished;
* ``summary.md``/``.csv``, ``paired.csv`` and ``curves.png``: the final comparison.

Running the same sweep again skips finished trials, resumes interrupted ones and retries failed
ones; adding values to the grid runs only the new trials.

Tracking: with a sqlite store and more than one trial at a time, the sweep starts ``mlflow server``
on 127.0.0.1 over that store for its duration, so that one process writes the file; an ``http(s)``
URI is used as it is. A ``sweep-<name>`` run holds the grid, the progress and, at the end, the
comparison table (also its description in the UI) and plot; every trial's run is tagged
``teachgym.sweep`` with the sweep's id.
"""

from teachgym.sweep.plan import (
    SweepError,
    SweepPlan,
    Trial,
    TrialResult,
    axis_values,
    plan_sweep,
    split_overrides,
)
from teachgym.sweep.report import summarize
from teachgym.sweep.run import SweepResult, run_sweep

__all__ = ["SweepError", "SweepPlan", "SweepResult", "Trial", "TrialResult", "axis_values", "plan_sweep", "run_sweep",
           "split_overrides", "summarize"]
