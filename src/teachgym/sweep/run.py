"""Running a sweep: every trial not finished yet, as Ray tasks (or one by one here), then the comparison.

Why plain Ray tasks and not Ray Tune, and what a sweep keeps on disk: see :mod:`teachgym.sweep`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teachgym.config import ExperimentConfig
from teachgym.config_diff import result_changes
from teachgym.interrupts import Interrupted, stop_on_signals
from teachgym.runner import run_trial
from teachgym.sweep.plan import (
    SWEEP_FILE,
    TRIALS_FILE,
    SweepError,
    SweepPlan,
    Trial,
    TrialResult,
    store_uri,
    write_json,
)
from teachgym.sweep.report import SweepReport, summarize, write_summary
from teachgym.tracking.schema import TAG_SWEEP, TAG_SWEEP_NAME
from teachgym.tracking.store import prepare_store, serve_store

log = logging.getLogger(__name__)

INSTALL_HINT = "teachgym sweep runs trials on Ray: pip install 'teachgym[sweep]' (or run them one by one: --sequential)"


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


def _lock(plan: SweepPlan) -> Any:
    """The sweep folder's lock, held by this process (one process runs a sweep at a time)."""
    from filelock import FileLock, Timeout

    plan.directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(plan.directory / "sweep.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise SweepError(f"sweep {plan.name!r} is already running (lock {plan.directory / 'sweep.lock'}); wait for it "
                         "or stop it first") from None
    return lock


def _done_and_todo(plan: SweepPlan) -> tuple[dict[str, TrialResult], list[Trial]]:
    """The trials an earlier run of the sweep finished (kept as they are), and the ones to run."""
    ended = _read_trials(plan.directory)
    results: dict[str, TrialResult] = {}
    todo = []
    for t in plan.trials:
        row = ended.get(t.key)
        if row is not None and row.get("status") == "finished":
            results[t.key] = TrialResult(t, "finished", {**row, "skipped": True})
        else:
            todo.append(t)
    return results, todo


def _one_writer(stack: contextlib.ExitStack, uri: str | None, concurrent: int, emit: Callable[..., None]
                ) -> str | None:
    """The URI the trials log to: with a sqlite store and several trials at once, a local ``mlflow server`` over
    it for the sweep's duration (one process writes the file)."""
    if not (uri and uri.startswith("sqlite:///") and concurrent > 1):
        return uri
    prepare_store(uri, None)
    trial_uri = stack.enter_context(serve_store(uri))
    emit("status", message=f"MLflow server for {uri} at {trial_uri} (one writer for {concurrent} trials at once)")
    return trial_uri


def run_sweep(
    plan: SweepPlan,
    sequential: bool = False,
    on_event: Callable[..., None] | None = None,
    plot: bool = True,
) -> SweepResult:
    """Run every trial of ``plan`` not finished yet (on Ray, or one by one here), then compare them.

    Args:
        plan: From :func:`plan_sweep`.
        sequential: Run the trials one after another in this process (no Ray).
        on_event: Called as ``on_event(kind, **info)`` for ``start``, ``round``, ``end`` and ``status``
            (the CLI's live display; see :class:`Display`).
        plot: Draw the sweep's ``curves.png`` (the bench, which draws its own report, runs many small
            sweeps and skips it).

    Returns:
        Every trial's result (finished ones of earlier runs included), the sweep run and the summary.
        A stop (Ctrl-C, SIGTERM) is returned in ``interrupted``: running trials are stopped, saved and
        marked ``KILLED``, so that running the sweep again resumes them.

    Raises:
        SweepError: Another process is running this sweep, or its folder holds another base config.
        TrackingUnavailable: The tracking server does not answer.
    """
    emit = on_event or (lambda kind, **info: None)
    lock = _lock(plan)
    start = time.perf_counter()
    try:
        meta = _sweep_meta(plan)
        results, todo = _done_and_todo(plan)
        uri = (plan.uri or store_uri(plan.base)) if plan.base.tracking.enabled else None
        concurrent = 1 if sequential else min(len(todo), _capacity(plan))
        interrupted: BaseException | None = None
        with contextlib.ExitStack() as stack:
            stack.enter_context(stop_on_signals())
            trial_uri = _one_writer(stack, uri, concurrent, emit)
            run = None
            if trial_uri:
                for exp in dict.fromkeys(plan.experiments.values()):
                    prepare_store(trial_uri, exp)
                run = SweepReport(trial_uri, plan, meta)
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
            write_summary(plan, summary, plot)
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
    data["tracking"]["tags"] = {**data["tracking"]["tags"], TAG_SWEEP: meta["id"], TAG_SWEEP_NAME: meta["name"]}
    return ExperimentConfig.model_validate(data)


def _run_here(todo: list[Trial], configs: dict[str, ExperimentConfig], emit: Callable[..., None],
              ended: Callable[[Trial, dict[str, Any]], None]) -> None:
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


def _sweep_meta(plan: SweepPlan) -> dict[str, Any]:
    """``sweep.json``: created on the first run; a rerun must have the same base config."""

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
    write_json(path, meta)
    return meta


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
