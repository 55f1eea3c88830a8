"""Every seed teachgym derives from ``loop.seed``, in one place.

A round, a probe, a generator attempt or a reservoir gets its own stream so that two draws never share
one and a resumed experiment draws what the uninterrupted one would have. The formulas are part of what
decides results: changing one changes every number a run produces (and so the bench's code key).
"""

from __future__ import annotations


def round_seed(seed: int, round: int) -> int:
    """The seed of round ``round`` of an experiment seeded ``seed`` (the engine's draw, the round's training)."""
    return seed * 100_003 + round


def probe_seed(round_seed: int, k: int) -> int:
    """The data of a probing policy's ``k``-th probe in a round seeded ``round_seed``."""
    return round_seed * 101 + k + 1


def attempt_seed(seed: int, attempt: int) -> int:
    """The env generator's ``attempt``-th call while the engine fills one request seeded ``seed``."""
    return seed * 1000 + attempt


def reservoir_seed(round_seed: int, i: int) -> int:
    """The per-skill reservoir of skill number ``i`` that a round with teaching per step draws batches from."""
    return round_seed * 1_009 + i + 1


def batch_seed(round_seed: int) -> int:
    """The order in which a round's batch source draws from its reservoirs."""
    return round_seed * 7 + 3


def skill_seed(seed: int, k: int) -> int:
    """The data of skill number ``k`` when Skill-it's graph is measured (one short run per skill)."""
    return seed * 7919 + k


def request_seed(seed: int, i: int, j: int) -> int:
    """The ``j``-th completion of prompt ``i`` asked of an LLM server in a call seeded ``seed``."""
    return (seed * 7919 + i * 131 + j) % 2**31


def agent_seed(seed: int) -> int:
    """Where an LLM teacher's calls start counting their seeds, for a policy seeded ``seed``."""
    return seed * 1_000_003


def names_seed(seed: int) -> int:
    """The neutral skill names (and their order) a teacher sees in an experiment seeded ``seed``."""
    return seed * 7_368_787 + 11
