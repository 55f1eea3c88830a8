"""The ``teachgym`` command: ``run``, ``sweep``, ``bench``, ``compare``, ``ui``, ``runs``, ``skill-graph``,
``calibrate`` and ``list`` (their arguments: :mod:`teachgym.cli_args`).

Each command imports its own subsystem (the loop, a sweep, the bench, ...) when it runs, so that
``teachgym --help``, ``teachgym list`` and a config error answer at once; the foundation is imported here.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from teachgym import cli_args, progress
from teachgym.config import ConfigError, check_names, load_config
from teachgym.console import Display, quiet_libraries
from teachgym.distributed import team
from teachgym.interrupts import Interrupted
from teachgym.registry import KINDS, RegistryError, describe
from teachgym.run_output import RoundLines, print_done, program, resume_hint
from teachgym.tracking.store import TrackingUnavailable, prepare_store, resolve_tracking_uri
from teachgym.types import InvalidActionError


def _load_config(args: argparse.Namespace) -> Any:
    """The config from ``args.config`` + ``args.overrides``, then quiet libraries; None (error printed) if invalid."""
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    quiet_libraries()
    return config


def _saved_round(run: Any) -> str:
    from teachgym.resume import RunDir

    latest = RunDir(run.output_dir).latest()
    return "no round finished yet" if latest is None else f"rounds 0-{latest} are saved in {run.output_dir}"


class _Started:
    """``on_start`` of ``teachgym run``: says what a resumed experiment continues from, and keeps its ``RunInfo``
    (the error messages name the saved round and the command that continues)."""

    def __init__(self, resume: bool) -> None:
        self.resume, self.run = resume, None

    def __call__(self, info: Any) -> None:
        self.run = info
        if info.resumed_from is not None:
            print(f"resuming {info.run_id or info.output_dir} after round {info.resumed_from} (saved state in "
                  f"{info.output_dir})" + ("; the policy is stateless (no state_dict), so it restarts from its "
                                           "constructor state" if info.stateless_policy else ""), flush=True)
        elif self.resume:
            print(f"resuming {info.run_id or info.output_dir}: no round had finished, starting at round 0", flush=True)

    def continue_with(self, args: argparse.Namespace, fix: str) -> None:
        """After a stop or an error: the round that is saved and the command that continues (once the run exists)."""
        if self.run is not None:
            print(f"{_saved_round(self.run)}; {fix}continue with:\n  {resume_hint(args, self.run)}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    import traceback

    from teachgym.engine import EngineError
    from teachgym.synthesis import SynthesisError

    # Like `python -m`: `policy.name=my_teacher:MyTeacher` finds my_teacher.py in the working directory.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())

    main = team().main  # launched by accelerate: process 0 alone speaks (the others would repeat every line)
    if not main:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of this process
    # `--resume loop.rounds=3`: an override, not a run id.
    if args.resume not in (None, True) and "=" in args.resume:
        args.overrides, args.resume = [*args.overrides, args.resume], True
    config = _load_config(args)
    if config is None:
        return 2
    try:
        check_names(config)  # a misspelt plugin name: now, before the header and before anything is created
    except RegistryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.progress or (args.progress is None and sys.stdout.isatty()):
        progress.enable()
    from teachgym.loop import PolicyError, default_run_name, run_experiment

    print(
        f"teachgym: env={config.env.name} student={config.student.name} policy={config.policy.name} "
        f"rounds={config.loop.rounds} examples/round={config.loop.examples_per_round} seed={config.loop.seed} "
        f"run={default_run_name(config)}",
        flush=True,
    )
    started = _Started(bool(args.resume))
    start = time.perf_counter()
    try:
        result = run_experiment(config, on_round=RoundLines(), resume=args.resume or False, on_start=started,
                                trust_old_state=args.trust_old_state)
    except (ConfigError, RegistryError, InvalidActionError, EngineError, TrackingUnavailable, SynthesisError) as e:
        if not main:
            return 2
        print(f"error: {e}", file=sys.stderr)
        if not isinstance(e, TrackingUnavailable):
            started.continue_with(args, "after fixing it, ")
        return 2
    except PolicyError as e:
        if not main:
            return 1
        cause = e.__cause__
        print("".join(traceback.format_exception(type(cause), cause, cause.__traceback__)).rstrip(), file=sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        started.continue_with(args, "fix the policy, then ")
        return 1
    except Interrupted as e:
        if not main:
            return e.exit_code
        print(f"\nstopped by {e.signame}; the MLflow runs are marked KILLED.", file=sys.stderr)
        started.continue_with(args, "")
        return e.exit_code
    finally:
        progress.disable()
    print_done(result, config.loop.save_student, time.perf_counter() - start)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from teachgym.tracking.runs import stale_runs

    quiet_libraries()
    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        prepare_store(uri, None)
        rows = stale_runs(uri, close=args.close)
    except TrackingUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"no stale runs in {uri}: every RUNNING teachgym run has a live process")
        return 0
    verb = "closed KILLED" if args.close else "stale"
    print(f"{len(rows)} {verb} run(s) in {uri} (RUNNING, but the process that wrote them is gone):")
    for r in rows:
        print(f"  {r['run_id']}  {r['experiment']}/{r['run_name']}  host {r['host']} pid {r['pid']}  "
              f"last round logged: {r['last_round']}, saved: {r['last_saved']}  output: {r['output_dir']}")
    if not args.close:
        print("mark them KILLED with: teachgym runs --stale --close; continue one with: "
              "teachgym run CONFIG --resume RUN_ID")
    return 0


def cmd_skill_graph(args: argparse.Namespace) -> int:
    config = _load_config(args)
    if config is None:
        return 2
    from teachgym.skill_graph import estimate_skill_graph, save_and_log

    n = args.examples or config.loop.examples_per_round // 4
    warmup = config.loop.examples_per_round if args.warmup is None else args.warmup
    print(f"skill graph: env={config.env.name} student={config.student.name} warmup={warmup} rows, "
          f"{n} rows per skill", flush=True)

    def progress(skill: str, row: dict[str, float], seconds: float) -> None:
        cells = " ".join(f"{k}={v:+.2f}" for k, v in row.items())
        print(f"  trained on {skill:<14} {cells}  [{seconds:.1f}s]", flush=True)

    try:
        graph = estimate_skill_graph(config, n, warmup, on_skill=progress)
    except (ConfigError, RegistryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out, png, run_id = save_and_log(graph, config, args.out)
    print(f"wrote {out} and {png}" + (f"; MLflow run {run_id}" if run_id else ""))
    print(f"use it: teachgym run {args.config} policy.name=skill-it policy.graph={out}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from teachgym.calibrate import CalibrationError, calibrate

    quiet_libraries()
    try:
        fitted = calibrate(args.tracking_uri, args.experiment, args.policies or (), args.student,
                           args.holdout_seeds or (), forgetting=not args.no_forgetting, onset=not args.no_onset,
                           progress=lambda line: print(line, file=sys.stderr))
    except (CalibrationError, ConfigError, RegistryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(fitted.report, end="")
    with open(args.out, "w") as f:
        f.write(fitted.config_text)
    print(f"wrote {args.out}: teachgym run {args.out}", file=sys.stderr)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from teachgym.sweep import plan_sweep, run_sweep

    if os.getcwd() not in sys.path:  # policies given by import path, as in `teachgym run`
        sys.path.insert(0, os.getcwd())
    quiet_libraries()
    try:
        plan = plan_sweep(args.config, args.overrides, name=args.name, max_concurrent=args.max_concurrent,
                          cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                          address=args.address, baseline=args.baseline)
    except (ConfigError, RegistryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(plan.describe(), flush=True)
    if args.dry_run:
        for t in plan.trials:
            print(f"  {t.name:<40} {t.key}")
        return 0
    display = Display()
    try:
        result = run_sweep(plan, sequential=args.sequential, on_event=display)
    except (ConfigError, TrackingUnavailable) as e:
        display.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    display.close()
    print("\n" + result.summary, flush=True)
    print(f"summary, tables and plot: {plan.directory}", flush=True)
    if result.run_id:
        print(f"MLflow: sweep run {result.run_id} (sweep-{plan.name}) in {result.tracking_uri}; its trials have tag "
              f"teachgym.sweep = '{result.sweep_id}'; again from the store: {shlex.join(program())} compare --sweep "
              f"{plan.name} --baseline {plan.options.baseline or 'uniform'} --tracking-uri {result.tracking_uri}")
    flags = [(f"--{k.replace('_', '-')}", getattr(args, k)) for k in
             ("name", "max_concurrent", "cpus_per_trial", "gpus_per_trial", "address", "baseline")]
    words = [*program(), "sweep", args.config, *args.overrides, *(w for f, v in flags if v is not None
                                                                   for w in (f, str(v)))]
    again = shlex.join(words + (["--sequential"] if args.sequential else []))
    if result.interrupted is not None:
        stopped = [r for r in result.results if r.status == "interrupted"]
        print(f"\nstopped: {len(result.finished)} trials finished, {len(stopped)} stopped or not started (their "
              f"finished rounds are saved); run the same command again to continue:\n  {again}", file=sys.stderr)
    elif result.failed:
        print(f"\n{len(result.failed)} of {len(result.results)} trials failed:", file=sys.stderr)
        for r in result.failed:
            print(f"  {r.trial.name} ({r.trial.key}): {r.error}", file=sys.stderr)
        print(f"tracebacks: {plan.directory / 'trials.jsonl'}; fix the cause and run the same command again (finished "
              f"trials are skipped):\n  {again}", file=sys.stderr)
    return result.exit_code


def cmd_bench(args: argparse.Namespace) -> int:
    from teachgym.bench import CHALLENGES, load_challenges
    from teachgym.bench_command import bench_command

    if os.getcwd() not in sys.path:  # a teacher given by import path, as in `teachgym run`
        sys.path.insert(0, os.getcwd())
    quiet_libraries()
    if args.challenges:  # `--challenges a b` and `--challenges a,b` alike
        args.challenges = [n for arg in args.challenges for n in arg.split(",") if n]
    try:
        if args.list:
            for ch in load_challenges(args.dir or CHALLENGES, args.challenges):
                print(f"{ch.name:<16} {ch.bench.description}")
            return 0
        command = shlex.join(["teachgym", "bench", *sys.argv[2:]]) if sys.argv[1:2] == ["bench"] else "teachgym bench"
        return bench_command(args.policies, args.challenges, args.seeds, args.simulated, args.format,
                             args.dir or CHALLENGES, args.results, args.work, args.sequential, not args.no_mlflow,
                             command, args.cached, args.reference, args.learned, args.protocol, args.calibrate)
    except (ConfigError, RegistryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C or a stop signal: the finished cases are already written
        print(f"\nbench stopped ({getattr(e, 'signame', 'SIGINT')}): every finished case is kept in "
              f"{Path(args.results) / ('simulated' if args.simulated else 'lm')}.jsonl; run the same command again "
              "to run the rest", file=sys.stderr)
        return getattr(e, "exit_code", 130)


def cmd_compare(args: argparse.Namespace) -> int:
    from teachgym.compare import CompareError, group_rows, load_runs, paired_rows, plot, render, render_paired, run_rows

    quiet_libraries()
    try:
        curves = load_runs(args.tracking_uri, args.experiments, args.include_unfinished, sweep=args.sweep)
        paired = paired_rows(curves, args.baseline) if args.baseline else None
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if paired is not None:
        print(render_paired(paired, args.format), end="")
        if args.format == "markdown":
            print("\nUnpaired (every policy, mean ± 95% t-interval over seeds):\n")
    if paired is None or args.format == "markdown":
        rows = run_rows(curves, args.target) if args.runs else group_rows(curves, args.target)
        print(render(rows, args.format, args.target, grouped=not args.runs), end="")
    if args.plot:
        plot(curves, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def ui_url(host: str, port: int, experiment_id: str | None) -> str:
    """The MLflow UI address that opens on an experiment's runs in chart view (or the home page).

    MLflow 3's UI picks its GenAI or model-training view from a switch the browser remembers
    (``workflowType``), whatever the experiment's kind; the address selects model training.
    """
    base = f"http://{host}:{port}"
    view = "workflowType=machine_learning"
    return f"{base}/#/experiments/{experiment_id}/runs?compareRunsMode=CHART&{view}" if experiment_id \
        else f"{base}/#/experiments?{view}"


def cmd_ui(args: argparse.Namespace) -> int:
    import socket
    import subprocess

    uri = resolve_tracking_uri(args.tracking_uri)
    if uri.startswith(("http://", "https://")):
        print(f"the store is already served at {uri}: open it in a browser")
        return 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((args.host, args.port))
        except OSError:
            print(f"error: port {args.port} on {args.host} is in use. If an MLflow UI is already running there, open "
                  f"http://{args.host}:{args.port}; otherwise pick a free port: teachgym ui --port {args.port + 1}",
                  file=sys.stderr)
            return 2
    quiet_libraries()
    from teachgym.tracking.runs import client as store_client

    client = store_client(uri)
    exps = [e for e in client.search_experiments(order_by=["last_update_time DESC"])
            if (e.name == args.experiment if args.experiment else e.name.startswith("teachgym/"))]
    if args.experiment and not exps:
        print(f"error: no experiment {args.experiment!r} in {uri}", file=sys.stderr)
        return 2
    url = ui_url(args.host, args.port, exps[0].experiment_id if exps else None)
    print(f"MLflow UI for {uri}\n  open: {url}\n  (Ctrl-C stops it)", flush=True)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host,
           "--port", str(args.port), "--workers", str(args.workers)]
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0


def cmd_list(args: argparse.Namespace) -> int:
    for kind in KINDS:
        print(f"{kind}:")
        for name, desc in describe(kind):
            print(f"  {name:<22} {desc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``teachgym`` command line: every subcommand and option (the docs' tests parse their examples with it)."""
    parser = cli_args.build_parser()
    commands = {"run": cmd_run, "runs": cmd_runs, "skill-graph": cmd_skill_graph, "calibrate": cmd_calibrate,
                "compare": cmd_compare, "sweep": cmd_sweep, "bench": cmd_bench, "ui": cmd_ui, "list": cmd_list}
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subcommands.choices.items():
        sub.set_defaults(func=commands[name])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may come after options too (`skill-graph CONFIG --out g.json loop.seed=1`).
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
