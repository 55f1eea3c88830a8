"""Aioli (Chen et al., 2024, "Aioli: A Unified Optimization Framework for Language Model Data
Mixing"): estimate the linear mixing law online with short probes, then reweight.

Aioli's mixing law says one round trained on proportions ``p`` lowers eval skill ``i``'s loss by
``sum_j A[i][j] p_j``. Each round, inside the round's own budget ``B``:

1. **Probe.** ``probe_fraction * B`` rows are split into ``sweeps * K`` one-skill probes of ``n``
   rows, in a seeded random order per sweep. Each probe really trains the student on skill ``j``
   alone, and the loop reports every eval skill's loss before and after. Extrapolating linearly to
   a whole round (the mixing law is linear in ``p``)::

       Â[i][j] = mean over j's probes of (L_i before - L_i after) * B / n

2. **Smooth** (optional EMA): ``A_t = gamma * A_{t-1} + (1 - gamma) * Â`` (``gamma = 0``: no EMA;
   the first estimate is taken as it is).
3. **Reweight**: ``p_j ∝ exp(eta * sum_i A_t[i][j])`` — skills whose training lowers the total eval
   loss most get most of the rest of the round. With ``multiplicative=True`` the update is the
   paper's exponentiated-gradient form ``p_j ∝ p_prev_j * exp(eta * sum_i A_t[i][j])``.

The probe rows are real training and count against the same budget as everything else, so every
policy still trains on exactly ``examples_per_round`` rows a round. ``eta = 1`` and
``probe_fraction = 0.1`` are teachgym's defaults for the tiny arithmetic student (``A`` is in
loss-per-round units, so ``eta`` is comparable across budgets); tune them for other students.
"""

from __future__ import annotations

import math
from typing import Any

from teachgym.policies._common import new_rng, rng_state
from teachgym.types import Mixture, Observation, Probe


class AioliPolicy:
    """Aioli: one-skill probes estimate the mixing-law matrix A, then p ∝ exp(η Σ_i A_ij)."""

    def __init__(
        self,
        eta: float = 1.0,
        probe_fraction: float = 0.1,
        sweeps: int = 1,
        ema: float = 0.0,
        multiplicative: bool = False,
        seed: int = 0,
    ) -> None:
        """Args:
        eta: Step size of the exponentiated update (> 0).
        probe_fraction: Share of each round's budget spent on probes, in ``(0, 1)``.
        sweeps: Probes per skill per round (each sweep probes every skill once).
        ema: ``gamma``, the weight of the previous ``A`` in ``[0, 1)``.
        multiplicative: Multiply by the previous proportions (the paper's EG form).
        seed: Seeds the probe order.
        """
        if not eta > 0 or not 0 < probe_fraction < 1 or sweeps < 1 or not 0 <= ema < 1:
            raise ValueError("need eta > 0, 0 < probe_fraction < 1, sweeps >= 1 and 0 <= ema < 1")
        self.eta, self.probe_fraction, self.sweeps = float(eta), float(probe_fraction), int(sweeps)
        self.ema, self.multiplicative = float(ema), bool(multiplicative)
        self.rng = new_rng(seed)
        self.a: list[list[float]] | None = None
        self.p: dict[str, float] | None = None

    def probes(self, observation: Observation) -> list[Probe]:
        """``sweeps`` one-skill probes per skill, each of ``n = probe_fraction * B / (sweeps * K)`` rows."""
        names = observation.skill_names
        n = int(self.probe_fraction * observation.examples_per_round) // (self.sweeps * len(names))
        if n < 1:
            raise ValueError(
                f"aioli: probe_fraction={self.probe_fraction} of {observation.examples_per_round} rows is less than "
                f"one row per probe for {len(names)} skills x {self.sweeps} sweeps; raise probe_fraction or the budget"
            )
        plan = []
        for _ in range(self.sweeps):
            for i in self.rng.permutation(len(names)):
                plan.append(Probe(Mixture({names[int(i)]: 1.0}), n))
        return plan

    def estimate(self, observation: Observation) -> list[list[float]]:
        """``Â`` from the observation's probe results (``A[i][j]``: eval skill ``i``, trained skill ``j``)."""
        names = observation.skill_names
        k = len(names)
        total = [[0.0] * k for _ in range(k)]
        count = [0] * k
        for probe in observation.probes:
            trained = [s for s, w in probe.weights.items() if w > 0]
            if len(trained) != 1:
                raise ValueError(f"aioli expects one-skill probes, got weights {dict(probe.weights)}")
            j = names.index(trained[0])
            scale = observation.examples_per_round / probe.examples
            for i, s in enumerate(names):
                total[i][j] += (probe.loss_before[s] - probe.loss_after[s]) * scale
            count[j] += 1
        return [[total[i][j] / count[j] if count[j] else 0.0 for j in range(k)] for i in range(k)]

    def act(self, observation: Observation) -> Mixture:
        """Fold this round's probes into ``A`` and reweight (rule in the module docstring)."""
        names = observation.skill_names
        k = len(names)
        if observation.probes:
            est = self.estimate(observation)
            prev = self.a or est  # the first estimate starts the average (no pull towards zero)
            self.a = [[self.ema * prev[i][j] + (1 - self.ema) * est[i][j] for j in range(k)] for i in range(k)]
        a = self.a or [[0.0] * k for _ in range(k)]
        scores = [self.eta * sum(a[i][j] for i in range(k)) for j in range(k)]
        top = max(scores)
        prior = self.p if (self.multiplicative and self.p) else {s: 1.0 for s in names}
        raw = {s: prior[s] * math.exp(x - top) for s, x in zip(names, scores)}
        z = sum(raw.values())
        self.p = {s: v / z for s, v in raw.items()}
        return Mixture(dict(self.p))

    def state_dict(self) -> dict[str, Any]:
        """The estimated matrix, the last proportions and the probe-order generator."""
        return {"a": self.a, "p": self.p, "rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot."""
        self.a, self.p = state["a"], state["p"]
        self.rng.bit_generator.state = state["rng"]
