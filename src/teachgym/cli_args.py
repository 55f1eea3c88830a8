"""The ``teachgym`` command line's arguments: one function per subcommand, each adding its parser.

:func:`teachgym.cli.build_parser` attaches the command that runs each (``func``); the docs' tests parse their
examples with it.
"""

from __future__ import annotations

import argparse

#: What ``teachgym --help`` says first (plain text: argparse prints it as it is).
DESCRIPTION = ("teachgym: curriculum experiments with a teacher policy, a student trained with TRL, and MLflow. "
               "Commands: run, sweep, bench, compare, ui, runs, skill-graph, calibrate and list.")
TRACKING_URI_HELP = "MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)"



def _add_run(sub: argparse._SubParsersAction) -> None:
    p_run = sub.add_parser("run", help="run a curriculum experiment from a YAML config")
    p_run.add_argument("config", help="path to a YAML config, e.g. configs/arithmetic.yaml")
    p_run.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. loop.rounds=3 policy.name=uniform")
    p_run.add_argument("--resume", nargs="?", const=True, metavar="RUN_ID",
                       help="continue the newest unfinished experiment with this config's experiment and run name "
                       "(or the run RUN_ID) after its last finished round")
    p_run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="show training steps and evaluation items as they go, with ETA (default: when the "
                       "output is a terminal; in a log, a line every 5 s)")
    p_run.add_argument("--trust-old-state", action="store_true",
                       help="with --resume: read a round state written by an older teachgym (a pickle, which can run "
                            "code) once, and rewrite it in the data-only format")


def _add_runs(sub: argparse._SubParsersAction) -> None:
    p_runs = sub.add_parser("runs", help="list (and close) runs left RUNNING by a process that is gone")
    p_runs.add_argument("--stale", action="store_true", required=True,
                        help="runs marked RUNNING whose process (host, pid) no longer exists")
    p_runs.add_argument("--close", action="store_true", help="mark them (and their round runs) KILLED")
    p_runs.add_argument("--tracking-uri", help=TRACKING_URI_HELP)


