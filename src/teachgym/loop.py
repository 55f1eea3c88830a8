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


def default_run_name(config: ExperimentConfig) -> str:
    """``<policy>-s<seed>``, with an import path shortened to its attribute."""
    policy = config.policy.name.rsplit(":", 1)[-1]
    return config.tracking.run_name or f"{policy}-s{config.loop.seed}"


def run_experiment(
    config: ExperimentConfig,
    on_round: Callable[[RoundRecord, int], None] | None = None,
) -> ExperimentResult:
    """Run one curriculum experiment end to end.

    Args:
        config: A validated experiment config.
        on_round: Called after each round with ``(record, rounds_total)`` (the CLI prints a line).

    Returns:
        Per-round records, the MLflow parent run id and where outputs went.

    Raises:
        ConfigError, RegistryError: Bad components or kwargs (before anything runs).
        InvalidActionError: The teacher returned an action that cannot be trained on (before training).
    """
    from teachgym.engine import materialize
    from teachgym.evaluation import evaluate
    from teachgym.tracking import MLflowTracker, round_metrics

    loop = config.loop
    seed = loop.seed
    env = build_component("envs", "env", config.env, seed=seed)
    student = build_component("students", "student", config.student, seed=seed, env=env)
    policy = build_component("policies", "policy", config.policy, seed=seed)
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
    eval_prompts = set(env.eval_set()["prompt"])
    skill_graph = {s.name: tuple(s.prerequisites) for s in env.skills}
    run_name = default_run_name(config)
    out_dir = Path(loop.output_dir) / f"{run_name}-{time.strftime('%Y%m%d-%H%M%S')}"

    tracker = None
    if config.tracking.enabled:
        tracker = MLflowTracker(
            tracking_uri=config.tracking.tracking_uri,
            experiment=config.tracking.experiment or f"teachgym/{env.name}",
            run_name=run_name,
            tags={
                "teachgym.policy": config.policy.name,
                "teachgym.env": config.env.name,
                "teachgym.student": config.student.name,
                "teachgym.seed": str(seed),
            },
            params=flatten(config.model_dump()),
            config_yaml=yaml.safe_dump(config.model_dump(), sort_keys=False),
            log_predictions=config.tracking.log_predictions,
        )
        tracker.start()

    records: list[RoundRecord] = []
    status = "FAILED"
    try:
        # Round 0: the untrained student.
        t0 = time.perf_counter()
        with tracker.round(0) if tracker else nullcontext():
            result = evaluate(student, env, None, loop.max_new_tokens, loop.eval_batch_size, loop.num_failures)
            metrics = round_metrics(result, None, None, 0, skills)
            if tracker:
                tracker.log_round(0, result, None, None, None, None, metrics)
        records.append(_record(0, result, None, 0, None, time.perf_counter() - t0, metrics))
        if tracker and config.tracking.plots:
            tracker.log_plots(records, skills)
        if on_round:
            on_round(records[-1], loop.rounds)
        history = [HistoryEntry(0, result.profile, None)]
        used = 0

        for r in range(1, loop.rounds + 1):
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
            )
            obs = restrict(obs, loop.state, result.subskills)  # what this teacher may see
            with tracker.round(r) if tracker else nullcontext():
                # Aioli-style policies first probe the student; probe rows come out of this round's budget.
                obs, probed, probe_rows, probe_results = _run_probes(
                    policy, obs, student, env, tracker, seed * 100_003 + r, eval_prompts, loop.eval_batch_size
                )
                action: Action = policy.act(obs)
                validate_action(action, env.skills)  # garbage is caught here, before any training
                budget = loop.examples_per_round - probed
                data, report = materialize(
                    action, env, budget, seed * 100_003 + r, eval_prompts, synthesizer, obs.failures
                )
                if probed:  # the round's composition includes what the probes trained on
                    report.examples = {s: n + probe_rows.get(s, 0) for s, n in report.examples.items()}
                    report.sources["probe"] = probed
                train = student.train(data)
                used += len(data) + probed
                result = evaluate(
                    student, env, result.profile, loop.max_new_tokens, loop.eval_batch_size, loop.num_failures,
                    result.subskills,
                )
                metrics = round_metrics(result, action, report, used, skills)
                if probed:
                    metrics["data/probe_examples"] = float(probed)
                if tracker:
                    if probed:
                        tracker.log_probes(r, probe_results)
                    tracker.log_round(r, result, action, report, train, data, metrics)
            history.append(HistoryEntry(r, result.profile, action))
            records.append(_record(r, result, action, used, train.train_loss, time.perf_counter() - t0, metrics))
            if tracker and config.tracking.plots:
                tracker.log_plots(records, skills)
            if tracker and config.tracking.checkpoints != "none":  # logged from the parent run
                tracker.log_checkpoint(student, r, metrics, config.tracking.checkpoints, {
                    "env": config.env.model_dump(), "student": config.student.model_dump(),
                    "max_new_tokens": loop.max_new_tokens})
            if on_round:
                on_round(records[-1], loop.rounds)

        if loop.save_student:
            out_dir.mkdir(parents=True, exist_ok=True)
            student.save(str(out_dir / "student"))
            (out_dir / "policy_state.json").write_text(json.dumps(policy.state_dict()))
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if tracker:
            tracker.finish(status)
    return ExperimentResult(
        rounds=records,
        run_id=tracker.parent_id if tracker else None,
        tracking_uri=tracker.uri if tracker else None,
        output_dir=os.fspath(out_dir),
    )


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


def _run_probes(policy, obs, student, env, tracker, seed, eval_prompts, batch_size):
    """Run the probes a policy asks for (if any); return the observation with their results.

    Each probe really trains the student on its mixture; the per-skill eval loss is measured before
    and after, so the policy can estimate how training on one skill moves every skill's loss.
    """
    from teachgym.engine import materialize
    from teachgym.evaluation import loss_profile
    from teachgym.tracking import teacher_weights

    plan = policy.probes(obs) if callable(getattr(policy, "probes", None)) else []
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
