"""Campaigns: a grid of ordinary experiments (policies × seeds × settings) run as Ray tasks.

``teachgym sweep CONFIG policy.name=uniform,skill-it loop.seed=0:5`` expands comma lists and integer
ranges (or the config's ``sweep:`` section) into a grid. Every trial is one ordinary experiment, run
by :func:`run_trial` through :func:`teachgym.loop.run_experiment`: the same loop, the same MLflow
schema, the same overrides. :func:`run_trial` is the one case runner: the CLI, the sweep and the
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

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teachgym.config import ConfigError, ExperimentConfig, SweepConfig, load_config

log = logging.getLogger(__name__)

SWEEP_FILE, TRIALS_FILE, RESULT_FILE = "sweep.json", "trials.jsonl", "result.json"
POLICY_KEYS, SEED_KEY = ("policy.name", "policy"), "loop.seed"
_RANGE = re.compile(r"^\s*(-?\d+)\s*:\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?$")
INSTALL_HINT = "teachgym sweep runs trials on Ray: pip install 'teachgym[sweep]' (or run them one by one: --sequential)"


class SweepError(ConfigError):
    """A sweep that cannot start: a bad grid, a changed base config, a store other nodes cannot reach."""


# ----------------------------------------------------------------------------------------------- the grid


def axis_values(key: str, raw: Any) -> list[str]:
    """The values of one swept key as override strings: a list, ``"a,b,c"``, or ``"start:stop[:step]"``.

    Raises:
        SweepError: An empty axis or an empty range.
    """
    if isinstance(raw, list):
        values = [v if isinstance(v, str) else json.dumps(v) for v in raw]
    elif isinstance(raw, str) and (m := _RANGE.match(raw)):
        start, stop, step = int(m[1]), int(m[2]), int(m[3] or 1)
        if step == 0 or not range(start, stop, step):
            raise SweepError(f"sweep key {key}: the range {raw!r} is empty (start:stop[:step], stop excluded)")
        values = [str(v) for v in range(start, stop, step)]
    elif isinstance(raw, str) and not raw.lstrip().startswith(("[", "{")):
        values = [v.strip() for v in raw.split(",")]
    else:
        values = [raw if isinstance(raw, str) else json.dumps(raw)]
    if not values or any(v == "" for v in values):
        raise SweepError(f"sweep key {key}: empty value in {raw!r}")
    return values


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Command-line overrides split into fixed ones and swept axes (a value with a comma, or an integer range)."""
    fixed, axes = [], {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SweepError(f"override {item!r} is not of the form key.sub=value")
        values = axis_values(key.strip(), raw)
        if len(values) > 1 or _RANGE.match(raw):
            axes[key.strip()] = values
        else:
            fixed.append(item)
    return fixed, axes


@dataclass(frozen=True)
class Trial:
    """One cell of the grid: an ordinary experiment with these overrides on top of the base config."""

    key: str  # the grid's overrides, space-separated: the trial's identity across reruns
    overrides: tuple[str, ...]
    name: str  # e.g. "skill-it-s3" or "skill-it-s3-learning_rate=0.001": its MLflow run name and folder
    policy: str
    seed: int
    setting: str  # the swept overrides other than the policy and the seed ("" when there are none)

    @property
    def folder(self) -> str:
        digest = hashlib.sha1(self.key.encode()).hexdigest()[:6]
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", self.name)[:80] + "-" + digest


@dataclass
class SweepPlan:
    """Everything a sweep will run, checked before anything starts (see :func:`plan_sweep`)."""

    name: str
    directory: Path
    base: ExperimentConfig
    options: SweepConfig
    grid: dict[str, list[str]]
    fixed: list[str]
    trials: list[Trial]
    configs: dict[str, ExperimentConfig]  # trial key -> its validated config (tracking URI set at run time)
    experiments: dict[str, str]  # trial key -> MLflow experiment
    source: str

    def describe(self) -> str:
        axes = " × ".join(f"{k} ({len(v)})" for k, v in self.grid.items()) or "no swept keys"
        return f"sweep {self.name}: {len(self.trials)} trials = {axes}; folder {self.directory}"


def plan_sweep(config: str | Path | Mapping[str, Any], overrides: Sequence[str] = (),
               grid: Mapping[str, Any] | None = None, **options: Any) -> SweepPlan:
    """Expand a config and overrides into trials and validate every trial's config.

    Args:
        config: A YAML file or a dict; its optional ``sweep:`` section gives the grid and options.
        overrides: ``key=value`` (fixed for every trial) or ``key=a,b,c`` / ``key=0:5`` (swept).
        grid: More swept keys, as in the ``sweep:`` section (``{"policy": [{"name": ...}, ...]}``);
            they replace the config's axes of the same key, and the command line's replace them.
        **options: :class:`~teachgym.config.SweepConfig` fields given on the command line (None: unset).

    Raises:
        SweepError, ConfigError, RegistryError: A bad grid, an invalid trial config (the trial is
            named), or an unknown component (with near names), before anything runs.
    """
    from teachgym.registry import resolve

    fixed, cli_axes = split_overrides(overrides)
    base = load_config(config, fixed)
    sweep = base.sweep or SweepConfig()
    opts = sweep.model_copy(update={k: v for k, v in options.items() if v is not None})
    try:
        opts = SweepConfig.model_validate(opts.model_dump())
    except Exception as e:  # a bad --max-concurrent and the like
        raise SweepError(f"sweep options: {e}") from None
    grid = {k: axis_values(k, v) for k, v in {**sweep.grid, **(grid or {})}.items()}
    for item in fixed:  # a fixed override pins a key the YAML grid sweeps
        grid.pop(item.partition("=")[0].strip(), None)
    grid.update(cli_axes)
    if "policy" in grid and "policy.name" in grid:
        raise SweepError("sweep both 'policy' and 'policy.name'? give the policies once, as names or as sections")
    base = base.model_copy(update={"sweep": None})
    name = opts.name or (Path(config).stem if not isinstance(config, Mapping) else "sweep")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise SweepError(f"sweep name {name!r}: use letters, digits, '.', '_' and '-' only")
    directory = Path(base.loop.output_dir).resolve() / f"sweep-{name}"
    trials, configs, experiments, env_names = [], {}, {}, {}
    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        grid_overrides = tuple(f"{k}={v}" for k, v in zip(keys, combo, strict=True))
        key = " ".join(grid_overrides)
        try:
            cfg = load_config(config, [*fixed, *grid_overrides]).model_copy(update={"sweep": None})
        except ConfigError as e:
            raise SweepError(f"trial {key}: {e}") from None
        setting = " ".join(o for o in grid_overrides if o.partition("=")[0] not in (*POLICY_KEYS, SEED_KEY))
        policy = cfg.policy.name.rsplit(":", 1)[-1]
        short = ",".join(f"{o.partition('=')[0].rsplit('.', 1)[-1]}={o.partition('=')[2]}" for o in setting.split())
        name_ = f"{policy}-s{cfg.loop.seed}" + (f"-{short}" if short else "")
        trial = Trial(key, grid_overrides, name_, cfg.policy.name, cfg.loop.seed, setting)
        for kind, comp in (("envs", cfg.env), ("students", cfg.student), ("policies", cfg.policy)):
            resolve(kind, comp.name)  # an unknown name fails here, with near names
        cfg = _trial_config(cfg, trial, directory)
        trials.append(trial)
        configs[key] = cfg
        env_key = json.dumps(cfg.env.model_dump(), sort_keys=True, default=str)
        if cfg.tracking.experiment is None and env_key not in env_names:
            env_names[env_key] = _env_name(cfg)
        experiments[key] = cfg.tracking.experiment or f"teachgym/{env_names[env_key]}"
    if len({t.key for t in trials}) != len(trials):
        raise SweepError("the grid repeats a trial (the same value twice on one key?)")
    same = [k for k, n in collections.Counter((t.policy, t.seed, t.setting) for t in trials).items() if n > 1]
    if same:
        policy, seed, setting = same[0]
        raise SweepError(
            f"two trials would compare as the same run (policy {policy!r}, seed {seed}, setting {setting!r}): sweep a "
            "policy's arguments as keys of their own (policy.temperature=0.5,1.0), not as two policy sections"
        )
    uri = _uri(base)
    if opts.address and base.tracking.enabled and not uri.startswith(("http://", "https://")):
        raise SweepError(
            f"a sweep on a Ray cluster (address {opts.address!r}) needs a tracking server every node can reach, not "
            f"{uri}: start one (`mlflow server --host 0.0.0.0 --port 5000 --backend-store-uri sqlite:///mlflow.db`) "
            "and pass tracking.tracking_uri=http://<this host>:5000 (or tracking.enabled=false)"
        )
    return SweepPlan(name, directory, base, opts, grid, fixed, trials, configs, experiments,
                     str(config) if not isinstance(config, Mapping) else "<dict>")


def _trial_config(cfg: ExperimentConfig, trial: Trial, directory: Path) -> ExperimentConfig:
    data = cfg.model_dump()
    if data.get("warm_start") and not data["warm_start"].get("dir"):  # one warm start for all the trials
        data["warm_start"]["dir"] = str(directory / "warm-start")
    data["loop"]["output_dir"] = str(directory / "trials" / trial.folder)
    data["tracking"]["run_name"] = trial.name
    data["tracking"]["tags"] = {**data["tracking"]["tags"], "teachgym.trial": trial.key,
                                "teachgym.setting": trial.setting}
    return ExperimentConfig.model_validate(data)


def _env_name(cfg: ExperimentConfig) -> str:
    """The env's own name (the experiment is named after it), built once per distinct env config."""
    from teachgym.config import build_component

    return build_component("envs", "env", cfg.env, seed=cfg.loop.seed).name


def _uri(config: ExperimentConfig) -> str:
    from teachgym.tracking import resolve_tracking_uri

    return resolve_tracking_uri(config.tracking.tracking_uri)


# ----------------------------------------------------------------------------------------------- one trial


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
        for a finished trial its curve: ``examples``, ``acc_mean``, ``acc_min``, ``final_acc``, plus
        ``run_id``, ``wall_s`` and ``skipped`` (finished by an earlier attempt).
    """
    import traceback

    from teachgym.interrupts import Interrupted
    from teachgym.loop import PolicyError, quiet_libraries, run_experiment
    from teachgym.resume import RUN_FILE

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
    resume = False
    for file in out.glob(f"*/{RUN_FILE}"):
        try:
            resume = resume or json.loads(file.read_text()).get("status") != "FINISHED"
        except (OSError, ValueError):
            continue
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
    row = {
        "status": "finished",
        "run_id": result.run_id,
        "output_dir": result.output_dir,
        "examples": [r.examples for r in result.rounds],
        "acc_mean": [r.mean_accuracy for r in result.rounds],
        "acc_min": [r.weakest[1] for r in result.rounds],
        "final_acc": result.final.accuracies,
        "wall_s": time.perf_counter() - start,
        "resumed": resume,
    }
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(row))
    os.replace(tmp, done)
    return {**row, "skipped": False}


@dataclass
class TrialResult:
    """How a trial ended, as the sweep saw it."""

    trial: Trial
    status: str  # finished, failed or interrupted
    row: dict[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> str | None:
        return self.row.get("error")

    def curve(self, experiment: str) -> Any:
        from teachgym.compare import RunCurve

        return RunCurve(experiment=experiment, run_id=self.row.get("run_id") or "", run_name=self.trial.name,
                        policy=self.trial.policy, seed=str(self.trial.seed), status="FINISHED",
                        examples=list(self.row["examples"]), acc_mean=list(self.row["acc_mean"]),
                        acc_min=list(self.row["acc_min"]), setting=self.trial.setting)


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns."""

    plan: SweepPlan
    results: list[TrialResult]
    sweep_id: str
    run_id: str | None
    tracking_uri: str | None
    summary: str
    interrupted: BaseException | None = None
    wall_s: float = 0.0

    @property
    def failed(self) -> list[TrialResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def finished(self) -> list[TrialResult]:
        return [r for r in self.results if r.status == "finished"]

    @property
    def exit_code(self) -> int:
        """0 when every trial finished; 1 when some failed; 128+signal when the sweep was stopped."""
        if self.interrupted is not None:
            return getattr(self.interrupted, "exit_code", 130)
        return 1 if len(self.finished) < len(self.results) else 0


# ----------------------------------------------------------------------------------------------- the sweep


def run_sweep(
    plan: SweepPlan,
    sequential: bool = False,
    on_event: Callable[..., None] | None = None,
) -> SweepResult:
    """Run every trial of ``plan`` not finished yet (on Ray, or one by one here), then compare them.

    Args:
        plan: From :func:`plan_sweep`.
        sequential: Run the trials one after another in this process (no Ray).
        on_event: Called as ``on_event(kind, **info)`` for ``start``, ``round``, ``end`` and ``status``
            (the CLI's live display; see :class:`Display`).

    Returns:
        Every trial's result (finished ones of earlier runs included), the sweep run and the summary.
        A stop (Ctrl-C, SIGTERM) is returned in ``interrupted``: running trials are stopped, saved and
        marked ``KILLED``, so that running the sweep again resumes them.

    Raises:
        SweepError: Another process is running this sweep, or its folder holds another base config.
        TrackingUnavailable: The tracking server does not answer.
    """
    from filelock import FileLock, Timeout

    from teachgym.interrupts import stop_on_signals
    from teachgym.tracking import prepare_store

    emit = on_event or (lambda kind, **info: None)
    plan.directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(plan.directory / "sweep.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise SweepError(f"sweep {plan.name!r} is already running (lock {plan.directory / 'sweep.lock'}); wait for it "
                         "or stop it first") from None
    start = time.perf_counter()
    try:
        meta = _sweep_meta(plan)
        ended = _read_trials(plan.directory)
        results: dict[str, TrialResult] = {}
        todo = []
        for t in plan.trials:
            row = ended.get(t.key)
            if row is not None and row.get("status") == "finished":
                results[t.key] = TrialResult(t, "finished", {**row, "skipped": True})
            else:
                todo.append(t)
        uri = _uri(plan.base) if plan.base.tracking.enabled else None
        concurrent = 1 if sequential else min(len(todo), _capacity(plan))
        interrupted: BaseException | None = None
        with contextlib.ExitStack() as stack:
            stack.enter_context(stop_on_signals())
            trial_uri = uri
            if uri and uri.startswith("sqlite:///") and concurrent > 1:
                prepare_store(uri, None)
                trial_uri = stack.enter_context(serve_store(uri))
                emit("status", message=f"MLflow server for {uri} at {trial_uri} (one writer for {concurrent} trials "
                     "at once)")
            run = None
            if trial_uri:
                for exp in dict.fromkeys(plan.experiments.values()):
                    prepare_store(trial_uri, exp)
                run = SweepRun(trial_uri, plan, meta)
                run.start(len(results), len(todo))
            emit("plan", total=len(plan.trials), done=len(results), todo=[t.name for t in todo],
                 rounds={t.key: plan.configs[t.key].loop.rounds for t in todo})

            def ended_(trial: Trial, row: dict[str, Any]) -> None:
                res = TrialResult(trial, row.get("status", "failed"), row)
                results[trial.key] = res
                _append_trial(plan.directory, trial, row)
                emit("end", trial=trial.name, key=trial.key, status=res.status, row=row)
                if run:
                    run.progress(results, len(plan.trials))

            configs = {t.key: _for_run(plan.configs[t.key], trial_uri, meta) for t in todo}
            try:
                if sequential:
                    _run_here(todo, configs, emit, ended_)
                elif todo:
                    _run_on_ray(plan, todo, configs, emit, ended_)
            except KeyboardInterrupt as e:  # Interrupted (a signal) or a plain Ctrl-C
                interrupted = e
            except BaseException:
                if run:
                    run.end("FAILED")
                raise
            summary = summarize(plan, [results[t.key] for t in plan.trials if t.key in results])
            _write_summary(plan, summary)
            if run:
                failed = any(r.status != "finished" for r in results.values()) or len(results) < len(plan.trials)
                run.finish(summary, "KILLED" if interrupted else "FAILED" if failed else "FINISHED")
        ordered = [results.get(t.key) or TrialResult(t, "interrupted", {"error": "not started"}) for t in plan.trials]
        return SweepResult(plan, ordered, meta["id"], run.run_id if run else None, uri,
                           summary["markdown"], interrupted, time.perf_counter() - start)
    finally:
        lock.release()


def _capacity(plan: SweepPlan) -> int:
    """Trials that can run at once on this machine (for the choice of a local MLflow server)."""
    opts = plan.options
    if opts.address:
        return opts.max_concurrent or 2  # a cluster: assume several (it needs an http store anyway)
    fit = max(1, int((os.cpu_count() or 1) // opts.cpus_per_trial))
    return min(fit, opts.max_concurrent or fit)


def _for_run(config: ExperimentConfig, uri: str | None, meta: Mapping[str, Any]) -> ExperimentConfig:
    """A trial's config as this run of the sweep starts it: this run's tracking URI, the sweep's id as a tag."""
    data = config.model_dump()
    if uri is not None:
        data["tracking"]["tracking_uri"] = uri
    data["tracking"]["tags"] = {**data["tracking"]["tags"], "teachgym.sweep": meta["id"],
                                "teachgym.sweep_name": meta["name"]}
    return ExperimentConfig.model_validate(data)


def _run_here(todo: list[Trial], configs: dict[str, ExperimentConfig], emit: Callable[..., None],
              ended: Callable[[Trial, dict[str, Any]], None]) -> None:
    from teachgym.interrupts import Interrupted

    for trial in todo:
        emit("start", trial=trial.name, key=trial.key)
        row = run_trial(configs[trial.key], report=lambda r, n, acc, k=trial.key: emit("round", key=k, round=r,
                                                                                       rounds=n, acc=acc))
        ended(trial, row)
        if row["status"] == "interrupted":  # the stop reached the trial: the sweep stops too
            raise Interrupted(row["signal"]) if row.get("signal") else KeyboardInterrupt()


def _ray_trial(config: dict[str, Any], key: str, queue: Any, cwd: str, threads: int | None) -> dict[str, Any]:
    """The Ray task: :func:`run_trial` with its rounds reported through a Ray queue."""

    def report(r: int, n: int, acc: float) -> None:
        with contextlib.suppress(Exception):  # the display is best effort; the trial goes on
            queue.put_nowait((key, r, n, acc))

    import ray

    row = run_trial(config, report=report, cwd=cwd, threads=threads)
    ctx = ray.get_runtime_context()
    return {**row, "node": ctx.get_node_id(), "worker_pid": os.getpid()}


def _run_on_ray(plan: SweepPlan, todo: list[Trial], configs: dict[str, ExperimentConfig], emit: Callable[..., None],
                ended: Callable[[Trial, dict[str, Any]], None]) -> None:
    try:
        import ray
        from ray.util.queue import Queue
    except ImportError:
        raise SweepError(INSTALL_HINT) from None
    opts = plan.options
    init: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if opts.address:
        init["address"] = opts.address
    else:  # a new local Ray ("local": never one a `ray start` left behind), a small object store (configs, curves)
        init.update(address="local", include_dashboard=False, object_store_memory=128 * 1024**2)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    ray.init(**init)
    try:
        resources = ray.cluster_resources()
        emit("status", message=f"Ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs, "
             f"{len(ray.nodes())} node(s); {opts.cpus_per_trial:g} CPU and {opts.gpus_per_trial:g} GPU per trial")
        if opts.cpus_per_trial > resources.get("CPU", 0) or opts.gpus_per_trial > resources.get("GPU", 0):
            raise SweepError(f"no node can run a trial: {opts.cpus_per_trial:g} CPU and {opts.gpus_per_trial:g} GPU "
                             f"per trial, the cluster has {resources.get('CPU', 0):g} CPUs and "
                             f"{resources.get('GPU', 0):g} GPUs (--cpus-per-trial, --gpus-per-trial)")
        limit = opts.max_concurrent
        if limit is None:  # what fits now: every trial submitted at once would show queued ones as running
            fit = [resources.get("CPU", 0) / opts.cpus_per_trial]
            if opts.gpus_per_trial:
                fit.append(resources.get("GPU", 0) / opts.gpus_per_trial)
            limit = max(1, int(min(fit)))
        queue = Queue(actor_options={"num_cpus": 0})
        task = ray.remote(_ray_trial)
        threads = max(1, int(opts.cpus_per_trial))
        pending, running = list(todo), {}
        try:
            while pending or running:
                while pending and len(running) < limit:
                    trial = pending.pop(0)
                    ref = task.options(num_cpus=opts.cpus_per_trial, num_gpus=opts.gpus_per_trial, max_retries=0,
                                       name=f"trial {trial.name}").remote(
                        configs[trial.key].model_dump(), trial.key, queue, os.getcwd(), threads)
                    running[ref] = trial
                    emit("start", trial=trial.name, key=trial.key)
                ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                _drain(queue, emit)
                for ref in ready:
                    ended(running.pop(ref), _get(ray, ref))
        except KeyboardInterrupt:
            with _no_second_interrupt(emit):
                emit("status", message=f"stopping {len(running)} running trial(s): each saves its last finished "
                     "round and marks its runs KILLED ...")
                for ref in running:
                    ray.cancel(ref)  # a running task gets SIGINT: teachgym's handler stops it at a safe point
                ready, _ = ray.wait(list(running), num_returns=len(running), timeout=120)
                for ref in ready:
                    ended(running.pop(ref), _get(ray, ref, cancelled=True))
                for trial in running.values():
                    ended(trial, {"status": "interrupted", "error": "did not stop within 120 s after the stop"})
            raise
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _no_second_interrupt(emit: Callable[..., None]) -> Iterator[None]:
    """While the trials stop, a second Ctrl-C (people press it twice) is acknowledged, not obeyed: obeyed, it
    would abandon trials half-way through saving, and their results with them. The stop is bounded (120 s)."""
    import signal

    def again(signum: int, frame: Any) -> None:
        emit("status", message="already stopping: waiting for the running trials to save (at most 120 s)")

    try:
        previous = signal.signal(signal.SIGINT, again)
    except ValueError:  # not the main thread: nothing to shield
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _get(ray: Any, ref: Any, cancelled: bool = False) -> dict[str, Any]:
    """A task's result; a task that never ran or whose worker died becomes a result too."""
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return {"status": "interrupted", "error": "stopped before it started"}
    except ray.exceptions.RayError as e:  # the worker died (out of memory, a crash, a lost node)
        if cancelled:
            return {"status": "interrupted", "error": f"stopped ({type(e).__name__})"}
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return {"status": "failed", "error": f"{type(e).__name__}: {first[:500]}", "traceback": str(e)}


def _drain(queue: Any, emit: Callable[..., None]) -> None:
    try:
        items = queue.get_nowait_batch(queue.qsize())
    except Exception:  # noqa: BLE001 - the display is best effort
        return
    for key, r, n, acc in items:
        emit("round", key=key, round=r, rounds=n, acc=acc)


# ----------------------------------------------------------------------------------------------- files


def _sweep_meta(plan: SweepPlan) -> dict[str, Any]:
    """``sweep.json``: created on the first run; a rerun must have the same base config."""
    from teachgym.resume import result_changes

    path = plan.directory / SWEEP_FILE
    base = plan.base.model_dump()
    if path.exists():
        meta = json.loads(path.read_text())
        differ, lines = result_changes(meta["base"], base)
        if differ:
            raise SweepError(
                f"sweep {plan.name!r} in {plan.directory} was started with another base config:\n{lines}\n"
                "its finished trials would not compare with new ones: give this sweep another name (--name), "
                f"or delete {plan.directory} to start it again"
            )
        return meta
    meta = {"name": plan.name, "id": f"{plan.name}-{uuid.uuid4().hex[:8]}", "source": plan.source, "base": base,
            "created": time.time(), "run_id": None}
    _write_json(path, meta)
    return meta


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _read_trials(directory: Path) -> dict[str, dict[str, Any]]:
    """The last line of each trial in ``trials.jsonl`` (a torn last line from a killed process is skipped)."""
    out = {}
    path = directory / TRIALS_FILE
    if path.exists():
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                row = json.loads(line)
                out[row["key"]] = row
    return out


def _append_trial(directory: Path, trial: Trial, row: Mapping[str, Any]) -> None:
    keep = {k: v for k, v in row.items() if k != "skipped"}
    with (directory / TRIALS_FILE).open("a") as f:
        f.write(json.dumps({"key": trial.key, "name": trial.name, **keep}, default=str) + "\n")


# ----------------------------------------------------------------------------------------------- the comparison


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


def _write_summary(plan: SweepPlan, summary: Mapping[str, Any]) -> None:
    from teachgym.compare import plot, render, render_paired

    d = plan.directory
    (d / "summary.md").write_text(summary["markdown"])
    if summary["curves"]:
        (d / "summary.csv").write_text(render(summary["grouped_rows"], "csv", 0.5, grouped=True))
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

        from teachgym.tracking import ensure_experiment

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
                "teachgym.kind": "sweep", "teachgym.sweep": self.meta["id"], "teachgym.sweep_name": plan.name,
                "mlflow.note.content": f"Sweep {plan.name}: the trials are the runs with tag teachgym.sweep = "
                f"'{self.meta['id']}'. The comparison appears here when it ends."})
            self.run_id = run.info.run_id
            self.meta["run_id"] = self.run_id
            _write_json(plan.directory / SWEEP_FILE, self.meta)
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


# ----------------------------------------------------------------------------------------------- the server


@contextlib.contextmanager
def serve_store(uri: str, timeout: float = 120.0) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 over a sqlite store for the duration of the block; yields its URL.

    Its artifacts keep going where the store's experiments say (the server does not proxy them), so
    the store reads the same afterwards with or without a server. The server runs in its own session,
    so that a Ctrl-C in the terminal reaches the trials, which still log their end to it.
    """
    import signal
    import socket
    import subprocess
    import tempfile

    from teachgym.tracking import server_reachable

    db = Path(uri.removeprefix("sqlite:///")).resolve()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
           "--default-artifact-root", str(Path("mlruns").resolve()), "--no-serve-artifacts",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    logf = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, text=True,
                            preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + timeout
        while not server_reachable(url, timeout=2.0):
            if proc.poll() is not None or time.monotonic() > deadline:
                logf.seek(0)
                raise SweepError(f"could not start `mlflow server` over {uri}:\n{logf.read()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        logf.close()


def _die_with_parent() -> None:
    """In the server's process before exec: SIGTERM it when the sweep dies, even by SIGKILL (Linux only)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# ----------------------------------------------------------------------------------------------- display


class Display:
    """The live view of a sweep on a terminal: a line per trial that starts or ends, and a status line.

    On a terminal the status line (done / running / failed, each running trial's round, ETA) is
    redrawn in place; elsewhere (a log file) it is printed at most every ``every`` seconds.
    """

    def __init__(self, stream: Any = None, every: float = 30.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every, self.last = every, 0.0
        self.total = self.done = self.failed = 0
        self.running: dict[str, list] = {}  # key -> [name, round, rounds]
        self.rounds: dict[str, int] = {}
        self.units_done, self.units_total, self.start = 0, 0, time.monotonic()
        self.names: dict[str, str] = {}

    def __call__(self, kind: str, **info: Any) -> None:
        getattr(self, f"on_{kind}")(**info)

    def _line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def on_status(self, message: str) -> None:
        self._line(message)

    def on_plan(self, total: int, done: int, todo: list[str], rounds: dict[str, int]) -> None:
        self.total, self.done, self.rounds = total, done, rounds
        self.units_total = sum(n + 1 for n in rounds.values())
        skipped = f"; {done} finished earlier (skipped)" if done else ""
        self._line(f"{total} trials: {len(todo)} to run{skipped}")

    def on_start(self, trial: str, key: str) -> None:
        self.running[key] = [trial, -1, self.rounds.get(key, 0)]
        self.names[key] = trial
        self._status(force=True)

    def on_round(self, key: str, round: int, rounds: int, acc: float) -> None:
        if key in self.running:
            before = self.running[key][1]
            self.running[key][1:] = [round, rounds]
            self.units_done += max(0, round - before)
        self._status()

    def on_end(self, trial: str, key: str, status: str, row: Mapping[str, Any]) -> None:
        name, r, n = self.running.pop(key, [trial, -1, self.rounds.get(key, 0)])
        self.units_done += max(0, n - r)
        if status == "finished":
            self.done += 1
            acc = row.get("acc_mean") or [math.nan]
            what = f"finished: acc/mean {acc[0]:.3f} -> {acc[-1]:.3f} ({row.get('wall_s', 0):.0f} s)"
        elif status == "failed":
            self.failed += 1
            what = f"FAILED: {row.get('error')}"
        else:
            what = f"interrupted ({row.get('error')})"
        self._line(f"{self._counts()} {trial} {what}")
        self._status(force=True)

    def _counts(self) -> str:
        return (f"[{self.done}/{self.total} done · {len(self.running)} running · {self.failed} failed"
                f"{self._eta()}]")

    def _eta(self) -> str:
        elapsed = time.monotonic() - self.start
        if self.units_done <= 0 or elapsed < 1:
            return ""
        left = max(0.0, self.units_total - self.units_done) * elapsed / self.units_done
        return f" · ETA {_duration(left)}"

    def _status(self, force: bool = False) -> None:
        """Redraw the status line (terminal), or print it every ``every`` seconds (log file)."""
        now = time.monotonic()
        if not self.running or (not force and now - self.last < (0.2 if self.tty else self.every)):
            return
        if not self.tty and force:
            return  # a start or end line was just printed; a log gets only the periodic status
        self.last = now
        cells = " ".join(f"{name} r{max(r, 0)}/{n}" for name, r, n in list(self.running.values())[:6])
        more = f" +{len(self.running) - 6}" if len(self.running) > 6 else ""
        text = f"{self._counts()} running: {cells}{more}"
        if self.tty:
            width = shutil.get_terminal_size((120, 20)).columns
            self.stream.write("\r\033[K" + text[: width - 1])
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