def _add_skill_graph(sub: argparse._SubParsersAction) -> None:
    p_graph = sub.add_parser(
        "skill-graph", help="estimate the skills graph A (Skill-it): train a copy of the student on each skill alone"
    )
    p_graph.add_argument("config", help="experiment config whose env and student to use")
    p_graph.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p_graph.add_argument("--out", default="skill_graph.json", help="JSON output (a .png heatmap is written beside it)")
    p_graph.add_argument("--examples", type=int, help="rows per skill (default: loop.examples_per_round / 4)")
    p_graph.add_argument("--warmup", type=int, help="uniform rows first (default: loop.examples_per_round)")


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p_cal = sub.add_parser(
        "calibrate", help="fit the simulated student to the per-skill curves of logged runs (least squares)"
    )
    p_cal.add_argument("experiment", help="MLflow experiment whose finished runs to fit (e.g. teachgym/arithmetic)")
    p_cal.add_argument("--tracking-uri", help=TRACKING_URI_HELP)
    p_cal.add_argument("--policies", nargs="*", help="only the runs of these policies")
    p_cal.add_argument("--student", default="hf", help="only the runs of this student (default hf; '' for any)")
    p_cal.add_argument("--holdout-seeds", nargs="*", help="seeds whose runs are left out of the fit and scored")
    p_cal.add_argument("--no-forgetting", action="store_true", help="fit without forgetting (half_life 0)")
    p_cal.add_argument("--no-onset", action="store_true", help="fit without the shared format stage (onset 0)")
    p_cal.add_argument("--out", default="calibrated.yaml", help="the config written (the runs' own, student replaced)")


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p_cmp = sub.add_parser("compare", help="compare policies over seeds from the MLflow store (table, plot)")
    p_cmp.add_argument("experiments", nargs="*", help="MLflow experiment names (default: every teachgym/... one)")
    p_cmp.add_argument("--tracking-uri", help=TRACKING_URI_HELP)
    p_cmp.add_argument("--target", type=float, default=0.5, help="accuracy for the examples-to-target column")
    p_cmp.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    p_cmp.add_argument("--runs", action="store_true", help="one row per run instead of per policy")
    p_cmp.add_argument("--plot", metavar="FILE", help="also write the learning curves by policy (mean and band)")
    p_cmp.add_argument("--include-unfinished", action="store_true", help="also runs that are running or failed")
    p_cmp.add_argument("--baseline", metavar="POLICY",
                       help="compare every policy with this one seed by seed: paired differences with 95%% intervals, "
                       "wins, probability of improvement, data-efficiency ratio")
    p_cmp.add_argument("--sweep", metavar="NAME", help="only the trials of this sweep (its name or id)")


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p_sw = sub.add_parser("sweep", help="run a grid of experiments (policies x seeds x settings) on Ray, then compare")
    p_sw.add_argument("config", help="YAML config; its sweep: section (optional) gives the grid and options")
    p_sw.add_argument("overrides", nargs="*", help="key=value (every trial), key=a,b,c or key=0:5 (swept), e.g. "
                      "policy.name=uniform,skill-it loop.seed=0:5")
    p_sw.add_argument("--name", help="sweep name (default: the config file's name); a rerun with the same name "
                      "skips finished trials and resumes interrupted ones")
    p_sw.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as the CPUs/GPUs fit)")
    p_sw.add_argument("--cpus-per-trial", type=float, help="CPUs Ray reserves per trial (default 1)")
    p_sw.add_argument("--gpus-per-trial", type=float, help="GPUs Ray reserves per trial (default 0)")
    p_sw.add_argument("--address", help="an existing Ray cluster ('auto' or HOST:PORT; needs an http tracking URI)")
    p_sw.add_argument("--baseline", help="policy the final table pairs every other with (default uniform)")
    p_sw.add_argument("--sequential", action="store_true", help="run the trials one by one in this process (no Ray)")
    p_sw.add_argument("--dry-run", action="store_true", help="list the trials and exit")


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p_b = sub.add_parser("bench", help="teacher unit tests: challenges with an oracle anchor, and a leaderboard")
    p_b.add_argument("policies", nargs="*", help="teachers to rank (built-in names or module:Class; default: every "
                     "built-in, and <name>@step for those with step()); <name>@step teaches per generation batch, "
                     "<name>+filter turns on the GRPO student's online filtering (GRPO challenges only), "
                     "<name>+x<k> runs it on k times the round's budget (uniform+x2.3: a compute-matched uniform); "
                     "uniform and oracle always run")
    p_b.add_argument("--list", action="store_true", help="name the challenges, one line each, and exit")
    p_b.add_argument("--challenges", nargs="+", metavar="NAME", help="only these challenges (default: all)")
    p_b.add_argument("--seeds", help="the teachers' seeds: a range 0-9 or a list 0,1,2 (default: the protocol's "
                     "scoring seeds); the anchors also run on the protocol's calibration seeds")
    p_b.add_argument("--calibrate", action="store_true", help="run the anchors on the protocol's calibration seeds "
                     "and write the protocol they decide (headroom, the aggregate's challenges, scores) to --protocol")
    p_b.add_argument("--protocol", help="the protocol file to read, or with --calibrate to write (default: the one "
                     "shipped with teachgym, src/teachgym/challenges/protocol.yaml; --calibrate: "
                     "<results>/protocol.yaml)")
    p_b.add_argument("--simulated", action="store_true", help="the simulated twins (seconds) instead of the LM")
    p_b.add_argument("--format", choices=["table", "json"], default="table",
                     help="json: print the rows (challenge, policy, seed, score, normalised) for scripts")
    p_b.add_argument("--dir", help="a challenge folder (default: the built-in challenges, shipped with teachgym; in "
                     "a checkout configs/bench)")
    p_b.add_argument("--learned", help="the folder of the learned teachers' models, <challenge>.zip (default: the "
                     "ones shipped with teachgym, trained by benchmarks/train_bench_teachers.py)")
    p_b.add_argument("--results", default="outputs/bench/results", help="the rows and reports this command writes "
                     "(default outputs/bench/results; benchmarks/results/bench updates the committed leaderboard)")
    p_b.add_argument("--reference", help="a results folder whose rows of the current keys are reused, never written "
                     "(default: the leaderboard shipped with teachgym; in a checkout benchmarks/results/bench)")
    p_b.add_argument("--work", default="outputs/bench", help="the cases' run folders")
    p_b.add_argument("--sequential", action="store_true", help="run the cases one by one in this process (no Ray)")
    p_b.add_argument("--no-mlflow", action="store_true", help="do not log the cases to MLflow")
    p_b.add_argument("--cached", action="store_true", help="run nothing: report the cases of the current keys already "
                     "in the results file (teachers without rows are left out)")


def _add_ui(sub: argparse._SubParsersAction) -> None:
    p_ui = sub.add_parser("ui", help="start the MLflow UI on the project's store (127.0.0.1) and print its URL")
    p_ui.add_argument("--tracking-uri", help=TRACKING_URI_HELP)
    p_ui.add_argument("--port", type=int, default=5000)
    p_ui.add_argument("--host", default="127.0.0.1", help="bind address (default: this machine only)")
    p_ui.add_argument("--experiment", help="experiment to open (default: the latest teachgym/... one)")
    p_ui.add_argument("--workers", type=int, default=1, help="server processes (1 starts fastest and serves one user)")


def _add_list(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("list", help="list every registered env, student and policy")


def build_parser() -> argparse.ArgumentParser:
    """The ``teachgym`` parser with every subcommand and option (no ``func``: see :func:`teachgym.cli.build_parser`)."""
    parser = argparse.ArgumentParser(prog="teachgym", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_run, _add_runs, _add_skill_graph, _add_calibrate, _add_compare, _add_sweep, _add_bench, _add_ui,
                _add_list):
        add(sub)
    return parser
