"""Skill-It, online data selection (Chen et al., 2023, "Skill-it! A data-driven skills framework for
understanding and training language models", Algorithm 1).

With ``K`` skills, a skills graph ``A`` (``A[i][j]``: how much training on skill ``i`` helps skill
``j``), the per-skill eval losses ``L_tau`` of the last ``w`` evaluations, a learning rate ``eta``,
a prior ``p_prior`` and an optional target mask ``m``::

    S_j     = sum over the last w evaluations tau of  m_j * L_tau_j / (L_0_j if normalize else 1)
    p_i     ∝ p_prior_i * exp(eta * sum_j A[i][j] * S_j)

Loss on a skill that training ``i`` helps raises ``i``'s weight, so prerequisites of skills the
student still fails are trained first. ``normalize`` divides by the round-0 loss so skills with a
naturally larger loss do not dominate. In the paper's fine-tuning setting only target skills'
losses count (``targets``; the mask ``m_j`` is 1 for targets, 0 otherwise).

The graph is ``"env"`` (from the env's prerequisites: ``A[i][i] = 1`` and ``A[i][j] = 1`` when
``i`` is a prerequisite of ``j``), ``"identity"``, or a path to a JSON file
``{"skills": [...], "matrix": [[...]]}`` such as the one ``teachgym skill-graph`` writes.
Defaults: ``w = 3`` (the paper's window), normalised losses, uniform prior; ``eta = 0.5`` is
teachgym's default (the paper tunes ``eta`` per setting).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from teachgym.policies._common import evaluations
from teachgym.types import Mixture, Observation


def load_graph(graph: str, names: Sequence[str], prerequisites: dict[str, Sequence[str]] | None) -> list[list[float]]:
    """The ``K x K`` matrix ``A`` for ``graph`` (``"env"``, ``"identity"`` or a JSON path)."""
    k = len(names)
    if graph == "identity" or (graph == "env" and not prerequisites):
        return [[1.0 if i == j else 0.0 for j in range(k)] for i in range(k)]
    if graph == "env":
        a = [[1.0 if i == j else 0.0 for j in range(k)] for i in range(k)]
        for j, skill in enumerate(names):
            for p in prerequisites.get(skill, ()):
                a[names.index(p)][j] = 1.0
        return a
    with open(graph) as f:
        data = json.load(f)
    skills, matrix = data["skills"], data["matrix"]
    missing = sorted(set(names) - set(skills))
    if missing:
        raise ValueError(f"skills graph {graph!r} lacks the skills {missing}")
    idx = [skills.index(s) for s in names]
    return [[float(matrix[i][j]) for j in idx] for i in idx]


class SkillItPolicy:
    """Skill-It online: p ∝ p_prior ⊙ exp(η A Σ_{last w} L), over a skills graph."""

    def __init__(
        self,
        eta: float = 0.5,
        window: int = 3,
        normalize: bool = True,
        graph: str = "env",
        targets: list[str] | None = None,
        prior: dict[str, float] | None = None,
    ) -> None:
        """Args:
        eta: Learning rate ``eta`` (> 0).
        window: How many recent evaluations ``w`` to sum (>= 1).
        normalize: Divide each loss by the skill's round-0 loss.
        graph: ``"env"``, ``"identity"`` or a JSON file path.
        targets: Skills whose loss counts (default: all), the paper's fine-tuning setting.
        prior: ``p_prior`` (default: uniform); skills left out get 0.
        """
        if not eta > 0 or window < 1:
            raise ValueError("eta must be > 0 and window >= 1")
        self.eta, self.window, self.normalize = float(eta), int(window), bool(normalize)
        self.graph, self.targets, self.prior = graph, targets, prior

    def act(self, observation: Observation) -> Mixture:
        """Weights from the last ``window`` evaluations (formula in the module docstring)."""
        names = observation.skill_names
        for label, given in (("targets", self.targets or []), ("prior", self.prior or {})):
            unknown = sorted(set(given) - set(names))
            if unknown:
                raise ValueError(f"skill-it {label} name unknown skills {unknown}")
        prereqs = {k: list(v) for k, v in (observation.skill_graph or {}).items()}
        a = load_graph(self.graph, names, prereqs)
        evals = evaluations(observation)
        first = evals[0]
        mask = {s: 1.0 if self.targets is None or s in self.targets else 0.0 for s in names}
        s_j = {
            s: sum(mask[s] * e[s].loss / (first[s].loss if self.normalize else 1.0) for e in evals[-self.window :])
            for s in names
        }
        scores = [self.eta * sum(a[i][j] * s_j[names[j]] for j in range(len(names))) for i in range(len(names))]
        top = max(scores)  # subtract the max before exp: same weights, no overflow
        prior = self.prior or {s: 1.0 for s in names}
        raw = {s: prior.get(s, 0.0) * math.exp(x - top) for s, x in zip(names, scores)}
        total = sum(raw.values())
        if total <= 0:
            raise ValueError("skill-it prior puts no weight on any skill")
        return Mixture({s: v / total for s, v in raw.items()})

    def state_dict(self) -> dict[str, Any]:
        """Everything the rule needs is in the observation's history: no state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""
