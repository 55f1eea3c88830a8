"""The closed loop: evaluate, let the teacher act, build the data, train, evaluate again, log.

:func:`run_experiment` reads like the design (``docs/architecture.md``)::

    obs = evaluate(student, env)                       # round 0: the untrained student
    for round in 1..R:
        action  = policy.act(obs)
        data    = engine.materialize(action, env, budget=examples_per_round)
        report  = student.train(data)                  # teach_every=step: policy.step picks each batch
        obs     = evaluate(student, env)
        tracker.log_round(round, obs, action, data, report)

One round is :func:`play_round`; what it produced is one :class:`~teachgym.rounds.Round`, which the
tracker logs and whose light :class:`~teachgym.rounds.RoundRecord` the caller sees. The loop carries a
:class:`~teachgym.rounds.RoundState` from round to round and saves it at each round's end, so that
``--resume`` continues exactly. The tracker is a :class:`~teachgym.protocols.CompleteTracker`: MLflow, or a
:class:`~teachgym.tracking.null.NullTracker` that does nothing, so the loop never asks which.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from teachgym import progress
from teachgym.checks import check_plugin
from teachgym.config import ConfigError, ExperimentConfig, build_component, flatten
from teachgym.config_diff import resumed_config
from teachgym.distributed import Team, team
from teachgym.engine import counts_suffice, materialize
from teachgym.evaluation import evaluate
from teachgym.fit import check_fit
from teachgym.interrupts import Interrupted, check, stop_on_signals
from teachgym.liveness import this_process
from teachgym.neutral import neutral_view
from teachgym.probing import run_probes
from teachgym.protocols import CompleteTracker, Explains, Stateful
from teachgym.resume import RunDir, can_save_state, find_run
from teachgym.rng import capture_rngs
from teachgym.rounds import Round, RoundRecord, RoundState
from teachgym.rows import column
from teachgym.seeds import round_seed
from teachgym.state import policies_for, policy_levels, restrict
from teachgym.steps import check_step_setup, train_round
from teachgym.synthesis import LLMSynthesizer
from teachgym.tracking import schema
from teachgym.tracking.null import NullTracker, complete
from teachgym.tracking.schema import PROBE_EXAMPLES, experiment_name, round_metrics
from teachgym.tracking.store import TrackingUnavailable, prepare_store, resolve_tracking_uri, unreachable_message
from teachgym.types import (
    Action,
    Observation,
    PolicyError,
    rollout_metrics,
    validate_action,
)
from teachgym.vllm_eval import VLLMAnswers
from teachgym.warm_start import warm_start

log = logging.getLogger(__name__)

__all__ = ["ExperimentResult", "PolicyError", "RoundRecord", "RunInfo", "default_run_name", "play_round",
           "run_experiment"]


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


@dataclass
class RunInfo:
    """Where an experiment lives, handed to ``on_start`` as soon as it is known (to print a resume hint)."""

    run_id: str | None
    output_dir: str
    resumed_from: int | None  # the round the experiment continues after; None for a fresh start
    stateless_policy: bool
    skipped: list[str] = field(default_factory=list)  # damaged round states passed over, with what was wrong


@dataclass
class Experiment:
    """The parts one experiment is played with, built once by :func:`assemble`."""

    config: ExperimentConfig
    env: Any
    student: Any
    policy: Any
    synthesizer: Any  # the LLM data engine, or None
    tracker: CompleteTracker
    run_dir: RunDir
    eval_prompts: set[str]
    counts_only: bool  # the fast path: the student learns from rows per skill, no text is built
    process: dict[str, Any]
    team: Team  # several processes (accelerate): process 0 decides, saves and logs; see teachgym.distributed
    generate: Callable[..., list[str]] | None = None  # eval.backend=vllm: a vLLM engine answers the eval prompts

    @property
    def skills(self) -> list[str]:
        return [s.name for s in self.env.skills]


def default_run_name(config: ExperimentConfig) -> str:
    """``<policy>-s<seed>``, with an import path shortened to its attribute."""
    policy = config.policy.name.rsplit(":", 1)[-1]
    return config.tracking.run_name or f"{policy}-s{config.loop.seed}"


def run_experiment(
    config: ExperimentConfig,
    on_round: Callable[[RoundRecord, int], None] | None = None,
    resume: str | bool = False,
    on_start: Callable[[RunInfo], None] | None = None,
    trust_old_state: bool = False,
) -> ExperimentResult:
    """Run one curriculum experiment end to end, or continue an interrupted one.

    Args:
        config: A validated experiment config.
        on_round: Called after each round with ``(record, rounds_total)`` (the CLI prints a line).
        resume: ``True``: continue the newest unfinished experiment with this config's experiment and
            run name; a run id (or output folder name): continue that one. The stored config is used;
            a config that differs in a key that changes results is refused (see :mod:`teachgym.resume`).
        on_start: Called once the run exists, before round 0 (or the first resumed round).
        trust_old_state: Read a round state written by an older teachgym (a pickle) once, and rewrite it.

    Raises:
        ConfigError, RegistryError, ResumeError: Bad components, nothing to resume, a changed config (before
            anything runs). InvalidActionError: the teacher's action cannot be trained on (before training).
        TrackingUnavailable: The tracking server does not answer (before anything runs, or mid-run, after the
            round's state was saved). PolicyError: the teacher raised; the last finished round is kept.
        Interrupted: SIGTERM/SIGINT/SIGHUP; the runs end ``KILLED``, the last finished round is kept.
    """
    crew = team()  # with accelerate, this process's place; process 0 alone reports to the caller
    on_round, on_start = (on_round, on_start) if crew.main else (None, None)
    config, env, run_dir, uri = _prepare(config, resume, crew)
    exp = assemble(config, env, run_dir, uri)
    saved = exp.run_dir.load(exp.student, exp.policy, exp.synthesizer, trust_old_state) if resume else None
    rounds, status = config.loop.rounds, "FAILED"
    try:
        with stop_on_signals():
            exp.tracker.start(run_id=exp.run_dir.run_id if resume else None)
            crew.on_main(_write_run_info, exp, started=exp.run_dir.info.get("started") if resume else time.time())
            if on_start:
                on_start(RunInfo(exp.run_dir.run_id, os.fspath(exp.run_dir.path), saved.round if saved else None,
                                 not isinstance(exp.policy, Stateful), list(exp.run_dir.skipped)))
            state = play_round_zero(exp) if saved is None else _continue(exp, saved)
            exp.tracker.log_plots(state.records)
            for record in state.records if on_round else ():
                on_round(record, rounds)
            for r in range(len(state.records), rounds + 1):
                check()  # a stop signal whose exception Python dropped (see teachgym.interrupts.check)
                state = play_round(exp, state, r)
                exp.tracker.log_plots(state.records)
                exp.tracker.log_checkpoint(exp.student, r, state.records[-1].metrics)
                if on_round:
                    on_round(state.records[-1], rounds)
            check()
            exp.tracker.flush()  # the last round's logging and plots, before the run can say FINISHED
            crew.on_main(_save_outputs, exp)
        status = "FINISHED"
    except Interrupted:
        status = "KILLED"
        raise
    except Exception as e:
        stop = _pending_stop()  # with accelerate, the stop can surface first as a peer that left a collective
        if stop is not None:
            status = "KILLED"
            raise stop from e
        if not exp.tracker.reachable():
            raise TrackingUnavailable(
                f"{unreachable_message(exp.tracker.uri)}. The experiment stopped; every finished round is saved in "
                f"{str(exp.run_dir.path)!r} and --resume re-logs what the server missed"
            ) from e
        raise
    finally:
        exp.tracker.finish(status)
        if crew.main and (exp.run_dir.path / "run.json").exists():
            exp.run_dir.update_info(status=status, ended=time.time())
    return ExperimentResult(state.records, exp.tracker.parent_id, exp.tracker.uri, os.fspath(exp.run_dir.path))


def _prepare(config: ExperimentConfig, resume: str | bool, crew: Team
             ) -> tuple[ExperimentConfig, Any, RunDir | None, str | None]:
    """The config that runs (the stored one, when resuming), the env, the run folder to continue (or None) and
    the tracking URI, resolved here once for the whole experiment (None when tracking is off).

    An unreachable tracking server is reported here, before anything trains.
    """
    env = build_component("envs", "env", config.env, seed=config.loop.seed)
    check_plugin("env", env, config.env.name)
    run_dir = None
    if resume:  # the stored config is the one that runs; process 0 finds it (a new folder could appear meanwhile)
        run_dir = crew.on_main(find_run, config, env.name, default_run_name(config),
                               None if resume is True else str(resume))
        config = resumed_config(run_dir.info["config"], config)
    uri = resolve_tracking_uri(config.tracking.tracking_uri) if config.tracking.enabled else None
    if uri is not None:
        crew.on_main(prepare_store, uri, experiment_name(config, env.name))
    return config, env, run_dir, uri


def play_round_zero(exp: Experiment) -> RoundState:
    """Round 0: evaluate the untrained student, save and log it."""
    loop, t0 = exp.config.loop, time.perf_counter()
    with exp.tracker.round(0), progress.scope(f"round 0/{loop.rounds}"):
        result = evaluate(exp.student, exp.env, None, loop.max_new_tokens, loop.eval_batch_size, loop.num_failures,
                          generate=exp.generate)
        done = Round(0, result, round_metrics(result, None, None, 0, exp.skills), seconds=time.perf_counter() - t0)
        state = RoundState(0, 0, [done.record()], [done.history_entry()], result, _policy_state(exp.policy),
                           None, None, pending_log=done)
        _save(exp, state)
        exp.tracker.log(done)
    return state


def play_round(exp: Experiment, state: RoundState, r: int) -> RoundState:
    """Round ``r``: the teacher acts on what it may see, the engine builds the data, the student trains, is
    evaluated, and the round is saved (before MLflow hears of it: a lost server loses nothing) and logged."""
    config, env, student, policy = exp.config, exp.env, exp.student, exp.policy
    loop, seed, t0 = config.loop, round_seed(config.loop.seed, r), time.perf_counter()
    obs = restrict(_observe(exp, state, r), loop.state, state.result.subskills)  # what this teacher may see
    with exp.tracker.round(r), progress.scope(f"round {r}/{loop.rounds}"):
        # Aioli-style policies first probe the student; probe rows come out of this round's budget.
        obs, probed, probe_rows, probe_results = run_probes(exp, obs, seed)
        # The teacher acts, and the engine builds the data, in process 0; every process gets both.
        action: Action = exp.team.on_main(_act, policy, obs, config.policy.name)
        validate_action(action, env.skills)  # garbage is caught here, before any training
        explained = exp.team.on_main(_explain, policy)  # an optional policy.explain(): its metrics and details
        data, report = exp.team.on_main(materialize, action, env, loop.examples_per_round - probed, seed,
                                        exp.eval_prompts, exp.synthesizer, obs.failures, exp.counts_only)
        if probed:  # the round's composition includes what the probes trained on
            report.examples = {s: n + probe_rows.get(s, 0) for s, n in report.examples.items()}
            report.sources["probe"] = probed
        # With loop.teach_every=step (or online filtering) the student draws batch by batch (teachgym.steps).
        train, data = train_round(student, policy, data, report, loop, env, r, seed, exp.eval_prompts,
                                  config.policy.name)
        check()
        used = state.used + len(data) + probed
        result = evaluate(student, env, state.result.profile, loop.max_new_tokens, loop.eval_batch_size,
                          loop.num_failures, state.result.subskills, exp.generate)
        metrics = round_metrics(result, action, report, used, exp.skills)
        metrics.update(rollout_metrics(train))  # an RL student's per-skill rollout statistics
        if probed:
            metrics[PROBE_EXAMPLES] = float(probed)
        metrics.update(explained.get("metrics", {}))
        done = Round(r, result, metrics, action, report, train, data, probe_results, explained.get("details"),
                     used, time.perf_counter() - t0)
        state = RoundState(r, used, [*state.records, done.record()], [*state.history, done.history_entry()],
                           result, _policy_state(policy), sorted(exp.synthesizer.seen) if exp.synthesizer else None,
                           exp.tracker.best, pending_log=done)
        _save(exp, state)
        exp.tracker.log(done)
    return state


def assemble(config: ExperimentConfig, env: Any, run_dir: RunDir | None, uri: str | None = None) -> Experiment:
    """Build the student (after a shared warm start, if configured), the teacher, the data engine and the tracker.

    Every component is checked as it is built, so a wrong plugin fails here, before anything trains.
    """
    loop = config.loop
    student_config, warm = warm_start(config, run_experiment)  # trained once: the student starts from it
    student = build_component("students", "student", student_config, seed=loop.seed, env=env,
                              examples_per_round=loop.examples_per_round)
    check_plugin("student", student, config.student.name)
    check_fit(env, student, loop.max_new_tokens)  # questions and answers that cannot fit stop here, by skill
    generate = None
    if config.eval.backend == "vllm":  # refused here, before any folder or run exists, without vLLM and a GPU
        generate = VLLMAnswers(student, config.eval.vllm).generate
    policy = build_component("policies", "policy", config.policy, seed=loop.seed)
    check_plugin("policy", policy, config.policy.name)
    if loop.state not in policy_levels(policy):
        raise ConfigError(
            f"loop.state: policy {config.policy.name!r} works with the states {list(policy_levels(policy))}, not "
            f"{loop.state!r} (it reads what that state hides); policies that can: {policies_for(loop.state)}"
        )
    check_step_setup(loop, policy, student, config.policy.name, config.student.name, team().size)
    if loop.skill_names == "neutral":  # the teacher reads no structure from names (the env and logs keep them)
        policy = neutral_view(policy, env.skills, loop.seed)
    synthesizer = None
    if config.synthesis is not None:
        synthesizer = LLMSynthesizer(config.synthesis)
    eval_prompts = set(column(env.eval_set(), "prompt"))
    counts_only = counts_suffice(student, env, synthesizer)
    run_name = default_run_name(config)
    crew = team()
    if run_dir is None:  # process 0 names the folder (its clock decides the name); the others use it
        run_dir = crew.on_main(RunDir.create, Path(loop.output_dir) / f"{run_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if not can_save_state(student):
        log.warning("student %r has no save_state/load_state: this experiment cannot be resumed", config.student.name)
    process = this_process()
    tracker: CompleteTracker = NullTracker()
    if config.tracking.enabled and crew.main:  # one set of MLflow runs, however many processes train
        tracker = complete(_mlflow_tracker(config, env, run_name, run_dir, process, warm.tags if warm else {},
                                           counts_only, uri or resolve_tracking_uri(config.tracking.tracking_uri)))
    return Experiment(config, env, student, policy, synthesizer, tracker, run_dir, eval_prompts, counts_only, process,
                      crew, generate)


def _mlflow_tracker(config: ExperimentConfig, env: Any, run_name: str, run_dir: RunDir, process: dict[str, Any],
                    warm_tags: dict[str, str], counts_only: bool, uri: str) -> CompleteTracker:
    # Imported only when tracking is on: the writer brings MLflow's client, plots and the pyfunc model.
    from teachgym.tracking.writer import MLflowTracker

    return MLflowTracker(
        tracking_uri=uri,
        experiment=experiment_name(config, env.name),
        run_name=run_name,
        tags={
            schema.TAG_POLICY: config.policy.name,
            schema.TAG_ENV: config.env.name,
            schema.TAG_STUDENT: config.student.name,
            schema.TAG_SEED: str(config.loop.seed),
            schema.TAG_OUTPUT_DIR: os.path.abspath(run_dir.path),
            schema.TAG_HOST: process["host"],
            schema.TAG_PID: str(process["pid"]),
            schema.TAG_PID_START: str(process["pid_start"]),
            **warm_tags,
            **config.tracking.tags,
        },
        params=flatten(config.model_dump()),
        config_yaml=yaml.safe_dump(config.model_dump(), sort_keys=False),
        log_predictions=config.tracking.log_predictions,
        active_rounds=not counts_only,  # the fast path's student logs nothing into a round's run
        skills=[s.name for s in env.skills],
        plots=config.tracking.plots,
        checkpoints=config.tracking.checkpoints,
        model_config={"env": config.env.model_dump(), "student": config.student.model_dump(),
                      "max_new_tokens": config.loop.max_new_tokens},
    )


def _observe(exp: Experiment, state: RoundState, r: int) -> Observation:
    """What the teacher is shown before round ``r`` (before :func:`teachgym.state.restrict` hides any of it)."""
    loop = exp.config.loop
    return Observation(
        round=r,
        rounds_total=loop.rounds,
        examples_per_round=loop.examples_per_round,
        budget_used=state.used,
        budget_left=(loop.rounds - r + 1) * loop.examples_per_round,
        skills=tuple(exp.env.skills),
        profile=state.result.profile,
        failures=tuple(state.result.failures),
        history=tuple(state.history),
        skill_graph={s.name: tuple(s.prerequisites) for s in exp.env.skills},
        rollouts=state.history[-1].rollouts or {},
    )


def _continue(exp: Experiment, saved: RoundState) -> RoundState:
    """A resumed experiment goes on after the last round saved whole; the store gets what it missed."""
    exp.tracker.restore_best(saved.records, saved.tracker_best)
    exp.tracker.rerun_after(saved.round)  # rounds past it (a damaged newer state) run again
    exp.tracker.relog(saved.pending_log)  # what the store missed when the last process stopped
    return saved


def _save(exp: Experiment, state: RoundState) -> None:
    """The round's state on disk, with the rounds the store has not confirmed yet (``--resume`` re-logs them)."""
    state.pending_log = exp.tracker.unconfirmed(state.pending_log)
    state.rng = capture_rngs()
    exp.team.on_main(exp.run_dir.save, state, exp.student, keep=exp.config.tracking.checkpoints)
    exp.tracker.check()  # a write that failed in the background (the server is gone): stop, the round is saved


def _write_run_info(exp: Experiment, started: float | None) -> None:
    exp.run_dir.write_info({
        "run_id": exp.tracker.parent_id, "experiment": experiment_name(exp.config, exp.env.name),
        "run_name": default_run_name(exp.config), "tracking_uri": exp.tracker.uri,
        "config": exp.config.model_dump(), "status": "RUNNING", "started": started, **exp.process})


def _save_outputs(exp: Experiment) -> None:
    """``loop.save_student``: the student (and a stateful policy's state) in the output folder."""
    if not exp.config.loop.save_student:
        return
    out_dir = exp.run_dir.path
    out_dir.mkdir(parents=True, exist_ok=True)
    exp.student.save(str(out_dir / "student"))
    if isinstance(exp.policy, Stateful):
        (out_dir / "policy_state.json").write_text(json.dumps(exp.policy.state_dict(), default=_jsonable))


def _act(policy: Any, obs: Observation, name: str) -> Action:
    """``policy.act(obs)``; an exception inside it becomes a :class:`PolicyError` that names the policy and round."""
    try:
        return policy.act(obs)
    except Exception as e:
        raise PolicyError(f"policy {name!r} raised {type(e).__name__} in act() at round {obs.round}: {e}") from e


def _explain(policy: Any) -> dict[str, Any]:
    """What a policy with an ``explain()`` method says about its last decision (``metrics``, ``details``)."""
    if not isinstance(policy, Explains):
        return {}
    out = policy.explain() or {}
    metrics = {str(k): float(v) for k, v in (out.get("metrics") or {}).items()}
    return {"metrics": metrics, "details": out.get("details")}


def _policy_state(policy: Any) -> Any:
    """The policy's ``state_dict()`` deep-copied (None for a stateless policy)."""
    return copy.deepcopy(policy.state_dict()) if isinstance(policy, Stateful) else None


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays in a policy's state, as JSON."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _pending_stop() -> Interrupted | None:
    """The stop signal that came while ``run_experiment`` failed, if one did.

    With several processes the launcher sends the stop to all of them; a process waiting in a
    collective sees its peer leave as an error before its own signal handler runs. That is a stop,
    not a failure: the runs end ``KILLED``.
    """
    try:
        check()
    except Interrupted as stop:
        return stop
    return None
