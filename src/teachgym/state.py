"""DataEnvGym's three levels of state, for any env.

What the teacher is shown decides what it can do (DataEnvGym, Khan et al. 2024):

``open-ended``  only a sample of the student's failures (prompt, gold, output, skill labels): no
                per-skill profile, no profiles in the history, no skill graph, no rollout statistics;
``skill-list``  the per-skill missing-skill profile (the default; what every built-in policy reads);
``skill-tree``  the profile plus each skill's **sub-skills** — its difficulty levels, measured on the
                eval items of that level — which a ``Request(skill, n, level)`` can target.

The loop measures everything every round (MLflow always gets the full profile); :func:`restrict`
only decides what the policy sees. A policy declares the levels it can work with in
``state_levels`` (default: ``skill-list`` and ``skill-tree``); the loop refuses a level it cannot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from teachgym.registry import BUILTINS, resolve
from teachgym.types import HistoryEntry, Observation, SkillStats

STATE_LEVELS = ("open-ended", "skill-list", "skill-tree")
#: What a policy without a ``state_levels`` attribute is assumed to read.
DEFAULT_POLICY_LEVELS = ("skill-list", "skill-tree")


def policy_levels(policy: Any) -> tuple[str, ...]:
    """The state levels a policy says it can act on."""
    return tuple(getattr(policy, "state_levels", DEFAULT_POLICY_LEVELS))


def restrict(obs: Observation, level: str, subskills: Mapping[str, Mapping[int, SkillStats]] | None) -> Observation:
    """The observation as a teacher at ``level`` sees it.

    Args:
        obs: The full observation (skill-list).
        level: One of :data:`STATE_LEVELS`.
        subskills: Per-level stats, attached for ``skill-tree``.
    """
    if level not in STATE_LEVELS:
        raise ValueError(f"state must be one of {list(STATE_LEVELS)}, not {level!r}")
    if level == "skill-list":
        return obs
    if level == "skill-tree":
        return dataclasses.replace(obs, state=level, subskills=subskills)
    return dataclasses.replace(
        obs,
        state=level,
        profile={},
        history=tuple(HistoryEntry(h.round, {}, h.action) for h in obs.history),
        skill_graph=None,
        subskills=None,
        rollouts={},
    )


def policies_for(state: str) -> list[str]:
    """Built-in policies that declare they can act on ``state``."""
    ok = []
    for name in BUILTINS["policies"]:
        try:
            if state in policy_levels(resolve("policies", name)):
                ok.append(name)
        except Exception:  # noqa: BLE001 - an optional dependency missing: skip that policy
            continue
    return ok
