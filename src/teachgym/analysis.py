"""Numbers for comparing curricula: learning-curve area, examples to reach a target, intervals over seeds.

A learning curve here is a pair of sequences: the cumulative training examples after each round
(0 for the untrained student) and the mean accuracy measured then. Nothing in this module knows
about MLflow or the loop, so the benchmark scripts, `teachgym compare` and the tests share it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def auc(examples: Sequence[float], accuracy: Sequence[float], budget: float | None = None) -> float:
    """Area under the learning curve, normalised to the budget: the mean accuracy over training.

    Trapezoids between measured rounds, divided by ``budget`` (default: the last ``examples``), so
    a student at 1.0 from the first example scores 1.0, and curves with equal budgets compare
    directly.

    Raises:
        ValueError: When the sequences differ in length, are empty, or the budget is not positive.
    """
    if len(examples) != len(accuracy) or not examples:
        raise ValueError(f"examples ({len(examples)}) and accuracy ({len(accuracy)}) must be non-empty and equal")
    budget = float(examples[-1] if budget is None else budget)
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    area = sum(
        (examples[i + 1] - examples[i]) * (accuracy[i + 1] + accuracy[i]) / 2 for i in range(len(examples) - 1)
    )
    return area / budget


def examples_to_reach(examples: Sequence[float], accuracy: Sequence[float], target: float) -> float | None:
    """Examples trained on when the curve first measured at least ``target``; None if it never did.

    Only measured points count (no interpolation between rounds): the answer is what a user who
    stops at the first round that reaches the target would have spent.
    """
    for n, acc in zip(examples, accuracy, strict=True):
        if acc >= target - 1e-12:  # accuracies are ratios of counts; guard float noise in equal values
            return float(n)
    return None


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval over seeds.

    Returns ``(mean, nan)`` for a single value: one seed says nothing about the spread.
    """
    from scipy import stats

    n = len(values)
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)


def format_ci(mean: float, half: float, digits: int = 3) -> str:
    """``0.512 ± 0.041`` (or just the mean when the interval is undefined)."""
    return f"{mean:.{digits}f}" if math.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"
