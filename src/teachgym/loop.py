"""The closed loop: evaluate, let the teacher act, build the data, train, evaluate again, log.

It reads top to bottom on purpose; see DESIGN.md for the picture::

    obs = evaluate(student, env)                       # round 0: the untrained student
    for round in 1..R:
        action  = policy.act(obs)
        data    = engine.materialize(action, env, budget=examples_per_round)
        report  = student.train(data)
        obs     = evaluate(student, env)
        tracker.log_round(round, obs, action, data, report)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from teachgym.config import ConfigError, ExperimentConfig, build_component, flatten
from teachgym.state import policy_levels, restrict
from teachgym.types import (
    Action,
    HistoryEntry,
    Observation,
    ProbeResult,
    action_to_dict,
    rollout_metrics,
    validate_action,
    validate_probes,
)

log = logging.getLogger(__name__)


@dataclass
class RoundRecord:
    """One finished round, as the loop's caller sees it (round 0 is the untrained student)."""

    round: int
    mean_accuracy: float
    weakest: tuple[str, float]
    accuracies: dict[str, float]
    action: dict[str, Any] | None
    examples: int
    train_loss: float | None
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` returns."""

    rounds: list[RoundRecord]
    run_id: str | None
    tracking_uri: str | None
    output_dir: str

    @property
    def final(self) -> RoundRecord:
        """The last round."""
        return self.rounds[-1]


def quiet_libraries() -> None:
    """Quiet transformers, datasets and MLflow: the caller's own lines are the progress display."""
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # "View run at ..." per run ended
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")


def default_run_name(config: ExperimentConfig) -> str:
    """``<policy>-s<seed>``, with an import path shortened to its attribute."""
    policy = config.policy.name.rsplit(":", 1)[-1]
    return config.tracking.run_name or f"{policy}-s{config.loop.seed}"


@dataclass
class RunInfo:
    """Where an experiment lives, handed to ``on_start`` as soon as it is known (to print a resume hint)."""

    run_id: str | None
    output_dir: str
    resumed_from: int | None  # the round the experiment continues after; None for a fresh start
    stateless_policy: bool


def run_experiment(
    config: ExperimentConfig,
    on_round: Callable[[RoundRecord, int], None] | None = None,
    resume: str | bool = False,
    on_start: Callable[[RunInfo], None] | None = None,
) -> ExperimentResult:
    """Run one curriculum experiment end to end, or continue an interrupted one.

    Args:
        config: A validated experiment config.
        on_round: Called after each round with ``(record, rounds_total)`` (the CLI prints a line).
        resume: ``True``: continue the newest unfinished experiment with this config's experiment and
            run name; a run id (or output folder name): continue that one. The stored config is used;
            a config that differs in a key that changes results is refused (see :mod:`teachgym.resume`).
        on_start: Called once the run exists, before round 0 (or the first resumed round).

    Returns:
        Per-round records, the MLflow parent run id and where outputs went.

    Raises:
        ConfigError, RegistryError: Bad components or kwargs (before anything runs).
        ResumeError: Nothing to resume, or a changed config (before anything runs).
        TrackingUnavailable: The tracking server does not answer (before anything runs, or mid-run,
            after the round's state was saved).
        InvalidActionError: The teacher returned an action that cannot be trained on (before training).
        PolicyError: The teacher raised; the last finished round's state is kept for ``--resume``.
        Interrupted: SIGTERM/SIGINT/SIGHUP; the runs end ``KILLED``, the last finished round is kept.
    """
    from teachgym.engine import column, counts_suffice, materialize
    from teachgym.evaluation import evaluate
    from teachgym.interrupts import Interrupted, check, stop_on_signals
    from teachgym.protocols import check_plugin
    from teachgym.resume import (
        RoundState,
        RunDir,
        can_save_state,
        capture_rngs,
        experiment_name,
        find_run,
        is_stateless,
        resumed_config,
        this_process,
    )
    from teachgym.tracking import (
        MLflowTracker,
        RoundLog,
        TrackingUnavailable,
        prepare_store,
        resolve_tracking_uri,
        round_metrics,
        server_reachable,
        unreachable_message,
    )
    from teachgym.warm_start import warm_start

    env = build_component("envs", "env", config.env, seed=config.loop.seed)
    check_plugin("env", env, config.env.name)
    run_dir = None
    if resume:  # the stored config is the one that runs
        run_dir = find_run(config, env.name, default_run_name(config), None if resume is True else str(resume))
        config = resumed_config(run_dir.info["config"], config)
    loop = config.loop
    seed = loop.seed
    experiment = experiment_name(config, env.name)
    if config.tracking.enabled:  # an unreachable server is reported now, before any training
        prepare_store(resolve_tracking_uri(config.tracking.tracking_uri), experiment)
    student_config, warm = warm_start(config)  # a shared SFT warm start, trained once: the student starts from it
    student = build_component("students", "student", student_config, seed=seed, env=env,
                              examples_per_round=loop.examples_per_round)
    check_plugin("student", student, config.student.name)
    policy = build_component("policies", "policy", config.policy, seed=seed)
    check_plugin("policy", policy, config.policy.name)
    if loop.state not in policy_levels(policy):
        raise ConfigError(
            f"loop.state: policy {config.policy.name!r} works with the states {list(policy_levels(policy))}, not "
            f"{loop.state!r} (it reads what that state hides); policies that can: {_policies_for(loop.state)}"
        )
    synthesizer = None
    if config.synthesis is not None:
        from teachgym.synthesis import LLMSynthesizer

        synthesizer = LLMSynthesizer(config.synthesis)
    skills = [s.name for s in env.skills]
    eval_prompts = set(column(env.eval_set(), "prompt"))
    counts_only = counts_suffice(student, env, synthesizer)  # the fast path: rows per skill, no text
    skill_graph = {s.name: tuple(s.prerequisites) for s in env.skills}
    run_name = default_run_name(config)
    if run_dir is None:
        run_dir = RunDir.create(Path(loop.output_dir) / f"{run_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if not can_save_state(student):
        log.warning("student %r has no save_state/load_state: this experiment cannot be resumed", config.student.name)
    saved = run_dir.load(student, policy, synthesizer) if resume else None  # student, policy, RNGs restored
    out_dir = run_dir.path

    tracker = None
    process = this_process()
    if config.tracking.enabled:
        tracker = MLflowTracker(
            tracking_uri=config.tracking.tracking_uri,
            experiment=experiment,
            run_name=run_name,
            tags={
                "teachgym.policy": config.policy.name,
                "teachgym.env": config.env.name,
                "teachgym.student": config.student.name,
                "teachgym.seed": str(seed),
                "teachgym.output_dir": os.path.abspath(out_dir),
                "teachgym.host": process["host"],
                "teachgym.pid": str(process["pid"]),
                "teachgym.pid_start": str(process["pid_start"]),
                **(warm.tags if warm else {}),
                **config.tracking.tags,
            },
            params=flatten(config.model_dump()),
            config_yaml=yaml.safe_dump(config.model_dump(), sort_keys=False),
            log_predictions=config.tracking.log_predictions,
            active_rounds=not counts_only,  # the fast path's student logs nothing into a round's run
        )

    def save(state: RoundState) -> None:
        if tracker:  # this round's log and any earlier one still being written: --resume re-logs what is missing
            state.pending_log = tracker.unconfirmed(state.pending_log)
        state.rng = capture_rngs()
        run_dir.save(state, student, keep=config.tracking.checkpoints)
        if tracker:
            tracker.check()  # a write that failed in the background (the server is gone): stop, the round is saved

    records: list[RoundRecord] = []
    status = "FAILED"
    try:
        with stop_on_signals():
            if tracker:
                tracker.start(run_id=run_dir.run_id if resume else None)
            started = run_dir.info.get("started") if resume else time.time()
            run_dir.write_info({"run_id": tracker.parent_id if tracker else None, "experiment": experiment,
                                "run_name": run_name, "tracking_uri": tracker.uri if tracker else None,
                                "config": config.model_dump(), "status": "RUNNING", "started": started, **process})
            if on_start:
                on_start(RunInfo(run_dir.run_id, os.fspath(out_dir), saved.round if saved else None,
                                 is_stateless(policy)))
            if saved is None:
                # Round 0: the untrained student.
                t0 = time.perf_counter()
                with tracker.round(0) if tracker else nullcontext():
                    result = evaluate(student, env, None, loop.max_new_tokens, loop.eval_batch_size,
                                      loop.num_failures)
                    metrics = round_metrics(result, None, None, 0, skills)
                    records.append(_record(0, result, None, 0, None, time.perf_counter() - t0, metrics))
                    history = [HistoryEntry(0, result.profile, None)]
                    used = 0
                    entry = RoundLog(0, result, metrics)
                    save(RoundState(0, used, records, history, result, _policy_state(policy), None,
                                    None, pending_log=entry))
                    if tracker:
                        tracker.log(entry)
            else:  # resumed: continue after the last round that was saved whole
                records, history, result, used = saved.records, saved.history, saved.result, saved.used
                if tracker:
                    tracker.restore_best(records, saved.tracker_best)
                    tracker.relog(saved.pending_log)  # what the store missed when the last process stopped
            if tracker and config.tracking.plots:
                tracker.log_plots(records, skills)
            if on_round:
                for record in records:
                    on_round(record, loop.rounds)

            for r in range(len(records), loop.rounds + 1):
                check()  # a stop signal whose exception Python dropped (see teachgym.interrupts.check)
                t0 = time.perf_counter()
                obs = Observation(
                    round=r,
                    rounds_total=loop.rounds,
                    examples_per_round=loop.examples_per_round,
                    budget_used=used,
                    budget_left=(loop.rounds - r + 1) * loop.examples_per_round,
                    skills=tuple(env.skills),
                    profile=result.profile,
                    failures=tuple(result.failures),
                    history=tuple(history),
                    skill_graph=skill_graph,
                    rollouts=history[-1].rollouts or {},
                )
                obs = restrict(obs, loop.state, result.subskills)  # what this teacher may see
                with tracker.round(r) if tracker else nullcontext():
                    # Aioli-style policies first probe the student; probe rows come out of this round's budget.
                    obs, probed, probe_rows, probe_results = _run_probes(
                        policy, obs, student, env, tracker, seed * 100_003 + r, eval_prompts, loop.eval_batch_size,
                        config.policy.name,
                    )
                    action: Action = _act(policy, obs, config.policy.name)
                    validate_action(action, env.skills)  # garbage is caught here, before any training
                    explained = _explain(policy)  # an optional policy.explain(): its own metrics and details
                    budget = loop.examples_per_round - probed
                    data, report = materialize(
                        action, env, budget, seed * 100_003 + r, eval_prompts, synthesizer, obs.failures, counts_only
                    )
                    if probed:  # the round's composition includes what the probes trained on
                        report.examples = {s: n + probe_rows.get(s, 0) for s, n in report.examples.items()}
                        report.sources["probe"] = probed
                    train = student.train(data)
                    check()
                    used += len(data) + probed
                    result = evaluate(
                        student, env, result.profile, loop.max_new_tokens, loop.eval_batch_size, loop.num_failures,
                        result.subskills,
                    )
                    metrics = round_metrics(result, action, report, used, skills)
                    metrics.update(rollout_metrics(train))  # an RL student's per-skill rollout statistics
                    if probed:
                        metrics["data/probe_examples"] = float(probed)
                    metrics.update(explained.get("metrics", {}))
                    history.append(HistoryEntry(r, result.profile, action, train.rollouts or None))
                    records.append(
                        _record(r, result, action, used, train.train_loss, time.perf_counter() - t0, metrics)
                    )
                    entry = RoundLog(r, result, metrics, action, report, train, data, probe_results,
                                     explained.get("details"))
                    # The round is safe on disk before MLflow hears of it; a lost server loses nothing.
                    save(RoundState(r, used, records, history, result, _policy_state(policy),
                                    sorted(synthesizer.seen) if synthesizer else None,
                                    tracker.best if tracker else None, pending_log=entry))
                    if tracker:
                        tracker.log(entry)
                if tracker and config.tracking.plots:
                    tracker.log_plots(records, skills)
                if tracker and config.tracking.checkpoints != "none":  # logged from the parent run
                    tracker.log_checkpoint(student, r, metrics, config.tracking.checkpoints, {
                        "env": config.env.model_dump(), "student": config.student.model_dump(),
                        "max_new_tokens": loop.max_new_tokens})
                if on_round:
                    on_round(records[-1], loop.rounds)

            check()
            if tracker:
                tracker.flush()  # the last round's logging and plots, before the run can say FINISHED
            if loop.save_student:
                out_dir.mkdir(parents=True, exist_ok=True)
                student.save(str(out_dir / "student"))
                if not is_stateless(policy):
                    (out_dir / "policy_state.json").write_text(json.dumps(policy.state_dict(), default=_jsonable))
        status = "FINISHED"
    except Interrupted:
        status = "KILLED"
        raise
    except Exception as e:
        if tracker and not server_reachable(tracker.uri):
            raise TrackingUnavailable(
                f"{unreachable_message(tracker.uri)}. The experiment stopped; every finished round is saved in "
                f"{str(out_dir)!r} and --resume re-logs what the server missed"
            ) from e
        raise
    finally:
        if tracker:
            tracker.finish(status)
        if (run_dir.path / "run.json").exists():
            run_dir.update_info(status=status, ended=time.time())
    return ExperimentResult(
        rounds=records,
        run_id=tracker.parent_id if tracker else None,
        tracking_uri=tracker.uri if tracker else None,
        output_dir=os.fspath(out_dir),
    )


class PolicyError(RuntimeError):
    """The teacher policy raised an exception (a bug in the policy, not in teachgym)."""


def _act(policy: Any, obs: Observation, name: str) -> Action:
    """``policy.act(obs)``; an exception inside it becomes a :class:`PolicyError` that names the policy and round."""
    try:
        return policy.act(obs)
    except Exception as e:
        raise PolicyError(f"policy {name!r} raised {type(e).__name__} in act() at round {obs.round}: {e}") from e


def _explain(policy: Any) -> dict[str, Any]:
    """What a policy with an ``explain()`` method says about its last decision (``metrics``, ``details``)."""
    if not callable(getattr(policy, "explain", None)):
        return {}
    out = policy.explain() or {}
    metrics = {str(k): float(v) for k, v in (out.get("metrics") or {}).items()}
    return {"metrics": metrics, "details": out.get("details")}


def _policy_state(policy: Any) -> Any:
    """The policy's ``state_dict()`` deep-copied (None for a stateless policy)."""
    import copy

    from teachgym.resume import is_stateless

    return None if is_stateless(policy) else copy.deepcopy(policy.state_dict())


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays in a policy's state, as JSON."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _policies_for(state: str) -> list[str]:
    """Built-in policies that declare they can act on ``state``."""
    from teachgym.registry import BUILTINS, resolve

    ok = []
    for name in BUILTINS["policies"]:
        try:
            if state in policy_levels(resolve("policies", name)):
                ok.append(name)
        except Exception:  # noqa: BLE001 - an optional dependency missing: skip that policy
            continue
    return ok


def _run_probes(policy, obs, student, env, tracker, seed, eval_prompts, batch_size, name="policy"):
    """Run the probes a policy asks for (if any); return the observation with their results.

    Each probe really trains the student on its mixture; the per-skill eval loss is measured before
    and after, so the policy can estimate how training on one skill moves every skill's loss.
    """
    from teachgym.engine import materialize
    from teachgym.evaluation import loss_profile
    from teachgym.tracking import teacher_weights

    try:
        plan = policy.probes(obs) if callable(getattr(policy, "probes", None)) else []
    except Exception as e:
        raise PolicyError(f"policy {name!r} raised {type(e).__name__} in probes() at round {obs.round}: {e}") from e
    validate_probes(plan, env.skills, obs.examples_per_round)
    results: list[ProbeResult] = []
    rows: Counter[str] = Counter()
    before = {s: stats.loss for s, stats in obs.profile.items()}
    for k, probe in enumerate(plan):
        data, report = materialize(probe.mixture, env, probe.n, seed * 101 + k + 1, eval_prompts)
        with tracker.probe(obs.round, k) if tracker else nullcontext():
            student.train(data)
        after = loss_profile(student, env, batch_size)
        results.append(ProbeResult(teacher_weights(probe.mixture), probe.n, before, after))
        rows.update(report.examples)
        before = after
    probed = sum(p.n for p in plan)
    if probed:
        obs = dataclasses.replace(
            obs, probes=tuple(results), budget_used=obs.budget_used + probed, budget_left=obs.budget_left - probed
        )
    return obs, probed, rows, results


def _record(r, result, action, used, train_loss, seconds, metrics) -> RoundRecord:
    return RoundRecord(
        round=r,
        mean_accuracy=result.mean_accuracy,
        weakest=result.weakest,
        accuracies={k: v.accuracy for k, v in result.profile.items()},
        action=action_to_dict(action),
        examples=used,
        train_loss=train_loss,
        seconds=seconds,
        metrics=metrics,
    )
