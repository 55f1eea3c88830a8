"""Probes: a policy that asks (Aioli's ``probes``) has the student trained briefly on each mixture it names
before it acts, and sees how every skill's eval loss moved. Probe rows come out of the round's budget.

:func:`run_probes` is the loop's one call for it (``teachgym.loop.play_round``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from teachgym.engine import materialize
from teachgym.evaluation import loss_profile
from teachgym.protocols import Probes
from teachgym.seeds import probe_seed
from teachgym.tracking.schema import teacher_weights
from teachgym.types import Observation, PolicyError, ProbeResult, validate_probes


def run_probes(exp: Any, obs: Observation, seed: int) -> tuple[Observation, int, Counter, list[ProbeResult]]:
    """Run the probes a policy asks for (if any); return the observation with their results.

    Each probe really trains the student on its mixture; the per-skill eval loss is measured before
    and after, so the policy can estimate how training on one skill moves every skill's loss.
    """
    plan = exp.team.on_main(probe_plan, exp.policy, obs, exp.config.policy.name)
    validate_probes(plan, exp.env.skills, obs.examples_per_round)
    results: list[ProbeResult] = []
    rows: Counter[str] = Counter()
    before = {s: stats.loss for s, stats in obs.profile.items()}
    for k, probe in enumerate(plan):
        data, report = exp.team.on_main(materialize, probe.mixture, exp.env, probe.n, probe_seed(seed, k),
                                        exp.eval_prompts)
        with exp.tracker.probe(obs.round, k):
            exp.student.train(data)
        after = loss_profile(exp.student, exp.env, exp.config.loop.eval_batch_size)
        results.append(ProbeResult(teacher_weights(probe.mixture), probe.n, before, after))
        rows.update(report.examples)
        before = after
    probed = sum(p.n for p in plan)
    if probed:
        obs = dataclasses.replace(
            obs, probes=tuple(results), budget_used=obs.budget_used + probed, budget_left=obs.budget_left - probed
        )
    return obs, probed, rows, results


def probe_plan(policy: Any, obs: Observation, name: str) -> list[Any]:
    """The probes a policy asks for (none if it has no ``probes``)."""
    try:
        return policy.probes(obs) if isinstance(policy, Probes) else []
    except Exception as e:
        raise PolicyError(f"policy {name!r} raised {type(e).__name__} in probes() at round {obs.round}: {e}") from e
